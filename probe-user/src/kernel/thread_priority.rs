//! The calling thread's priority. Background work that must not slow the
//! session runs at the lowest priority (nice 19). The session's BPF map
//! syscalls run unpreempted where the kernel preempts kernel code: while a
//! map syscall runs, the kernel raises `bpf_prog_active` on its CPU, and a
//! kprobe's BPF program that fires there meanwhile is skipped without a
//! trace (`trace_call_bpf`). Preempted inside one, the session would blind
//! its own probes on that CPU: a module's calls there go uncounted.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

/// Lowers the calling thread, not the process, to nice 19.
pub fn lowest() {
    // SAFETY: gettid has no preconditions; setpriority on this thread's
    // id changes only this thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// Whether the kernel preempts tasks in kernel code, from its version
/// string (`uname -v`) and, for a kernel whose model is chosen at boot
/// (`PREEMPT_DYNAMIC`), the chosen model: debugfs's
/// `sched/preempt` (the current one in parentheses) or `preempt=` on the
/// command line.
pub fn kernel_preempts(version: &str, boot_choice: Option<&str>) -> bool {
    let words: Vec<&str> = version.split_whitespace().collect();
    if words
        .iter()
        .any(|w| matches!(*w, "PREEMPT" | "PREEMPT_RT" | "PREEMPT_LAZY"))
    {
        return true;
    }
    if !words.contains(&"PREEMPT_DYNAMIC") {
        return false;
    }
    let chosen = boot_choice.unwrap_or("").split_whitespace().find_map(|w| {
        w.strip_prefix('(')
            .and_then(|w| w.strip_suffix(')'))
            .or_else(|| w.strip_prefix("preempt="))
    });
    matches!(chosen, Some("full" | "lazy"))
}

/// The running kernel's answer to `kernel_preempts`, read once.
fn running_kernel_preempts() -> bool {
    static PREEMPTS: OnceLock<bool> = OnceLock::new();
    *PREEMPTS.get_or_init(|| {
        let read = |p: &str| super::text_file::read(p).ok();
        let version = read("/proc/sys/kernel/version").unwrap_or_default();
        let boot_choice = read("/sys/kernel/debug/sched/preempt").or_else(|| {
            read("/proc/cmdline").and_then(|c| {
                c.split_whitespace()
                    .find(|w| w.starts_with("preempt="))
                    .map(str::to_owned)
            })
        });
        kernel_preempts(&version, boot_choice.as_deref())
    })
}

/// A scheduling parameter of `priority` (musl's has more fields than
/// glibc's, all left zero).
fn sched_param(priority: libc::c_int) -> libc::sched_param {
    // SAFETY: sched_param is plain integers (and, in musl, timespecs of
    // integers): all zeros is a valid value.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = priority;
    param
}

/// Set once the kernel refused real-time scheduling (no CAP_SYS_NICE, or
/// no real-time budget in this cgroup): not asked again.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// While held, the calling thread runs at the lowest real-time priority
/// (`SCHED_FIFO` 1), so no ordinary task preempts it inside a BPF syscall;
/// its policy is put back on drop. Nothing changes where the kernel does
/// not preempt kernel code, or where it refuses.
#[must_use = "the thread is unpreempted only while this is held"]
pub struct Unpreempted {
    /// The policy and priority to put back.
    restore: Option<(libc::c_int, libc::sched_param)>,
}

impl Unpreempted {
    pub fn enter() -> Self {
        Self::enter_if(running_kernel_preempts())
    }

    /// As `enter`, with the kernel's answer given (tests).
    pub fn enter_if(kernel_preempts: bool) -> Self {
        if !kernel_preempts || REFUSED.load(Ordering::Relaxed) {
            return Self { restore: None };
        }
        let mut before = sched_param(0);
        // SAFETY: pid 0 is the calling thread; the out-pointer is valid.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // SAFETY: as above.
        if policy < 0 || unsafe { libc::sched_getparam(0, &mut before) } != 0 {
            return Self { restore: None };
        }
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            // Real-time already: as unpreempted as the user made it.
            return Self { restore: None };
        }
        let fifo = sched_param(1);
        // SAFETY: pid 0 is the calling thread; the parameter is valid.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) } != 0 {
            REFUSED.store(true, Ordering::Relaxed);
            log::debug!(
                "real-time scheduling refused ({}): the session's BPF syscalls may be preempted",
                std::io::Error::last_os_error()
            );
            return Self { restore: None };
        }
        Self {
            restore: Some((policy, before)),
        }
    }
}

impl Drop for Unpreempted {
    fn drop(&mut self) {
        if let Some((policy, param)) = self.restore {
            // SAFETY: pid 0 is the calling thread; the policy and parameter
            // are the ones it had.
            unsafe { libc::sched_setscheduler(0, policy, &param) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preemptible_kernels_are_told_apart_by_their_version() {
        let rt = "#1 SMP PREEMPT_RT Debian 6.1.158-1 (2025-11-09)";
        assert!(kernel_preempts(rt, None));
        assert!(kernel_preempts("#1 SMP PREEMPT Tue Jan 2", None));
        assert!(!kernel_preempts("#1 SMP Debian 6.1.158-1", None));
        let dynamic = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1";
        assert!(!kernel_preempts(dynamic, None), "voluntary unless chosen");
        assert!(!kernel_preempts(dynamic, Some("none (voluntary) full\n")));
        assert!(kernel_preempts(dynamic, Some("none voluntary (full)\n")));
        assert!(kernel_preempts(dynamic, Some("none voluntary full (lazy)")));
        assert!(kernel_preempts(dynamic, Some("preempt=full")));
        assert!(!kernel_preempts(dynamic, Some("preempt=voluntary")));
    }

    fn policy() -> libc::c_int {
        // SAFETY: pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn the_thread_is_real_time_only_while_held() {
        // A thread of its own: the policy is per thread.
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER);
            {
                let _off = Unpreempted::enter_if(false);
                assert_eq!(
                    policy(),
                    libc::SCHED_OTHER,
                    "nothing where the kernel does not preempt"
                );
            }
            let held = Unpreempted::enter_if(true);
            if held.restore.is_none() {
                eprintln!("real-time scheduling refused here: nothing to check");
                return;
            }
            assert_eq!(policy(), libc::SCHED_FIFO);
            drop(held);
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
