//! `modscope replay FILE`: the TUI over a recorded trace.

use std::{io::IsTerminal as _, path::PathBuf};

use anyhow::Context as _;
use modscope::tui::{
    App, Mode,
    app::ReplayStatus,
    replay::{ReplayFeed, SPEEDS},
    run,
};

use super::{check::status, report::open_trace};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A trace written by `modscope record -o` (or `modscope live -o`).
    file: PathBuf,
    /// Playback speed (trace seconds per second).
    #[arg(long, default_value_t = 1.0, value_parser = speed)]
    speed: f64,
    /// Open at the end of the trace (the final state), paused.
    #[arg(long)]
    at_end: bool,
}

fn speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (SPEEDS[0]..=SPEEDS[SPEEDS.len() - 1]).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed between {} and {}",
            SPEEDS[0],
            SPEEDS[SPEEDS.len() - 1]
        )),
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "replay draws a terminal UI and standard output is not a terminal; \
             for text or JSON use `modscope report {}`",
            args.file.display()
        );
    }
    let Some((_, trace)) = open_trace(&args.file) else {
        return Ok(status::BAD_INPUT);
    };
    let damaged = (
        trace.damage.len(),
        trace.damage.iter().map(|d| d.bytes).sum::<u64>(),
    );
    let file = args.file.display().to_string();
    let mut app = App::new(
        Mode::Replay(ReplayStatus::new(file.clone(), args.speed, damaged)),
        no_color(),
    );
    let damage = trace
        .damage
        .iter()
        .map(|d| {
            let before = trace.records.partition_point(|(at, _)| *at < d.offset);
            let note = format!(
                "skipped {} damaged bytes at offset {}: {}",
                d.bytes,
                d.offset,
                modscope::trace::display::sanitize(&d.reason)
            );
            (before, note)
        })
        .collect();
    let records = trace.records.into_iter().map(|(_, r)| r).collect();
    let mut feed = ReplayFeed::new(records, modscope::trace::display::sanitize(&file), damaged)
        .with_damage(damage);
    feed.set_speed(args.speed);
    if args.at_end {
        feed.act_to_end(&mut app);
    }
    let stop = run::stop_flag().context("installing signal handlers")?;
    run::run(&mut app, &mut feed, &stop).context("drawing the terminal UI")?;
    Ok(0)
}

/// <https://no-color.org>: any non-empty NO_COLOR turns colour off.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
