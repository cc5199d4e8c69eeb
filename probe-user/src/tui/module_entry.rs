//! One module as the TUI shows it: its incarnations, static verdict,
//! exact counts per function, rates, anomalies, and the rating that the
//! verdict and the detectors' findings give it.

use std::collections::{BTreeMap, VecDeque};

use modscope_analysis::verdict::Severity;

use crate::trace::records::{AnomalyRecord, ModuleOrigin, ModuleVerdict, VerdictReason};

/// Rates older than this are shown as zero (no counts arrived since).
const RATE_STALE_NS: u64 = 2_500_000_000;

/// A module is "loading" this long after its load event (its init runs then).
const LOADING_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModuleState {
    Loading,
    Live,
    Unloaded,
}

impl ModuleState {
    pub fn word(self) -> &'static str {
        match self {
            ModuleState::Loading => "loading",
            ModuleState::Live => "live",
            ModuleState::Unloaded => "unloaded",
        }
    }
}

/// The verdict shown for a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rating {
    Unsafe,
    Warning,
    Compatible,
    /// Its file was not found: not checked.
    Unchecked,
}

impl Rating {
    pub fn word(self) -> &'static str {
        match self {
            Rating::Unsafe => "unsafe",
            Rating::Warning => "warning",
            Rating::Compatible => "compatible",
            Rating::Unchecked => "unchecked",
        }
    }

    /// Never colour alone: a symbol too.
    pub fn symbol(self) -> &'static str {
        match self {
            Rating::Unsafe => "✖",
            Rating::Warning => "▲",
            Rating::Compatible => "✔",
            Rating::Unchecked => "?",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    pub id: u64,
    pub origin: ModuleOrigin,
    /// `None` for modules present before the capture.
    pub loaded_ns: Option<u64>,
    pub unloaded_ns: Option<u64>,
    pub init_counted: bool,
    pub taints: String,
    /// Calls counted in this incarnation.
    pub calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStat {
    pub count: u64,
    pub first_use_ns: Option<u64>,
    /// `core+0x…` / `init+0x…`.
    pub first_caller: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ModuleEntry {
    pub name: String,
    pub incarnations: Vec<Incarnation>,
    pub imports: Option<Vec<String>>,
    /// Imports its code reaches by a tail call (credited to the caller).
    pub tail_called: Vec<String>,
    /// Current incarnation's calls by function address.
    pub calls: BTreeMap<u64, CallStat>,
    /// Text ranges of the current incarnation (core, init).
    pub(super) core_text: (u64, u64),
    pub(super) init_text: (u64, u64),
    /// Its static verdict, as the trace carried it (strings sanitised).
    pub verdict: Option<ModuleVerdict>,
    /// Runtime evidence: calls to symbols its verdict flags.
    pub anomalies: Vec<Anomaly>,
    /// What the in-kernel detectors caught, one per call site (current
    /// incarnation), with exact counts.
    pub detected: Vec<AnomalyRecord>,
    /// Calls per tick, newest last.
    pub spark: VecDeque<u64>,
    pub(super) rate: f64,
    pub(super) rate_ns: u64,
    pub(super) ticked_total: u64,
}

/// A call the static verdict says should not happen on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub ts_ns: u64,
    pub symbol: String,
    pub code: String,
    pub caller: Option<String>,
}

impl ModuleEntry {
    /// Flagged first calls plus detector sites: the table's anomaly column.
    pub fn anomaly_count(&self) -> usize {
        self.anomalies.len() + self.detected.len()
    }

    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            incarnations: Vec::new(),
            imports: None,
            tail_called: Vec::new(),
            calls: BTreeMap::new(),
            core_text: (0, 0),
            init_text: (0, 0),
            verdict: None,
            anomalies: Vec::new(),
            detected: Vec::new(),
            spark: VecDeque::new(),
            rate: 0.0,
            rate_ns: 0,
            ticked_total: 0,
        }
    }

    pub fn current(&self) -> Option<&Incarnation> {
        self.incarnations.last()
    }

    pub fn state(&self, now_ns: u64) -> ModuleState {
        match self.current() {
            Some(i) if i.unloaded_ns.is_some() => ModuleState::Unloaded,
            Some(Incarnation {
                loaded_ns: Some(t), ..
            }) if now_ns < t.saturating_add(LOADING_NS) => ModuleState::Loading,
            _ => ModuleState::Live,
        }
    }

    /// The static verdict, raised by what the detectors saw at run time:
    /// a lock laid out for another kernel makes the module unsafe whatever
    /// its file said.
    pub fn rating(&self) -> Rating {
        match crate::detectors::explain::with_findings(
            self.verdict.as_ref().map(|v| v.severity),
            self.detected.iter().map(|a| a.detector.as_str()),
        ) {
            None => Rating::Unchecked,
            Some(Severity::Incompatible) => Rating::Unsafe,
            Some(Severity::Warning) => Rating::Warning,
            Some(Severity::Info) => Rating::Compatible,
        }
    }

    pub fn taints(&self) -> &str {
        self.current().map_or("", |i| i.taints.as_str())
    }

    pub fn total_calls(&self) -> u64 {
        self.calls
            .values()
            .fold(0, |t, c| t.saturating_add(c.count))
    }

    /// Distinct probed functions it called (current incarnation).
    pub fn used(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.count > 0 || c.first_use_ns.is_some())
            .count()
    }

    pub fn imported(&self) -> Option<usize> {
        self.imports.as_ref().map(Vec::len)
    }

    /// Calls per second over the last tick; zero when no counts came
    /// lately, and once it is unloaded.
    pub fn rate(&self, now_ns: u64) -> f64 {
        let gone = self.current().is_none_or(|i| i.unloaded_ns.is_some());
        if gone || now_ns > self.rate_ns.saturating_add(RATE_STALE_NS) {
            0.0
        } else {
            self.rate
        }
    }

    pub(super) fn place(&self, addr: u64) -> Option<String> {
        crate::trace::report::place_in(addr, self.core_text, self.init_text)
    }

    /// The verdict reason that makes a call to `symbol` suspect.
    pub(super) fn flagged(&self, symbol: &str) -> Option<&VerdictReason> {
        self.verdict
            .as_ref()?
            .reasons
            .iter()
            .find(|r| r.symbol == symbol && r.severity == Some(Severity::Incompatible))
    }
}
