//! The reads behind the hidden-module findings, once a second: the
//! kernel's views of the loaded modules and modscope's registry, and the
//! calls the probes counted from unowned module memory, whose owners are
//! looked up once per site. What counts as evidence is decided in
//! `hidden_modules` (pure).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    thread::JoinHandle,
};

use super::{
    anomaly_sites,
    error::Result,
    hidden_modules::{HiddenModules, Owner, Scan, UnownedCalls, View},
    state::{self, SessionState},
};
use crate::{
    kernel::{
        features::KernelPaths,
        kcore::{self, Kcore},
        module_views::{self, ListLink, ModuleList},
        proc_modules, text_file, thread_priority,
    },
    probe::ModuleProbe,
    trace::records::AnomalyRecord,
};

/// The module list's head, from kallsyms, and kcore to walk it: `None`
/// where kallsyms names no `modules` (no KALLSYMS_ALL) or kcore is missing.
fn find_list(link: ListLink) -> Option<(ModuleList, Kcore)> {
    thread_priority::lowest();
    let kallsyms = text_file::read("/proc/kallsyms").ok()?;
    let head = module_views::module_list_head(&kallsyms)?;
    let kcore = kcore::read_headers(kcore::PROC_KCORE).ok()?;
    Some((ModuleList { head, link }, kcore))
}

/// How far below a return address kallsyms' nearest symbol may be and
/// still own it: BPF programs and trampolines are a page or a few.
const KALLSYMS_REACH: u64 = 64 << 10;

pub struct HiddenScan {
    modules: HiddenModules,
    unowned: UnownedCalls,
    proc_modules: PathBuf,
    sys_module: PathBuf,
    /// The module list and kcore, once found: kallsyms is long (200,000
    /// lines, seconds under emulation), so a thread finds the list head
    /// while the session runs, and the list is a view from then on.
    list: Option<(ModuleList, Kcore)>,
    finding_list: Option<JoinHandle<Option<(ModuleList, Kcore)>>>,
}

impl HiddenScan {
    pub fn new(paths: &KernelPaths, list_link: Option<ListLink>) -> Self {
        Self {
            modules: HiddenModules::default(),
            unowned: UnownedCalls::default(),
            proc_modules: paths.proc_modules.clone(),
            sys_module: paths.sys_module.clone(),
            list: None,
            finding_list: list_link.map(|link| std::thread::spawn(move || find_list(link))),
        }
    }

    /// A load or unload of `name` arrived.
    pub fn churn(&mut self, name: &str) {
        self.modules.churn(name);
    }

    /// The records this scan finds.
    pub fn scan(
        &mut self,
        probe: &ModuleProbe,
        state: &SessionState,
        now_ns: u64,
    ) -> Result<Vec<AnomalyRecord>> {
        let registry = probe.registry()?;
        let views = self.views(registry.iter().map(state::module_name).collect());
        let mut records: Vec<AnomalyRecord> = self
            .modules
            .scan(&views)
            .iter()
            .map(|found| {
                let incarnation = registry
                    .iter()
                    .find(|r| state::module_name(r) == found.name)
                    .map_or(0, |r| r.incarnation);
                anomaly_sites::hidden_module(found, incarnation, now_ns)
            })
            .collect();
        let counts = probe.unowned_calls()?;
        self.decide_owners(&counts, &views, state);
        records.extend(self.unowned.updates(&counts).iter().map(|site| {
            anomaly_sites::unowned_code(site, state.function_name(site.key.func_ip), now_ns)
        }));
        Ok(records)
    }

    /// Every view that can be read now; the registry first, so a module
    /// that loads during the scan is in the later views, never only in it.
    fn views(&mut self, registry: BTreeSet<String>) -> Scan {
        let mut scan = Scan::default();
        scan.views.insert(View::Registry, registry);
        let mut put = |view, names: Option<BTreeSet<String>>| {
            if let Some(names) = names {
                scan.views.insert(view, names);
            }
        };
        put(
            View::ProcModules,
            module_views::proc_modules_names(&self.proc_modules),
        );
        put(
            View::SysModule,
            module_views::sys_module_names(&self.sys_module),
        );
        let list = self
            .module_list()
            .and_then(|(list, kcore)| list.names(kcore));
        put(View::ModuleList, list);
        scan
    }

    fn module_list(&mut self) -> Option<&(ModuleList, Kcore)> {
        if self
            .finding_list
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            let found = self.finding_list.take().and_then(|t| t.join().ok());
            self.list = found.flatten();
        }
        self.list.as_ref()
    }

    /// Looks up the owners of sites not seen before: module text modscope
    /// knows, a module /proc/modules lists, code kallsyms tags as the
    /// kernel's own, or nobody (then sysfs may still place it).
    fn decide_owners(
        &mut self,
        counts: &BTreeMap<probe_common::UnownedCallKey, u64>,
        views: &Scan,
        state: &SessionState,
    ) {
        let undecided: Vec<u64> = self.unowned.undecided(counts).collect();
        if undecided.is_empty() {
            return;
        }
        let listed = proc_modules::read(&self.proc_modules).unwrap_or_default();
        let kallsyms = text_file::read("/proc/kallsyms").unwrap_or_default();
        let sysfs_only: Vec<&String> = views
            .views
            .get(&View::SysModule)
            .into_iter()
            .flatten()
            .filter(|n| !listed.iter().any(|m| &m.name == *n))
            .collect();
        let texts = module_views::sys_module_texts(&self.sys_module, sysfs_only);
        for caller in undecided {
            let in_listed = listed
                .iter()
                .any(|m| m.address != 0 && (m.address..m.address + m.size).contains(&caller));
            // A listed module's symbols say nothing here: its text is
            // `in_listed`, and a hidden module's text may follow it.
            let tagged = module_views::owner_of(&kallsyms, caller, KALLSYMS_REACH)
                .is_some_and(|(owner, _)| module_views::kernel_owned(&owner));
            let owner = if state.owns_text(caller) || in_listed || tagged {
                Owner::Accounted
            } else {
                Owner::Unknown(
                    texts
                        .iter()
                        .find(|(_, (base, size))| (*base..base + size).contains(&caller))
                        .map(|(name, _)| name.clone()),
                )
            };
            self.unowned.decide(caller, owner);
        }
    }
}
