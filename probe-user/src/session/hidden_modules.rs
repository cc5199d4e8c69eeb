//! Modules that hide, from two kinds of evidence. Pure: the session reads
//! the views and the kernel's counts (`live.rs`), this decides.
//!
//! - Views that disagree: a name the kernel's module list, `/proc/modules`,
//!   `/sys/module` or the loads modscope saw list, and another does not.
//!   Loads and unloads race every read, so a disagreement counts only when
//!   two scans in a row show it and no load or unload of that name came in
//!   between.
//! - Calls from module memory no known module owns: the call probes count
//!   them apart (`UNOWNED_CALLS`); a site is evidence once it lies outside
//!   every module text modscope knows and outside the code the kernel
//!   itself puts in module memory (BPF, ftrace and kprobe slots, by their
//!   `/proc/kallsyms` tags).

use std::collections::{BTreeMap, BTreeSet};

use probe_common::UnownedCallKey;

/// One of the kernel's views of the loaded modules, or modscope's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum View {
    /// The loads modscope saw (its registry, armed before init runs).
    Registry,
    ProcModules,
    SysModule,
    /// `struct module`'s `list`, walked from `modules` through /proc/kcore.
    ModuleList,
}

impl View {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Registry => "modscope's registry",
            Self::ProcModules => "/proc/modules",
            Self::SysModule => "/sys/module",
            Self::ModuleList => "the kernel's module list",
        }
    }
}

/// One scan: each view that could be read, with the names it lists.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    pub views: BTreeMap<View, BTreeSet<String>>,
}

impl Scan {
    /// Whether some name is listed by one view and not another.
    pub fn disagree(&self) -> bool {
        !self.disagreements().is_empty()
    }

    /// Each name that some view lists and another does not, with the views
    /// that list it.
    fn disagreements(&self) -> BTreeMap<String, Vec<View>> {
        let all: BTreeSet<&String> = self.views.values().flatten().collect();
        all.into_iter()
            .filter_map(|name| {
                let present: Vec<View> = self
                    .views
                    .iter()
                    .filter(|(_, names)| names.contains(name))
                    .map(|(v, _)| *v)
                    .collect();
                (present.len() < self.views.len()).then(|| (name.clone(), present))
            })
            .collect()
    }
}

/// A module some views list and others do not, confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenModule {
    pub name: String,
    pub present_in: Vec<View>,
    pub missing_from: Vec<View>,
}

impl HiddenModule {
    /// The evidence in one line: where it is, and where it is not.
    pub fn evidence(&self) -> String {
        let list = |views: &[View]| {
            views
                .iter()
                .map(|v| v.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "listed by {}; missing from {}",
            list(&self.present_in),
            list(&self.missing_from)
        )
    }
}

/// The views' disagreements across scans.
#[derive(Debug, Default)]
pub struct HiddenModules {
    /// The last scan's disagreements.
    pending: BTreeMap<String, Vec<View>>,
    /// Names loaded or unloaded since the last scan.
    churned: BTreeSet<String>,
    /// What was reported: a finding is reported once per pattern.
    reported: BTreeSet<(String, Vec<View>)>,
}

impl HiddenModules {
    /// A load or unload of `name` was seen: its views may disagree for a
    /// moment.
    pub fn churn(&mut self, name: &str) {
        self.churned.insert(name.to_owned());
    }

    /// The findings this scan confirms.
    pub fn scan(&mut self, scan: &Scan) -> Vec<HiddenModule> {
        let now = scan.disagreements();
        let mut found = Vec::new();
        for (name, present) in &now {
            let steady = self.pending.get(name) == Some(present) && !self.churned.contains(name);
            if steady && self.reported.insert((name.clone(), present.clone())) {
                found.push(HiddenModule {
                    name: name.clone(),
                    present_in: present.clone(),
                    missing_from: scan
                        .views
                        .keys()
                        .filter(|v| !present.contains(v))
                        .copied()
                        .collect(),
                });
            }
        }
        self.pending = now;
        self.churned.clear();
        found
    }
}

/// Who owns the code at a return address that maps to no incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Module text modscope knows, or code the kernel put in module memory
    /// for itself (BPF, ftrace, kprobes): not evidence.
    Accounted,
    /// Nothing modscope or kallsyms knows; the module whose sysfs text
    /// range holds it, when one does.
    Unknown(Option<String>),
}

impl Owner {
    /// Who owns a return address: text modscope or `/proc/modules` knows
    /// and the kernel's own code (a tagged kallsyms symbol in reach) are
    /// accounted for; anything else is unknown, placed by `/sys/module`
    /// where a module's text range there holds it.
    pub fn of(known_text: bool, kernel_tagged: bool, sysfs_place: Option<&str>) -> Self {
        if known_text || kernel_tagged {
            Self::Accounted
        } else {
            Self::Unknown(sysfs_place.map(str::to_owned))
        }
    }
}

/// How far below `caller` a tagged kallsyms symbol may lie and still own
/// it: `reach`, but never below the text of the module `/sys/module` places
/// it in. The kernel's trampolines and BPF images may sit just below a
/// hidden module, whose own symbols are gone from kallsyms; code below a
/// module's text cannot run on into it.
pub fn kernel_symbol_reach(caller: u64, reach: u64, module_text_base: Option<u64>) -> u64 {
    match module_text_base {
        Some(base) if base <= caller => reach.min(caller - base + 1),
        _ => reach,
    }
}

/// A site of calls from unowned module memory, with its count so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnownedSite {
    pub key: UnownedCallKey,
    pub count: u64,
    /// The module `/sys/module` places there, if any.
    pub module: Option<String>,
}

/// More sites than the kernel's LRU map holds: decisions past it are made
/// again.
const MAX_DECIDED: usize = 4096;

/// The unowned call sites and what was written of them.
#[derive(Debug, Default)]
pub struct UnownedCalls {
    decided: BTreeMap<u64, Owner>,
    written: BTreeMap<UnownedCallKey, u64>,
}

impl UnownedCalls {
    /// Return addresses not decided yet: the session looks their owners up.
    pub fn undecided<'a>(
        &'a self,
        counts: &'a BTreeMap<UnownedCallKey, u64>,
    ) -> impl Iterator<Item = u64> + 'a {
        counts
            .keys()
            .map(|k| k.caller)
            .filter(|c| !self.decided.contains_key(c))
    }

    pub fn decide(&mut self, caller: u64, owner: Owner) {
        if self.decided.len() >= MAX_DECIDED {
            self.decided.clear();
        }
        self.decided.insert(caller, owner);
    }

    /// Sites of unknown owners whose count changed since last written.
    pub fn updates(&mut self, counts: &BTreeMap<UnownedCallKey, u64>) -> Vec<UnownedSite> {
        let mut out = Vec::new();
        for (key, &count) in counts {
            let Some(Owner::Unknown(module)) = self.decided.get(&key.caller) else {
                continue;
            };
            if self.written.get(key).is_some_and(|&w| w >= count) {
                continue;
            }
            self.written.insert(*key, count);
            out.push(UnownedSite {
                key: *key,
                count,
                module: module.clone(),
            });
        }
        out
    }
}

#[cfg(test)]
#[path = "hidden_modules_tests.rs"]
mod tests;
