//! The eBPF programs' own diagnostics through aya-log: which program hit a
//! failed kernel read, a full ring buffer or a full map. Off unless
//! `--log-level` asks: the level is written into `AYA_LOG_LEVEL` before
//! load, so an off program skips its log statements, and nobody reads
//! `AYA_LOGS`. The counters in `COUNTERS` count the same failures always.

use std::{
    collections::VecDeque,
    str::FromStr,
    sync::{Arc, Mutex},
};

/// How much the programs say, as aya-log's levels (0: nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    #[default]
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "off" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            other => {
                return Err(format!(
                    "{other:?} is not a log level (off, error, warn, info, debug, trace)"
                ));
            }
        })
    }
}

impl LogLevel {
    /// The byte written into `AYA_LOG_LEVEL`.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Lines kept for a reader that cannot take them as they come (the TUI owns
/// the terminal): the newest `KEPT_LINES`, and how many older ones went.
#[derive(Debug, Default)]
pub struct KeptLines {
    pub lines: VecDeque<String>,
    pub dropped: u64,
}

pub const KEPT_LINES: usize = 1_000;

/// What the session asks of the programs' diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub level: LogLevel,
    /// Where the lines go: kept here, or (None) standard error as they come.
    pub kept: Option<Arc<Mutex<KeptLines>>>,
}

/// A `log::Log` for aya-log's records: one line each.
pub struct ProbeLog {
    filter: log::LevelFilter,
    kept: Option<Arc<Mutex<KeptLines>>>,
}

impl ProbeLog {
    pub fn new(d: &Diagnostics) -> Self {
        Self {
            filter: d.level.filter(),
            kept: d.kept.clone(),
        }
    }

    /// The line a record becomes.
    pub fn line(record: &log::Record) -> String {
        format!(
            "modscope: probe {}: {}",
            record.level().as_str().to_lowercase(),
            record.args()
        )
    }
}

impl log::Log for ProbeLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.filter
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = Self::line(record);
        match &self.kept {
            None => eprintln!("{line}"),
            Some(kept) => {
                let Ok(mut kept) = kept.lock() else {
                    return;
                };
                if kept.lines.len() == KEPT_LINES {
                    kept.lines.pop_front();
                    kept.dropped += 1;
                }
                kept.lines.push_back(line);
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use log::Log as _;

    use super::*;

    fn record(level: log::Level, text: &'static str, f: impl FnOnce(&log::Record)) {
        f(&log::Record::builder()
            .level(level)
            .args(format_args!("{text}"))
            .build());
    }

    #[test]
    fn levels_parse_and_map_to_aya_logs_bytes() {
        assert_eq!("off".parse::<LogLevel>().unwrap().code(), 0);
        assert_eq!("warn".parse::<LogLevel>().unwrap().code(), 2);
        assert_eq!("trace".parse::<LogLevel>().unwrap().code(), 5);
        assert!(
            "loud"
                .parse::<LogLevel>()
                .unwrap_err()
                .contains("not a log level")
        );
    }

    #[test]
    fn kept_lines_are_filtered_by_level_and_bounded() {
        let kept = Arc::new(Mutex::new(KeptLines::default()));
        let log = ProbeLog::new(&Diagnostics {
            level: LogLevel::Warn,
            kept: Some(kept.clone()),
        });
        record(log::Level::Debug, "quiet", |r| log.log(r));
        record(log::Level::Warn, "count_call: a kernel read failed", |r| {
            log.log(r)
        });
        {
            let k = kept.lock().unwrap();
            assert_eq!(
                k.lines.iter().collect::<Vec<_>>(),
                ["modscope: probe warn: count_call: a kernel read failed"]
            );
        }
        for _ in 0..KEPT_LINES + 5 {
            record(log::Level::Error, "x", |r| log.log(r));
        }
        let k = kept.lock().unwrap();
        assert_eq!(k.lines.len(), KEPT_LINES);
        assert_eq!(k.dropped, 6);
    }
}
