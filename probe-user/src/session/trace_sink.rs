//! The live session's side of a trace file: what is written when, and the
//! flush policy.
//!
//! Flush policy (documented in the README):
//! - module loads and unloads are written and forced to the disk
//!   (fdatasync) as soon as the ring buffer delivers them, so a forced load
//!   that hangs or panics the machine still leaves its evidence;
//! - first uses (once per module incarnation and function) and detector
//!   anomalies are synced the same way: the first `mutex_lock` of a module
//!   that then hangs the kernel is the evidence a post-mortem needs;
//! - counter totals that changed, and the probe counters, are written every
//!   snapshot interval (1 s by default) and synced then;
//! - the end of the session writes a last snapshot and an end record.
//!
//! - a rotating capture starts its next file at a snapshot (`rotation`).
//!
//! The live TUI taps the same records (a bounded channel): what it shows
//! live is what a replay of the file shows.

use super::error::{Result, SessionError};
use super::rotation::Rotation;
use crate::kernel::kallsyms::KernelFunction;
use crate::metrics::{SharedMetrics, state::ProgramRuns};
use crate::probe::ProgramStats;
use modscope_analysis::Imports;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
};

use probe_common::ModuleRecord;

use crate::trace::{
    TraceRecord, TraceWriter,
    records::{
        AnomalyRecord, CountEntry, EndReason, GuardRecord, ModuleOrigin, ModuleSeen, ModuleVerdict,
        SessionStart, StatsSnapshot,
    },
};

/// Where the records go: a file, a live view, or both.
pub struct TraceSink {
    file: Option<(TraceWriter, PathBuf)>,
    tap: Option<Tap>,
    /// A live view was given (it may have quit since).
    viewed: bool,
    /// Only these modules are recorded (empty: all).
    filter: Vec<String>,
    /// Incarnations being recorded.
    kept: BTreeSet<u64>,
    last_counts: BTreeMap<(u64, u64), u64>,
    last_stats: Option<StatsSnapshot>,
    /// Written since the last sync.
    unsynced: bool,
    /// Written since the last flush needs to reach the disk now.
    urgent: bool,
    /// The file rotates (its path is the current one).
    rotation: Option<Rotation>,
    /// `/metrics` follows every record written.
    metrics: Option<SharedMetrics>,
}

/// The live view's end of the records. Never blocks the session: when the
/// view falls behind by a whole channel, records are counted as dropped
/// (the view says so) and the next counts snapshot is sent whole.
pub struct Tap {
    pub sender: SyncSender<TraceRecord>,
    /// Shared with the view, which shows it.
    pub dropped: Arc<AtomicU64>,
    resend_counts: bool,
}

impl Tap {
    pub fn new(sender: SyncSender<TraceRecord>, dropped: Arc<AtomicU64>) -> Self {
        Self {
            sender,
            dropped,
            resend_counts: false,
        }
    }
}

impl TraceSink {
    pub fn new(file: Option<(&Path, bool)>, tap: Option<Tap>, filter: Vec<String>) -> Result<Self> {
        let file = match file {
            Some((path, append)) => Some((Self::open_file(path, append)?, path.to_owned())),
            None => None,
        };
        Ok(Self {
            file,
            viewed: tap.is_some(),
            tap,
            filter,
            kept: BTreeSet::new(),
            last_counts: BTreeMap::new(),
            last_stats: None,
            unsynced: false,
            urgent: false,
            rotation: None,
            metrics: None,
        })
    }

