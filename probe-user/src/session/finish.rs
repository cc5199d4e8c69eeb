//! The end of a session: the last anomaly totals and snapshot, the trace's
//! end record, the anomaly list, the one-screen summary of a recording,
//! and the per-module call report.

use super::error::{Result, SessionError};
use std::{collections::BTreeSet, io::Write as _};

use super::{
    CallPlan,
    attach_plan::Attached,
    event::{CallProbeStatus, Event},
    live::Session,
    summary,
};
use crate::{
    kernel::{clock, thread_priority::Unpreempted},
    probe::{self, PerFunction},
    trace::{call_report::ModuleCalls, records::EndReason},
};

pub fn finish(
    session: &mut Session,
    plan: Option<&CallPlan>,
    attached: Option<Attached>,
    reason: EndReason,
    started: std::time::Instant,
) -> Result<()> {
    // The last reads of the maps, where no task preempts them.
    let unpreempted = Unpreempted::enter();
    session.anomaly_totals()?;
    // Read once: the trace's end and the report give the same totals.
    let counts = if session.trace.is_some() || plan.is_some() {
        session.probe.call_counts()?
    } else {
        PerFunction::new()
    };
    drop(unpreempted);
    if session.trace.is_some() {
        let stats = session.stats()?;
        if let Some(t) = &mut session.trace {
            t.end(clock::boot_ns(), &counts, stats, reason)?;
        }
    }
    if plan.is_some_and(|p| !p.checks.is_empty()) {
        session.out.emit(&Event::Anomalies {
            time: Event::now(),
            sites: session.state.all_anomalies(),
        })?;
    }
    let (Some(plan), Some(attached)) = (plan, attached) else {
        return Ok(());
    };
    let status = with_late_probes(session, attached.status);
    let modules = call_report(session, plan, &counts)?;
    print_summary(session, &status, &modules, reason, started)?;
    session.out.emit(&Event::Calls {
        time: Event::now(),
        probes: status,
        modules,
    })
}

/// The status as attached at the start, plus the probes added since.
fn with_late_probes(session: &Session, mut status: CallProbeStatus) -> CallProbeStatus {
    let late = &session.late;
    status.attached += late.attached.len();
    status
        .not_attached
        .extend(late.not_attached.iter().cloned());
    status.capped.extend(late.capped.iter().cloned());
    status
}

/// Modules that made a probed call or whose imports are known, within the
/// `--module` filter.
fn call_report(
    session: &Session,
    plan: &CallPlan,
    counts: &PerFunction,
) -> Result<Vec<ModuleCalls>> {
    let probed: BTreeSet<String> = plan
        .functions
        .keys()
        .cloned()
        .chain(session.late.attached.iter().map(|f| f.name.clone()))
        .collect();
    let mut modules = session
        .state
        .call_report(counts, &session.probe.first_uses()?, &probed);
    // Modules that made no probed call and whose imports are unknown
    // have nothing to report.
    modules.retain(|m| !m.calls.is_empty() || m.unused_imports.is_some());
    if !plan.modules.is_empty() {
        modules.retain(|m| plan.modules.contains(&m.name));
    }
    Ok(modules)
}

/// A recording without the view ends with a one-screen summary (on
/// standard error when standard output carries the JSON stream).
fn print_summary(
    session: &Session,
    status: &CallProbeStatus,
    modules: &[ModuleCalls],
    reason: EndReason,
    started: std::time::Instant,
) -> Result<()> {
    let Some(t) = &session.trace else {
        return Ok(());
    };
    if t.viewed() {
        return Ok(());
    }
    let counters = session.probe.counters()?;
    let text = summary::render(&summary::SummaryInput {
        path: &t
            .rotation_dir()
            .or(t.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        records: t.records(),
        bytes: t.bytes(),
        elapsed: started.elapsed(),
        reason,
        probes: status,
        lost_events: counters.lost_events,
        decode_errors: session.state.decode_errors(),
        skipped_runs: probe::skipped_runs(&session.probe.program_stats()),
        modules,
    });
    // Standard output may be full or closed: an error, never a panic.
    let written = if session.out.quiet {
        std::io::stdout().lock().write_all(text.as_bytes())
    } else {
        std::io::stderr().lock().write_all(text.as_bytes())
    };
    written.map_err(|source| SessionError::Io {
        what: "writing the session's summary".into(),
        source,
    })
}
