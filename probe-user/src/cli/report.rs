//! `modscope report FILE`: what a trace file says, per capture session and
//! module. Damaged stretches are reported and skipped.

use std::{fmt::Write as _, io::Write as _, path::PathBuf};

use anyhow::Context as _;
use modscope::{
    detectors::explain,
    trace::display::sanitize,
    trace::{
        self, files,
        replay::Replay,
        report::{self, ModuleReport, Report, SessionReport},
    },
};

use super::check::status;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Traces written by `modscope record -o`, or directories of them (a
    /// rotating capture): read in order as one, so a session that goes on
    /// across rotated files is one session.
    #[arg(required = true, value_name = "TRACE")]
    traces: Vec<PathBuf>,
    /// The report as one JSON document (schema in the README).
    #[arg(long)]
    json: bool,
    /// Only these modules.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
}

/// Reads a trace file, saying on standard error why when it cannot be read
/// or is not a trace (the caller exits with `status::BAD_INPUT`).
pub fn open_trace(path: &std::path::Path) -> Option<(Vec<u8>, trace::Trace)> {
    use modscope_analysis::input::{self, limit};
    let name = sanitize(&path.display().to_string());
    let data = input::read_bounded(path, limit::TRACE, "modscope trace")
        .inspect_err(|e| eprintln!("modscope: reading {name}: {e}"))
        .ok()?;
    let t = trace::read_trace(&data)
        .inspect_err(|e| eprintln!("modscope: {name}: {e}"))
        .ok()?;
    Some((data, t))
}

/// The trace files `paths` name (directories give their `*.trace` files),
/// or `None` after saying on standard error which one names none.
pub fn trace_files(paths: &[PathBuf]) -> Option<Vec<PathBuf>> {
    files::expand(paths)
        .inspect_err(|(path, e)| {
            eprintln!("modscope: {}: {e}", sanitize(&path.display().to_string()))
        })
        .ok()
}

/// Says on standard error what damage was skipped in `path`.
pub fn say_damage(path: &std::path::Path, d: &trace::Damage) {
    eprintln!(
        "modscope: {}: skipped {} bytes at offset {}: {}",
        sanitize(&path.display().to_string()),
        d.bytes,
        d.offset,
        d.reason
    );
}

/// Returns the exit status: 0 when every file is a trace (damage or
/// not), 6 when one cannot be read or is not one (the others are reported).
pub fn run(args: ReportArgs) -> anyhow::Result<u8> {
    let Some(files) = trace_files(&args.traces) else {
        return Ok(status::BAD_INPUT);
    };
    let mut replay = Replay::default();
    let mut damage = Vec::new();
    let (mut bytes, mut read) = (0u64, 0usize);
    for path in &files {
        let Some((data, t)) = open_trace(path) else {
            continue;
        };
        read += 1;
        bytes += data.len() as u64;
        for (_, r) in &t.records {
            replay.apply(r);
        }
        damage.extend(t.damage.into_iter().map(|d| (path, d)));
    }
    if read == 0 {
        return Ok(status::BAD_INPUT);
    }
    let only_damage: Vec<_> = damage.iter().map(|(_, d)| d.clone()).collect();
    let report = report::build(&replay, &only_damage, &args.modules);
    let name = match files.as_slice() {
        [one] => one.display().to_string(),
        _ => format!("{} files", files.len()),
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("serialising the report")? + "\n"
    } else {
        render(&name, bytes, &report)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to standard output")?;
    for (path, d) in &damage {
        say_damage(path, d);
    }
    Ok(if read < files.len() {
        status::BAD_INPUT
    } else {
        0
    })
}

fn render(path: &str, bytes: u64, r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}: {} sessions, {} records, {:.1} KiB, {}",
        sanitize(path),
        r.sessions.len(),
        r.records,
        bytes as f64 / 1024.0,
        if r.damage.is_empty() {
            "no damage".to_owned()
        } else {
            format!(
                "{} damaged stretches ({} bytes) skipped",
                r.damage.len(),
                r.damage.iter().map(|d| d.bytes).sum::<u64>()
            )
        }
    );
    for (i, s) in r.sessions.iter().enumerate() {
        session(&mut out, i + 1, s);
    }
    out
}

