//! What each detector's finding means: stable names, the option behind a
//! check, how serious a finding is, and the sentence that says why it
//! matters on this kernel. Shared by the live session, the trace report and
//! the TUI.

use modscope_analysis::verdict::Severity;
use probe_common::Detector;

use super::plan::{OPTIONS, bounded_type};

/// The option a check's event names (`FieldCheck::option`).
pub fn option_name(index: u32) -> &'static str {
    OPTIONS.get(index as usize).copied().unwrap_or("?")
}

/// Stable detector names, as in JSON and trace files.
pub fn detector_name(d: Detector) -> &'static str {
    match d {
        Detector::SpinlockMagic => "spinlock_magic",
        Detector::MutexMagic => "mutex_magic",
        Detector::TracepointProbe => "tracepoint_probe",
        Detector::ObjectBounds => "object_bounds",
    }
}

/// How serious a detector's finding is for the module's verdict: a lock or
/// `struct module` laid out for another kernel is memory corruption in the
/// making (incompatible); hooking a kernel tracepoint is worth a look
/// (warning).
pub fn severity(detector: &str) -> Severity {
    match detector {
        "spinlock_magic" | "mutex_magic" | "object_bounds" | LOAD_LAYOUT | HIDDEN_MODULE
        | UNOWNED_CODE => Severity::Incompatible,
        _ => Severity::Warning,
    }
}

/// A module's verdict once the detectors' findings count: its static
/// level (None: its file was not checked) raised to each finding's
/// severity. None only when there is neither.
pub fn with_findings<'a>(
    static_level: Option<Severity>,
    detectors: impl IntoIterator<Item = &'a str>,
) -> Option<Severity> {
    detectors
        .into_iter()
        .map(severity)
        .chain(static_level)
        .max()
}

/// A module some of the kernel's views list and others do not
/// (`session::hidden_modules`).
pub const HIDDEN_MODULE: &str = "hidden_module";

/// Calls from module memory that no module modscope knows owns.
pub const UNOWNED_CODE: &str = "unowned_module_code";

/// Why a module missing from some views matters.
pub fn explain_hidden_module(evidence: &str) -> String {
    format!(
        "{evidence}: a loaded module that takes itself off the kernel's lists hides from lsmod, \
         rmmod and every tool that reads them, a rootkit's move that no ABI check sees"
    )
}

/// Why calls from unowned module memory matter.
pub fn explain_unowned_code(module: Option<&str>) -> String {
    let whose = match module {
        Some(m) => format!("/sys/module/{m} places it in {m}'s text, but "),
        None => String::new(),
    };
    format!(
        "code in module memory calls the kernel; {whose}no module modscope knows owns it, and \
         /proc/kallsyms names no BPF, ftrace or kprobe code there: a module running while \
         hidden from the kernel's lists"
    )
}

/// The load-time layout check's detector name (it has no `FieldCheck`: a
/// kprobe on `load_module`, `probe-ebpf/src/load_check.rs`).
pub const LOAD_LAYOUT: &str = "struct_module_size";

/// Why a `struct module` size mismatch at load matters.
pub fn explain_load_layout(module_size: u64, kernel_size: u64) -> String {
    format!(
        "the module's compiled struct module is {module_size} bytes, this kernel's is \
         {kernel_size}: every field past the first difference is read at the wrong offset \
         (init and exit pointers, parameters, the text layout). Options that change it: lock \
         debugging (struct module embeds a struct mutex), lockdep, ftrace, kprobes, tracepoints, \
         livepatch, PREEMPT_RT. A forced load (-f) skips the CRC check that would refuse it"
    )
}

/// What one detector found, for [`explain`].
pub struct Finding<'a> {
    pub detector: Detector,
    /// The kernel function the module called.
    pub symbol: &'a str,
    pub object: u64,
    pub expected: u64,
    pub observed: u64,
    pub option: &'a str,
}

/// One sentence on what a detector saw and why it matters on this kernel.
pub fn explain(f: &Finding) -> String {
    let Finding {
        detector: d,
        symbol,
        object,
        expected,
        observed,
        option,
    } = *f;
    match d {
        Detector::SpinlockMagic => format!(
            "the spinlock at {object:#x} has debug magic {observed:#x} where this kernel \
             (CONFIG_{option}) keeps {expected:#x}: it was not initialised with this kernel's \
             spinlock layout (built without CONFIG_{option}?), and the kernel will write owner \
             fields past the module's smaller lock"
        ),
        Detector::MutexMagic => format!(
            "the mutex at {object:#x} has debug magic {observed:#x} where this kernel \
             (CONFIG_{option}) keeps the mutex's own address: it was not initialised with this \
             kernel's struct mutex layout (built without CONFIG_{option}?)"
        ),
        Detector::ObjectBounds => format!(
            "the struct {} at {object:#x} is {expected} bytes on this kernel{}, but only {observed} \
             bytes of the module's own allocation are left there: the module was built with a \
             smaller layout, and the kernel writes past the end of its allocation",
            bounded_type(symbol).unwrap_or("object"),
            if option.is_empty() {
                String::new()
            } else {
                format!(" (CONFIG_{option})")
            }
        ),
        Detector::TracepointProbe => format!(
            "registers a probe on the kernel tracepoint at {object:#x}: the module runs code \
             inside kernel events (CONFIG_{option})"
        ),
    }
}
