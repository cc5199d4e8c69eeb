//! Replay of a trace file as a source for the TUI: a play head moving at
//! trace time × speed, stepping, seeking (applied in slices so keys stay
//! responsive), and "next mark". Pure but for the wall-clock durations the
//! loop hands in.

use std::time::{Duration, Instant};

use super::{
    app::{Action, App, Mode, ReplayStatus},
    run::{Feed, FeedState},
};
use crate::trace::TraceRecord;

/// Idle stretches of the trace longer than this play as this long.
pub const MAX_IDLE_NS: u64 = 3_000_000_000;
pub const SPEEDS: [f64; 15] = [
    0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    /// Apply up to this many records, then pause.
    To(usize),
    /// Apply until a record marks an anomaly or verdict change, then pause.
    NextMark,
}

pub struct ReplayFeed {
    records: Vec<TraceRecord>,
    /// Running maximum of record times (files from one boot only grow;
    /// appended sessions from another boot may go back).
    times: Vec<u64>,
    /// Records applied.
    pos: usize,
    play_ns: u64,
    paused: bool,
    speed_index: usize,
    seek: Option<Seek>,
    status: ReplayStatus,
    /// Damaged stretches of the file: (records before it, what was
    /// skipped), logged as the play head passes them.
    damage: Vec<(usize, String)>,
    next_damage: usize,
}

impl ReplayFeed {
    pub fn new(records: Vec<TraceRecord>, file: String, damaged: (usize, u64)) -> Self {
        let mut max = 0;
        let times: Vec<u64> = records
            .iter()
            .map(|r| {
                max = max.max(r.ts_ns());
                max
            })
            .collect();
        let start = times.first().copied().unwrap_or(0);
        let end = times.last().copied().unwrap_or(0);
        Self {
            records,
            times,
            pos: 0,
            play_ns: start,
            paused: false,
            speed_index: 3,
            seek: None,
            damage: Vec::new(),
            next_damage: 0,
            status: ReplayStatus {
                play_ns: start,
                start_ns: start,
                end_ns: end,
                ..ReplayStatus::new(file, 1.0, damaged)
            },
        }
    }

    /// Damaged stretches to log where they lie: (how many records came
    /// before it, the note), in file order.
    pub fn with_damage(mut self, damage: Vec<(usize, String)>) -> Self {
        self.damage = damage;
        self
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed_index]
    }

    pub fn set_speed(&mut self, speed: f64) {
        self.speed_index = SPEEDS
            .iter()
            .position(|&s| s >= speed)
            .unwrap_or(SPEEDS.len() - 1);
    }

    pub fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Applies the whole trace now, and pauses there.
    pub fn act_to_end(&mut self, app: &mut App) {
        while self.pos < self.records.len() {
            self.apply_one(app);
        }
        self.paused = true;
        self.publish(app);
    }

    fn apply_one(&mut self, app: &mut App) -> bool {
        let applied = app.apply(&self.records[self.pos]);
        self.play_ns = self.play_ns.max(self.times[self.pos]);
        app.model.advance(self.play_ns);
        self.pos += 1;
        // Stamped with the record before it (the first record when it lies
        // before all of them): never before the session started.
        while let Some((before, note)) = self.damage.get(self.next_damage)
            && *before <= self.pos
        {
            app.model.note(super::model::LogKind::Damage, note.clone());
            self.next_damage += 1;
        }
        applied.mark
    }

    /// Starts over (for seeking back): the model is rebuilt from the start.
    fn rewind(&mut self, app: &mut App) {
        app.reset_model();
        self.pos = 0;
        self.next_damage = 0;
        self.play_ns = self.status.start_ns;
    }

    fn publish(&mut self, app: &mut App) {
        self.status.position = self.pos;
        self.status.total = self.records.len();
        self.status.play_ns = self.play_ns;
        self.status.paused = self.paused || self.seek.is_some();
        self.status.speed = self.speed();
        app.mode = Mode::Replay(self.status.clone());
    }
}

impl Feed for ReplayFeed {
    fn pump(&mut self, app: &mut App, elapsed: Duration, budget: Duration) -> FeedState {
        let started = Instant::now();
        let within = |n: usize| !n.is_multiple_of(256) || started.elapsed() < budget;
        match self.seek {
            Some(Seek::To(target)) => {
                let mut n = 0;
                while self.pos < target && within(n) {
                    self.apply_one(app);
                    n += 1;
                }
                if self.pos >= target {
                    self.seek = None;
                    self.paused = true;
                }
            }
            Some(Seek::NextMark) => {
                let mut n = 0;
                while self.pos < self.records.len() && within(n) {
                    n += 1;
                    if self.apply_one(app) {
                        self.seek = None;
                        break;
                    }
                }
                if self.pos >= self.records.len() {
                    self.seek = None;
                }
                if self.seek.is_none() {
                    self.paused = true;
                }
            }
            None if !self.paused => {
                if let Some(&next) = self.times.get(self.pos)
                    && next > self.play_ns.saturating_add(MAX_IDLE_NS)
                {
                    self.play_ns = next - MAX_IDLE_NS;
                }
                let step = elapsed.as_nanos() as f64 * self.speed();
                // The play head stops at the last record, and playing ends there.
                self.play_ns = self
                    .play_ns
                    .saturating_add(step as u64)
                    .min(self.status.end_ns);
                let mut n = 0;
                while self.pos < self.records.len()
                    && self.times[self.pos] <= self.play_ns
                    && within(n)
                {
                    self.apply_one(app);
                    n += 1;
                }
                app.model.advance(self.play_ns);
                if self.pos >= self.records.len() {
                    self.paused = true;
                }
            }
            None => {}
        }
        self.publish(app);
        FeedState::Running
    }

    fn act(&mut self, app: &mut App, action: Action) {
        match action {
            Action::TogglePause => self.paused = !self.paused,
            Action::StepForward => {
                self.seek = None;
                self.paused = true;
                if self.pos < self.records.len() {
                    self.apply_one(app);
                }
            }
            Action::StepBack => {
                let target = self.pos.saturating_sub(1);
                self.rewind(app);
                self.seek = Some(Seek::To(target));
            }
            Action::Faster => self.speed_index = (self.speed_index + 1).min(SPEEDS.len() - 1),
            Action::Slower => self.speed_index = self.speed_index.saturating_sub(1),
            Action::ToStart => {
                self.rewind(app);
                self.seek = None;
                self.paused = true;
            }
            Action::ToEnd => self.seek = Some(Seek::To(self.records.len())),
            Action::NextMark => self.seek = Some(Seek::NextMark),
            Action::None | Action::Quit => {}
        }
        self.publish(app);
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
