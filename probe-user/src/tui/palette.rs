//! How the TUI marks things: colours (none under NO_COLOR), the symbols
//! that stand beside every colour, and times on the session's clock.

use modscope_analysis::verdict::Severity;
use ratatui::style::{Color, Modifier, Style};

use super::{
    model::{LogKind, Model},
    module_entry::Rating,
};
use crate::kernel::clock;

pub struct Palette {
    pub no_color: bool,
}

impl Palette {
    pub fn fg(&self, c: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(c)
        }
    }

    pub fn rating(&self, r: Rating) -> Style {
        match r {
            Rating::Unsafe => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Rating::Warning => self.fg(Color::Yellow),
            Rating::Compatible => self.fg(Color::Green),
            Rating::Unchecked => self.fg(Color::DarkGray),
        }
    }

    pub fn severity(&self, l: Option<Severity>) -> Style {
        match l {
            Some(Severity::Incompatible) => self.fg(Color::Red),
            Some(Severity::Warning) => self.fg(Color::Yellow),
            _ => self.fg(Color::Gray),
        }
    }

    pub fn log(&self, k: LogKind) -> Style {
        match k {
            LogKind::Anomaly | LogKind::Guard | LogKind::Damage => {
                self.fg(Color::Red).add_modifier(Modifier::BOLD)
            }
            LogKind::Lost => self.fg(Color::Red),
            LogKind::Verdict => self.fg(Color::Yellow),
            LogKind::Load => self.fg(Color::Cyan),
            LogKind::Unload => self.fg(Color::Blue),
            LogKind::Session => Style::default().add_modifier(Modifier::BOLD),
            LogKind::FirstUse => Style::default(),
        }
    }
}

pub fn severity_symbol(l: Option<Severity>) -> &'static str {
    match l {
        Some(Severity::Incompatible) => "✖",
        Some(Severity::Warning) => "▲",
        _ => "·",
    }
}

/// `HH:MM:SS` (UTC) of a boot-clock time, with the session's clock.
pub fn time_of(model: &Model, ts_ns: u64) -> String {
    match &model.session {
        Some(s) if s.epoch_at_boot_ns > 0 => {
            let t = clock::WallClock::from_epoch_at_boot_ns(s.epoch_at_boot_ns).rfc3339(ts_ns);
            t.get(11..19).unwrap_or(&t).to_owned()
        }
        _ => format!("{:.1}s", ts_ns as f64 / 1e9),
    }
}

pub fn speed_text(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}
