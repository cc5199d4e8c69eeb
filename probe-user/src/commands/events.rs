//! `modscope events`: module loads and unloads, live.

use std::{
    io::{self, Write as _},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use modscope::{
    btf_layout, clock,
    event::{Event, ModuleInfo, Stats},
    kernel_features::{self, KernelPaths},
    probe::ModuleProbe,
    proc_modules,
};
use probe_common::{ModuleName, ModuleRecord, RecordFlags, decode};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// One JSON object per line (schema in the README).
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
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

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let paths = KernelPaths::default();
    kernel_features::check_live_probe(&paths)?;
    let layout = btf_layout::module_layout_from_file(&paths.vmlinux_btf)
        .context("finding struct module's layout in the running kernel's BTF")?;
    let mut probe = ModuleProbe::load(&layout)?;
    let ring = probe.take_events()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and
    // unchanged until the AsyncFd (which owns the ring buffer) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("polling the EVENTS ring buffer")?;
    probe.attach()?;

    let mut out = Output {
        json: args.json,
        stats: Stats::default(),
    };
    for record in probe.seed(&preexisting_modules(&paths)?)? {
        out.emit(&Event::Present {
            time: Event::now(),
            module: ModuleInfo::from(&record),
        })?;
    }
    out.emit(&Event::Ready {
        time: Event::now(),
        kernel: kernel_features::release(&paths),
        probes: probe.attached().to_vec(),
    })?;

    let clock = clock::WallClock::sample();
    stream(&mut probe, events, &mut out, &clock, args.duration).await
}

async fn stream(
    probe: &mut ModuleProbe,
    mut events: AsyncFd<RingBuf<MapData>>,
    out: &mut Output,
    clock: &clock::WallClock,
    duration: Option<f64>,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = tokio::time::sleep(duration.map_or(Duration::MAX / 4, Duration::from_secs_f64));
    tokio::pin!(deadline);
    let mut lost_reported = 0;
    loop {
        tokio::select! {
            guard = events.readable_mut() => {
                let mut guard = guard.context("waiting on the EVENTS ring buffer")?;
                drain(guard.get_inner_mut(), out, clock)?;
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = &mut deadline => break,
        }
        lost_reported = report_lost(probe, out, lost_reported)?;
    }
    // Whatever arrived between the last wake-up and the signal.
    drain(events.get_mut(), out, clock)?;
    report_lost(probe, out, lost_reported)?;
    let counters = probe.counters()?;
    out.stats.lost_events = counters.lost_events;
    out.stats.read_errors = counters.read_errors;
    out.stats.registry_full = counters.registry_full;
    let modules = probe.registry()?.iter().map(ModuleInfo::from).collect();
    let stats = out.stats.clone();
    out.emit(&Event::Registry {
        time: Event::now(),
        modules,
        stats,
    })
}

fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Output,
    clock: &clock::WallClock,
) -> anyhow::Result<()> {
    while let Some(item) = ring.next() {
        let event = match decode::Event::try_from(&*item) {
            Ok(decode::Event::ModuleLoad(e)) => Event::Load {
                time: clock::rfc3339(clock.at(e.header.ts_ns)),
                ktime_ns: e.header.ts_ns,
                module: ModuleInfo::from(&e.record),
            },
            Ok(decode::Event::ModuleFree(e)) => Event::Unload {
                time: clock::rfc3339(clock.at(e.header.ts_ns)),
                ktime_ns: e.header.ts_ns,
                module: ModuleInfo::from(&e.record),
            },
            Err(err) => {
                out.stats.decode_errors += 1;
                Event::DecodeError {
                    time: Event::now(),
                    error: err.to_string(),
                }
            }
        };
        drop(item);
        out.emit(&event)?;
    }
    Ok(())
}

/// Emits a `lost` event when the kernel dropped records since the last report.
fn report_lost(probe: &ModuleProbe, out: &mut Output, reported: u64) -> anyhow::Result<u64> {
    let lost = probe.counters()?.lost_events;
    if lost > reported {
        out.emit(&Event::Lost {
            time: Event::now(),
            count: lost - reported,
        })?;
    }
    Ok(lost)
}

/// Modules already loaded, as registry records. /proc/modules gives the
/// core base and the whole core size; init text is long gone.
fn preexisting_modules(paths: &KernelPaths) -> anyhow::Result<Vec<ModuleRecord>> {
    let loaded = proc_modules::read(&paths.proc_modules)?;
    Ok(loaded
        .iter()
        .map(|m| {
            let mut r = ModuleRecord::zeroed();
            r.name = ModuleName::from_bytes(m.name.as_bytes());
            r.taints = m.taints;
            r.core_text_base = m.address;
            r.core_text_size = m.size;
            r.flags = RecordFlags::PREEXISTING;
            r
        })
        .collect())
}
