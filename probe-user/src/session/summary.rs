//! The one-screen summary `modscope record -o FILE` prints when it ends.

use std::{fmt::Write as _, time::Duration};

use super::event::CallProbeStatus;
use crate::trace::{call_report::ModuleCalls, display::sanitize, records::EndReason};

/// Module rows shown; the rest are counted and left to `modscope report`.
const MAX_ROWS: usize = 12;

pub struct SummaryInput<'a> {
    pub path: &'a str,
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub reason: EndReason,
    pub probes: &'a CallProbeStatus,
    pub lost_events: u64,
    pub decode_errors: u64,
    /// Probe runs the kernel skipped (counted by kernels from 6.7).
    pub skipped_runs: u64,
    pub modules: &'a [ModuleCalls],
}

pub fn render(s: &SummaryInput) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "modscope record: {:.1} s, ended by {}",
        s.elapsed.as_secs_f64(),
        match s.reason {
            EndReason::Duration => "--duration",
            r => r.as_str(),
        }
    );
    let _ = writeln!(
        out,
        "trace    {}: {} records, {:.1} KiB; read it with `modscope report {}`",
        s.path,
        s.records,
        s.bytes as f64 / 1024.0,
        s.path
    );
    let _ = writeln!(
        out,
        "probes   {} functions; {} not probeable; {} over the cap",
        s.probes.attached,
        s.probes.not_attached.len(),
        s.probes.capped.len()
    );
    let loaded = s.modules.iter().filter(|m| m.loaded_ktime_ns != 0).count();
    let unloaded = s
        .modules
        .iter()
        .filter(|m| m.unloaded_ktime_ns.is_some())
        .count();
    let _ = writeln!(
        out,
        "modules  {} with calls or known imports; {loaded} loaded and {unloaded} unloaded during the capture",
        s.modules.len()
    );
    module_rows(&mut out, s.modules);
    let _ = writeln!(
        out,
        "health   lost events {}, decode errors {}, skipped probe runs {} (6.7+ kernels count them)",
        s.lost_events, s.decode_errors, s.skipped_runs
    );
    out
}

/// The busiest modules first, at most `MAX_ROWS`.
fn module_rows(out: &mut String, modules: &[ModuleCalls]) {
    let mut rows: Vec<&ModuleCalls> = modules.iter().collect();
    let total = |m: &ModuleCalls| m.calls.iter().fold(0u64, |t, c| t.saturating_add(c.count));
    rows.sort_by(|a, b| total(b).cmp(&total(a)).then(a.name.cmp(&b.name)));
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "  {:>12}  {:<24} {:>9}  init",
            "calls", "module", "used"
        );
    }
    for m in rows.iter().take(MAX_ROWS) {
        let used = m.calls.len();
        let probed = used + m.unused_imports.as_ref().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "  {:>12}  {:<24} {:>9}  {}{}",
            total(m),
            sanitize(&m.name),
            if m.unused_imports.is_some() {
                format!("{used}/{probed}")
            } else {
                format!("{used}/?")
            },
            if m.init_counted {
                "counted"
            } else {
                "not counted"
            },
            if m.unloaded_ktime_ns.is_some() {
                " (unloaded)"
            } else {
                ""
            }
        );
    }
    if rows.len() > MAX_ROWS {
        let _ = writeln!(out, "  … and {} more modules", rows.len() - MAX_ROWS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::call_report::SymbolUse;

    fn module(name: &str, count: u64) -> ModuleCalls {
        ModuleCalls {
            name: name.into(),
            incarnation: 1,
            loaded_ktime_ns: 5,
            unloaded_ktime_ns: None,
            init_counted: true,
            calls: vec![SymbolUse {
                symbol: "kfree".into(),
                count,
                first_use_ktime_ns: Some(6),
            }],
            unused_imports: Some(vec!["msleep".into()]),
            tail_called: Vec::new(),
        }
    }

    #[test]
    fn fits_one_screen_busiest_first() {
        let modules: Vec<ModuleCalls> = (0..30).map(|i| module(&format!("m{i}"), i)).collect();
        let probes = CallProbeStatus::default();
        let text = render(&SummaryInput {
            path: "t.trace",
            records: 10,
            bytes: 2048,
            elapsed: Duration::from_secs(3),
            reason: EndReason::Interrupt,
            probes: &probes,
            lost_events: 0,
            decode_errors: 0,
            skipped_runs: 7,
            modules: &modules,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 24, "{text}");
        assert!(lines[0].contains("ended by SIGINT"), "{text}");
        assert!(lines[1].contains("10 records, 2.0 KiB"), "{text}");
        let first_row = lines.iter().position(|l| l.contains(" m29 ")).unwrap();
        assert!(lines[first_row].contains("1/2"), "{text}");
        assert!(text.contains("and 18 more modules"), "{text}");
        assert!(!text.contains(" m0 "), "least busy modules are not listed");
        assert!(text.contains("skipped probe runs 7"), "{text}");
    }
}
