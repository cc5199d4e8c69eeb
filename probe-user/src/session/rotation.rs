//! Rotating trace files, for captures that run for weeks
//! (`record -o DIR --rotate-size BYTES --rotate-time SECS --keep N`).
//!
//! The session writes `DIR/modscope-YYYYMMDDTHHMMSSZ-NNNN.trace`; names sort
//! in time order. A file is closed at the first snapshot after it reached
//! the size or the age (so it passes the size by at most one snapshot's
//! records) with an end record saying `rotated`. The next one stands on
//! its own: it starts with the session's header (the functions probed since
//! included), every live incarnation's module record, verdict and latest
//! anomalies, and all counter totals so far. Totals are since the session
//! started, so a directory read whole (`report DIR`, `export DIR`) is
//! exact: a header that continues its session and a module already seen
//! are the same session and incarnation (`trace::replay`). Past `--keep N`
//! files the oldest are removed; what they alone held (loads and first
//! uses of their time) goes with them.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use crate::kernel::clock::rfc3339;
use crate::trace::{
    TraceRecord,
    records::{AnomalyRecord, ModuleSeen, ModuleVerdict, SessionStart},
    replay::merge_anomaly,
};

/// When to start the next file, and how many to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    pub dir: PathBuf,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    /// Files kept, the one being written included (none: all).
    pub keep: Option<usize>,
}

/// A rotating capture's state: the policy, the current file's age, and
/// what the next file repeats.
#[derive(Debug)]
pub struct Rotation {
    pub policy: RotationPolicy,
    opened: Instant,
    sequence: u64,
    pub carried: Carried,
}

impl Rotation {
    pub fn new(policy: RotationPolicy) -> Self {
        Self {
            policy,
            opened: Instant::now(),
            sequence: 0,
            carried: Carried::default(),
        }
    }

    /// The path of the next file, named for `now`; the file's age counts
    /// from here.
    pub fn next_path(&mut self, now: SystemTime) -> PathBuf {
        self.sequence += 1;
        self.opened = Instant::now();
        self.policy.dir.join(file_name(now, self.sequence))
    }

    /// Whether the current file, `bytes` long, is full at `now`.
    pub fn due(&self, bytes: u64, now: Instant) -> bool {
        let big = self.policy.max_bytes.is_some_and(|max| bytes >= max);
        let old = self
            .policy
            .max_age
            .is_some_and(|max| now.duration_since(self.opened) >= max);
        big || old
    }

    /// Removes the oldest trace files of the directory past `keep`, never
    /// `current`; returns those removed.
    pub fn prune(&self, current: &Path) -> io::Result<Vec<PathBuf>> {
        let Some(keep) = self.policy.keep else {
            return Ok(Vec::new());
        };
        let mut ours: Vec<PathBuf> = std::fs::read_dir(&self.policy.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_rotated_name(p))
            .collect();
        ours.sort();
        let excess = ours.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for old in ours.into_iter().take(excess).filter(|p| p != current) {
            std::fs::remove_file(&old)?;
            removed.push(old);
        }
        Ok(removed)
    }
}

/// `modscope-20261203T101500Z-0001.trace`: UTC time, then the session's
/// sequence number, so that names sort in time order.
pub fn file_name(at: SystemTime, sequence: u64) -> String {
    let stamp: String = rfc3339(at)
        .chars()
        .take_while(|c| *c != '.')
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("modscope-{stamp}Z-{sequence:04}.trace")
}

fn is_rotated_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("modscope-") && n.ends_with(".trace"))
}

/// What a new file repeats to stand on its own: the header, with the
/// functions probed since, and the live incarnations.
#[derive(Debug, Default)]
pub struct Carried {
    header: Option<SessionStart>,
    live: BTreeMap<u64, CarriedModule>,
}

#[derive(Debug)]
struct CarriedModule {
    seen: ModuleSeen,
    verdict: Option<ModuleVerdict>,
    anomalies: Vec<AnomalyRecord>,
}

