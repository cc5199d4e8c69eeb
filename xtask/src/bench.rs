//! `cargo xtask bench`: benchmarks that print figures, never pass/fail.
//!
//! check-corpus: `modscope check` over every module installed for the
//! generic Debian kernel, against that kernel, page cache warm, compared in
//! the same run with `modinfo` over the same files (batched by xargs), which
//! only prints. Reports medians, the ratio and modscope's peak RSS.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{artifacts, kernels, setup, shell};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Timed runs of each command (check-corpus).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Only these benchmarks (default: all).
    #[arg(long, value_enum)]
    only: Vec<Which>,
    /// The suite kernel the probe benchmark boots (x86-64 or arm64;
    /// default: the generic x86-64 kernel).
    #[arg(long, value_name = "RELEASE")]
    kernel: Option<String>,
    /// Another modscope binary for the probe benchmark's guest (one built
    /// from an earlier commit, say): measured in the same boot as a
    /// `baseline` row, for before/after figures from one machine.
    #[arg(long, value_name = "MODSCOPE")]
    baseline: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// modscope check over the installed modules vs modinfo (host).
    Corpus,
    /// Trace decode rate (host).
    Decode,
    /// TUI: replay rate, frame render time, longest loop turn under a flood (host).
    Tui,
    /// Export throughput: records per second to Parquet, JSON lines, Perfetto (host).
    Export,
    /// Hot-path overhead, attach time, trace size, RSS (VM).
    Probe,
}

/// Runs `cmd` to completion; wall time and the child's peak RSS in KiB.
fn timed(cmd: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our unreaped child; the pointers are valid for the call.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if rc < 0 {
        bail!("wait4 for {cmd:?} failed");
    }
    Ok((wall, usage.ru_maxrss as u64))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    setup::run()?;
    let all = kernels::all()?;
    // Not the whole suite: a benchmark needs no debug kernel.
    let host_kernel = kernels::generic_x86_64(&all)
        .cloned()
        .context("no generic x86-64 kernel before 6.4 (`cargo xtask setup` installs one)")?;
    let probe_kernel = match &args.kernel {
        Some(release) => all
            .iter()
            .find(|k| &k.release == release)
            .cloned()
            .with_context(|| format!("--kernel {release}: not a suite kernel"))?,
        None => host_kernel.clone(),
    };
    let kernel = host_kernel;
    let wanted = |w: Which| args.only.is_empty() || args.only.contains(&w);
    if wanted(Which::Corpus) {
        check_corpus(&args, &kernel)?;
    }
    if wanted(Which::Decode) {
        shell::step("bench trace-decode");
        shell::run(
            "the trace decode benchmark",
            Command::new("cargo").args(["bench", "-p", "probe-user", "--bench", "trace_decode"]),
        )?;
    }
    if wanted(Which::Tui) {
        shell::step("bench tui");
        shell::run(
            "the TUI benchmark",
            Command::new("cargo").args(["bench", "-p", "probe-user", "--bench", "tui_replay"]),
        )?;
    }
    if wanted(Which::Export) {
        shell::step("bench export");
        shell::run(
            "the export benchmark",
            Command::new("cargo").args(["bench", "-p", "probe-user", "--bench", "export"]),
        )?;
    }
    if wanted(Which::Probe) {
        crate::bench_probe::run(&probe_kernel, args.baseline.as_deref())?;
    }
    Ok(())
}

fn check_corpus(args: &BenchArgs, kernel: &kernels::Kernel) -> anyhow::Result<()> {
    let modscope = artifacts::modscope()?;
    let corpus = format!("/lib/modules/{}", kernel.release);
    let count = shell::output(
        Command::new("sh").args(["-c", &format!("find {corpus} -name '*.ko*' | wc -l")]),
    )
    .unwrap_or_default();
    shell::step(&format!(
        "bench check-corpus: {} modules under {corpus}, {} runs each",
        count.trim(),
        args.runs
    ));
    let check = || {
        let mut c = Command::new(&modscope);
        c.args(["check", "--json", "--kernel", &kernel.release, &corpus]);
        c
    };
    let modinfo = || {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("find {corpus} -name '*.ko*' -print0 | xargs -0 modinfo"),
        ]);
        c
    };
    // Warm the page cache and modscope's BTF cache.
    timed(&mut check())?;
    timed(&mut modinfo())?;
    let mut check_times = Vec::new();
    let mut modinfo_times = Vec::new();
    let mut peak_rss = 0;
    for _ in 0..args.runs {
        let (t, rss) = timed(&mut check())?;
        check_times.push(t);
        peak_rss = peak_rss.max(rss);
        modinfo_times.push(timed(&mut modinfo())?.0);
    }
    let (c, m) = (median(check_times), median(modinfo_times));
    println!(
        "check-corpus: modscope check {:.3} s (median of {}), modinfo {:.3} s",
        c.as_secs_f64(),
        args.runs,
        m.as_secs_f64()
    );
    println!(
        "check-corpus: ratio modscope/modinfo = {:.2} (goal <= 0.33)",
        c.as_secs_f64() / m.as_secs_f64()
    );
    println!(
        "check-corpus: modscope peak RSS = {:.1} MB (goal <= 200 MB)",
        peak_rss as f64 / 1024.0
    );
    Ok(())
}
