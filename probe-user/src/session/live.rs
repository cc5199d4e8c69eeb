//! The running session: the probe, the state fold, the trace sink and the
//! output, and the select loop that moves data between them. Every
//! decision lives elsewhere: what to attach (`attach_plan`), what a record
//! means (`state`), what is written when (`trace_sink`).

use super::error::{Result, SessionError};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use probe_common::{ModuleRecord, decode};
use tokio::{
    io::unix::{AsyncFd, AsyncFdReadyMutGuard},
    sync::oneshot,
};

use super::{
    anomaly_sites,
    event::{Event, ModuleInfo},
    guard_desk::GuardDesk,
    guard_start,
    hidden_scan::HiddenScan,
    late_probes::LateProbes,
    output::Output,
    state::{self, SessionState},
    static_verdicts::StaticVerdicts,
    trace_sink::TraceSink,
};
use crate::{
    guard::watcher::CatalogUpdate,
    kernel::{clock, thread_priority::Unpreempted},
    probe::{self, ModuleProbe, ProbeLogger, ProgramStats},
    trace::guard_display::GuardInfo,
    trace::records::{EndReason, ModuleOrigin, Stats, StatsSnapshot},
};

/// The signals that end a session, installed before anything else.
pub struct Signals {
    pub interrupt: tokio::signal::unix::Signal,
    pub terminate: tokio::signal::unix::Signal,
}

/// How the stream ends, besides a signal.
pub struct StreamEnd<'a> {
    pub duration: Option<f64>,
    pub snapshot_interval: Duration,
    pub quit: Option<&'a mut oneshot::Receiver<()>>,
}

pub struct Session {
    pub probe: ModuleProbe,
    pub state: SessionState,
    pub out: Output,
    pub trace: Option<TraceSink>,
    pub late: LateProbes,
    pub verdicts: Option<StaticVerdicts>,
    /// Holds the kernel's BPF run-time statistics on while metrics are
    /// served; dropped with the session, which restores them.
    pub run_statistics: Option<std::os::fd::OwnedFd>,
    /// `modscope guard`: the files behind the kernel's verdicts.
    pub guard: Option<GuardDesk>,
    /// The views of the loaded modules, compared once a second.
    pub hidden: HiddenScan,
}

