//! `modscope events`: module loads and unloads, live.

use modscope::session::{self, LiveOptions};

use super::probe_args::{KernelArgs, LogArgs};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// One JSON object per line (schema in the README).
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    log: LogArgs,
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    session::run(LiveOptions {
        paths: args.kernel.paths(),
        json: args.json,
        duration: args.duration,
        calls: None,
        trace: None,
        view: None,
        diagnostics: args.log.to_stderr(),
        metrics: None,
        guard: None,
    })
    .await?;
    Ok(())
}
