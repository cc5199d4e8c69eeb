//! The `modscope` command line.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modscope::{kernel::features::Unsupported, session::SessionError};

/// Exit statuses, documented in the README.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const UNSUPPORTED_KERNEL: u8 = 3;
    pub const NOT_PERMITTED: u8 = 4;
}

#[derive(Parser)]
#[command(
    name = "modscope",
    version,
    about = "Watch what Linux kernel modules actually do, and flag the unsafe ones."
)]
struct Cli {
    /// Without a command: the live TUI (as `modscope live`).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The live TUI: which modules are unsafe on this kernel, why, and what they call.
    Live(cli::live::LiveArgs),
    /// The TUI over a trace file, with a timeline.
    Replay(cli::replay::ReplayArgs),
    /// Stream module load and unload events as the kernel sees them.
    Events(cli::events::EventsArgs),
    /// Stream module events and count every call each module makes to the probed kernel functions.
    Record(cli::record::RecordArgs),
    /// Per-module report of a trace file written by `record -o`.
    Report(cli::report::ReportArgs),
    /// Check module files against a kernel: would it load them, and are they safe there?
    Check(cli::check::CheckArgs),
    /// What changed between two kernels, and which modules survive the move.
    Diff(cli::diff::DiffArgs),
}

fn main() -> ExitCode {
    // A closed pipe (`modscope check … | head`) ends the program quietly,
    // as it does for other command-line tools, instead of panicking in print.
    // SAFETY: restoring a default signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("modscope: starting the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = match cli.command.unwrap_or(Command::Live(Default::default())) {
        Command::Live(args) => cli::live::run(args, &runtime),
        Command::Replay(args) => cli::replay::run(args),
        Command::Events(args) => runtime.block_on(cli::events::run(args)).map(|()| 0),
        Command::Record(args) => runtime.block_on(cli::record::run(args)).map(|()| 0),
        Command::Check(args) => cli::check::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Diff(args) => cli::diff::run(args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("modscope: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

fn exit_status(err: &anyhow::Error) -> u8 {
    let unsupported = err.downcast_ref::<Unsupported>().or_else(|| {
        err.downcast_ref::<SessionError>()
            .and_then(SessionError::unsupported)
    });
    match unsupported {
        Some(Unsupported::MissingCapability { .. }) => exit::NOT_PERMITTED,
        Some(_) => exit::UNSUPPORTED_KERNEL,
        None => exit::FAILURE,
    }
}
