//! Background work that must not slow the session: the calling thread at
//! the lowest priority (nice 19), as the kernel schedules threads apart.

/// Lowers the calling thread, not the process, to nice 19.
pub fn lowest() {
    // SAFETY: gettid has no preconditions; setpriority on this thread's
    // id changes only this thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}
