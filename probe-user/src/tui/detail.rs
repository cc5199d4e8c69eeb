//! The detail pane of the selected module: its rating, the static reasons
//! with why each matters here, the runtime evidence, exact counts per
//! function, notes and the load history.

use modscope_analysis::verdict::Severity;
use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use super::{
    app::App,
    evidence::{self, group},
    model::Model,
    module_entry::{CallStat, ModuleEntry},
    palette::{Palette, severity_symbol, time_of},
};

pub fn detail_lines(app: &App, m: &ModuleEntry, no_color: bool) -> Vec<Line<'static>> {
    let p = Palette { no_color };
    let model = &app.model;
    let mut out = Vec::new();
    for section in [
        header,
        static_reasons,
        runtime_evidence,
        calls,
        notes,
        history,
    ] {
        section(&mut out, m, model, &p);
    }
    out
}

/// Name, rating, state and taints.
fn header(out: &mut Vec<Line<'static>>, m: &ModuleEntry, model: &Model, p: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let r = m.rating();
    out.push(Line::from(vec![
        Span::styled(m.name.clone(), bold),
        Span::raw("  "),
        Span::styled(format!("{} {}", r.symbol(), r.word()), p.rating(r)),
        Span::raw(format!("  {}  taints {}", m.state(model.now_ns).word(), {
            let t = m.taints();
            if t.is_empty() { "none" } else { t }
        })),
    ]));
}

/// The file checked and the reasons that matter (warning and worse).
fn static_reasons(out: &mut Vec<Line<'static>>, m: &ModuleEntry, model: &Model, p: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    match &m.verdict {
        Some(v) => {
            out.push(Line::raw(format!("file {}", v.file)));
            if v.kernel_would_refuse {
                out.push(Line::styled(
                    "plain insmod refuses it on this kernel: if it is loaded, it was forced (-f)",
                    p.fg(Color::Red),
                ));
            }
            out.push(Line::styled("Static reasons", bold));
            let serious: Vec<_> = v.reasons.iter().filter(|r| r.severity >= Some(Severity::Warning)).collect();
            if serious.is_empty() {
                out.push(Line::raw("  none: the loader's checks and struct layouts agree with this kernel"));
            }
            for reason in serious {
                let mut text = format!("  {} {}", severity_symbol(reason.severity), reason.code);
                if !reason.symbol.is_empty() {
                    text.push_str(&format!(" {}", reason.symbol));
                }
                text.push_str(&format!(": {}", reason.message));
                out.push(Line::styled(text, p.severity(reason.severity)));
                let why = evidence::why(reason, model);
                if !why.is_empty() {
                    out.push(Line::raw(format!("      why it matters: {why}")));
                }
            }
        }
        None => out.push(Line::raw(
            "not checked: its file was not found (give it with --watch, or install it on the module path)",
        )),
    }
}

/// Calls that matter on this kernel, and what the detectors caught.
fn runtime_evidence(out: &mut Vec<Line<'static>>, m: &ModuleEntry, model: &Model, p: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    out.push(Line::styled("Runtime evidence", bold));
    let ev = evidence::runtime(m, model);
    if ev.is_empty() {
        out.push(Line::raw(if m.calls.is_empty() {
            "  no probed call seen yet"
        } else {
            "  no call into a function this kernel's configuration changes"
        }));
    }
    for e in ev {
        out.push(Line::styled(
            format!("  {} {}", severity_symbol(Some(e.severity)), e.text),
            p.severity(Some(e.severity)),
        ));
    }
    for a in &m.anomalies {
        out.push(Line::styled(
            format!(
                "  ! {} first called {} ({}) from {}",
                time_of(model, a.ts_ns),
                a.symbol,
                a.code,
                a.caller.as_deref().unwrap_or("?")
            ),
            p.fg(Color::Red),
        ));
    }
    for a in &m.detected {
        out.push(Line::styled(
            format!(
                "  ✖ {} {} at {} calling {}: {} ({} call{}, CONFIG_{})",
                time_of(model, a.ts_ns),
                a.detector,
                a.site,
                a.symbol,
                a.message,
                a.count,
                if a.count == 1 { "" } else { "s" },
                a.option
            ),
            p.fg(Color::Red),
        ));
    }
}

