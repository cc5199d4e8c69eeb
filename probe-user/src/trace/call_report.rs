//! Per-module call reports from the probes' counters: which of its imports
//! each module actually called, how often, and since when. Pure: built from
//! values read out of the maps, so it is tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::kernel::kallsyms::FunctionNames;

/// One incarnation of a module as the session saw it.
#[derive(Debug, Clone)]
pub struct Incarnation {
    pub name: String,
    pub incarnation: u64,
    pub loaded_ktime_ns: u64,
    /// Probes were attached before its init ran: init's calls are counted.
    pub init_counted: bool,
    pub unloaded_ktime_ns: Option<u64>,
    /// Its imported functions, when its file was found.
    pub imports: Option<BTreeSet<String>>,
    /// Imports its code reaches by a tail call.
    pub tail_called: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SymbolUse {
    pub symbol: String,
    pub count: u64,
    pub first_use_ktime_ns: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModuleCalls {
    pub name: String,
    pub incarnation: u64,
    pub loaded_ktime_ns: u64,
    pub unloaded_ktime_ns: Option<u64>,
    pub init_counted: bool,
    /// Calls to probed functions, most frequent first.
    pub calls: Vec<SymbolUse>,
    /// Probed imports it never called; `null` when its file was not found.
    /// Tail-called imports are never among them.
    pub unused_imports: Option<Vec<String>>,
    /// Probed imports reached by a tail call: their calls from there are
    /// credited to the module's caller, so their counts here fall short.
    pub tail_called: Vec<String>,
}

/// Joins counters `(incarnation, func_ip) -> count` and first-use times with
/// what is known of each incarnation.
pub fn build(
    incarnations: &[Incarnation],
    counts: &BTreeMap<(u64, u64), u64>,
    first_use: &BTreeMap<(u64, u64), u64>,
    names: &FunctionNames,
    probed: &BTreeSet<String>,
) -> Vec<ModuleCalls> {
    incarnations
        .iter()
        .map(|m| {
            let mut calls: Vec<SymbolUse> = counts
                .range((m.incarnation, 0)..=(m.incarnation, u64::MAX))
                .map(|(&(inc, ip), &count)| SymbolUse {
                    symbol: names
                        .name(ip)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{ip:#x}")),
                    count,
                    first_use_ktime_ns: first_use.get(&(inc, ip)).copied(),
                })
                .collect();
            calls.sort_by(|a, b| b.count.cmp(&a.count).then(a.symbol.cmp(&b.symbol)));
            let used: BTreeSet<&str> = calls.iter().map(|c| c.symbol.as_str()).collect();
            let unused_imports = m.imports.as_ref().map(|imports| {
                imports
                    .iter()
                    .filter(|s| probed.contains(*s) && !used.contains(s.as_str()))
                    .filter(|s| !m.tail_called.contains(*s))
                    .cloned()
                    .collect()
            });
            let tail_called = m
                .tail_called
                .iter()
                .filter(|s| probed.contains(*s))
                .cloned()
                .collect();
            ModuleCalls {
                name: m.name.clone(),
                incarnation: m.incarnation,
                loaded_ktime_ns: m.loaded_ktime_ns,
                unloaded_ktime_ns: m.unloaded_ktime_ns,
                init_counted: m.init_counted,
                calls,
                unused_imports,
                tail_called,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kallsyms::KernelFunction;

    #[test]
    fn counts_are_kept_per_incarnation() {
        let names = FunctionNames::new([
            KernelFunction::new("kfree", 0x100),
            KernelFunction::new("kstrdup", 0x200),
            KernelFunction::new("msleep", 0x300),
        ]);
        let imports: BTreeSet<String> = ["kfree", "kstrdup", "msleep", "_printk"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let probed: BTreeSet<String> = ["kfree", "kstrdup", "msleep"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let first = Incarnation {
            name: "m".into(),
            incarnation: 10,
            loaded_ktime_ns: 10,
            init_counted: true,
            unloaded_ktime_ns: Some(50),
            imports: Some(imports.clone()),
            tail_called: BTreeSet::new(),
        };
        let second = Incarnation {
            incarnation: 60,
            loaded_ktime_ns: 60,
            unloaded_ktime_ns: None,
            ..first.clone()
        };
        let counts = BTreeMap::from([((10, 0x104), 1000), ((10, 0x200), 1000), ((60, 0x104), 7)]);
        let first_use = BTreeMap::from([((10, 0x104), 11), ((60, 0x104), 61)]);
        let r = build(&[first, second], &counts, &first_use, &names, &probed);
        assert_eq!(
            r[0].calls,
            vec![
                SymbolUse {
                    symbol: "kfree".into(),
                    count: 1000,
                    first_use_ktime_ns: Some(11)
                },
                SymbolUse {
                    symbol: "kstrdup".into(),
                    count: 1000,
                    first_use_ktime_ns: None
                },
            ]
        );
        assert_eq!(
            r[0].unused_imports,
            Some(vec!["msleep".to_owned()]),
            "_printk was not probed"
        );
        // The reload at another incarnation starts from zero.
        assert_eq!(
            r[1].calls,
            vec![SymbolUse {
                symbol: "kfree".into(),
                count: 7,
                first_use_ktime_ns: Some(61)
            }]
        );
        assert_eq!(
            r[1].unused_imports,
            Some(vec!["kstrdup".to_owned(), "msleep".to_owned()])
        );
    }

    #[test]
    fn a_tail_called_import_is_never_unused() {
        // `exit` ends in `jmp proc_remove`: proc_remove returns to the
        // kernel's caller, its probe sees no module address, and it counts 0.
        let names = FunctionNames::new([
            KernelFunction::new("proc_create", 0x100),
            KernelFunction::new("proc_remove", 0x200),
        ]);
        let both: BTreeSet<String> = ["proc_create".to_owned(), "proc_remove".to_owned()].into();
        let m = Incarnation {
            name: "m".into(),
            incarnation: 1,
            loaded_ktime_ns: 1,
            init_counted: true,
            unloaded_ktime_ns: Some(9),
            imports: Some(both.clone()),
            tail_called: ["proc_remove".to_owned()].into(),
        };
        let counts = BTreeMap::from([((1, 0x100), 1)]);
        let r = build(&[m], &counts, &BTreeMap::new(), &names, &both);
        assert_eq!(r[0].unused_imports, Some(vec![]));
        assert_eq!(r[0].tail_called, ["proc_remove"]);
    }
}
