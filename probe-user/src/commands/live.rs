//! A live session: the module registry probes, optionally the call
//! counters, events streamed as they happen, and a closing summary.
//! `modscope events` and `modscope record` are two configurations of it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{self, Write as _},
    path::PathBuf,
    time::Duration,
};

use super::{
    anomalies::{self, AnomalySites},
    probe_plan::LatePlanner,
    static_verdicts::StaticVerdicts,
    summary,
    trace_sink::{Tap, TraceSink},
};
use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use modscope::{
    analysis::{feature_symbols, target},
    btf_layout,
    call_report::{self, Incarnation},
    clock,
    event::{AnomalyInfo, CallProbeStatus, Event, ModuleInfo, NotAttached, Stats, hex},
    kallsyms::FunctionNames,
    kernel_features::{self, KernelPaths},
    probe::ModuleProbe,
    proc_modules,
    trace::records::{AnomalyRecord, EndReason, ModuleOrigin, SessionStart, StatsSnapshot},
};
use probe_common::{
    CallProbeConfig, Detector, LoadCheckConfig, ModuleName, ModuleRecord, RecordFlags,
    anomaly::COUNT_CALLS,
    calls::{MAX_TEXT_PAGES, PAGE_SHIFT},
    decode,
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

/// Lowest module text address on x86-64 (MODULES_VADDR): calls returning
/// below it come from the core kernel.
const X86_64_MODULES_VADDR: u64 = 0xffff_ffff_a000_0000;

const UNTRACEABLE: &str = "not traceable by ftrace (notrace, or on the probe's own path); \
                           a breakpoint probe there could recurse into itself";

/// What to count calls to, decided before the probes load.
pub struct CallPlan {
    /// Functions to probe, with their addresses.
    pub functions: BTreeMap<String, u64>,
    /// Functions left out by the cap.
    pub capped: Vec<String>,
    /// Functions ftrace cannot trace, never probed (see `kallsyms::parse_traceable`).
    pub untraceable: Vec<String>,
    /// Imported functions per module name, from the module files found.
    pub imports: HashMap<String, BTreeSet<String>>,
    /// Only report these modules (empty: all).
    pub modules: Vec<String>,
    /// Probes for the imports of modules that load during the session.
    pub late: Option<LatePlanner>,
    /// Module files by name, for static verdicts.
    pub files: HashMap<String, PathBuf>,
    /// The anomaly detectors' checks (`anomalies.rs`).
    pub checks: Vec<anomalies::Check>,
    /// Allocators the object-bounds check follows (function, address, size
    /// argument).
    pub allocators: Vec<(String, u64, u32)>,
}

/// Probes added during the session, for modules loaded meanwhile.
#[derive(Default)]
struct LateProbes {
    planner: Option<LatePlanner>,
    attached: Vec<(String, u64)>,
    not_attached: Vec<NotAttached>,
    capped: Vec<String>,
}

pub struct LiveOptions {
    pub json: bool,
    pub duration: Option<f64>,
    pub calls: Option<CallPlan>,
    pub trace: Option<TraceOptions>,
    /// A live view: gets every trace record, owns the terminal.
    pub view: Option<ViewLink>,
}

/// The live TUI's link to the session.
pub struct ViewLink {
    pub tap: Tap,
    /// Fires when the user quits.
    pub quit: tokio::sync::oneshot::Receiver<()>,
}

/// Where and how to write the trace file.
pub struct TraceOptions {
    pub path: PathBuf,
    pub append: bool,
    pub snapshot_interval: Duration,
    /// Only these modules are recorded (empty: all).
    pub modules: Vec<String>,
}

struct Output {
    json: bool,
    /// Recording to a file without --json: no per-event lines, a summary at the end.
    quiet: bool,
    stats: Stats,
}

impl Output {
    fn emit(&mut self, event: &Event) -> anyhow::Result<()> {
        if self.quiet {
            return Ok(());
        }
        let line = if self.json {
            event.to_json()
        } else {
            event.to_text()
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .context("writing to standard output")
    }
}

/// What the session learns as it goes.
struct Session {
    out: Output,
    clock: clock::WallClock,
    incarnations: Vec<Incarnation>,
    /// Boot-clock time after which every load is seen with its probes live.
    ready_ns: u64,
    names: FunctionNames,
    /// Text ranges per incarnation: (core base, core size, init base, init size).
    ranges: HashMap<u64, (u64, u64, u64, u64)>,
    imports: HashMap<String, BTreeSet<String>>,
    trace: Option<TraceSink>,
    late: LateProbes,
    /// Text past what the kernel-side registration covers, to map (on
    /// load) or unmap (on free) from here.
    large_text: Vec<LargeText>,
    verdicts: Option<StaticVerdicts>,
    /// Anomalous call sites seen (the detectors), with counts written.
    anomalies: AnomalySites,
    /// Taint mask per incarnation, as its registry record gave it.
    taints: HashMap<u64, u64>,
    /// Module images whose struct module did not fit this kernel.
    load_anomalies: Vec<AnomalyRecord>,
}

/// The signals that end a session, installed before anything else.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// Text of one range past the first `MAX_TEXT_PAGES` pages.
struct LargeText {
    base: u64,
    size: u64,
    incarnation: u64,
    loaded: bool,
}

/// The part of `[base, base+size)` the probes' bounded loop leaves out.
fn beyond_kernel_registration(base: u64, size: u64) -> Option<(u64, u64)> {
    let covered = MAX_TEXT_PAGES << PAGE_SHIFT;
    let first_page = base & !((1 << PAGE_SHIFT) - 1);
    let end = base.checked_add(size)?;
    let tail = first_page + covered;
    (base != 0 && end > tail).then(|| (tail, end - tail))
}

pub async fn run(mut opts: LiveOptions) -> anyhow::Result<()> {
    // First: a SIGTERM or SIGINT while the probes load and the loaded
    // modules are checked still ends the session cleanly.
    let mut signals = Signals {
        interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
    };
    let paths = KernelPaths::default();
    kernel_features::check_live_probe(&paths)?;
    let (layout, load_check) = btf_layout::layouts_from_file(&paths.vmlinux_btf)
        .context("finding struct module's layout in the running kernel's BTF")?;
    // The detectors are on when the call plan carries checks (not --no-detectors).
    let detectors = opts.calls.as_ref().is_some_and(|p| !p.checks.is_empty());
    let load_check = if detectors {
        load_check
    } else {
        LoadCheckConfig::UNSET
    };
    let call_config = match opts.calls {
        Some(_) => CallProbeConfig {
            module_area_start: X86_64_MODULES_VADDR,
        },
        None => CallProbeConfig::UNSET,
    };
    // Opened first: a path that cannot be written fails before any probe loads.
    let (tap, mut quit) = match opts.view.take() {
        Some(v) => (Some(v.tap), Some(v.quit)),
        None => (None, None),
    };
    let viewing = tap.is_some();
    let mut trace = if opts.trace.is_some() || viewing {
        let file = opts.trace.as_ref().map(|t| (t.path.as_path(), t.append));
        let filter = opts
            .trace
            .as_ref()
            .map(|t| t.modules.clone())
            .unwrap_or_default();
        Some(TraceSink::new(file, tap, filter)?)
    } else {
        None
    };
    let verdicts = match (&trace, &opts.calls) {
        (Some(_), Some(plan)) => {
            let (v, warning) = StaticVerdicts::new(plan.files.clone());
            if let (Some(w), false) = (warning, viewing) {
                eprintln!("modscope: no static verdicts in this session: {w}");
            }
            Some(v)
        }
        _ => None,
    };
    let mut probe = ModuleProbe::load(&layout, &call_config, &load_check)?;
    let ring = probe.take_events()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and
    // unchanged until the AsyncFd (which owns the ring buffer) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("polling the EVENTS ring buffer")?;
    // The registry first, so modules loaded while the kprobes attach are known.
    probe.attach()?;
    let mut status = None;
    let mut detector_functions: Vec<(String, u64)> = Vec::new();
    if let Some(plan) = &opts.calls {
        // Functions the checking program counts get no count_call kprobe.
        let counted_by_checks: BTreeSet<&str> = plan
            .checks
            .iter()
            .filter(|(_, _, c)| c.flags & COUNT_CALLS != 0)
            .map(|(f, _, _)| f.as_str())
            .collect();
        let functions: Vec<String> = plan
            .functions
            .keys()
            .filter(|f| !counted_by_checks.contains(f.as_str()))
            .cloned()
            .collect();
        // Allocators first: their return probes must be older than every
        // kprobe that reads the return address (`attach_allocators`).
        let (_, alloc_failed) = probe.attach_allocators(&plan.allocators)?;
        let (mut attached, mut failed) = probe.attach_calls(&functions)?;
        failed.extend(alloc_failed);
        let (checked, check_failed) = probe.attach_field_checks(&plan.checks)?;
        // Counted functions whose check would not attach get count_call.
        let uncounted: Vec<String> = check_failed
            .iter()
            .filter(|(f, _)| counted_by_checks.contains(f.as_str()))
            .map(|(f, _)| f.clone())
            .collect();
        let (recounted, still_failed) = probe.attach_more(&uncounted)?;
        attached.extend(recounted);
        failed.extend(still_failed);
        failed.extend(
            check_failed
                .into_iter()
                .filter(|(f, _)| !counted_by_checks.contains(f.as_str())),
        );
        attached.extend(
            checked
                .iter()
                .filter(|f| counted_by_checks.contains(f.as_str()))
                .cloned(),
        );
        if load_check.struct_module_size != 0
            && let Some(error) = probe.attach_load_check()?
        {
            failed.push(("load_module".to_owned(), error));
        }
        detector_functions = plan
            .checks
            .iter()
            .filter(|(f, _, _)| checked.contains(f))
            .map(|(f, a, _)| (f.clone(), *a))
            .collect();
        status = Some(CallProbeStatus {
            attached: attached.len(),
            not_attached: plan
                .untraceable
                .iter()
                .map(|function| NotAttached {
                    function: function.clone(),
                    error: UNTRACEABLE.to_owned(),
                })
                .chain(
                    failed
                        .into_iter()
                        .map(|(function, error)| NotAttached { function, error }),
                )
                .collect(),
            capped: plan.capped.clone(),
        });
    }
    if let Some(t) = &mut trace {
        t.start(session_start(&paths, opts.calls.as_ref(), status.as_ref()))?;
    }
    let quiet = viewing || (trace.is_some() && !opts.json);
    let started = std::time::Instant::now();
    if let (Some(path), false) = (trace.as_ref().and_then(TraceSink::path), viewing) {
        eprintln!("modscope: recording to {}", path.display());
    }
    let mut session = Session {
        out: Output {
            json: opts.json,
            quiet,
            stats: Stats::default(),
        },
        clock: clock::WallClock::sample(),
        incarnations: Vec::new(),
        ready_ns: clock::boot_ns(),
        names: FunctionNames::new(
            opts.calls
                .iter()
                .flat_map(|p| p.functions.iter().map(|(n, a)| (n.clone(), *a)))
                .chain(detector_functions.iter().cloned()),
        ),
        anomalies: AnomalySites::default(),
        taints: HashMap::new(),
        load_anomalies: Vec::new(),
        ranges: HashMap::new(),
        imports: opts
            .calls
            .as_ref()
            .map(|p| p.imports.clone())
            .unwrap_or_default(),
        trace: trace.take(),
        large_text: Vec::new(),
        verdicts,
        late: LateProbes {
            planner: opts.calls.as_mut().and_then(|p| p.late.take()),
            ..LateProbes::default()
        },
    };
    for record in probe.seed(&preexisting_modules(&paths)?)? {
        probe.map_text_pages(
            record.core_text_base,
            record.core_text_size,
            record.incarnation,
        )?;
        session.track(&record, false);
        session.record_module(&record, ModuleOrigin::Present, false, clock::boot_ns());
        session.out.emit(&Event::Present {
            time: Event::now(),
            module: ModuleInfo::from(&record),
        })?;
    }
    session.out.emit(&Event::Ready {
        time: Event::now(),
        kernel: kernel_features::release(&paths),
        probes: probe.attached().to_vec(),
    })?;
    if let Some(t) = &mut session.trace {
        t.end_batch()?;
    }
    let snapshot_interval = opts
        .trace
        .as_ref()
        .map_or(Duration::from_secs(1), |t| t.snapshot_interval);
    let reason = session
        .stream(
            &mut probe,
            events,
            opts.duration,
            snapshot_interval,
            quit.as_mut(),
            &mut signals,
        )
        .await?;
    session.anomaly_totals(&probe)?;
    if let Some(t) = &mut session.trace {
        let stats = stats_snapshot(&probe, session.out.stats.decode_errors)?;
        t.end(clock::boot_ns(), &probe.call_counts()?, stats, reason)?;
    }
    if opts.calls.as_ref().is_some_and(|p| !p.checks.is_empty()) {
        let sites = session
            .anomalies
            .all()
            .chain(&session.load_anomalies)
            .map(AnomalyInfo::new)
            .collect();
        session.out.emit(&Event::Anomalies {
            time: Event::now(),
            sites,
        })?;
    }
    if let (Some(plan), Some(mut status)) = (&opts.calls, status) {
        let late = std::mem::take(&mut session.late);
        status.attached += late.attached.len();
        status.not_attached.extend(late.not_attached);
        status.capped.extend(late.capped);
        let probed: BTreeSet<String> = plan
            .functions
            .keys()
            .cloned()
            .chain(late.attached.into_iter().map(|(n, _)| n))
            .collect();
        let mut modules = call_report::build(
            &session.incarnations,
            &probe.call_counts()?,
            &probe.first_uses()?,
            &session.names,
            &probed,
        );
        // Modules that made no probed call and whose imports are unknown
        // have nothing to report.
        modules.retain(|m| !m.calls.is_empty() || m.unused_imports.is_some());
        if !plan.modules.is_empty() {
            modules.retain(|m| plan.modules.contains(&m.name));
        }
        if let (Some(t), false) = (&session.trace, viewing) {
            let counters = probe.counters()?;
            let text = summary::render(&summary::SummaryInput {
                path: &t
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                records: t.records(),
                bytes: t.bytes(),
                elapsed: started.elapsed(),
                reason,
                probes: &status,
                lost_events: counters.lost_events,
                decode_errors: session.out.stats.decode_errors,
                modules: &modules,
            });
            // Standard output carries the JSON stream when --json is on.
            if session.out.quiet {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
        }
        session.out.emit(&Event::Calls {
            time: Event::now(),
            probes: status,
            modules,
        })?;
    }
    Ok(())
}

fn module_name(r: &ModuleRecord) -> String {
    String::from_utf8_lossy(r.name.as_bytes()).into_owned()
}

fn stats_snapshot(probe: &ModuleProbe, decode_errors: u64) -> anyhow::Result<StatsSnapshot> {
    let c = probe.counters()?;
    Ok(StatsSnapshot {
        ts_ns: clock::boot_ns(),
        counters: Stats {
            lost_events: c.lost_events,
            read_errors: c.read_errors,
            registry_full: c.registry_full,
            page_map_full: c.page_map_full,
            call_map_full: c.call_map_full,
            decode_errors,
        },
    })
}

/// The trace's session header: where, when, what kernel, what is probed.
fn session_start(
    paths: &KernelPaths,
    plan: Option<&CallPlan>,
    status: Option<&CallProbeStatus>,
) -> SessionStart {
    let release = kernel_features::release(paths);
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let (config_source, config) = match target::running_config(&release) {
        Some((source, config)) => (
            source,
            feature_symbols::layout_relevant_options()
                .into_iter()
                .map(|o| (o.to_owned(), config.get(o).unwrap_or("n").to_owned()))
                .collect(),
        ),
        None => (String::new(), Vec::new()),
    };
    SessionStart {
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: release,
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        hostname: read("/proc/sys/kernel/hostname"),
        epoch_at_boot_ns: clock::WallClock::sample().epoch_at_boot_ns(),
        started_ns: clock::boot_ns(),
        command: std::env::args().collect(),
        config_source,
        config,
        attach_type: if plan.is_some() { "kprobe" } else { "none" }.to_owned(),
        functions: plan
            .map(|p| p.functions.iter().map(|(n, a)| (n.clone(), *a)).collect())
            .unwrap_or_default(),
        capped: status.map(|s| s.capped.clone()).unwrap_or_default(),
        not_attached: status
            .map(|s| {
                s.not_attached
                    .iter()
                    .map(|n| (n.function.clone(), n.error.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        module_filter: plan.map(|p| p.modules.clone()).unwrap_or_default(),
    }
}

impl Session {
    /// Hands a module seen (present or loaded) to the trace, with its static
    /// verdict when its file is known.
    fn record_module(
        &mut self,
        r: &ModuleRecord,
        origin: ModuleOrigin,
        counted: bool,
        now_ns: u64,
    ) {
        let Some(t) = &mut self.trace else {
            return;
        };
        let name = module_name(r);
        t.module(r, origin, counted, self.imports.get(&name));
        if let Some(v) = self.verdicts.as_mut() {
            let ts = if r.load_ns == 0 { now_ns } else { r.load_ns };
            if let Some(v) = v.verdict(&name, ts, r.incarnation) {
                t.verdict(v);
            }
        }
    }

    /// `seen_loading`: its load event arrived (it was not there before the
    /// session); init counts only when its imports were probed before it ran.
    fn track(&mut self, r: &ModuleRecord, seen_loading: bool) {
        let name = String::from_utf8_lossy(r.name.as_bytes()).into_owned();
        self.taints.insert(r.incarnation, r.taints);
        self.ranges.insert(
            r.incarnation,
            (
                r.core_text_base,
                r.core_text_size,
                r.init_text_base,
                r.init_text_size,
            ),
        );
        self.incarnations.push(Incarnation {
            init_counted: seen_loading
                && r.load_ns >= self.ready_ns
                && self.imports.contains_key(&name),
            imports: self.imports.get(&name).cloned(),
            name,
            incarnation: r.incarnation,
            loaded_ktime_ns: r.load_ns,
            unloaded_ktime_ns: None,
        });
    }

    async fn stream(
        &mut self,
        probe: &mut ModuleProbe,
        mut events: AsyncFd<RingBuf<MapData>>,
        duration: Option<f64>,
        snapshot_interval: Duration,
        mut quit: Option<&mut tokio::sync::oneshot::Receiver<()>>,
        signals: &mut Signals,
    ) -> anyhow::Result<EndReason> {
        let deadline =
            tokio::time::sleep(duration.map_or(Duration::MAX / 4, Duration::from_secs_f64));
        tokio::pin!(deadline);
        let mut snapshots = tokio::time::interval(snapshot_interval);
        snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_reported = 0;
        let reason = loop {
            tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard.context("waiting on the EVENTS ring buffer")?;
                    self.drain(guard.get_inner_mut(), probe)?;
                    guard.clear_ready();
                }
                _ = snapshots.tick(), if self.trace.is_some() => {
                    self.anomaly_totals(probe)?;
                    let stats = stats_snapshot(probe, self.out.stats.decode_errors)?;
                    let counts = probe.call_counts()?;
                    if let Some(t) = &mut self.trace {
                        t.snapshot(clock::boot_ns(), &counts, stats)?;
                    }
                }
                _ = async { quit.as_mut().expect("guarded").await }, if quit.is_some() => {
                    break EndReason::Quit;
                }
                _ = signals.interrupt.recv() => break EndReason::Interrupt,
                _ = signals.terminate.recv() => break EndReason::Terminate,
                () = &mut deadline => break EndReason::Duration,
            }
            lost_reported = self.report_lost(probe, lost_reported)?;
        };
        // Whatever arrived between the last wake-up and the signal.
        self.drain(events.get_mut(), probe)?;
        self.report_lost(probe, lost_reported)?;
        let stats = stats_snapshot(probe, self.out.stats.decode_errors)?.counters;
        let modules = probe.registry()?.iter().map(ModuleInfo::from).collect();
        self.out.emit(&Event::Registry {
            time: Event::now(),
            modules,
            stats,
        })?;
        Ok(reason)
    }

    /// A module whose imports were unknown when the probes attached: its
    /// file on the module path names them, and the ones not yet probed are
    /// probed now. Its init has already run (the report says so).
    fn probe_late_imports(
        &mut self,
        r: &ModuleRecord,
        ts_ns: u64,
        probe: &mut ModuleProbe,
    ) -> anyhow::Result<()> {
        let name = module_name(r);
        if self.imports.contains_key(&name) {
            return Ok(());
        }
        let Some(add) = self
            .late
            .planner
            .as_mut()
            .and_then(|p| p.module_loaded(&name))
        else {
            return Ok(());
        };
        let wanted: Vec<String> = add.functions.iter().map(|(n, _)| n.clone()).collect();
        let (attached, failed) = probe.attach_more(&wanted)?;
        let attached: Vec<(String, u64)> = add
            .functions
            .into_iter()
            .filter(|(n, _)| attached.contains(n))
            .collect();
        self.names.extend(attached.iter().cloned());
        if let Some(t) = &mut self.trace {
            t.functions(ts_ns, &attached);
        }
        let late = &mut self.late;
        late.attached.extend(attached);
        late.not_attached
            .extend(add.refused.into_iter().map(|function| NotAttached {
                function,
                error: UNTRACEABLE.to_owned(),
            }));
        late.not_attached.extend(
            failed
                .into_iter()
                .map(|(function, error)| NotAttached { function, error }),
        );
        late.capped.extend(add.capped);
        // The incarnation just tracked learns its imports.
        if let Some(m) = self.incarnations.last_mut() {
            m.imports = Some(add.imports.clone());
        }
        self.imports.insert(name, add.imports);
        Ok(())
    }

    /// Maps (or unmaps) module text the kernel-side loop could not reach:
    /// calls there are counted from now on, not from the load.
    fn finish_large_text(&mut self, probe: &mut ModuleProbe) -> anyhow::Result<()> {
        for t in self.large_text.drain(..) {
            if t.loaded {
                probe.map_text_pages(t.base, t.size, t.incarnation)?;
            } else {
                probe.unmap_text_pages(t.base, t.size, t.incarnation)?;
            }
        }
        Ok(())
    }

    fn note_large_text(&mut self, r: &ModuleRecord, loaded: bool) {
        for (base, size) in [
            (r.core_text_base, r.core_text_size),
            (r.init_text_base, r.init_text_size),
        ] {
            if let Some((base, size)) = beyond_kernel_registration(base, size) {
                self.large_text.push(LargeText {
                    base,
                    size,
                    incarnation: r.incarnation,
                    loaded,
                });
            }
        }
    }

    fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        probe: &mut ModuleProbe,
    ) -> anyhow::Result<()> {
        while let Some(item) = ring.next() {
            let decoded = decode::Event::try_from(&*item);
            drop(item);
            let event = match decoded {
                Ok(decode::Event::ModuleLoad(e)) => {
                    self.track(&e.record, true);
                    self.probe_late_imports(&e.record, e.header.ts_ns, probe)?;
                    // Mapped before the load is reported: a script that
                    // waits for the event then drives the module is counted.
                    self.note_large_text(&e.record, true);
                    self.finish_large_text(probe)?;
                    let counted = self.incarnations.last().is_some_and(|m| m.init_counted);
                    self.record_module(&e.record, ModuleOrigin::Loaded, counted, e.header.ts_ns);
                    Event::Load {
                        time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
                        ktime_ns: e.header.ts_ns,
                        module: ModuleInfo::from(&e.record),
                    }
                }
                Ok(decode::Event::ModuleFree(e)) => {
                    self.note_large_text(&e.record, false);
                    self.finish_large_text(probe)?;
                    if let Some(t) = &mut self.trace {
                        t.unload(e.header.ts_ns, e.record.incarnation);
                    }
                    if let Some(m) = self
                        .incarnations
                        .iter_mut()
                        .rev()
                        .find(|m| m.incarnation == e.record.incarnation)
                    {
                        m.unloaded_ktime_ns = Some(e.header.ts_ns);
                    }
                    Event::Unload {
                        time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
                        ktime_ns: e.header.ts_ns,
                        module: ModuleInfo::from(&e.record),
                    }
                }
                Ok(decode::Event::Anomaly(e)) => {
                    let symbol = self.symbol_of(e.key.func_ip);
                    let site = self.site_of(e.key.incarnation, e.key.caller);
                    let detail = if e.key.detector == Detector::TracepointProbe as u32 {
                        anomalies::tracepoint_detail(
                            e.object,
                            self.taints.get(&e.key.incarnation).copied(),
                        )
                    } else {
                        String::new()
                    };
                    let module = self.module_of(e.key.incarnation);
                    let record =
                        self.anomalies
                            .first(&e, module, symbol, site.unwrap_or_default(), &detail);
                    if let Some(t) = &mut self.trace {
                        t.anomaly(&record);
                    }
                    Event::Anomaly {
                        time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
                        anomaly: AnomalyInfo::new(&record),
                    }
                }
                Ok(decode::Event::LoadLayout(e)) => {
                    let record = anomalies::load_layout(&e);
                    if let Some(t) = &mut self.trace {
                        t.anomaly(&record);
                    }
                    self.load_anomalies.push(record.clone());
                    Event::Anomaly {
                        time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
                        anomaly: AnomalyInfo::new(&record),
                    }
                }
                Ok(decode::Event::FirstUse(e)) => {
                    if let Some(t) = &mut self.trace {
                        t.first_use(e.header.ts_ns, e.key.incarnation, e.key.func_ip, e.caller);
                    }
                    self.first_use(&e)
                }
                Err(err) => {
                    self.out.stats.decode_errors += 1;
                    Event::DecodeError {
                        time: Event::now(),
                        error: err.to_string(),
                    }
                }
            };
            self.out.emit(&event)?;
        }
        if let Some(t) = &mut self.trace {
            t.end_batch()?;
        }
        Ok(())
    }

    fn module_of(&self, incarnation: u64) -> String {
        self.incarnations
            .iter()
            .rev()
            .find(|m| m.incarnation == incarnation)
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }

    /// Where `caller` is in the incarnation's text: `core+0x…`, `init+0x…`.
    fn site_of(&self, incarnation: u64, caller: u64) -> Option<String> {
        self.ranges.get(&incarnation).and_then(|&(cb, cs, ib, is)| {
            modscope::trace::report::place_in(caller, (cb, cs), (ib, is))
        })
    }

    fn symbol_of(&self, func_ip: u64) -> String {
        self.names
            .name(func_ip)
            .map(str::to_owned)
            .unwrap_or_else(|| hex(func_ip))
    }

    /// Sites whose anomaly count changed go to the trace.
    fn anomaly_totals(&mut self, probe: &ModuleProbe) -> anyhow::Result<()> {
        let counts = probe.anomaly_counts()?;
        for record in self.anomalies.updates(&counts) {
            if let Some(t) = &mut self.trace {
                t.anomaly(&record);
            }
        }
        Ok(())
    }

    fn first_use(&self, e: &probe_common::FirstUseEvent) -> Event {
        Event::FirstUse {
            time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
            ktime_ns: e.header.ts_ns,
            module: self.module_of(e.key.incarnation),
            incarnation: e.key.incarnation,
            symbol: self.symbol_of(e.key.func_ip),
            caller: hex(e.caller),
            caller_offset: self.site_of(e.key.incarnation, e.caller),
        }
    }

    /// Emits a `lost` event when the kernel dropped records since the last report.
    fn report_lost(&mut self, probe: &ModuleProbe, reported: u64) -> anyhow::Result<u64> {
        let lost = probe.counters()?.lost_events;
        if lost > reported {
            self.out.emit(&Event::Lost {
                time: Event::now(),
                count: lost - reported,
            })?;
        }
        Ok(lost)
    }
}

/// Modules already loaded, as registry records. /proc/modules gives the
/// core base and the whole core size; init text is long gone. Their
/// incarnation ids are small numbers no load time can equal.
fn preexisting_modules(paths: &KernelPaths) -> anyhow::Result<Vec<ModuleRecord>> {
    let loaded = proc_modules::read(&paths.proc_modules)?;
    Ok(loaded
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut r = ModuleRecord::zeroed();
            r.name = ModuleName::from_bytes(m.name.as_bytes());
            r.taints = m.taints;
            r.core_text_base = m.address;
            r.core_text_size = m.size;
            r.incarnation = i as u64 + 1;
            r.flags = RecordFlags::PREEXISTING;
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_past_the_kernel_loop_is_left_to_userspace() {
        let four_mib = MAX_TEXT_PAGES << PAGE_SHIFT;
        let base = 0xffff_ffff_c000_0800;
        assert_eq!(beyond_kernel_registration(base, 0x1000), None);
        // Pages from base's page: exactly 4 MiB of pages are covered.
        assert_eq!(beyond_kernel_registration(base, four_mib - 0x800), None);
        assert_eq!(
            beyond_kernel_registration(base, four_mib),
            Some((0xffff_ffff_c000_0000 + four_mib, 0x800))
        );
        assert_eq!(beyond_kernel_registration(0, four_mib * 2), None);
        assert_eq!(beyond_kernel_registration(u64::MAX - 10, four_mib), None);
    }
}
