//! The header: kernel, host and time; the options of this kernel that
//! change the watched structs' layouts; the session's or the replay's
//! status, probes and losses.

use modscope_analysis::feature_symbols::WATCHED_STRUCTS;
use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use super::{
    app::{App, Mode},
    palette::{Palette, speed_text, time_of},
};

/// Options shown in the header: lock debugging, RT, and the tracing
/// features that change `struct module`.
const HEADER_OPTIONS: &[&str] = &[
    "PREEMPT_RT",
    "DEBUG_SPINLOCK",
    "DEBUG_MUTEXES",
    "DEBUG_LOCK_ALLOC",
    "LOCKDEP",
    "FUNCTION_TRACER",
    "KPROBES",
    "PERF_EVENTS",
];

pub fn header_lines(app: &App, p: &Palette) -> Vec<Line<'static>> {
    let (line2, line3) = config_lines(app, p);
    vec![title_line(app), line2, line3, status_line(app, p)]
}

fn title_line(app: &App) -> Line<'static> {
    let m = &app.model;
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mode = match &app.mode {
        Mode::Live { .. } => "live".to_owned(),
        Mode::Replay(r) => format!("replay {}", r.file),
    };
    let (release, host) = m
        .session
        .as_ref()
        .map(|s| (s.kernel_release.as_str(), s.hostname.as_str()))
        .unwrap_or(("kernel unknown (no session header)", "?"));
    Line::from(vec![
        Span::styled(" modscope ", bold),
        Span::raw(format!(
            "{mode} · {release} · {host} · {} UTC",
            time_of(m, m.now_ns)
        )),
    ])
}

/// The options shown, and the watched structs they change.
fn config_lines(app: &App, p: &Palette) -> (Line<'static>, Line<'static>) {
    let m = &app.model;
    let config = m.session.as_ref().map(|s| &s.config);
    let value = |o: &str| {
        config
            .and_then(|c| c.iter().find(|(k, _)| k == o))
            .map_or("n", |(_, v)| v.as_str())
            .to_owned()
    };
    let mut line2 = vec![Span::raw(" config ")];
    let mut layout_changed: Vec<String> = Vec::new();
    match config {
        Some(c) if !c.is_empty() => {
            for o in HEADER_OPTIONS {
                let v = value(o);
                let on = v != "n";
                line2.push(Span::styled(
                    format!("{o}={v} "),
                    if on {
                        p.fg(Color::Yellow)
                    } else {
                        Style::default()
                    },
                ));
            }
            for (s, options) in WATCHED_STRUCTS {
                let by: Vec<&str> = options
                    .iter()
                    .copied()
                    .filter(|o| value(o) != "n")
                    .collect();
                if !by.is_empty() {
                    layout_changed.push(format!("{s} ({})", by.join(",")));
                }
            }
        }
        _ => line2.push(Span::raw(
            "unknown (no /boot/config or /proc/config.gz was read)",
        )),
    }
    let line3 = Line::from(vec![
        Span::raw(" layouts changed by this config: "),
        Span::raw(if layout_changed.is_empty() {
            "none of the watched structs".to_owned()
        } else {
            layout_changed.join(", ")
        }),
    ]);
    (Line::from(line2), line3)
}

/// What changes most comes first: it must fit in 80 columns.
fn status_line(app: &App, p: &Palette) -> Line<'static> {
    let m = &app.model;
    let lost = m.stats.lost_events;
    let mut line4 = vec![Span::raw(" ")];
    mode_status(app, p, &mut line4);
    line4.push(Span::styled(
        format!("lost {lost}"),
        if lost > 0 {
            p.fg(Color::Red)
        } else {
            Style::default()
        },
    ));
    // Runs the kernel skipped (counted from 6.7): shown once there are any.
    let skipped = m.stats.skipped_runs;
    if skipped > 0 {
        line4.push(Span::styled(
            format!(" · skipped {skipped}"),
            p.fg(Color::Red),
        ));
    }
    line4.push(Span::raw(match &m.session {
        Some(s) => format!(
            " · {} functions by {}, {} refused, {} capped",
            s.probes, s.attach_type, s.not_attached, s.capped
        ),
        None => String::new(),
    }));
    Line::from(line4)
}

/// The live session's or the replay's own state.
fn mode_status(app: &App, p: &Palette, line4: &mut Vec<Span<'static>>) {
    let m = &app.model;
    let bold = Style::default().add_modifier(Modifier::BOLD);
    match &app.mode {
        Mode::Live { dropped } => {
            if *dropped > 0 {
                line4.push(Span::styled(
                    format!("view skipped {dropped} records · "),
                    p.fg(Color::Red),
                ));
            }
            if let Some(e) = m.ended {
                line4.push(Span::raw(format!("session ended ({}) · ", e.as_str())));
            }
            if m.session.is_none() {
                line4.push(Span::raw("starting: loading and attaching the probes… · "));
            }
        }
        Mode::Replay(r) => {
            let secs = |ns: u64| ns.saturating_sub(r.start_ns) as f64 / 1e9;
            line4.push(Span::styled(
                format!(
                    "{} ×{} {:.1}/{:.1} s · record {}/{} · ",
                    if r.paused {
                        "⏸ paused"
                    } else {
                        "▶ playing"
                    },
                    speed_text(r.speed),
                    secs(r.play_ns),
                    secs(r.end_ns),
                    r.position,
                    r.total
                ),
                bold,
            ));
            if r.damaged.0 > 0 {
                line4.push(Span::styled(
                    format!(
                        "damaged: {} stretches, {} B skipped · ",
                        r.damaged.0, r.damaged.1
                    ),
                    p.fg(Color::Red),
                ));
            }
        }
    }
}
