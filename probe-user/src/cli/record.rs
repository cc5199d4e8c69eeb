//! `modscope record`: the module registry plus exact call counts per module
//! and kernel function, streamed live, with a per-module report at the end.

use modscope::{
    kernel::features::{self, KernelPaths},
    session::{self, LiveOptions, call_plan},
};

use super::probe_args::{LogArgs, ProbeArgs, TraceFileArgs};

#[derive(clap::Args)]
pub struct RecordArgs {
    /// One JSON object per line (schema in the README).
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    probes: ProbeArgs,
    #[command(flatten)]
    trace: TraceFileArgs,
    #[command(flatten)]
    log: LogArgs,
}

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let paths = KernelPaths::default();
    features::check_live_probe(&paths)?;
    let plan = call_plan::plan(&args.probes.request(), &paths)?;
    session::run(LiveOptions {
        json: args.json,
        duration: args.duration,
        calls: Some(plan),
        trace: args.trace.options(&args.probes.modules),
        view: None,
        diagnostics: args.log.to_stderr(),
    })
    .await?;
    Ok(())
}
