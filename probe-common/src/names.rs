//! The names by which user space finds the eBPF object's maps, programs and
//! load-time globals. The eBPF side declares them as statics and functions
//! of these exact names (`probe-ebpf/src/maps.rs`, one file per program
//! family); `probe-user`'s tests check the built object against this list.

/// Maps user space reads or fills.
pub mod map {
    pub const EVENTS: &str = "EVENTS";
    pub const MODULES: &str = "MODULES";
    pub const COUNTERS: &str = "COUNTERS";
    pub const PAGES: &str = "PAGES";
    pub const CALLS: &str = "CALLS";
    pub const SEEN: &str = "SEEN";
    pub const FIELD_CHECKS: &str = "FIELD_CHECKS";
    pub const ANOMALIES: &str = "ANOMALIES";
    pub const ALLOC_FUNCS: &str = "ALLOC_FUNCS";
    /// aya-log's record ring (`aya_log_ebpf`), read only with `--log-level`.
    pub const AYA_LOGS: &str = "AYA_LOGS";
    /// The guard's verdicts by file identity.
    pub const GUARD_FILES: &str = "GUARD_FILES";
    /// Calls from module memory no known module owns.
    pub const UNOWNED_CALLS: &str = "UNOWNED_CALLS";
    /// The count table (`count_table`): which incarnation owns each row,
    /// each function's column, the per-CPU cells.
    pub const ROWS: &str = "ROWS";
    pub const COLUMNS: &str = "COLUMNS";
    pub const COUNTS: &str = "COUNTS";

    pub const ALL: [&str; 15] = [
        EVENTS,
        MODULES,
        COUNTERS,
        PAGES,
        CALLS,
        SEEN,
        FIELD_CHECKS,
        ANOMALIES,
        ALLOC_FUNCS,
        AYA_LOGS,
        GUARD_FILES,
        UNOWNED_CALLS,
        ROWS,
        COLUMNS,
        COUNTS,
    ];
}

/// Programs, by their function names in `probe-ebpf`.
pub mod program {
    pub const MODULE_LOAD: &str = "module_load";
    pub const MODULE_FREE: &str = "module_free";
    pub const COUNT_CALL: &str = "count_call";
    /// `count_call` for a trampoline, loaded once per function.
    pub const COUNT_CALL_FENTRY: &str = "count_call_fentry";
    /// The two reading through `bpf_rdonly_cast`'s view (`kernel_view`);
    /// the kprobe one is built for x86-64 only, the one that reads memory.
    pub const COUNT_CALL_FENTRY_VIEW: &str = "count_call_fentry_view";
    pub const COUNT_CALL_VIEW: &str = "count_call_view";
    pub const INIT_START: &str = "init_start";
    pub const INIT_DONE: &str = "init_done";
    pub const CHECK_FIELDS: &str = "check_fields";
    pub const COUNT_FREE: &str = "count_free";
    pub const ALLOC_ENTRY: &str = "alloc_entry";
    pub const ALLOC_RETURN: &str = "alloc_return";
    pub const LOAD_CHECK: &str = "load_check";
    /// The guard's BPF-LSM programs, by hook.
    pub const GUARD_READ_FILE: &str = "guard_read_file";
    pub const GUARD_POST_READ_FILE: &str = "guard_post_read_file";
    pub const GUARD_LOAD_DATA: &str = "guard_load_data";
    pub const GUARD_POST_LOAD_DATA: &str = "guard_post_load_data";
    pub const GUARD_MODULE_REQUEST: &str = "guard_module_request";
    /// The guard's kprobe fallback, which observes only.
    pub const GUARD_READ_FILE_KPROBE: &str = "guard_read_file_kprobe";
    pub const GUARD_POST_READ_FILE_KPROBE: &str = "guard_post_read_file_kprobe";
    pub const GUARD_LOAD_DATA_KPROBE: &str = "guard_load_data_kprobe";

    /// Every program but the x86-64-only `COUNT_CALL_VIEW`.
    pub const ALL: [&str; 20] = [
        MODULE_LOAD,
        MODULE_FREE,
        COUNT_CALL,
        COUNT_CALL_FENTRY,
        COUNT_CALL_FENTRY_VIEW,
        INIT_START,
        INIT_DONE,
        CHECK_FIELDS,
        COUNT_FREE,
        ALLOC_ENTRY,
        ALLOC_RETURN,
        LOAD_CHECK,
        GUARD_READ_FILE,
        GUARD_POST_READ_FILE,
        GUARD_LOAD_DATA,
        GUARD_POST_LOAD_DATA,
        GUARD_MODULE_REQUEST,
        GUARD_READ_FILE_KPROBE,
        GUARD_POST_READ_FILE_KPROBE,
        GUARD_LOAD_DATA_KPROBE,
    ];
}

/// Globals written before the verifier sees the programs.
pub mod global {
    pub const MODULE_LAYOUT: &str = "MODULE_LAYOUT";
    pub const CALL_PROBE: &str = "CALL_PROBE";
    pub const LOAD_CHECK: &str = "LOAD_CHECK";
    pub const GUARD: &str = "GUARD";
    pub const COUNT_TABLE: &str = "COUNT_TABLE";
    /// aya-log's level filter: 0 (off) unless `--log-level` says otherwise.
    pub const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

    pub const ALL: [&str; 6] = [
        MODULE_LAYOUT,
        CALL_PROBE,
        LOAD_CHECK,
        GUARD,
        COUNT_TABLE,
        AYA_LOG_LEVEL,
    ];
}

/// Kernel hooks the programs attach to.
pub mod hook {
    /// Raw tracepoints of the module registry.
    pub const MODULE_LOAD: &str = "module_load";
    pub const MODULE_FREE: &str = "module_free";
    /// The loader's init step: init text is unmapped when it returns.
    pub const DO_INIT_MODULE: &str = "do_init_module";
    /// The loader's entry, where the image is checked before it is parsed.
    pub const LOAD_MODULE: &str = "load_module";
    /// The LSM hooks of the guard (`bpf_lsm_<hook>` in BTF).
    pub const LSM_READ_FILE: &str = "kernel_read_file";
    pub const LSM_POST_READ_FILE: &str = "kernel_post_read_file";
    pub const LSM_LOAD_DATA: &str = "kernel_load_data";
    pub const LSM_POST_LOAD_DATA: &str = "kernel_post_load_data";
    pub const LSM_MODULE_REQUEST: &str = "kernel_module_request";
    /// The security functions the kprobe fallback observes.
    pub const SECURITY_READ_FILE: &str = "security_kernel_read_file";
    pub const SECURITY_POST_READ_FILE: &str = "security_kernel_post_read_file";
    pub const SECURITY_LOAD_DATA: &str = "security_kernel_load_data";
}
