//! A live session: the module registry probes, optionally the call
//! counters, events streamed as they happen, and a closing summary.
//! `modscope events` and `modscope record` are two configurations of it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{self, Write as _},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use modscope::{
    btf_layout,
    call_report::{self, Incarnation},
    clock,
    event::{CallProbeStatus, Event, ModuleInfo, NotAttached, Stats, hex},
    kallsyms::FunctionNames,
    kernel_features::{self, KernelPaths},
    probe::ModuleProbe,
    proc_modules,
};
use probe_common::{CallProbeConfig, ModuleName, ModuleRecord, RecordFlags, decode};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

/// Lowest module text address on x86-64 (MODULES_VADDR): calls returning
/// below it come from the core kernel.
const X86_64_MODULES_VADDR: u64 = 0xffff_ffff_a000_0000;

/// What to count calls to, decided before the probes load.
pub struct CallPlan {
    /// Functions to probe, with their addresses.
    pub functions: BTreeMap<String, u64>,
    /// Functions left out by the cap.
    pub capped: Vec<String>,
    /// Imported functions per module name, from the module files found.
    pub imports: HashMap<String, BTreeSet<String>>,
    /// Only report these modules (empty: all).
    pub modules: Vec<String>,
}

pub struct LiveOptions {
    pub json: bool,
    pub duration: Option<f64>,
    pub calls: Option<CallPlan>,
}

struct Output {
    json: bool,
    stats: Stats,
}

impl Output {
    fn emit(&mut self, event: &Event) -> anyhow::Result<()> {
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
}

pub async fn run(opts: LiveOptions) -> anyhow::Result<()> {
    let paths = KernelPaths::default();
    kernel_features::check_live_probe(&paths)?;
    let layout = btf_layout::module_layout_from_file(&paths.vmlinux_btf)
        .context("finding struct module's layout in the running kernel's BTF")?;
    let call_config = match opts.calls {
        Some(_) => CallProbeConfig {
            module_area_start: X86_64_MODULES_VADDR,
        },
        None => CallProbeConfig::UNSET,
    };
    let mut probe = ModuleProbe::load(&layout, &call_config)?;
    let ring = probe.take_events()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and
    // unchanged until the AsyncFd (which owns the ring buffer) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("polling the EVENTS ring buffer")?;
    // The registry first, so modules loaded while the kprobes attach are known.
    probe.attach()?;
    let mut status = None;
    if let Some(plan) = &opts.calls {
        let functions: Vec<String> = plan.functions.keys().cloned().collect();
        let (attached, failed) = probe.attach_calls(&functions)?;
        status = Some(CallProbeStatus {
            attached: attached.len(),
            not_attached: failed
                .into_iter()
                .map(|(function, error)| NotAttached { function, error })
                .collect(),
            capped: plan.capped.clone(),
        });
    }
    let mut session = Session {
        out: Output {
            json: opts.json,
            stats: Stats::default(),
        },
        clock: clock::WallClock::sample(),
        incarnations: Vec::new(),
        ready_ns: clock::boot_ns(),
        names: FunctionNames::new(
            opts.calls
                .iter()
                .flat_map(|p| p.functions.iter().map(|(n, a)| (n.clone(), *a))),
        ),
        ranges: HashMap::new(),
        imports: opts
            .calls
            .as_ref()
            .map(|p| p.imports.clone())
            .unwrap_or_default(),
    };
    for record in probe.seed(&preexisting_modules(&paths)?)? {
        probe.map_text_pages(
            record.core_text_base,
            record.core_text_size,
            record.incarnation,
        )?;
        session.track(&record, false);
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
    session.stream(&mut probe, events, opts.duration).await?;
    if let (Some(plan), Some(status)) = (&opts.calls, status) {
        let probed: BTreeSet<String> = plan.functions.keys().cloned().collect();
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
        session.out.emit(&Event::Calls {
            time: Event::now(),
            probes: status,
            modules,
        })?;
    }
    Ok(())
}

impl Session {
    fn track(&mut self, r: &ModuleRecord, seen_loading: bool) {
        let name = String::from_utf8_lossy(r.name.as_bytes()).into_owned();
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
            imports: self.imports.get(&name).cloned(),
            name,
            incarnation: r.incarnation,
            loaded_ktime_ns: r.load_ns,
            init_counted: seen_loading && r.load_ns >= self.ready_ns,
            unloaded_ktime_ns: None,
        });
    }

    async fn stream(
        &mut self,
        probe: &mut ModuleProbe,
        mut events: AsyncFd<RingBuf<MapData>>,
        duration: Option<f64>,
    ) -> anyhow::Result<()> {
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let deadline =
            tokio::time::sleep(duration.map_or(Duration::MAX / 4, Duration::from_secs_f64));
        tokio::pin!(deadline);
        let mut lost_reported = 0;
        loop {
            tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard.context("waiting on the EVENTS ring buffer")?;
                    self.drain(guard.get_inner_mut())?;
                    guard.clear_ready();
                }
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                () = &mut deadline => break,
            }
            lost_reported = self.report_lost(probe, lost_reported)?;
        }
        // Whatever arrived between the last wake-up and the signal.
        self.drain(events.get_mut())?;
        self.report_lost(probe, lost_reported)?;
        let counters = probe.counters()?;
        let stats = Stats {
            lost_events: counters.lost_events,
            read_errors: counters.read_errors,
            registry_full: counters.registry_full,
            page_map_full: counters.page_map_full,
            call_map_full: counters.call_map_full,
            decode_errors: self.out.stats.decode_errors,
        };
        let modules = probe.registry()?.iter().map(ModuleInfo::from).collect();
        self.out.emit(&Event::Registry {
            time: Event::now(),
            modules,
            stats,
        })
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> anyhow::Result<()> {
        while let Some(item) = ring.next() {
            let decoded = decode::Event::try_from(&*item);
            drop(item);
            let event = match decoded {
                Ok(decode::Event::ModuleLoad(e)) => {
                    self.track(&e.record, true);
                    Event::Load {
                        time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
                        ktime_ns: e.header.ts_ns,
                        module: ModuleInfo::from(&e.record),
                    }
                }
                Ok(decode::Event::ModuleFree(e)) => {
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
                Ok(decode::Event::FirstUse(e)) => self.first_use(&e),
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
        Ok(())
    }

    fn first_use(&self, e: &probe_common::FirstUseEvent) -> Event {
        let module = self
            .incarnations
            .iter()
            .rev()
            .find(|m| m.incarnation == e.key.incarnation)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let caller_offset = self
            .ranges
            .get(&e.key.incarnation)
            .and_then(|&(cb, cs, ib, is)| {
                if (cb..cb + cs).contains(&e.caller) {
                    Some(format!("core+{:#x}", e.caller - cb))
                } else if (ib..ib + is).contains(&e.caller) {
                    Some(format!("init+{:#x}", e.caller - ib))
                } else {
                    None
                }
            });
        Event::FirstUse {
            time: clock::rfc3339(self.clock.at(e.header.ts_ns)),
            ktime_ns: e.header.ts_ns,
            module,
            incarnation: e.key.incarnation,
            symbol: self
                .names
                .name(e.key.func_ip)
                .map(str::to_owned)
                .unwrap_or_else(|| hex(e.key.func_ip)),
            caller: hex(e.caller),
            caller_offset,
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