fn session(out: &mut String, n: usize, s: &SessionReport) {
    let unknown = "?".to_owned();
    let _ = writeln!(out);
    if !s.header {
        let _ = writeln!(
            out,
            "session {n}: header lost to damage (times are boot-clock nanoseconds)"
        );
    } else {
        let _ = writeln!(
            out,
            "session {n}: kernel {} on {} (boot {}), modscope {}",
            sanitize(&s.kernel_release),
            sanitize(&s.hostname),
            sanitize(&s.boot_id),
            sanitize(&s.tool_version)
        );
    }
    let _ = writeln!(
        out,
        "  {} → {} ({:.1} s), {}",
        s.started.as_ref().unwrap_or(&unknown),
        s.last_record.as_ref().unwrap_or(&unknown),
        s.seconds,
        match s.end_reason {
            Some(r) => format!("ended by {r}"),
            None => "cut short: no end record (killed, or the machine stopped)".to_owned(),
        }
    );
    let set: Vec<String> = s
        .config
        .iter()
        .filter(|(_, v)| v.as_str() != "n")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !s.config.is_empty() {
        let _ = writeln!(
            out,
            "  config ({}): {}",
            sanitize(&s.config_source),
            sanitize(&set.join(" "))
        );
    }
    let _ = writeln!(
        out,
        "  probes: {} functions ({}), {} not probeable, {} over the cap; lost events {}, decode errors {}",
        s.probed_functions,
        s.attach_type,
        s.not_attached.len(),
        s.capped.len(),
        s.stats.lost_events,
        s.stats.decode_errors
    );
    for a in &s.load_anomalies {
        let when = if a.detector == explain::LOAD_LAYOUT {
            "at load".to_owned()
        } else {
            format!("{} ({} calls)", a.detector, a.count)
        };
        let _ = writeln!(
            out,
            "  ANOMALY {when}: {} ({}): {}",
            sanitize(&a.module),
            sanitize(&a.caller_offset),
            sanitize(&a.message)
        );
    }
    for g in &s.guard {
        let _ = writeln!(out, "  guard: {}", g.line);
    }
    for m in &s.modules {
        module(out, m);
    }
}

fn module(out: &mut String, m: &ModuleReport) {
    module_header(out, m);
    module_verdict(out, m);
    module_calls(out, m);
}

/// A time as the report has it: wall clock, else boot-clock nanoseconds.
fn when(t: &Option<String>, ns: Option<u64>) -> String {
    match (t, ns) {
        (Some(t), _) => t.clone(),
        (None, Some(ns)) => format!("{ns} ns"),
        (None, None) => "?".to_owned(),
    }
}

fn module_header(out: &mut String, m: &ModuleReport) {
    let _ = writeln!(
        out,
        "\n  {} [{}] taints {}{}{}  init calls {}",
        sanitize(&m.name),
        m.incarnation,
        if m.taints.is_empty() { "-" } else { &m.taints },
        if m.preexisting {
            "  loaded before the capture".to_owned()
        } else {
            format!("  loaded {}", when(&m.loaded, m.loaded_ktime_ns))
        },
        match m.unloaded_ktime_ns {
            Some(ns) => format!("  unloaded {}", when(&m.unloaded, Some(ns))),
            None => String::new(),
        },
        if m.init_counted {
            "counted"
        } else {
            "not counted"
        },
    );
}

