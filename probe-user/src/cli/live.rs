//! `modscope live` (and `modscope` with no arguments): the live session
//! with the TUI. The session runs on the async runtime; the TUI on its own
//! thread, fed by the session's tap, so drawing never blocks the probes.

use std::{
    io::{IsTerminal as _, Write as _},
    sync::{Arc, Mutex, atomic::AtomicU64, mpsc},
};

use anyhow::Context as _;
use modscope::{
    kernel::features,
    probe::{Diagnostics, diagnostics::KeptLines},
    session::{self, LiveOptions, Tap, ViewLink, call_plan},
    trace::display::sanitize,
    tui::{App, Mode, live_feed::LiveFeed, run},
};

use super::{probe_args::SessionArgs, replay::no_color};

/// Records the session may get ahead of the view by.
const TAP_CAPACITY: usize = 65_536;

#[derive(clap::Args, Default)]
pub struct LiveArgs {
    #[command(flatten)]
    session: SessionArgs,
}

/// What to try instead, when the live TUI cannot run here.
const ELSEWHERE: &str = "without the live probe, `modscope check FILE.ko…` analyses module files \
     against this kernel, and `modscope replay TRACE` shows a trace recorded elsewhere";

pub fn run(args: LiveArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<u8> {
    let paths = args.session.kernel.paths();
    if let Err(missing) = features::check_live_probe(&paths) {
        // What is missing first, then what to do instead; the exit status
        // still comes from `missing`.
        return Err(anyhow::anyhow!("{ELSEWHERE}")
            .context(missing)
            .context("the live TUI cannot run here"));
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "the live TUI needs a terminal on standard output; \
             `modscope record` captures without one"
        );
    }
    let plan = call_plan::plan(&args.session.probes.request(), &paths)?;
    let (sender, records) = mpsc::sync_channel(TAP_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let (quit_tx, quit) = tokio::sync::oneshot::channel();
    let view_dropped = Arc::clone(&dropped);
    let ui = std::thread::Builder::new()
        .name("modscope-tui".into())
        .spawn(move || {
            let result = run::stop_flag().and_then(|stop| {
                let mut app = App::new(Mode::Live { dropped: 0 }, no_color());
                let mut feed = LiveFeed {
                    records,
                    dropped: view_dropped,
                };
                run::run(&mut app, &mut feed, &stop)
            });
            let _ = quit_tx.send(());
            result
        })
        .context("starting the TUI thread")?;
    let output = args.session.trace.options(&args.session.probes.modules);
    let path = output.as_ref().map(|t| t.path.clone());
    // The TUI owns the terminal: the programs' diagnostics wait for it.
    let kept = Arc::new(Mutex::new(KeptLines::default()));
    let session = runtime.block_on(session::run(LiveOptions {
        paths,
        json: false,
        duration: args.session.duration,
        calls: Some(plan),
        trace: output,
        view: Some(ViewLink {
            tap: Tap::new(sender, dropped),
            quit,
        }),
        diagnostics: Diagnostics {
            level: args.session.log.level(),
            kept: Some(Arc::clone(&kept)),
        },
        metrics: args.session.metrics,
        guard: None,
    }));
    let view = ui.join();
    print_kept(&kept);
    session?;
    match view {
        Ok(r) => r.context("drawing the terminal UI")?,
        Err(_) => anyhow::bail!("the TUI thread panicked"),
    }
    if let Some(p) = path {
        let p = sanitize(&p.display().to_string());
        super::stdout::write_with(|out| {
            writeln!(
                out,
                "modscope: trace written to {p}; `modscope replay {p}` shows it again"
            )
        })?;
    }
    Ok(0)
}

/// The programs' diagnostics kept while the TUI ran, now that it is gone.
fn print_kept(kept: &Mutex<KeptLines>) {
    let Ok(kept) = kept.lock() else {
        return;
    };
    if kept.dropped > 0 {
        eprintln!(
            "modscope: {} earlier probe diagnostics were dropped (the newest {} follow)",
            kept.dropped,
            kept.lines.len()
        );
    }
    for line in &kept.lines {
        eprintln!("{line}");
    }
}
