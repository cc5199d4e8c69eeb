//! The TUI's state: the model folded from records plus what the user is
//! looking at (selection, sort, filter, focus, overlays), and the keys that
//! change it. Pure: no terminal, no I/O; `render` draws it.

use super::{
    model::{Applied, Model},
    module_entry::ModuleEntry,
};
use crate::trace::TraceRecord;

/// A key, as the TUI understands it (terminal-independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    CtrlC,
}

/// What a key asks of the world outside the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Replay only.
    TogglePause,
    StepForward,
    StepBack,
    Faster,
    Slower,
    ToStart,
    ToEnd,
    NextMark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Modules,
    Detail,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Verdict,
    Name,
    State,
    Taints,
    Used,
    Rate,
    Anomalies,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::Verdict,
        SortKey::Name,
        SortKey::State,
        SortKey::Taints,
        SortKey::Used,
        SortKey::Rate,
        SortKey::Anomalies,
    ];

    pub fn title(self) -> &'static str {
        match self {
            SortKey::Verdict => "verdict",
            SortKey::Name => "module",
            SortKey::State => "state",
            SortKey::Taints => "taint",
            SortKey::Used => "used",
            SortKey::Rate => "calls/s",
            SortKey::Anomalies => "anomalies",
        }
    }

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|&k| k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

/// Where a replay stands (shown in the header).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayStatus {
    pub file: String,
    pub position: usize,
    pub total: usize,
    pub play_ns: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub paused: bool,
    pub speed: f64,
    /// Damaged stretches skipped, and their bytes.
    pub damaged: (usize, u64),
}