/// The static verdict, what the detectors raised it to, and their findings.
fn module_verdict(out: &mut String, m: &ModuleReport) {
    if let Some(v) = &m.verdict {
        let worst: Vec<String> = v
            .reasons
            .iter()
            .filter(|r| r.severity == "incompatible" || r.severity == "warning")
            .map(|r| match &r.symbol {
                Some(sym) => format!("{} {}", r.code, sym),
                None => r.code.clone(),
            })
            .collect();
        let _ = writeln!(
            out,
            "    verdict {}{}{}",
            v.verdict,
            if v.kernel_would_refuse {
                " (plain insmod refuses it: it was forced)"
            } else {
                ""
            },
            if worst.is_empty() {
                String::new()
            } else {
                format!(": {}", sanitize(&worst.join(", ")))
            }
        );
    }
    let static_word = m.verdict.as_ref().map_or("unchecked", |v| v.verdict);
    if m.runtime_verdict != static_word {
        let _ = writeln!(
            out,
            "    at run time: {} (the detectors' findings below)",
            m.runtime_verdict
        );
    }
    for a in &m.anomalies {
        let _ = writeln!(
            out,
            "    ANOMALY {} at {} calling {}, {} call{} (CONFIG_{}): {}",
            a.detector,
            sanitize(&a.caller_offset),
            sanitize(&a.symbol),
            a.count,
            if a.count == 1 { "" } else { "s" },
            sanitize(&a.option),
            sanitize(&a.message)
        );
    }
}

fn module_calls(out: &mut String, m: &ModuleReport) {
    for c in &m.calls {
        let _ = writeln!(
            out,
            "    {:>12}  {:<32} first {}{}",
            c.count,
            sanitize(&c.symbol),
            when(&c.first_use, c.first_use_ktime_ns),
            c.first_caller
                .as_ref()
                .map(|p| format!(" from {p}"))
                .unwrap_or_default()
        );
    }
    if !m.tail_called.is_empty() {
        let tail = sanitize(&m.tail_called.join(" "));
        let _ = writeln!(
            out,
            "    tail-called (calls from there are credited to the caller): {tail}"
        );
    }
    match &m.unused_imports {
        Some(u) if !u.is_empty() => {
            let _ = writeln!(out, "    unused: {}", sanitize(&u.join(" ")));
        }
        Some(_) => {}
        None => {
            let _ = writeln!(out, "    imports unknown (module file not found)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modscope::trace::{Damage, TraceRecord, samples};

    fn sample_report(records: &[TraceRecord], damage: &[Damage]) -> Report {
        report::build(&Replay::from_records(records), damage, &[])
    }

    #[test]
    fn text_report_names_counts_and_cut_short_sessions() {
        let all = samples::all();
        let text = render("t.trace", 4096, &sample_report(&all[..all.len() - 1], &[]));
        assert!(
            text.contains("1 sessions, 11 records, 4.0 KiB, no damage"),
            "{text}"
        );
        assert!(
            text.contains(
                "  guard: REFUSED modscope_hello (/tmp/modscope_hello.ko; incompatible: "
            ),
            "{text}"
        );
        assert!(
            text.contains("ANOMALY spinlock_magic at core+0x123 calling _raw_spin_lock, 1 call (CONFIG_DEBUG_SPINLOCK)"),
            "{text}"
        );
        assert!(text.contains("cut short"), "{text}");
        assert!(text.contains("config (/boot/config-6.1.0-56-amd64): DEBUG_SPINLOCK=y"));
        let kstrdup = text.lines().find(|l| l.contains("kstrdup")).unwrap();
        assert!(kstrdup.contains("1000"), "{kstrdup}");
        assert!(
            text.contains("verdict incompatible (plain insmod refuses it: it was forced): CRC_MISMATCH mutex_lock"),
            "{text}"
        );
        assert!(kstrdup.contains("from init+0x10"), "{kstrdup}");
        assert!(text.contains("loaded before the capture"), "{text}");
        assert!(text.contains("imports unknown"), "{text}");
    }

    #[test]
    fn damage_is_summarised() {
        let damage = [Damage {
            offset: 99,
            bytes: 7,
            reason: "checksum mismatch".into(),
        }];
        let text = render("t", 1, &sample_report(&samples::all(), &damage));
        assert!(
            text.contains("1 damaged stretches (7 bytes) skipped"),
            "{text}"
        );
    }
}
