//! The `modscope` command line.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
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
    about = "Watch what Linux kernel modules actually do, and flag the unsafe ones.",
    after_help = help::TOP
)]
struct Cli {
    /// Without a command: the live TUI (as `modscope live`).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The live TUI: which modules are unsafe on this kernel, why, and what they call.
    #[command(after_help = help::LIVE)]
    Live(cli::live::LiveArgs),
    /// The TUI over a trace file, with a timeline.
    #[command(after_help = help::REPLAY)]
    Replay(cli::replay::ReplayArgs),
    /// Stream module load and unload events as the kernel sees them.
    #[command(after_help = help::EVENTS)]
    Events(cli::events::EventsArgs),
    /// Stream module events and count every call each module makes to the probed kernel functions.
    #[command(after_help = help::RECORD)]
    Record(cli::record::RecordArgs),
    /// Per-module report of a trace file written by `record -o`.
    #[command(after_help = help::REPORT)]
    Report(cli::report::ReportArgs),
    /// Check module files against a kernel: would it load them, and are they safe there?
    #[command(after_help = help::CHECK)]
    Check(cli::check::CheckArgs),
    /// What changed between two kernels, and which modules survive the move.
    #[command(after_help = help::DIFF)]
    Diff(cli::diff::DiffArgs),
    /// Refuse the modules judged unsafe on this kernel before they load (BPF-LSM).
    #[command(after_help = help::GUARD)]
    Guard(cli::guard::GuardArgs),
    /// Traces as Parquet tables, JSON lines, or a Perfetto timeline.
    #[command(after_help = help::EXPORT)]
    Export(cli::export::ExportArgs),
    /// Shell completions (bash, zsh, fish, elvish, powershell) on standard output.
    #[command(after_help = help::COMPLETIONS)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man pages, modscope(1) and one per subcommand, written into DIR.
    #[command(hide = true)]
    Manpages { dir: std::path::PathBuf },
}

/// The examples (and, for `check` and `diff`, the exit statuses) ending
/// each subcommand's `--help`.
mod help {
    pub const TOP: &str =
        "`modscope COMMAND --help` (or `man modscope-COMMAND`) says more, with examples.

Exit status: 0 success; 1 an error (the message names the file, map or kernel
interface); 2 usage error; 3 the kernel cannot do this (no CONFIG_MODULES, no
BTF); 4 not permitted (CAP_BPF, CAP_PERFMON); 5, 6, 7 from check and diff (an
incompatible module, bad input, both); 6 from report, replay and export (a file
that is not a readable trace).";
    pub const LIVE: &str = "Examples:
  sudo modscope live                               every loaded module, this kernel
  sudo modscope live --watch ./vendor.ko -o s.trace  probe vendor.ko's imports before it loads, and keep a trace";
    pub const REPLAY: &str = "Examples:
  modscope replay s.trace                  the recorded session, from its start
  modscope replay --speed 10 s.trace       ten times faster";
    pub const EVENTS: &str = "Examples:
  sudo modscope events                     loads and unloads, one line each, until Ctrl-C
  sudo modscope events --json --duration 60 | jq .";
    pub const RECORD: &str = "Examples:
  sudo modscope record --watch ./vendor.ko -o s.trace --duration 600
  sudo modscope record --module vendor --function kmalloc --json";
    pub const REPORT: &str = "Examples:
  modscope report s.trace                  per module: calls, first uses, anomalies
  modscope report --json --module vendor s.trace | jq '.sessions[].modules'";
    pub const CHECK: &str = "Examples:
  modscope check ./vendor.ko                       against the running kernel
  modscope check --kernel 6.1.0-57-rt-amd64 /lib/modules/6.1.0-57-amd64
  modscope check --config .config --symvers Module.symvers --btf vmlinux ./out/

Exit status: 0 all compatible; 5 some module incompatible; 6 bad input (a file
that cannot be read, or a target input that is missing, empty or not what it
claims); 7 both. 5 to 7 are 4 plus bits: 1 = incompatible, 2 = bad input.";
    pub const DIFF: &str = "Examples:
  modscope diff 6.1.0-56-amd64 6.1.0-57-rt-amd64           the installed modules of the first
  modscope diff ./build-a ./build-b ./vendor.ko             directories holding .config and Module.symvers

Exit status: as `check`'s (0, 5, 6, 7), for the modules moved to KERNEL_B.";
    pub const EXPORT: &str = "Examples:
  modscope export --format parquet -o fleet/ lab*/captures/    a dataset for DuckDB, Spark, Trino
  duckdb -c \"select module, sum(calls) from 'fleet/calls.parquet' group by all\"
  modscope export --format jsonl -o - s.trace | vector ...      one JSON object per row
  modscope export --format perfetto -o s.pftrace s.trace        open it in ui.perfetto.dev

Exit status: 0 exported; 6 some input was not a readable trace (the others
are exported).";
    pub const GUARD: &str = "Examples:
  sudo modscope guard                              refuse incompatible modules, this kernel's tree checked
  sudo modscope guard --watch ./vendor.ko --policy audit --json   say what would be refused
  sudo modscope guard --policy deny-unchecked --pin -o guard.trace   stays after modscope ends
  sudo modscope guard --remove                     take a pinned guard away

Without --pin the programs go with the process: if modscope dies, loads are no
longer guarded (fail-open). Exit status 3: BPF-LSM is not active here (the
message says how to turn it on).";
    pub const COMPLETIONS: &str = "Examples:
  modscope completions bash > /etc/bash_completion.d/modscope
  modscope completions zsh > ~/.zfunc/_modscope
  modscope completions fish > ~/.config/fish/completions/modscope.fish
The .deb package installs all three.";
}

fn main() -> ExitCode {
    // A closed pipe (`modscope check … | head`) ends the program quietly,
    // as it does for other command-line tools, instead of panicking in print.
    // SAFETY: restoring a default signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    cli::allocator::return_freed_memory();
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
        Command::Export(args) => cli::export::run(args),
        Command::Guard(args) => runtime.block_on(cli::guard::run(args)).map(|()| 0),
        Command::Completions { shell } => cli::docs::completions(Cli::command(), shell),
        Command::Manpages { dir } => cli::docs::manpages(Cli::command(), &dir),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            // Errors quote paths and arguments: printed like everything else.
            let message = modscope::trace::display::sanitize(&format!("{err:#}"));
            eprintln!("modscope: {message}");
            ExitCode::from(exit_status(&err))
        }
    }
}

fn exit_status(err: &anyhow::Error) -> u8 {
    let unsupported = err.downcast_ref::<Unsupported>().or_else(|| {
        err.downcast_ref::<SessionError>()
            .and_then(SessionError::unsupported)
    });
    let guard_unavailable = matches!(
        err.downcast_ref::<SessionError>(),
        Some(SessionError::GuardUnavailable(_))
    );
    match unsupported {
        Some(Unsupported::MissingCapability { .. }) => exit::NOT_PERMITTED,
        Some(_) => exit::UNSUPPORTED_KERNEL,
        None if guard_unavailable => exit::UNSUPPORTED_KERNEL,
        None => exit::FAILURE,
    }
}
