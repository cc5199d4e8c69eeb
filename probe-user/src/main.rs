//! The `modscope` command line.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modscope::kernel_features::Unsupported;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream module load and unload events as the kernel sees them.
    Events(commands::events::EventsArgs),
}

fn main() -> ExitCode {
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Events(args) => commands::events::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("modscope: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

fn exit_status(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Unsupported>() {
        Some(Unsupported::MissingCapability { .. }) => exit::NOT_PERMITTED,
        Some(_) => exit::UNSUPPORTED_KERNEL,
        None => exit::FAILURE,
    }
}
