//! The live session behind `events`, `record` and `live`: the probes
//! planned (`call_plan`, `probe_policy`), attached in the kernel's order
//! (`attach_plan`), the kernel's records folded into state (`state`), and
//! each one printed (`event`, `output`), written to the trace and the view
//! (`trace_sink`), judged (`static_verdicts`) and summed up at the end
//! (`summary`); the kernel's views of the loaded modules compared for
//! modules that hide (`hidden_modules`, read by `hidden_scan`). `live.rs`
//! runs the loop that moves data between them.

pub mod anomaly_sites;
pub mod attach_plan;
pub mod call_plan;
pub mod error;
pub mod event;
mod finish;
pub mod guard_desk;
pub mod guard_start;
pub mod hidden_modules;
mod hidden_scan;
mod late_probes;
mod live;
mod output;
pub mod probe_policy;
pub mod rotation;
#[cfg(test)]
mod rotation_tests;
mod start;
pub mod state;
pub mod static_verdicts;
pub mod summary;
pub mod trace_sink;

use std::{path::PathBuf, time::Duration};

use tokio::sync::oneshot;

use crate::{kernel::features::KernelPaths, probe::Diagnostics};

pub use call_plan::{CallPlan, ProbeRequest};
pub use error::SessionError;
pub use trace_sink::Tap;

pub struct LiveOptions {
    /// Where the kernel's interfaces, BTF and config are (`--btf`, `--config`).
    pub paths: KernelPaths,
    pub json: bool,
    pub duration: Option<f64>,
    /// Count calls (`record`, `live`); `None`: the registry only (`events`).
    pub calls: Option<CallPlan>,
    pub trace: Option<TraceOptions>,
    /// A live view: gets every trace record, owns the terminal.
    pub view: Option<ViewLink>,
    /// The programs' own diagnostics (`--log-level`).
    pub diagnostics: Diagnostics,
    /// Serve Prometheus metrics at this address (`/metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Guard module loads (`modscope guard`).
    pub guard: Option<GuardOptions>,
}

/// What `modscope guard` was asked for.
#[derive(Debug, Clone)]
pub struct GuardOptions {
    pub policy: probe_common::guard::Policy,
    /// `--watch` files and directories, checked before the guard attaches.
    pub watch: Vec<PathBuf>,
    /// This kernel's module tree (`/lib/modules/RELEASE`), checked in the
    /// background; `None` with `--no-module-tree`.
    pub module_tree: Option<PathBuf>,
    /// Pin the programs in this bpffs directory (`--pin`).
    pub pin: Option<PathBuf>,
}

/// The live TUI's link to the session.
pub struct ViewLink {
    pub tap: Tap,
    /// Fires when the user quits.
    pub quit: oneshot::Receiver<()>,
}

/// Where and how to write the trace file.
pub struct TraceOptions {
    /// The file, or the directory of a rotating capture.
    pub path: PathBuf,
    pub append: bool,
    pub snapshot_interval: Duration,
    /// Only these modules are recorded (empty: all).
    pub modules: Vec<String>,
    /// Rotating files in the directory `path`.
    pub rotation: Option<rotation::RotationPolicy>,
}

/// Runs a session to its end: set up (`start`), stream (`live`), report
/// (`finish`).
pub async fn run(opts: LiveOptions) -> error::Result<()> {
    let mut started = start::start(opts).await?;
    let end = live::StreamEnd {
        duration: started.duration,
        snapshot_interval: started.snapshot_interval,
        quit: started.quit.as_mut(),
    };
    let reason = started
        .session
        .stream(started.events, started.logs, end, &mut started.signals)
        .await?;
    finish::finish(
        &mut started.session,
        started.plan.as_ref(),
        started.attached,
        reason,
        started.clock,
    )
}
