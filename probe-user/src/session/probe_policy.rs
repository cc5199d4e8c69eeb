//! Which kernel functions may be probed, and the probes added for modules
//! that load while a session runs.

use crate::kernel::kallsyms::KernelFunction;
use modscope_analysis::Imports;
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
};

use crate::kernel::kallsyms::Kallsyms;

/// Compiler and tracing plumbing every module imports: entry hooks, return
/// and indirect-call thunks, static-call trampolines, and the functions that
/// run BPF programs from tracepoints (modules with tracepoints import them;
/// modscope's own programs run inside them). They run on every function of
/// the kernel, on the probe's own path, or cannot be probed at all; counting
/// them says nothing about what a module does.
const NEVER_PROBE: &[&str] = &[
    "bpf_trace_run",
    "perf_trace_",
    "__bpf_",
    "trace_event_",
    "trace_raw_output_",
    "__fentry__",
    "mcount",
    "__x86_",
    "__SCT__",
    "__SCK__",
    "__stack_chk_fail",
    "__sanitizer_",
    "__asan_",
    "__ubsan_",
    "__kasan_",
];

/// Functions a kprobe's own handler runs (trace_call_bpf takes the RCU read
/// lock and disables migration), and their helpers. A probe there is hit
/// again from inside its own handler; on Debian 6.1 a kprobe on
/// `__rcu_read_lock` ended in "Unrecoverable kprobe detected" and a kernel
/// BUG. Refused by name, whatever ftrace says.
const PROBE_PATH: &[&str] = &[
    "__rcu_read_lock",
    "__rcu_read_unlock",
    "rcu_read_unlock_strict",
    "rcu_read_lock_held",
    "rcu_read_lock_sched_held",
    "rcu_read_lock_bh_held",
    "rcu_read_lock_any_held",
    "rcu_is_watching",
    "migrate_disable",
    "migrate_enable",
    "preempt_count_add",
    "preempt_count_sub",
    "debug_smp_processor_id",
    "__this_cpu_preempt_check",
    "trace_call_bpf",
];

fn on_probe_path(name: &str) -> bool {
    PROBE_PATH.contains(&name)
}

fn never_probe(name: &str) -> bool {
    NEVER_PROBE.iter().any(|p| name.starts_with(p))
}

/// What to do with an imported symbol.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeDecision {
    /// A function to probe, at this address.
    Probe(u64),
    /// A function that must not be probed (listed as not attached).
    Refuse,
    /// Not a function (data), or plumbing: left out silently.
    Skip,
}

pub fn classify(name: &str, kallsyms: &Kallsyms, traceable: &HashSet<String>) -> ProbeDecision {
    match kallsyms.function(name) {
        None => ProbeDecision::Skip,
        Some(_) if never_probe(name) => ProbeDecision::Skip,
        Some(addr) if traceable.contains(name) && !on_probe_path(name) => {
            ProbeDecision::Probe(addr)
        }
        Some(_) => ProbeDecision::Refuse,
    }
}

/// Probes to add for a module that loaded during the session.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Addition {
    /// The module's imports (from its file).
    pub imports: Imports,
    /// Functions not yet probed, to probe now, with their addresses.
    pub functions: Vec<KernelFunction>,
    /// Functions that must not be probed.
    pub refused: Vec<String>,
    /// Functions over the probe cap.
    pub capped: Vec<String>,
}

/// Finds the file of a module that loads during the session and plans the
/// probes its imports need. Its init has run by then: counting starts when
/// they attach, and the report says init was not counted.
pub struct LatePlanner {
    kallsyms: Kallsyms,
    traceable: HashSet<String>,
    /// Module name → file, on this kernel's module path.
    files: HashMap<String, PathBuf>,
    probed: BTreeSet<String>,
    /// Probes the cap still allows.
    room: usize,
}

impl LatePlanner {
    pub fn new(
        kallsyms: Kallsyms,
        traceable: HashSet<String>,
        files: HashMap<String, PathBuf>,
        probed: BTreeSet<String>,
        room: usize,
    ) -> Self {
        Self {
            kallsyms,
            traceable,
            files,
            probed,
            room,
        }
    }

    /// `None` when the module's file is not on the module path (or unreadable).
    pub fn module_loaded(&mut self, name: &str) -> Option<Addition> {
        let file = self.files.get(name)?.clone();
        let imports = modscope_analysis::imports_of(&[file])
            .ok()?
            .into_values()
            .next()?;
        Some(self.plan(imports))
    }

    fn plan(&mut self, imports: Imports) -> Addition {
        let mut add = Addition::default();
        for name in &imports.symbols {
            if self.probed.contains(name) {
                continue;
            }
            match classify(name, &self.kallsyms, &self.traceable) {
                ProbeDecision::Probe(addr) if self.room > 0 => {
                    self.room -= 1;
                    self.probed.insert(name.clone());
                    add.functions.push(KernelFunction::new(name.clone(), addr));
                }
                ProbeDecision::Probe(_) => add.capped.push(name.clone()),
                ProbeDecision::Refuse => add.refused.push(name.clone()),
                ProbeDecision::Skip => {}
            }
        }
        add.imports = imports;
        add
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(room: usize) -> LatePlanner {
        let kallsyms = Kallsyms::parse(
            "ffffffff81000100 T kfree\nffffffff81000200 T kstrdup\nffffffff81000300 T msleep\n\
             ffffffff81000400 T __rcu_read_lock\nffffffff81000500 T notrace_fn\n\
             ffffffff82000000 D jiffies\nffffffff81000600 T __fentry__\n",
        );
        let traceable = [
            "kfree",
            "kstrdup",
            "msleep",
            "__rcu_read_lock",
            "__fentry__",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        LatePlanner::new(
            kallsyms,
            traceable,
            HashMap::new(),
            ["kfree".to_owned()].into(),
            room,
        )
    }

    fn set(names: &[&str]) -> Imports {
        Imports::of_symbols(names.iter().map(|s| s.to_string()))
    }

    #[test]
    fn new_imports_are_probed_within_the_cap() {
        let mut p = planner(1);
        let add = p.plan(set(&[
            "kfree",
            "kstrdup",
            "msleep",
            "__rcu_read_lock",
            "notrace_fn",
            "jiffies",
            "__fentry__",
        ]));
        assert_eq!(
            add.functions,
            vec![KernelFunction::new("kstrdup", 0xffff_ffff_8100_0200)]
        );
        assert_eq!(add.capped, vec!["msleep".to_owned()]);
        assert_eq!(
            add.refused,
            vec!["__rcu_read_lock".to_owned(), "notrace_fn".to_owned()]
        );
        // Already probed now: a second module importing it adds nothing.
        let again = p.plan(set(&["kstrdup"]));
        assert!(again.functions.is_empty() && again.capped.is_empty());
        assert_eq!(again.imports, set(&["kstrdup"]));
    }

    #[test]
    fn unknown_modules_have_no_plan() {
        assert_eq!(planner(10).module_loaded("not_on_the_module_path"), None);
    }
}