/// Exact counts per probed function, and the imports never called.
fn calls(out: &mut Vec<Line<'static>>, m: &ModuleEntry, model: &Model, _: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let imports = m.imports.as_deref().unwrap_or(&[]);
    out.push(Line::styled(
        format!(
            "Imports: {} used of {} · exact counts{}",
            m.used(),
            m.imported().map_or("?".to_owned(), |n| n.to_string()),
            match m.current() {
                Some(i) if !i.init_counted => " (init not counted: probes came after it ran)",
                _ => "",
            }
        ),
        bold,
    ));
    let mut calls: Vec<(String, &CallStat)> = m
        .calls
        .iter()
        .map(|(&ip, s)| (model.function_name(ip), s))
        .collect();
    calls.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    for (name, s) in &calls {
        let first = match (s.first_use_ns, &s.first_caller) {
            (Some(t), Some(c)) => format!("  first {} at {c}", time_of(model, t)),
            (Some(t), None) => format!("  first {}", time_of(model, t)),
            _ => String::new(),
        };
        out.push(Line::raw(format!(
            "  {name:<24} {:>12}{first}",
            group(s.count)
        )));
    }
    let is_probed = |i: &&String| model.functions.values().any(|f| f == *i);
    let tail: Vec<&str> = m
        .tail_called
        .iter()
        .filter(is_probed)
        .map(String::as_str)
        .collect();
    if !tail.is_empty() {
        out.push(Line::raw(format!(
            "  tail-called (calls from there are credited to the caller): {}",
            tail.join(" ")
        )));
    }
    let probed: Vec<&String> = imports
        .iter()
        .filter(|i| !calls.iter().any(|(n, _)| n == *i))
        .filter(|i| !m.tail_called.contains(i))
        .filter(is_probed)
        .collect();
    if !probed.is_empty() {
        out.push(Line::raw(format!(
            "  probed, never called: {}",
            probed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    let unprobed = imports
        .iter()
        .filter(|i| !model.functions.values().any(|f| f == *i))
        .count();
    if unprobed > 0 {
        out.push(Line::raw(format!(
            "  {unprobed} imports not probed (data, plumbing or capped)"
        )));
    }
}

/// Info-level reasons, last.
fn notes(out: &mut Vec<Line<'static>>, m: &ModuleEntry, _: &Model, _: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let notes: Vec<_> = m
        .verdict
        .iter()
        .flat_map(|v| &v.reasons)
        .filter(|r| r.severity < Some(Severity::Warning))
        .collect();
    if !notes.is_empty() {
        out.push(Line::styled("Notes", bold));
        for r in notes {
            let sym = if r.symbol.is_empty() {
                String::new()
            } else {
                format!(" {}", r.symbol)
            };
            out.push(Line::raw(format!("  · {}{sym}: {}", r.code, r.message)));
        }
    }
}

/// Each incarnation: loaded, unloaded, calls.
fn history(out: &mut Vec<Line<'static>>, m: &ModuleEntry, model: &Model, _: &Palette) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    out.push(Line::styled("History", bold));
    for (n, i) in m.incarnations.iter().enumerate() {
        let loaded = i.loaded_ns.map_or("present at start".to_owned(), |t| {
            format!("loaded {}", time_of(model, t))
        });
        let end = match i.unloaded_ns {
            Some(t) => format!(
                "unloaded {} after {} calls",
                time_of(model, t),
                group(i.calls)
            ),
            None => "still loaded".to_owned(),
        };
        out.push(Line::raw(format!("  #{} {loaded}, {end}", n + 1)));
    }
}
