//! Setting a session up, in the order that matters: signal handlers
//! first (a SIGTERM during set-up still ends it cleanly), the trace file
//! opened before any probe loads (a path that cannot be written fails
//! first), the ring buffer polled before the registry attaches, the
//! registry before the kprobes (modules loaded meanwhile are known), the
//! kprobes in the attach plan's order, then modules already loaded.

use super::error::{Result, SessionError};
use std::{collections::HashMap, time::Duration};

use aya::maps::{MapData, RingBuf};
use modscope_analysis::feature_symbols;
use probe_common::{
    CallProbeConfig, CountTableConfig, GuardConfig, LoadCheckConfig, ModuleName, ModuleRecord,
    RecordFlags,
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    sync::oneshot,
};

use super::{
    CallPlan, LiveOptions, TraceOptions,
    attach_plan::{AttachPlan, AttachResults, Attached, Stage},
    event::{CallProbeStatus, Event},
    guard_start,
    hidden_scan::HiddenScan,
    late_probes::LateProbes,
    live::{Session, Signals},
    output::Output,
    rotation::Rotation,
    state::SessionState,
    static_verdicts::StaticVerdicts,
    trace_sink::{Tap, TraceSink},
};
use crate::{
    kernel::{
        arch::ArchFacts,
        clock,
        features::{self, KernelPaths},
        kallsyms::FunctionNames,
        lean_btf, module_layout,
        module_views::{self, ListLink},
        proc_modules,
    },
    metrics::{self, SharedMetrics},
    probe::{
        self, AttachIds, CallAttach, Diagnostics, ModuleProbe, ProbeGlobals, ProbeLogger,
        VIEW_STRUCT,
    },
    trace::records::SessionStart,
};

/// A session set up and ready to stream.
pub struct Started {
    pub session: Session,
    pub events: AsyncFd<RingBuf<MapData>>,
    pub logs: Option<AsyncFd<ProbeLogger>>,
    pub signals: Signals,
    pub quit: Option<oneshot::Receiver<()>>,
    pub duration: Option<f64>,
    pub snapshot_interval: Duration,
    pub plan: Option<CallPlan>,
    pub attached: Option<Attached>,
    pub clock: std::time::Instant,
}

