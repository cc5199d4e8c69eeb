//! How values from the kernel or a trace are shown to people and scripts:
//! addresses as hex strings (kernel addresses exceed the 2^53 that JSON
//! numbers carry exactly in most consumers), strings sanitised so a module
//! name cannot drive a terminal, and one anomalous call site as JSON. The
//! event stream, the trace report and the TUI share them.

use serde::Serialize;

use super::records::AnomalyRecord;

pub fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

/// One anomalous call site, for people and scripts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AnomalyInfo {
    pub module: String,
    pub incarnation: u64,
    /// Boot-clock time of the first anomalous call.
    pub ktime_ns: u64,
    pub detector: String,
    pub symbol: String,
    /// The return address and where it is in the module (`core+0x…`).
    pub caller: String,
    pub caller_offset: String,
    pub object: String,
    pub expected: String,
    pub observed: String,
    /// The config option that explains it.
    pub option: String,
    pub message: String,
    pub count: u64,
}

impl AnomalyInfo {
    pub fn new(r: &AnomalyRecord) -> Self {
        Self {
            module: r.module.clone(),
            incarnation: r.incarnation,
            ktime_ns: r.ts_ns,
            detector: r.detector.clone(),
            symbol: r.symbol.clone(),
            caller: hex(r.caller),
            caller_offset: r.site.clone(),
            object: hex(r.object),
            expected: format!("{:#x}", r.expected),
            observed: format!("{:#x}", r.observed),
            option: r.option.clone(),
            message: r.message.clone(),
            count: r.count,
        }
    }
}

/// Replaces control characters so a hostile name cannot drive the terminal.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}