impl Carried {
    /// Follows each record written.
    pub fn observe(&mut self, record: &TraceRecord) {
        match record {
            TraceRecord::SessionStart(s) => self.header = Some((**s).clone()),
            TraceRecord::Functions { functions, .. } => {
                if let Some(h) = &mut self.header {
                    h.functions.extend(functions.iter().cloned());
                }
            }
            TraceRecord::Module(m) => {
                let carried = CarriedModule {
                    seen: (**m).clone(),
                    verdict: None,
                    anomalies: Vec::new(),
                };
                self.live.insert(m.incarnation, carried);
            }
            TraceRecord::Verdict(v) => {
                if let Some(m) = self.live.get_mut(&v.incarnation) {
                    m.verdict = Some((**v).clone());
                }
            }
            TraceRecord::Anomaly(a) => {
                if let Some(m) = self.live.get_mut(&a.incarnation) {
                    merge_anomaly(&mut m.anomalies, a);
                }
            }
            TraceRecord::Unload { incarnation, .. } => {
                self.live.remove(incarnation);
            }
            _ => {}
        }
    }

    /// The records a new file starts with.
    pub fn records(&self) -> Vec<TraceRecord> {
        let mut out = Vec::new();
        if let Some(h) = &self.header {
            out.push(TraceRecord::SessionStart(Box::new(h.clone())));
        }
        for m in self.live.values() {
            out.push(TraceRecord::Module(Box::new(m.seen.clone())));
            if let Some(v) = &m.verdict {
                out.push(TraceRecord::Verdict(Box::new(v.clone())));
            }
            for a in &m.anomalies {
                out.push(TraceRecord::Anomaly(Box::new(a.clone())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kallsyms::KernelFunction;
    use crate::trace::samples;
    use std::time::UNIX_EPOCH;

    #[test]
    fn names_sort_in_time_order() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_292_900);
        assert_eq!(file_name(at, 7), "modscope-20261203T101500Z-0007.trace");
        let later = file_name(at + Duration::from_secs(1), 1);
        assert!(file_name(at, 9) < later);
        assert!(file_name(at, 9) < file_name(at, 10));
    }

    #[test]
    fn a_new_file_repeats_the_header_and_only_the_live_incarnations() {
        let mut c = Carried::default();
        for r in samples::all() {
            c.observe(&r);
        }
        c.observe(&TraceRecord::Functions {
            ts_ns: 1,
            functions: vec![KernelFunction::new("vmalloc", 0x500)],
        });
        let out = c.records();
        let TraceRecord::SessionStart(h) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(h.functions.iter().any(|f| f.name == "vmalloc"));
        assert!(
            h.functions.iter().any(|f| f.name == "msleep"),
            "added earlier"
        );
        let modules: Vec<&str> = out
            .iter()
            .filter_map(|r| match r {
                TraceRecord::Module(m) => Some(m.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(modules, ["old"], "m was unloaded");
    }

    #[test]
    fn due_by_size_or_age_and_prune_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("modscope-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Rotation::new(RotationPolicy {
            dir: dir.clone(),
            max_bytes: Some(100),
            max_age: Some(Duration::from_secs(60)),
            keep: Some(2),
        });
        assert!(!r.due(99, Instant::now()));
        assert!(r.due(100, Instant::now()));
        assert!(r.due(0, Instant::now() + Duration::from_secs(61)));
        let at = UNIX_EPOCH + Duration::from_secs(1_796_292_900);
        let paths: Vec<PathBuf> = (0..4)
            .map(|i| r.next_path(at + Duration::from_secs(i)))
            .collect();
        for p in &paths {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"kept").unwrap();
        let removed = r.prune(&paths[3]).unwrap();
        assert_eq!(removed, paths[..2]);
        assert!(paths[2].exists() && paths[3].exists() && dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
