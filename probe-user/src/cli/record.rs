//! `modscope record`: the module registry plus exact call counts per module
//! and kernel function, streamed live, with a per-module report at the end.

use modscope::{
    kernel::features,
    session::{self, LiveOptions, call_plan},
};

use super::probe_args::SessionArgs;

#[derive(clap::Args)]
pub struct RecordArgs {
    /// One JSON object per line (schema in the README).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    session: SessionArgs,
}

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let paths = args.session.kernel.paths();
    features::check_live_probe(&paths)?;
    let plan = call_plan::plan(&args.session.probes.request(), &paths)?;
    session::run(LiveOptions {
        paths,
        json: args.json,
        duration: args.session.duration,
        calls: Some(plan),
        trace: args.session.trace.options(&args.session.probes.modules),
        view: None,
        diagnostics: args.session.log.to_stderr(),
        metrics: args.session.metrics,
        guard: None,
    })
    .await?;
    Ok(())
}