impl ReplayStatus {
    /// Before the first record is applied.
    pub fn new(file: String, speed: f64, damaged: (usize, u64)) -> Self {
        Self {
            file,
            position: 0,
            total: 0,
            play_ns: 0,
            start_ns: 0,
            end_ns: 0,
            paused: false,
            speed,
            damaged,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Live { dropped: u64 },
    Replay(ReplayStatus),
}

#[derive(Debug, Clone)]
pub struct View {
    /// Selected module, by name (stays put when rows re-sort).
    pub selected: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub focus: Pane,
    /// Enter: the detail pane takes the body.
    pub detail_zoomed: bool,
    /// Enter in the events pane: the event log takes the body, every line
    /// wrapped whole.
    pub log_zoomed: bool,
    pub help: bool,
    /// Lines scrolled up from the newest log line.
    pub log_scroll: usize,
    pub detail_scroll: usize,
}

impl Default for View {
    fn default() -> Self {
        Self {
            selected: None,
            sort: SortKey::Verdict,
            descending: false,
            filter: String::new(),
            editing_filter: false,
            focus: Pane::Modules,
            detail_zoomed: false,
            log_zoomed: false,
            help: false,
            log_scroll: 0,
            detail_scroll: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub model: Model,
    pub view: View,
    pub mode: Mode,
    pub no_color: bool,
}

impl App {
    pub fn new(mode: Mode, no_color: bool) -> Self {
        Self {
            model: Model::default(),
            view: View::default(),
            mode,
            no_color,
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self.mode, Mode::Replay(_))
    }

    pub fn apply(&mut self, record: &TraceRecord) -> Applied {
        self.model.apply(record)
    }

    /// Starts the model over (replay stepping back), keeping the view.
    pub fn reset_model(&mut self) {
        self.model = Model::default();
    }

    /// The table's rows: filtered, sorted (unsafe first by default).
    pub fn rows(&self) -> Vec<&ModuleEntry> {
        let filter = self.view.filter.to_lowercase();
        let now = self.model.now_ns;
        let mut rows: Vec<&ModuleEntry> = self
            .model
            .modules
            .iter()
            .filter(|m| {
                filter.is_empty()
                    || m.name.to_lowercase().contains(&filter)
                    || m.rating().word().contains(&filter)
            })
            .collect();
        let key = self.view.sort;
        rows.sort_by(|a, b| {
            let o = match key {
                SortKey::Verdict => a
                    .rating()
                    .cmp(&b.rating())
                    .then(b.anomaly_count().cmp(&a.anomaly_count())),
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::State => a.state(now).cmp(&b.state(now)),
                SortKey::Taints => b.taints().len().cmp(&a.taints().len()),
                SortKey::Used => b.used().cmp(&a.used()),
                SortKey::Rate => b.rate(now).total_cmp(&a.rate(now)),
                SortKey::Anomalies => b.anomaly_count().cmp(&a.anomaly_count()),
            };
            let o = if self.view.descending { o.reverse() } else { o };
            o.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    /// The selected module: the one named, if shown, else the first row.
    pub fn selected(&self) -> Option<&ModuleEntry> {
        let rows = self.rows();
        self.view
            .selected
            .as_deref()
            .and_then(|n| rows.iter().find(|m| m.name == n).copied())
            .or_else(|| rows.first().copied())
    }

    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected()?.name.clone();
        self.rows().iter().position(|m| m.name == name)
    }

    fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let at = self.selected_index().unwrap_or(0) as isize;
        let to = (at + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.view.selected = Some(rows[to].name.clone());
        self.view.detail_scroll = 0;
    }

    fn scroll(&mut self, delta: isize) {
        match self.view.focus {
            Pane::Modules => self.move_selection(delta),
            Pane::Detail => {
                self.view.detail_scroll = self.view.detail_scroll.saturating_add_signed(delta);
            }
            Pane::Log => {
                // Up shows older lines.
                let max = self.model.log.len().saturating_sub(1);
                self.view.log_scroll = self.view.log_scroll.saturating_add_signed(-delta).min(max);
            }
        }
    }

    pub fn on_key(&mut self, key: Key) -> Action {
        if self.view.help {
            self.view.help = false;
            return match key {
                Key::Char('q') | Key::CtrlC => Action::Quit,
                _ => Action::None,
            };
        }
        if self.view.editing_filter {
            return self.on_filter_key(key);
        }
        let replay = self.is_replay();
        match key {
            Key::Char('q') | Key::CtrlC => return Action::Quit,
            Key::Char('?') | Key::Char('h') => self.view.help = true,
            Key::Char('j') | Key::Down => self.scroll(1),
            Key::Char('k') | Key::Up => self.scroll(-1),
            Key::PageDown => self.scroll(10),
            Key::PageUp => self.scroll(-10),
            Key::Home => self.scroll(isize::MIN / 2),
            Key::End => self.scroll(isize::MAX / 2),
            Key::Enter | Key::Esc | Key::Tab | Key::BackTab => self.on_pane_key(key),
            Key::Char('/') => {
                self.view.editing_filter = true;
                self.view.filter.clear();
            }
            Key::Char('s') => self.view.sort = self.view.sort.next(),
            Key::Char('S') => self.view.descending = !self.view.descending,
            Key::Char(' ') if replay => return Action::TogglePause,
            Key::Right if replay => return Action::StepForward,
            Key::Left if replay => return Action::StepBack,
            Key::Char('+') | Key::Char('=') if replay => return Action::Faster,
            Key::Char('-') if replay => return Action::Slower,
            Key::Char('g') if replay => return Action::ToStart,
            Key::Char('G') if replay => return Action::ToEnd,
            Key::Char('n') if replay => return Action::NextMark,
            Key::Char('g') => self.scroll(isize::MIN / 2),
            Key::Char('G') => self.scroll(isize::MAX / 2),
            _ => {}
        }
        Action::None
    }

    /// Keys while the filter is being typed: text, not commands.
    fn on_filter_key(&mut self, key: Key) -> Action {
        match key {
            Key::Char(c) => self.view.filter.push(c),
            Key::Backspace => {
                self.view.filter.pop();
            }
            Key::Enter => self.view.editing_filter = false,
            Key::Esc => {
                self.view.filter.clear();
                self.view.editing_filter = false;
            }
            Key::CtrlC => return Action::Quit,
            _ => {}
        }
        Action::None
    }

    /// Enter zooms the detail (the event log, from the events pane), Esc
    /// unzooms or clears the filter, Tab and Shift-Tab move the focus.
    fn on_pane_key(&mut self, key: Key) {
        let v = &mut self.view;
        match key {
            Key::Enter if v.focus == Pane::Log || v.log_zoomed => {
                v.log_zoomed = !v.log_zoomed;
                v.focus = Pane::Log;
            }
            Key::Esc if v.log_zoomed => {
                v.log_zoomed = false;
                v.focus = Pane::Modules;
            }
            Key::Enter => {
                v.detail_zoomed = !v.detail_zoomed;
                v.focus = if v.detail_zoomed {
                    Pane::Detail
                } else {
                    Pane::Modules
                };
            }
            Key::Esc if v.detail_zoomed => {
                v.detail_zoomed = false;
                v.focus = Pane::Modules;
            }
            Key::Esc => v.filter.clear(),
            Key::Tab => {
                v.focus = match v.focus {
                    Pane::Modules => Pane::Detail,
                    Pane::Detail => Pane::Log,
                    Pane::Log => Pane::Modules,
                }
            }
            Key::BackTab => {
                v.focus = match v.focus {
                    Pane::Modules => Pane::Log,
                    Pane::Detail => Pane::Modules,
                    Pane::Log => Pane::Detail,
                }
            }
            _ => {}
        }
    }
}

/// Every key, for the help overlay (and the README).
pub fn help_lines(replay: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("q, Ctrl-C", "quit"),
        ("?, h", "this help (any key closes it)"),
        ("↑ ↓, k j", "move in the focused pane"),
        (
            "PgUp PgDn, Home End",
            "move by a page, to the top or bottom",
        ),
        ("Tab, Shift-Tab", "focus the next or previous pane"),
        ("Enter", "open the selected module's detail (again: close)"),
        (
            "Enter (events)",
            "the whole event log, lines wrapped (again: close)",
        ),
        ("Esc", "close the detail, or clear the filter"),
        (
            "/",
            "filter modules by name or verdict; Enter keeps, Esc clears",
        ),
        ("s, S", "sort by the next column; reverse the order"),
    ];
    if replay {
        v.extend([
            ("space", "pause or resume the replay"),
            ("← →", "step one record back or forward (pauses)"),
            ("+ -", "play faster or slower"),
            ("g G", "jump to the start or the end of the trace"),
            ("n", "jump to the next anomaly or verdict change"),
        ]);
    } else {
        v.push(("g G", "first or last module"));
    }
    v
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
