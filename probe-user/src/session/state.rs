//! What a live session learns as the kernel's records arrive, folded into
//! plain state: incarnations, their text ranges, imports and taints, the
//! names of probed functions, anomalous call sites. Pure: each step takes a
//! decoded record and returns the event to print and the trace record to
//! write; the session (`live.rs`) does the I/O around it. Tested on the
//! host.

use crate::kernel::kallsyms::KernelFunction;
use modscope_analysis::Imports;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use probe_common::{
    AnomalyEvent, AnomalyKey, FirstUseEvent, LoadLayoutEvent, ModuleRecord, calls::MAX_TEXT_PAGES,
};

use super::{
    anomaly_sites::{self, AnomalySites},
    event::{Event, ModuleInfo},
};
use crate::{
    kernel::{clock::WallClock, kallsyms::FunctionNames},
    trace::{
        call_report::{self, Incarnation, ModuleCalls},
        display::{AnomalyInfo, hex},
        records::AnomalyRecord,
        replay::merge_anomaly,
        report::place_in,
    },
};

/// Core and init text of one incarnation: (base, size) each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextRanges {
    pub core: (u64, u64),
    pub init: (u64, u64),
}

/// Module text past what the kernel-side registration covers (its loop is
/// bounded at `MAX_TEXT_PAGES`), for user space to map on load and unmap on
/// free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeText {
    pub base: u64,
    pub size: u64,
    pub incarnation: u64,
}

/// The session's bookkeeping.
pub struct SessionState {
    clock: WallClock,
    /// Boot-clock time after which every load is seen with its probes live.
    ready_ns: u64,
    incarnations: Vec<Incarnation>,
    ranges: HashMap<u64, TextRanges>,
    imports: HashMap<String, Imports>,
    taints: HashMap<u64, u64>,
    names: FunctionNames,
    anomalies: AnomalySites,
    /// Module images whose struct module did not fit this kernel.
    load_anomalies: Vec<AnomalyRecord>,
    /// Hidden modules and calls from unowned module memory, each site with
    /// its latest count.
    hidden: Vec<AnomalyRecord>,
    decode_errors: u64,
}

impl SessionState {
    /// `names`: the probed functions; `imports`: per module name, from
    /// the files found before the session.
    pub fn new(
        clock: WallClock,
        ready_ns: u64,
        names: FunctionNames,
        imports: HashMap<String, Imports>,
    ) -> Self {
        Self {
            clock,
            ready_ns,
            incarnations: Vec::new(),
            ranges: HashMap::new(),
            imports,
            taints: HashMap::new(),
            names,
            anomalies: AnomalySites::default(),
            load_anomalies: Vec::new(),
            hidden: Vec::new(),
            decode_errors: 0,
        }
    }

    /// A module seen: loaded before the session (`seen_loading` false) or
    /// by its load event. Init counts only when its imports were probed
    /// before it ran. Returns whether its init was counted.
    pub fn track(&mut self, r: &ModuleRecord, seen_loading: bool) -> bool {
        let name = module_name(r);
        self.taints.insert(r.incarnation, r.taints);
        self.ranges.insert(
            r.incarnation,
            TextRanges {
                core: (r.core_text_base, r.core_text_size),
                init: (r.init_text_base, r.init_text_size),
            },
        );
        let init_counted =
            seen_loading && r.load_ns >= self.ready_ns && self.imports.contains_key(&name);
        self.incarnations.push(Incarnation {
            init_counted,
            imports: self.imports.get(&name).map(|i| i.symbols.clone()),
            tail_called: self
                .imports
                .get(&name)
                .map(|i| i.tail_called.clone())
                .unwrap_or_default(),
            name,
            incarnation: r.incarnation,
            loaded_ktime_ns: r.load_ns,
            unloaded_ktime_ns: None,
        });
        init_counted
    }

    /// Whether the module's imports are known (from its file).
    pub fn knows_imports(&self, name: &str) -> bool {
        self.imports.contains_key(name)
    }

    pub fn imports_of(&self, name: &str) -> Option<&Imports> {
        self.imports.get(name)
    }

    /// A module whose imports were learnt as it loaded: the newest
    /// incarnation gets them, and the functions probed for it get names.
    pub fn learn_imports(&mut self, name: String, imports: Imports, probed: &[KernelFunction]) {
        self.names.extend(probed.iter().cloned());
        if let Some(m) = self.incarnations.last_mut() {
            m.imports = Some(imports.symbols.clone());
            m.tail_called = imports.tail_called.clone();
        }
        self.imports.insert(name, imports);
    }

    pub fn load_event(&self, r: &ModuleRecord, ts_ns: u64) -> Event {
        Event::Load {
            time: self.clock.rfc3339(ts_ns),
            ktime_ns: ts_ns,
            module: ModuleInfo::from(r),
        }
    }

    /// A module freed: its incarnation ends.
    pub fn unloaded(&mut self, r: &ModuleRecord, ts_ns: u64) -> Event {
        if let Some(m) = self
            .incarnations
            .iter_mut()
            .rev()
            .find(|m| m.incarnation == r.incarnation)
        {
            m.unloaded_ktime_ns = Some(ts_ns);
        }
        Event::Unload {
            time: self.clock.rfc3339(ts_ns),
            ktime_ns: ts_ns,
            module: ModuleInfo::from(r),
        }
    }