    /// The metrics follow the records from now on.
    pub fn with_metrics(mut self, metrics: Option<SharedMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether metrics are served (the session then reads the programs'
    /// run-time statistics at each snapshot).
    pub fn metered(&self) -> bool {
        self.metrics.is_some()
    }

    /// The programs' run time and runs so far, for the metrics.
    pub fn program_costs(&mut self, programs: Vec<(String, ProgramStats)>) {
        if let Some(m) = &self.metrics {
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            m.programs = programs
                .into_iter()
                .map(|(p, s)| {
                    let runs = ProgramRuns {
                        run_time_ns: s.run_time_ns,
                        runs: s.runs,
                        skipped: s.skipped,
                    };
                    (p, runs)
                })
                .collect();
        }
    }

    /// A rotating capture: the file given to `new` is its first.
    pub fn rotating(mut self, rotation: Rotation) -> Self {
        self.rotation = Some(rotation);
        self
    }

    /// The directory of a rotating capture.
    pub fn rotation_dir(&self) -> Option<&Path> {
        self.rotation.as_ref().map(|r| r.policy.dir.as_path())
    }

    fn open_file(path: &Path, append: bool) -> Result<TraceWriter> {
        let writer = if append {
            let (w, info) =
                TraceWriter::append(path).map_err(|source| SessionError::TraceOpen {
                    what: "opening trace",
                    path: format!("{} to append", path.display()),
                    source,
                })?;
            if info.dropped_tail > 0 {
                eprintln!(
                    "modscope: {}: cut off {} bytes of a torn last record before appending",
                    path.display(),
                    info.dropped_tail
                );
            }
            w
        } else {
            TraceWriter::create(path).map_err(|source| SessionError::TraceOpen {
                what: "creating trace",
                path: path.display().to_string(),
                source,
            })?
        };
        Ok(writer)
    }

    /// Whether a live view was given this session's records.
    pub fn viewed(&self) -> bool {
        self.viewed
    }

    /// The trace file, when one is written.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, p)| p.as_path())
    }

    pub fn bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |(w, _)| w.bytes())
    }

    pub fn records(&self) -> u64 {
        self.file.as_ref().map_or(0, |(w, _)| w.records())
    }

    fn write(&mut self, record: &TraceRecord) {
        if let Some((w, _)) = &mut self.file {
            w.write(record);
            self.unsynced = true;
        }
        if let Some(r) = &mut self.rotation {
            r.carried.observe(record);
        }
        if let Some(m) = &self.metrics {
            m.lock().unwrap_or_else(|p| p.into_inner()).apply(record);
        }
        self.send_tap(record);
    }

    fn send_tap(&mut self, record: &TraceRecord) {
        if let Some(tap) = &mut self.tap {
            match tap.sender.try_send(record.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tap.dropped.fetch_add(1, Ordering::Relaxed);
                    tap.resend_counts = true;
                }
                Err(TrySendError::Disconnected(_)) => self.tap = None,
            }
        }
    }

    /// A module's static verdict (its file checked against this kernel).
    pub fn verdict(&mut self, verdict: ModuleVerdict) {
        if self.kept.contains(&verdict.incarnation) {
            self.write(&TraceRecord::Verdict(Box::new(verdict)));
        }
    }

    pub fn start(&mut self, start: SessionStart) -> Result<()> {
        self.write(&TraceRecord::SessionStart(Box::new(start)));
        self.urgent = true;
        self.end_batch()
    }

    pub fn module(
        &mut self,
        r: &ModuleRecord,
        origin: ModuleOrigin,
        init_counted: bool,
        imports: Option<&Imports>,
    ) {
        let name = String::from_utf8_lossy(r.name.as_bytes()).into_owned();
        if !self.filter.is_empty() && !self.filter.contains(&name) {
            return;
        }
        self.kept.insert(r.incarnation);
        self.write(&TraceRecord::Module(Box::new(ModuleSeen {
            ts_ns: r.load_ns,
            origin,
            incarnation: r.incarnation,
            name,
            taints: r.taints,
            struct_module: r.module_addr,
            core_text: (r.core_text_base, r.core_text_size),
            init_text: (r.init_text_base, r.init_text_size),
            init_counted,
            imports: imports.map(|i| i.symbols.iter().cloned().collect()),
            tail_called: imports
                .map(|i| i.tail_called.iter().cloned().collect())
                .unwrap_or_default(),
        })));
        self.urgent |= origin == ModuleOrigin::Loaded;
    }

    pub fn unload(&mut self, ts_ns: u64, incarnation: u64) {
        if self.kept.contains(&incarnation) {
            self.write(&TraceRecord::Unload { ts_ns, incarnation });
            self.urgent = true;
        }
    }

    /// A first call: synced at the end of the batch (at most once per
    /// module and function), so the call that preceded a hang is on disk.
    pub fn first_use(&mut self, ts_ns: u64, incarnation: u64, func_ip: u64, caller: u64) {
        if self.kept.contains(&incarnation) {
            self.write(&TraceRecord::FirstUse {
                ts_ns,
                incarnation,
                func_ip,
                caller,
            });
            self.urgent = true;
        }
    }

    /// A detector's anomaly (first at a site, or a new total). Synced at the
    /// end of the batch like a load: it is what a post-mortem needs most,
    /// and the kernel may not survive what comes next.
    pub fn anomaly(&mut self, record: &AnomalyRecord) {
        // Incarnation 0: seen at load time, before the module has one.
        let kept = if record.incarnation == 0 {
            self.filter.is_empty() || self.filter.contains(&record.module)
        } else {
            self.kept.contains(&record.incarnation)
        };
        if kept {
            self.write(&TraceRecord::Anomaly(Box::new(record.clone())));
            self.urgent = true;
        }
    }

    /// A guard decision: always kept (the module filter names loaded
    /// modules; a refused one never is), synced like an anomaly.
    pub fn guard(&mut self, record: &GuardRecord) {
        self.write(&TraceRecord::Guard(Box::new(record.clone())));
        self.urgent = true;
    }

    /// Functions probed from now on (for a module loaded meanwhile).
    pub fn functions(&mut self, ts_ns: u64, functions: &[KernelFunction]) {
        if !functions.is_empty() {
            self.write(&TraceRecord::Functions {
                ts_ns,
                functions: functions.to_vec(),
            });
        }
    }

    /// After a ring-buffer batch: hands it to the kernel, and to the disk
    /// when it held a load or unload.
    pub fn end_batch(&mut self) -> Result<()> {
        let urgent = std::mem::take(&mut self.urgent);
        let Some((writer, path)) = &mut self.file else {
            return Ok(());
        };
        let result = if urgent {
            self.unsynced = false;
            writer.sync()
        } else {
            writer.flush()
        };
        result.map_err(|source| SessionError::TraceWrite {
            path: path.display().to_string(),
            source,
        })
    }

    /// The counters that changed since the last snapshot, then a sync. A
    /// live view gets a counts record every time (its clock), and all
    /// totals after it missed records.
    pub fn snapshot(
        &mut self,
        ts_ns: u64,
        counts: &BTreeMap<(u64, u64), u64>,
        stats: StatsSnapshot,
    ) -> Result<()> {
        let resend = self
            .tap
            .as_mut()
            .is_some_and(|t| std::mem::take(&mut t.resend_counts));
        let entries: Vec<CountEntry> = counts
            .iter()
            .filter(|((inc, _), _)| self.kept.contains(inc))
            .filter(|(k, n)| resend || self.last_counts.get(k) != Some(n))
            .map(|(&(incarnation, func_ip), &calls)| CountEntry {
                incarnation,
                func_ip,
                calls,
            })
            .collect();
        if entries.is_empty() {
            // The view's clock: nothing changed at this time.
            self.send_tap(&TraceRecord::Counts { ts_ns, entries });
        } else {
            self.write(&TraceRecord::Counts { ts_ns, entries });
            self.last_counts.extend(
                counts
                    .iter()
                    .filter(|((inc, _), _)| self.kept.contains(inc)),
            );
        }
        let unchanged = self
            .last_stats
            .is_some_and(|s| StatsSnapshot { ts_ns, ..s } == stats);
        if !unchanged {
            self.write(&TraceRecord::Stats(stats));
            self.last_stats = Some(stats);
        }
        if self.unsynced {
            self.urgent = true;
        }
        self.end_batch()?;
        self.rotate_if_due(ts_ns)
    }

    /// Closes a full file with a `rotated` end and goes on in the next,
    /// which repeats the header, the live incarnations and every total
    /// (`rotation`'s rules), then removes the oldest past `--keep`.
    fn rotate_if_due(&mut self, ts_ns: u64) -> Result<()> {
        let (Some(rotation), Some((writer, path))) = (&mut self.rotation, &mut self.file) else {
            return Ok(());
        };
        if !rotation.due(writer.bytes(), std::time::Instant::now()) {
            return Ok(());
        }
        let failed = |path: &Path, source| SessionError::TraceWrite {
            path: path.display().to_string(),
            source,
        };
        writer.write(&TraceRecord::SessionEnd {
            ts_ns,
            reason: EndReason::Rotated,
        });
        writer.sync().map_err(|e| failed(path, e))?;
        let next = rotation.next_path(std::time::SystemTime::now());
        let mut w = Self::open_file(&next, false)?;
        for r in rotation.carried.records() {
            w.write(&r);
        }
        let entries: Vec<CountEntry> = self
            .last_counts
            .iter()
            .map(|(&(incarnation, func_ip), &calls)| CountEntry::new(incarnation, func_ip, calls))
            .collect();
        if !entries.is_empty() {
            w.write(&TraceRecord::Counts { ts_ns, entries });
        }
        if let Some(st) = self.last_stats {
            w.write(&TraceRecord::Stats(st));
        }
        w.sync().map_err(|e| failed(&next, e))?;
        *writer = w;
        *path = next;
        // A failed removal leaves a file too many, never a capture stopped.
        if let Err(e) = rotation.prune(path) {
            eprintln!(
                "modscope: removing old traces in {}: {e}",
                rotation.policy.dir.display()
            );
        }
        Ok(())
    }

    pub fn end(
        &mut self,
        ts_ns: u64,
        counts: &BTreeMap<(u64, u64), u64>,
        stats: StatsSnapshot,
        reason: EndReason,
    ) -> Result<()> {
        self.snapshot(ts_ns, counts, stats)?;
        self.write(&TraceRecord::SessionEnd { ts_ns, reason });
        self.urgent = true;
        self.end_batch()
    }
}
