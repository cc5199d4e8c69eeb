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
    hidden_modules::{HiddenModules, Owner, Scan, UnownedCalls, View, kernel_symbol_reach},
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
    list: ListView,
}

/// The kernel's module list as a view. Finding its head means reading all
/// of kallsyms (120,000 lines and more, seconds under emulation), so it is
/// looked for only once the other views disagree, by a thread at the
/// lowest priority; the disagreement is judged when the list can be read
/// (or is known not to be readable here).
enum ListView {
    /// Not looked for yet; how to read its entries, where BTF says.
    Unsought(Option<ListLink>),
    Seeking(JoinHandle<Option<(ModuleList, Kcore)>>),
    Sought(Option<(ModuleList, Kcore)>),
}

impl ListView {
    /// A finished search becomes its answer.
    fn poll(&mut self) {
        if let Self::Seeking(t) = self
            && t.is_finished()
        {
            let Self::Seeking(t) = std::mem::replace(self, Self::Sought(None)) else {
                unreachable!("matched above");
            };
            *self = Self::Sought(t.join().ok().flatten());
        }
    }

    /// Starts the search (once), where the list can be read at all.
    fn seek(&mut self) {
        if let Self::Unsought(link) = self {
            *self = match link.take() {
                Some(link) => Self::Seeking(std::thread::spawn(move || find_list(link))),
                None => Self::Sought(None),
            };
        }
    }

    fn found(&self) -> Option<&(ModuleList, Kcore)> {
        match self {
            Self::Sought(found) => found.as_ref(),
            _ => None,
        }
    }
}

impl HiddenScan {
    pub fn new(paths: &KernelPaths, list_link: Option<ListLink>) -> Self {
        Self {
            modules: HiddenModules::default(),
            unowned: UnownedCalls::default(),
            proc_modules: paths.proc_modules.clone(),
            sys_module: paths.sys_module.clone(),
            list: ListView::Unsought(list_link),
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
        self.list.poll();
        let views = self.views(registry.iter().map(state::module_name).collect());
        if views.disagree() {
            self.list.seek();
        }
        // Judged with every view there is, the module list included.
        let judged = match self.list {
            ListView::Sought(_) => self.modules.scan(&views),
            _ => Vec::new(),
        };
        let mut records: Vec<AnomalyRecord> = judged
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
            .list
            .found()
            .and_then(|(list, kcore)| list.names(kcore));
        put(View::ModuleList, list);
        scan
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
        let tagged = module_views::TaggedSymbols::read(std::path::Path::new("/proc/kallsyms"))
            .unwrap_or_default();
        let sysfs_only: Vec<&String> = views
            .views
            .get(&View::SysModule)
            .into_iter()
            .flatten()
            .filter(|n| !listed.iter().any(|m| &m.name == *n))
            .collect();
        let texts = module_views::sys_module_texts(&self.sys_module, sysfs_only);
        // A listed module's size is its whole core; from 6.4 its text is
        // allocated apart, so its range stops at the next text base, a
        // hidden module's included (as the seeded present modules' do). A
        // hidden address has size 0: an empty range.
        let hidden_bases = texts.iter().map(|(_, (base, _))| *base);
        let listed_texts: Vec<(u64, u64)> = listed
            .iter()
            .map(|m| m.address)
            .zip(module_views::listed_text_sizes(&listed, hidden_bases))
            .collect();
        for caller in undecided {
            let in_listed = listed_texts
                .iter()
                .any(|&(base, size)| (base..base + size).contains(&caller));
            // A listed module's symbols say nothing here: its text is
            // `in_listed`, and a hidden module's text may follow it.
            let place = texts
                .iter()
                .find(|(_, (base, size))| (*base..base + size).contains(&caller));
            let reach = kernel_symbol_reach(caller, KALLSYMS_REACH, place.map(|(_, t)| t.0));
            let tagged = tagged
                .owner_of(caller, reach)
                .is_some_and(|(owner, _)| module_views::kernel_owned(owner));
            let owner = Owner::of(
                state.owns_text(caller) || in_listed,
                tagged,
                place.map(|(name, _)| name.as_str()),
            );
            self.unowned.decide(caller, owner);
        }
    }
}