    /// A detector's first anomaly at a site. `detail`: what the message
    /// adds (the tracepoint's name, for a registration).
    pub fn anomaly(&mut self, e: &AnomalyEvent, detail: &str) -> (AnomalyRecord, Event) {
        let symbol = self.symbol_of(e.key.func_ip);
        let site = self.site_of(e.key.incarnation, e.key.caller);
        let module = self.module_of(e.key.incarnation);
        let record = self
            .anomalies
            .first(e, module, symbol, site.unwrap_or_default(), detail);
        let event = Event::Anomaly {
            time: self.clock.rfc3339(e.header.ts_ns),
            anomaly: AnomalyInfo::new(&record),
        };
        (record, event)
    }

    /// A module image whose `struct module` is not this kernel's size.
    pub fn load_layout(&mut self, e: &LoadLayoutEvent) -> (AnomalyRecord, Event) {
        let record = anomaly_sites::load_layout(e);
        self.load_anomalies.push(record.clone());
        let event = Event::Anomaly {
            time: self.clock.rfc3339(e.header.ts_ns),
            anomaly: AnomalyInfo::new(&record),
        };
        (record, event)
    }

    /// A hidden-module finding (`hidden_scan`): kept for the end's list;
    /// the event to print when it is new, not for a site's newer count.
    pub fn hidden_finding(&mut self, record: &AnomalyRecord) -> Option<Event> {
        let before = self.hidden.len();
        merge_anomaly(&mut self.hidden, record);
        (self.hidden.len() > before).then(|| Event::Anomaly {
            time: self.clock.rfc3339(record.ts_ns),
            anomaly: AnomalyInfo::new(record),
        })
    }

    /// Whether `addr` is in the text of a module this session saw, loaded
    /// or since unloaded.
    pub fn owns_text(&self, addr: u64) -> bool {
        let holds = |(base, size): (u64, u64)| base != 0 && addr >= base && addr - base < size;
        self.ranges.values().any(|t| holds(t.core) || holds(t.init))
    }

    /// A probed function's name, or its address.
    pub fn function_name(&self, func_ip: u64) -> String {
        self.symbol_of(func_ip)
    }

    pub fn first_use(&self, e: &FirstUseEvent) -> Event {
        Event::FirstUse {
            time: self.clock.rfc3339(e.header.ts_ns),
            ktime_ns: e.header.ts_ns,
            module: self.module_of(e.key.incarnation),
            incarnation: e.key.incarnation,
            symbol: self.symbol_of(e.key.func_ip),
            caller: hex(e.caller),
            caller_offset: self.site_of(e.key.incarnation, e.caller),
        }
    }

    /// A record the decoder refused: counted, and reported.
    pub fn decode_error(&mut self, error: String) -> Event {
        self.decode_errors += 1;
        Event::DecodeError {
            time: Event::now(),
            error,
        }
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Sites whose exact count changed since they were last written.
    pub fn anomaly_updates(&mut self, counts: &BTreeMap<AnomalyKey, u64>) -> Vec<AnomalyRecord> {
        self.anomalies.updates(counts)
    }

    /// Every anomaly seen, call sites then load checks.
    pub fn all_anomalies(&self) -> Vec<AnomalyInfo> {
        self.anomalies
            .all()
            .chain(&self.load_anomalies)
            .chain(&self.hidden)
            .map(AnomalyInfo::new)
            .collect()
    }

    /// The per-module call report from the kernel's counters.
    pub fn call_report(
        &self,
        counts: &BTreeMap<(u64, u64), u64>,
        first_uses: &BTreeMap<(u64, u64), u64>,
        probed: &BTreeSet<String>,
    ) -> Vec<ModuleCalls> {
        call_report::build(&self.incarnations, counts, first_uses, &self.names, probed)
    }

    pub fn taints_of(&self, incarnation: u64) -> Option<u64> {
        self.taints.get(&incarnation).copied()
    }

    fn module_of(&self, incarnation: u64) -> String {
        self.incarnations
            .iter()
            .rev()
            .find(|m| m.incarnation == incarnation)
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }

    /// Where `caller` is in the incarnation's text: `core+0x…`, `init+0x…`.
    fn site_of(&self, incarnation: u64, caller: u64) -> Option<String> {
        self.ranges
            .get(&incarnation)
            .and_then(|t| place_in(caller, t.core, t.init))
    }

    fn symbol_of(&self, func_ip: u64) -> String {
        self.names
            .name(func_ip)
            .map(str::to_owned)
            .unwrap_or_else(|| hex(func_ip))
    }
}

pub fn module_name(r: &ModuleRecord) -> String {
    String::from_utf8_lossy(r.name.as_bytes()).into_owned()
}

/// The text of a module's core and init ranges that the kernel-side loop
/// leaves to user space.
pub fn large_text(r: &ModuleRecord, page_shift: u64) -> Vec<LargeText> {
    [
        (r.core_text_base, r.core_text_size),
        (r.init_text_base, r.init_text_size),
    ]
    .into_iter()
    .filter_map(|(base, size)| beyond_kernel_registration(base, size, page_shift))
    .map(|(base, size)| LargeText {
        base,
        size,
        incarnation: r.incarnation,
    })
    .collect()
}

/// The part of `[base, base+size)` the probes' bounded loop leaves out.
fn beyond_kernel_registration(base: u64, size: u64, page_shift: u64) -> Option<(u64, u64)> {
    let covered = MAX_TEXT_PAGES << page_shift;
    let first_page = base & !((1 << page_shift) - 1);
    let end = base.checked_add(size)?;
    let tail = first_page + covered;
    (base != 0 && end > tail).then(|| (tail, end - tail))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