pub async fn start(mut opts: LiveOptions) -> Result<Started> {
    let signals = Signals {
        interrupt: signal(SignalKind::interrupt())
            .map_err(SessionError::io("installing the SIGINT handler"))?,
        terminate: signal(SignalKind::terminate())
            .map_err(SessionError::io("installing the SIGTERM handler"))?,
    };
    let paths = opts.paths.clone();
    features::check_live_probe(&paths)?;
    let (tap, quit) = match opts.view.take() {
        Some(v) => (Some(v.tap), Some(v.quit)),
        None => (None, None),
    };
    let viewing = tap.is_some();
    let metrics = serve_metrics(opts.metrics, !viewing).await?;
    let mut trace = open_sink(opts.trace.as_ref(), tap, metrics.clone())?;
    let facts = opts
        .calls
        .as_ref()
        .map(|plan| ArchFacts::read(&plan.image))
        .transpose()?;
    let guard_config = match &opts.guard {
        Some(g) => guard_start::config(&paths, g.policy)?,
        None => GuardConfig::UNSET,
    };
    let (mut probe, load_check_on, list_link, struct_module_size) = load_probe(
        &paths,
        facts.as_ref(),
        opts.calls.as_ref(),
        &guard_config,
        &opts.diagnostics,
    )?;
    // After the probe's own BTF reading is done and dropped: the checks'
    // target holds a parsed BTF of its own, and two at once were the
    // session's peak.
    let verdicts = static_verdicts_for(
        &paths,
        trace.is_some(),
        opts.calls.as_ref(),
        viewing,
        struct_module_size,
    );
    let ring = probe.take_events()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and
    // unchanged until the AsyncFd (which owns the ring buffer) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .map_err(SessionError::io("polling the EVENTS ring buffer"))?;
    probe.attach_registry()?;
    let attached = match &opts.calls {
        Some(plan) => Some(attach(&mut probe, plan, &paths, load_check_on)?),
        None => None,
    };
    // Every load from now on is seen with its probes live: sampled here,
    // before the trace header is written, since a load may follow it at once.
    let ready_ns = clock::boot_ns();
    let (guard, guard_events) = match &opts.guard {
        Some(g) => {
            let (desk, events) = guard_start::attach(&mut probe, &paths, g)?;
            (Some(desk), events)
        }
        None => (None, Vec::new()),
    };
    // Every program is loaded: the logger may leave the probe now.
    let logs = match probe.take_logger() {
        Some(logger) => Some(
            // SAFETY: the logger owns the AYA_LOGS ring buffer and its fd,
            // which stays open and unchanged until the AsyncFd (which owns
            // the logger) is dropped.
            unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .map_err(SessionError::io("polling the AYA_LOGS ring buffer"))?,
        ),
        None => None,
    };
    if let Some(t) = &mut trace {
        let status = attached.as_ref().map(|a| &a.status);
        let attach_type = probe.call_attach_type().name();
        t.start(session_start(
            &paths,
            opts.calls.as_ref(),
            status,
            attach_type,
        ))?;
    }
    if let (Some(path), false) = (trace.as_ref().and_then(TraceSink::path), viewing) {
        eprintln!("modscope: recording to {}", path.display());
    }
    let started_at = std::time::Instant::now();
    let out = Output {
        json: opts.json,
        quiet: viewing || (trace.as_ref().and_then(TraceSink::path).is_some() && !opts.json),
    };
    let late = LateProbes {
        planner: opts.calls.as_mut().and_then(|p| p.late.take()),
        ..LateProbes::default()
    };
    let mut session = Session {
        probe,
        state: fresh_state(opts.calls.as_ref(), attached.as_ref(), ready_ns),
        out,
        trace,
        late,
        verdicts,
        run_statistics: None,
        guard,
        hidden: HiddenScan::new(&paths, list_link),
    };
    if session.trace.as_ref().is_some_and(TraceSink::metered) {
        session.run_statistics = probe::run_statistics()
            .inspect_err(|e| eprintln!("modscope: {e}; modscope_probe_run_seconds stays 0"))
            .ok();
    }
    seed_present(&mut session, &paths, facts.as_ref())?;
    for event in &guard_events {
        session.out.emit(event)?;
    }
    Ok(Started {
        session,
        events,
        logs,
        signals,
        quit,
        duration: opts.duration,
        snapshot_interval: opts
            .trace
            .as_ref()
            .map_or(Duration::from_secs(1), |t| t.snapshot_interval),
        plan: opts.calls,
        attached,
        clock: started_at,
    })
}

/// The metrics endpoint, bound before any probe loads (a port in use
/// fails first) and served on this runtime while the session lasts.
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    say_where: bool,
) -> Result<Option<SharedMetrics>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = metrics::server::bind(addr)
        .await
        .map_err(SessionError::io(format!(
            "binding the metrics address {addr}"
        )))?;
    let shared = SharedMetrics::default();
    tokio::spawn(metrics::server::serve(listener, shared.clone()));
    if say_where {
        eprintln!("modscope: metrics at http://{addr}/metrics");
    }
    Ok(Some(shared))
}

/// The trace sink, when a file, the view or the metrics take the records.
/// Opened before any probe loads: a path that cannot be written fails first.
fn open_sink(
    trace: Option<&TraceOptions>,
    tap: Option<Tap>,
    metrics: Option<SharedMetrics>,
) -> Result<Option<TraceSink>> {
    if trace.is_none() && tap.is_none() && metrics.is_none() {
        return Ok(None);
    }
    let filter = trace.map(|t| t.modules.clone()).unwrap_or_default();
    let Some(policy) = trace.and_then(|t| t.rotation.clone()) else {
        let file = trace.map(|t| (t.path.as_path(), t.append));
        return Ok(Some(
            TraceSink::new(file, tap, filter)?.with_metrics(metrics),
        ));
    };
    std::fs::create_dir_all(&policy.dir).map_err(SessionError::io(format!(
        "creating the trace directory {}",
        policy.dir.display()
    )))?;
    let mut rotation = Rotation::new(policy);
    let first = rotation.next_path(std::time::SystemTime::now());
    let sink = TraceSink::new(Some((&first, false)), tap, filter)?;
    Ok(Some(sink.rotating(rotation).with_metrics(metrics)))
}

