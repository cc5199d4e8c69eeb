//! `cargo xtask`: what cargo alone cannot do for modscope: install the
//! toolchain pieces and Debian kernels it needs, run the VM test suite on
//! real kernels, and run modscope where the host kernel cannot.

mod arm64;
mod artifacts;
mod bench;
mod bench_probe;
mod deb;
mod debug_kernel;
mod demo;
mod dist;
mod guest;
mod kernels;
mod lint;
mod package_check;
mod postmortem;
mod run;
mod setup;
mod shell;
mod stress;
mod test;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what modscope needs (idempotent; each step says what it does).
    Setup,
    /// The lint gate: rustfmt --check and clippy -D warnings (host and eBPF crates).
    Lint,
    /// Set up, run the lint gate and the host unit tests, then the VM suite on every installed Debian kernel.
    Test(test::TestArgs),
    /// Set up, build, and run modscope: on this kernel when it has modules,
    /// otherwise in a VM running a Debian kernel, with sample modules loading
    /// (without arguments, in a terminal: the live TUI, as `demo`).
    Run(run::RunArgs),
    /// The live TUI in this terminal, in a VM running Debian's kernel, while
    /// sample modules load, work, misbehave and unload; `q` ends it.
    Demo,
    /// Static x86-64 and aarch64 (musl) modscope binaries, each packed with the README and licence into target/dist/, and .deb packages for amd64 and arm64 (binary, man pages, completions, systemd unit).
    Dist {
        /// Then install the amd64 package here and check it as a user would
        /// (dpkg -i, --version, man, bash completion; removed after): root.
        #[arg(long)]
        check: bool,
    },
    /// Build (once, cached) and install the lock-debugging kernel the VM suite boots.
    DebugKernel,
    /// Benchmarks that print figures (static analysis of the installed corpus vs modinfo).
    Bench(bench::BenchArgs),
    /// Boot a suite kernel (x86-64 or arm64) and run a command in it, that
    /// architecture's modscope on PATH; exits with the command's status.
    Vm(guest::VmArgs),
    /// Build an out-of-tree module against a suite kernel's headers
    /// (cross-building for arm64); prints the .ko paths.
    Module(guest::ModuleArgs),
    /// Churn kprobes in a VM (record, insmod, rmmod, stop, N rounds) and count guest crashes.
    Stress(stress::StressArgs),
}

fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match Cli::parse().command {
        Command::Setup => done(setup::run()),
        Command::Lint => done(setup::run().and_then(|()| lint::run())),
        Command::Test(args) => done(test::run(args)),
        Command::Run(args) => done(run::run(args)),
        Command::Demo => done(demo::run()),
        Command::Dist { check } => done(setup::run().and_then(|()| {
            let built = dist::run()?;
            if check {
                package_check::run(&built)?;
            }
            Ok(())
        })),
        Command::DebugKernel => done(debug_kernel::ensure()),
        Command::Bench(args) => done(bench::run(args)),
        Command::Stress(args) => done(stress::run(args)),
        Command::Module(args) => done(guest::module(args)),
        // The guest command's own exit status.
        Command::Vm(args) => guest::vm(args),
    };
    result.unwrap_or_else(|e| {
        // The message names the step; a backtrace would bury it.
        eprintln!("xtask: {e:#}");
        ExitCode::FAILURE
    })
}