/// What woke the session's loop.
enum Wake<'a> {
    Guard(Option<CatalogUpdate>),
    Events(AsyncFdReadyMutGuard<'a, RingBuf<MapData>>),
    Snapshot,
    HiddenScan,
    Logs(AsyncFdReadyMutGuard<'a, ProbeLogger>),
    End(EndReason),
}

/// How often the kernel's views of the loaded modules are compared.
const HIDDEN_SCAN_INTERVAL: Duration = Duration::from_secs(1);

impl Session {
    /// Streams until a signal, the duration, or the view quits; then
    /// drains what is left and prints the registry.
    pub async fn stream(
        &mut self,
        mut events: AsyncFd<RingBuf<MapData>>,
        mut logs: Option<AsyncFd<ProbeLogger>>,
        mut end: StreamEnd<'_>,
        signals: &mut Signals,
    ) -> Result<EndReason> {
        let deadline = tokio::time::sleep(
            end.duration
                .map_or(Duration::MAX / 4, Duration::from_secs_f64),
        );
        tokio::pin!(deadline);
        let mut snapshots = tokio::time::interval(end.snapshot_interval);
        snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first scan a second in: start-up's work comes first.
        let mut hidden_scans = tokio::time::interval_at(
            tokio::time::Instant::now() + HIDDEN_SCAN_INTERVAL,
            HIDDEN_SCAN_INTERVAL,
        );
        hidden_scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_reported = 0;
        let mut guard_updates = self.guard.as_mut().and_then(|g| g.updates.take());
        let reason = loop {
            let wake = tokio::select! {
                update = async { guard_updates.as_mut().expect("guarded").recv().await }, if guard_updates.is_some() => Wake::Guard(update),
                guard = events.readable_mut() => {
                    Wake::Events(guard.map_err(SessionError::io("waiting on the EVENTS ring buffer"))?)
                }
                _ = snapshots.tick(), if self.trace.is_some() || self.probe.retiring() => Wake::Snapshot,
                _ = hidden_scans.tick() => Wake::HiddenScan,
                guard = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                    Wake::Logs(guard.map_err(SessionError::io("waiting on the AYA_LOGS ring buffer"))?)
                }
                _ = async { end.quit.as_mut().expect("guarded").await }, if end.quit.is_some() => {
                    Wake::End(EndReason::Quit)
                }
                _ = signals.interrupt.recv() => Wake::End(EndReason::Interrupt),
                _ = signals.terminate.recv() => Wake::End(EndReason::Terminate),
                () = &mut deadline => Wake::End(EndReason::Duration),
            };
            // The wake's BPF map syscalls, where no task preempts them.
            let _unpreempted = Unpreempted::enter();
            match wake {
                Wake::Guard(Some(update)) => self.guard_update(update)?,
                Wake::Guard(None) => guard_updates = None,
                Wake::Events(mut guard) => {
                    self.drain(guard.get_inner_mut())?;
                    guard.clear_ready();
                }
                Wake::Snapshot => self.snapshot()?,
                Wake::HiddenScan => self.scan_hidden()?,
                Wake::Logs(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Wake::End(reason) => break reason,
            }
            lost_reported = self.report_lost(lost_reported)?;
        };
        let _unpreempted = Unpreempted::enter();
        // Whatever arrived between the last wake-up and the signal.
        self.drain(events.get_mut())?;
        // The unowned sites' counts as the session ends.
        self.scan_hidden()?;
        if let Some(logs) = &mut logs {
            logs.get_mut().flush();
        }
        self.report_lost(lost_reported)?;
        let stats = self.stats()?.counters;
        let modules = self
            .probe
            .registry()?
            .iter()
            .map(ModuleInfo::from)
            .collect();
        self.out.emit(&Event::Registry {
            time: Event::now(),
            modules,
            stats,
        })?;
        Ok(reason)
    }

    /// A module present before the session: its pages mapped, tracked,
    /// recorded, reported.
    pub fn present(&mut self, record: &ModuleRecord) -> Result<()> {
        self.probe.map_text_pages(
            record.core_text_base,
            record.core_text_size,
            record.incarnation,
        );
        self.state.track(record, false);
        self.record_module(record, ModuleOrigin::Present, false, clock::boot_ns());
        self.out.emit(&Event::Present {
            time: Event::now(),
            module: ModuleInfo::from(record),
        })
    }

    /// The ring buffer's records: folded and written to the trace, the
    /// trace handed to the disk, then printed. The trace goes first: after
    /// a forced load that hangs the kernel, its sync is what survives.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<()> {
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            let decoded = decode::Event::try_from(&*item);
            drop(item);
            events.push(match decoded {
                Ok(event) => self.apply(event)?,
                Err(err) => self.state.decode_error(err.to_string()),
            });
        }
        if let Some(t) = &mut self.trace {
            t.end_batch()?;
        }
        for event in &events {
            self.out.emit(event)?;
        }
        Ok(())
    }

    fn apply(&mut self, event: decode::Event) -> Result<Event> {
        Ok(match event {
            decode::Event::ModuleLoad(e) => {
                self.hidden.churn(&state::module_name(&e.record));
                self.loaded(&e.record, e.header.ts_ns)?
            }
            decode::Event::ModuleFree(e) => {
                self.hidden.churn(&state::module_name(&e.record));
                self.probe.module_freed(e.record.incarnation);
                self.map_large_text(&e.record, false);
                if let Some(t) = &mut self.trace {
                    t.unload(e.header.ts_ns, e.record.incarnation);
                }
                self.state.unloaded(&e.record, e.header.ts_ns)
            }
            decode::Event::Anomaly(e) => {
                let detail = if e.key.detector == probe_common::Detector::TracepointProbe as u32 {
                    anomaly_sites::tracepoint_detail(
                        e.object,
                        self.state.taints_of(e.key.incarnation),
                    )
                } else {
                    String::new()
                };
                let (record, event) = self.state.anomaly(&e, &detail);
                if let Some(t) = &mut self.trace {
                    t.anomaly(&record);
                }
                event
            }
            decode::Event::LoadLayout(e) => {
                let (record, event) = self.state.load_layout(&e);
                if let Some(t) = &mut self.trace {
                    t.anomaly(&record);
                }
                event
            }
            decode::Event::Guard(e) => {
                let Some(desk) = &self.guard else {
                    return Ok(Event::DecodeError {
                        time: Event::now(),
                        error: "a guard decision in a session without the guard".into(),
                    });
                };
                let record = desk.record(&e);
                if let Some(t) = &mut self.trace {
                    t.guard(&record);
                }
                Event::Guard {
                    time: Event::now(),
                    decision: GuardInfo::new(&record),
                }
            }
            decode::Event::FirstUse(e) => {
                if let Some(t) = &mut self.trace {
                    t.first_use(e.header.ts_ns, e.key.incarnation, e.key.func_ip, e.caller);
                }
                self.state.first_use(&e)
            }
        })
    }

    /// A file checked again, or gone: the kernel's map follows.
    fn guard_update(&mut self, update: CatalogUpdate) -> Result<()> {
        let Some(desk) = &mut self.guard else {
            return Ok(());
        };
        let event = match update {
            CatalogUpdate::Checked { file, named } => {
                let event = named.then(|| guard_start::checked_event(&file));
                guard_start::apply(&mut self.probe, desk.accept(file))?;
                event
            }
            CatalogUpdate::Gone(path) => {
                if let Some(key) = desk.forget(&path) {
                    self.probe.forget_file(&key)?;
                }
                None
            }
            CatalogUpdate::TreeChecked {
                files,
                incompatible,
                unchecked,
                seconds,
            } => Some(Event::GuardTreeChecked {
                time: Event::now(),
                files,
                incompatible,
                unchecked,
                milliseconds: (seconds * 1000.0) as u64,
            }),
            CatalogUpdate::NotWatched { path, error } => Some(Event::GuardWarning {
                time: Event::now(),
                message: format!(
                    "{} is not watched ({error}): a change to it is not seen until it is checked again",
                    path.display()
                ),
            }),
        };
        match event {
            Some(e) => self.out.emit(&e),
            None => Ok(()),
        }
    }

    fn loaded(&mut self, r: &ModuleRecord, ts_ns: u64) -> Result<Event> {
        self.probe.module_loaded(r.incarnation)?;
        let counted = self.state.track(r, true);
        self.probe_late_imports(r, ts_ns)?;
        // Mapped before the load is reported: a script that waits for the
        // event then drives the module is counted.
        self.map_large_text(r, true);
        self.record_module(r, ModuleOrigin::Loaded, counted, ts_ns);
        Ok(self.state.load_event(r, ts_ns))
    }

    /// A module whose imports were unknown when the probes attached: its
    /// file on the module path names them, and the ones not yet probed are
    /// probed now. Its init has already run (the report says so).
    fn probe_late_imports(&mut self, r: &ModuleRecord, ts_ns: u64) -> Result<()> {
        let name = state::module_name(r);
        if self.state.knows_imports(&name) {
            return Ok(());
        }
        let Some(add) = self.late.module_loaded(&name, &mut self.probe)? else {
            return Ok(());
        };
        if let Some(t) = &mut self.trace {
            t.functions(ts_ns, &add.attached);
        }
        self.state.learn_imports(name, add.imports, &add.attached);
        Ok(())
    }

    /// Maps (or unmaps) module text the kernel-side loop could not reach:
    /// calls there are counted from now on, not from the load.
    fn map_large_text(&mut self, r: &ModuleRecord, loaded: bool) {
        for t in state::large_text(r, self.probe.call_config().page_shift) {
            if loaded {
                self.probe.map_text_pages(t.base, t.size, t.incarnation);
            } else {
                self.probe.unmap_text_pages(t.base, t.size, t.incarnation);
            }
        }
    }

    /// Hands a module seen (present or loaded) to the trace, with its static
    /// verdict when its file is known.
    fn record_module(&mut self, r: &ModuleRecord, origin: ModuleOrigin, counted: bool, now: u64) {
        let Some(t) = &mut self.trace else {
            return;
        };
        let name = state::module_name(r);
        // Checked first, so the module and its verdict reach the view
        // together: it never shows a checked module as unchecked.
        let ts = if r.load_ns == 0 { now } else { r.load_ns };
        let verdict = self
            .verdicts
            .as_mut()
            .and_then(|v| v.verdict(&name, ts, r.incarnation));
        t.module(r, origin, counted, self.state.imports_of(&name));
        if let Some(v) = verdict {
            t.verdict(v);
        }
    }

    /// Counts, probe counters and changed anomaly totals, to the trace.
    /// Reading the counts retires unloaded incarnations' entries, so it
    /// happens without a trace too while there are some.
    fn snapshot(&mut self) -> Result<()> {
        if let Some(v) = &mut self.verdicts
            && v.release_when_idle(std::time::Instant::now())
        {
            return_freed_memory();
        }
        let counts = self.probe.call_counts()?;
        if self.trace.is_none() {
            return Ok(());
        }
        self.anomaly_totals()?;
        // One read of the programs' figures: the skipped runs and the costs.
        let programs = self.probe.program_stats();
        let stats = self.stats_of(&programs)?;
        if let Some(t) = &mut self.trace {
            if t.metered() {
                t.program_costs(programs);
            }
            t.snapshot(clock::boot_ns(), &counts, stats)?;
        }
        Ok(())
    }

    /// Modules that hide: each finding to the trace, and printed when new.
    fn scan_hidden(&mut self) -> Result<()> {
        let records = self
            .hidden
            .scan(&self.probe, &self.state, clock::boot_ns())?;
        for record in &records {
            if let Some(t) = &mut self.trace {
                t.anomaly(record);
            }
            if let Some(event) = self.state.hidden_finding(record) {
                self.out.emit(&event)?;
            }
        }
        if !records.is_empty()
            && let Some(t) = &mut self.trace
        {
            t.end_batch()?;
        }
        Ok(())
    }

    /// Sites whose anomaly count changed go to the trace.
    pub fn anomaly_totals(&mut self) -> Result<()> {
        let counts = self.probe.anomaly_counts()?;
        for record in self.state.anomaly_updates(&counts) {
            if let Some(t) = &mut self.trace {
                t.anomaly(&record);
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<StatsSnapshot> {
        self.stats_of(&self.probe.program_stats())
    }

    /// `stats`, with the programs' figures already read.
    fn stats_of(&self, programs: &[(String, ProgramStats)]) -> Result<StatsSnapshot> {
        let c = self.probe.counters()?;
        Ok(StatsSnapshot {
            ts_ns: clock::boot_ns(),
            counters: Stats {
                lost_events: c.lost_events,
                read_errors: c.read_errors,
                registry_full: c.registry_full,
                page_map_full: c.page_map_full,
                call_map_full: c.call_map_full,
                decode_errors: self.state.decode_errors(),
                skipped_runs: probe::skipped_runs(programs),
            },
        })
    }

    /// Emits a `lost` event when the kernel dropped records since the last report.
    fn report_lost(&mut self, reported: u64) -> Result<u64> {
        let lost = self.probe.counters()?.lost_events;
        if lost > reported {
            self.out.emit(&Event::Lost {
                time: Event::now(),
                count: lost - reported,
            })?;
        }
        Ok(lost)
    }
}

/// Hands the heap's free pages back to the kernel after a large release
/// (glibc keeps them otherwise; musl's allocator returns them itself).
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes the allocator's locks like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}