/// The state a session starts from, once the probes are live: the probed
/// and checked functions' names, the imports known from files, and
/// `ready_ns`, the time after which every load is seen with its probes.
fn fresh_state(
    plan: Option<&CallPlan>,
    attached: Option<&Attached>,
    ready_ns: u64,
) -> SessionState {
    let names = FunctionNames::new(
        plan.iter()
            .flat_map(|p| p.probed_functions())
            .chain(attached.iter().flat_map(|a| a.checked.iter().cloned())),
    );
    let imports = plan.map(|p| p.imports.clone()).unwrap_or_default();
    SessionState::new(clock::WallClock::sample(), ready_ns, names, imports)
}

/// Static verdicts are written to the trace (file or view) of a session
/// that counts calls.
fn static_verdicts_for(
    paths: &KernelPaths,
    tracing: bool,
    plan: Option<&CallPlan>,
    viewing: bool,
    struct_module_size: Option<u64>,
) -> Option<StaticVerdicts> {
    let plan = plan.filter(|_| tracing)?;
    let (v, warning) = StaticVerdicts::new(plan.files.clone(), paths, struct_module_size);
    if let (Some(w), false) = (warning, viewing) {
        eprintln!("modscope: no static verdicts in this session: {w}");
    }
    Some(v)
}

/// Loads the programs with this kernel's facts written into their globals;
/// with whether the load-time layout check is on (detectors on, and BTF
/// has what it needs), how the kernel's module list links its entries, and
/// `sizeof(struct module)` when BTF gives it.
fn load_probe(
    paths: &KernelPaths,
    facts: Option<&ArchFacts>,
    plan: Option<&CallPlan>,
    guard: &GuardConfig,
    diagnostics: &Diagnostics,
) -> Result<(ModuleProbe, bool, Option<ListLink>, Option<u64>)> {
    let layouts =
        module_layout::layouts_from_file(&paths.vmlinux_btf).map_err(SessionError::ModuleLayout)?;
    let (layout, load_check) = (layouts.module, layouts.load_check);
    let struct_module_size = Some(load_check.struct_module_size).filter(|&s| s != 0);
    // The detectors are on when the call plan carries checks (not --no-detectors).
    let detectors = plan.is_some_and(|p| !p.checks.is_empty());
    // The guard's image check compares against the same size.
    let load_check = if detectors || guard.valid != 0 {
        load_check
    } else {
        LoadCheckConfig::UNSET
    };
    let calls = facts.map_or(CallProbeConfig::UNSET, ArchFacts::call_probe_config);
    let count_table = match plan {
        Some(plan) => probe::count_table_shape(
            proc_modules::read(&paths.proc_modules)?.len(),
            plan.functions.len() + plan.checks.len() + plan.allocators.len(),
        ),
        None => CountTableConfig::UNSET,
    };
    let probe = ModuleProbe::load(&ProbeGlobals {
        layout: &layout,
        calls: &calls,
        count_table: &count_table,
        load_check: &load_check,
        guard,
        diagnostics,
    })?;
    Ok((
        probe,
        detectors && load_check.struct_module_size != 0,
        layouts.list_link,
        struct_module_size,
    ))
}

/// Runs the attach plan's stages in order.
fn attach(
    probe: &mut ModuleProbe,
    plan: &CallPlan,
    paths: &KernelPaths,
    load_check_on: bool,
) -> Result<Attached> {
    let attach_plan = AttachPlan::new(plan, load_check_on);
    let start = plan.attach;
    let mut results = AttachResults::default();
    // Every function that counts calls gets its column before it attaches.
    let counting: Vec<u64> = plan
        .functions
        .values()
        .copied()
        .chain(plan.checks.iter().map(|c| c.address))
        .chain(plan.allocators.iter().map(|a| a.address))
        .collect();
    probe.place_columns(&counting)?;
    for stage in attach_plan.stages() {
        match stage {
            Stage::Allocators => results.allocators = probe.attach_allocators(&plan.allocators)?,
            Stage::Calls => {
                let ids = attach_ids(paths, &fentry_candidates(plan, &attach_plan), start);
                results.calls =
                    probe.attach_calls(&attach_plan.counted, &plan.functions, &ids, start)?
            }
            Stage::FieldChecks => results.checks = probe.attach_field_checks(&plan.checks)?,
            Stage::Recount => {
                results.recount = probe.attach_more(&attach_plan.recount(&results.checks))?
            }
            Stage::LoadCheck => results.load_check = probe.attach_load_check()?,
        }
    }
    Ok(attach_plan.status(results))
}

/// The counted functions fentry may take: not a followed allocator, whose
/// kretprobe swaps the return address for the kernel's trampoline before a
/// BPF trampoline runs (ftrace calls the other handlers of a function
/// first), so fentry would see every call come from the core kernel. A
/// kprobe sees the address before the swap.
fn fentry_candidates(plan: &CallPlan, attach_plan: &AttachPlan) -> Vec<String> {
    let followed: std::collections::HashSet<&str> = plan
        .allocators
        .iter()
        .map(|a| a.function.as_str())
        .collect();
    attach_plan
        .counted
        .iter()
        .filter(|f| !followed.contains(f.as_str()))
        .cloned()
        .collect()
}

/// The BTF ids the call counter's attach needs: `functions`' for fentry,
/// and the view's (`VIEW_STRUCT`) for copies that read without the helper.
/// From the running kernel's own BTF only (a `--btf` file's ids are not
/// the kernel's); none without it, or when no copy `start` allows could
/// use them (`probe::view_can_serve`).
fn attach_ids(paths: &KernelPaths, functions: &[String], start: CallAttach) -> AttachIds {
    if !probe::view_can_serve(start) || paths.vmlinux_btf != KernelPaths::default().vmlinux_btf {
        return AttachIds::default();
    }
    let ids = lean_btf::open(&paths.vmlinux_btf)
        .map_err(|e| e.to_string())
        .and_then(|btf| {
            let functions = if start <= CallAttach::Fentry {
                lean_btf::function_ids(&btf, functions).map_err(|e| e.to_string())?
            } else {
                HashMap::new()
            };
            Ok(AttachIds {
                functions,
                view: lean_btf::view_ids(&btf, VIEW_STRUCT).map_err(|e| e.to_string())?,
            })
        });
    ids.unwrap_or_else(|why| {
        log::debug!("count_call: no fentry or view, the kernel's BTF did not answer ({why})");
        AttachIds::default()
    })
}

/// Modules already loaded go into the registry, the state and the trace.
fn seed_present(
    session: &mut Session,
    paths: &KernelPaths,
    facts: Option<&ArchFacts>,
) -> Result<()> {
    for record in session.probe.seed(&preexisting_modules(paths)?)? {
        session.present(&record)?;
    }
    if let Some(v) = &mut session.verdicts {
        v.live();
    }
    session.out.emit(&Event::Ready {
        time: Event::now(),
        kernel: features::release(paths),
        probes: session.probe.attached().to_vec(),
        attribution: facts.map(ArchFacts::describe),
    })?;
    if let Some(t) = &mut session.trace {
        t.end_batch()?;
    }
    Ok(())
}

/// Modules already loaded, as registry records. /proc/modules gives the
/// core base and the whole core size, cut at the next module's text (sysfs
/// shows hidden modules' too); init text is long gone. Their incarnation
/// ids are small numbers no load time can equal.
fn preexisting_modules(paths: &KernelPaths) -> Result<Vec<ModuleRecord>> {
    let loaded = proc_modules::read(&paths.proc_modules)?;
    let hidden_bases = module_views::sys_module_text_bases(&paths.sys_module);
    let sizes = module_views::listed_text_sizes(&loaded, hidden_bases);
    Ok(loaded
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (m, size))| {
            let mut r = ModuleRecord::zeroed();
            r.name = ModuleName::from_bytes(m.name.as_bytes());
            r.taints = m.taints;
            r.core_text_base = m.address;
            r.core_text_size = size;
            r.incarnation = i as u64 + 1;
            r.flags = RecordFlags::PREEXISTING;
            r
        })
        .collect())
}

/// The trace's session header: where, when, what kernel, what is probed.
fn session_start(
    paths: &KernelPaths,
    plan: Option<&CallPlan>,
    status: Option<&CallProbeStatus>,
    attach_type: &str,
) -> SessionStart {
    let release = features::release(paths);
    let read = |p: &str| {
        crate::kernel::text_file::read(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let (config_source, config) = match paths.kernel_config(&release).ok().flatten() {
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
        attach_type: if plan.is_some() { attach_type } else { "none" }.to_owned(),
        functions: plan
            .map(|p| p.probed_functions().collect())
            .unwrap_or_default(),
        capped: status.map(|s| s.capped.clone()).unwrap_or_default(),
        not_attached: status.map(|s| s.not_attached.clone()).unwrap_or_default(),
        module_filter: plan.map(|p| p.modules.clone()).unwrap_or_default(),
    }
}
