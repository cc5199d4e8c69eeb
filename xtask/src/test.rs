//! `cargo xtask test`: the whole suite. Host unit tests first, then, for
//! each required Debian kernel, the test modules built against its headers
//! and the VM test binaries run inside it; a pass/fail per test is read
//! back from the console.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    artifacts, debug_kernel, dist, kernels, lint, package_check, postmortem, setup, shell, vm,
};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Only the host unit tests.
    #[arg(long, conflicts_with = "vm_only")]
    host_only: bool,
    /// Only the VM suite.
    #[arg(long)]
    vm_only: bool,
    /// Only this kernel release (default: the generic, PREEMPT_RT and 6.4+ kernels).
    #[arg(long, value_name = "RELEASE")]
    kernel: Vec<String>,
    /// Only VM tests whose name contains this string.
    #[arg(long)]
    filter: Option<String>,
    /// Per-kernel time limit in seconds, boot included.
    #[arg(long, default_value_t = 1500)]
    timeout: u64,
}

/// One test's result as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    /// The console line that carried the verdict.
    pub line: usize,
}

/// Parses libtest's `test NAME ... ok|FAILED` lines and our own markers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    pub tests: Vec<TestResult>,
    pub binaries_failed: Vec<String>,
    pub finished: bool,
    /// The line that said the suite began.
    pub began: Option<usize>,
    /// A test that started and never reported (the guest died in it).
    pub unfinished: Option<String>,
}

pub fn parse_console(lines: &[String]) -> GuestReport {
    let mut report = GuestReport::default();
    for (index, line) in lines.iter().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                report.tests.push(TestResult {
                    name: name.to_owned(),
                    passed: true,
                    line: index,
                });
            } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
                report.tests.push(TestResult {
                    name: name.to_owned(),
                    passed: false,
                    line: index,
                });
            } else if let Some((name, _)) = rest.split_once(" ...") {
                // Kernel messages may split libtest's line: its verdict
                // then comes alone on a later line.
                // Still running, or the console carried on past it (a crash).
                report.unfinished = Some(name.to_owned());
                continue;
            }
            report.unfinished = None;
        } else if let Some(name) = report
            .unfinished
            .take_if(|_| matches!(line, "ok" | "FAILED"))
        {
            report.tests.push(TestResult {
                name,
                passed: line == "ok",
                line: index,
            });
        } else if let Some(rest) = line.strip_prefix("MODSCOPE-VM-EXIT ") {
            if let Some((bin, code)) = rest.rsplit_once(' ')
                && code != "0"
            {
                report.binaries_failed.push(format!("{bin} exited {code}"));
            }
        } else if line.starts_with("MODSCOPE-VM-BEGIN") {
            report.began = Some(index);
        } else if line == "MODSCOPE-VM-END" {
            report.finished = true;
        }
    }
    report
}

/// Lines of a failed test's account kept for the CI log: its first (the
/// panic's place and message) and its last (modscope's standard error).
const FAILURE_HEAD: usize = 6;
const FAILURE_TAIL: usize = 30;
/// Longer lines are cut: an event dump can be one huge line.
const FAILURE_LINE_CHARS: usize = 240;

/// What libtest printed for the failed test `name` (its `---- NAME stdout
/// ----` block, to the next block or the `failures:` list), shortened to
/// its head and tail; empty when the console has no such block.
pub fn failure_excerpt(lines: &[String], name: &str) -> Vec<String> {
    let header = format!("---- {name} stdout ----");
    let Some(start) = lines.iter().position(|l| l.trim() == header) else {
        return Vec::new();
    };
    let block: Vec<&str> = lines[start + 1..]
        .iter()
        .map(|l| l.trim_end())
        .take_while(|l| !l.starts_with("---- ") && *l != "failures:")
        .filter(|l| !l.starts_with('['))
        .collect();
    let cut = |l: &str| match l.char_indices().nth(FAILURE_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &l[..at]),
        None => l.to_owned(),
    };
    if block.len() <= FAILURE_HEAD + FAILURE_TAIL {
        return block.into_iter().map(cut).collect();
    }
    let skipped = block.len() - FAILURE_HEAD - FAILURE_TAIL;
    let mut out: Vec<String> = block[..FAILURE_HEAD].iter().map(|l| cut(l)).collect();
    out.push(format!(
        "[… {skipped} lines: the full account is in the console log]"
    ));
    out.extend(block[block.len() - FAILURE_TAIL..].iter().map(|l| cut(l)));
    out
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    setup::run()?;
    // The whole suite includes the lock-debugging kernel; `--kernel` picks
    // installed kernels only. It builds while the host part runs.
    let debug_build =
        (!args.host_only && args.kernel.is_empty()).then(debug_kernel::build_in_background);
    if !args.vm_only {
        lint::run()?;
        // --release: the corpus test reads ~12,000 real modules.
        shell::step("host tests (unit tests, the CLI on this kernel, the installed-module corpus)");
        shell::run(
            "host tests",
            Command::new("cargo")
                .args([
                    "test",
                    "--release",
                    "--workspace",
                    "--exclude",
                    "probe-ebpf",
                    "--exclude",
                    "vm-tests",
                ])
                .args(["--", "--include-ignored"]),
        )?;
        // The packages, installed here as a user would install them.
        let built = dist::run()?;
        package_check::run(&built)?;
    }
    if let Some(build) = debug_build {
        build
            .join()
            .map_err(|_| anyhow::anyhow!("the debug kernel's build panicked"))??;
        debug_kernel::ensure()?;
    }
    if args.host_only {
        return Ok(());
    }
    vm_suite(&args)
}

fn vm_suite(args: &TestArgs) -> anyhow::Result<()> {
    let suite_start = Instant::now();
    let all = kernels::all()?;
    let selected = select_kernels(args, &all)?;
    // Each architecture's modscope and test binaries, built before any
    // guest starts (guests read them over 9p while others build nothing).
    let mut builds: HashMap<kernels::Arch, (PathBuf, Vec<PathBuf>)> = HashMap::new();
    for arch in selected.iter().map(|k| k.arch) {
        if let std::collections::hash_map::Entry::Vacant(e) = builds.entry(arch) {
            let modscope = artifacts::modscope_for(arch)?;
            e.insert((modscope, artifacts::vm_test_binaries(arch)?));
        }
    }
    // Every kernel's modules (and its sibling flavour's) are built before
    // any guest starts: a guest reads them while others run.
    let mut modules: HashMap<String, PathBuf> = HashMap::new();
    for kernel in selected
        .iter()
        .chain(selected.iter().filter_map(|k| kernels::sibling(&all, k)))
    {
        if !modules.contains_key(&kernel.release) {
            modules.insert(kernel.release.clone(), artifacts::test_modules(kernel)?);
        }
    }
    let outputs = output_kernels(&selected);
    let mut jobs = Vec::new();
    for kernel in &selected {
        let sibling = kernels::sibling(&all, kernel)
            .map(|s| (s.release.clone(), modules[&s.release].clone()));
        let (modscope, binaries) = &builds[&kernel.arch];
        jobs.push(Job::Suite {
            kernel: kernel.clone(),
            modscope: modscope.clone(),
            modules: modules[&kernel.release].clone(),
            binaries: binaries_for(kernel, binaries),
            sibling: sibling.clone(),
            outputs: outputs.contains(&kernel.release),
        });
        // The hang scenario needs kmod's insmod -f: the x86-64 guests'.
        if let (kernels::Flavour::PreemptRt, kernels::Arch::X86_64, Some((_, generic)), true) = (
            &kernel.flavour,
            kernel.arch,
            sibling,
            wants_postmortem(args),
        ) {
            jobs.push(Job::Postmortem {
                kernel: kernel.clone(),
                modscope: modscope.clone(),
                generic,
            });
        }
    }
    // Longest first, so the last guests to start are short ones and the
    // cores finish together.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.expected_seconds()));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    shell::step(&format!(
        "VM suite: {} guests, {} at a time (one per core)",
        jobs.len(),
        workers.min(jobs.len())
    ));
    let results = run_jobs(&jobs, workers, args);
    let (mut passed, mut failed) = (0usize, 0usize);
    eprintln!(
        "\nVM suite, {:.0} s in all:",
        suite_start.elapsed().as_secs_f64()
    );
    for r in &results {
        passed += r.passed;
        failed += r.failed;
        eprintln!("  {}", r.line);
    }
    println!("vm: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("the VM suite failed");
    }
    Ok(())
}

/// One guest boot of the suite.
enum Job {
    /// The test binaries on a kernel.
    Suite {
        kernel: kernels::Kernel,
        modscope: PathBuf,
        modules: PathBuf,
        binaries: Vec<GuestBinary>,
        /// The other flavour's release and its test modules.
        sibling: Option<(String, PathBuf)>,
        /// Runs the tests of modscope's own outputs (`output_kernels`).
        outputs: bool,
    },
    /// The PREEMPT_RT hang scenario, with the generic flavour's modules.
    Postmortem {
        kernel: kernels::Kernel,
        modscope: PathBuf,
        generic: PathBuf,
    },
}

impl Job {
    /// About how long the guest runs, in seconds, so the longest start
    /// first and the cores finish together. Seen in a fresh-clone run of
    /// the whole suite (stop 28, two guests at once): generic 443 s on
    /// x86-64 and 502 s on arm64, plus 229 and 331 s where the output tests
    /// run; PREEMPT_RT x86-64 672 s; the debug kernel 167 s; the
    /// post-mortem about 100 s; the PREEMPT_RT arm64 guest's focus 327 s
    /// (its whole set took 799 s).
    fn expected_seconds(&self) -> u32 {
        let Job::Suite {
            kernel, outputs, ..
        } = self
        else {
            return 100;
        };
        let arm64 = kernel.arch == kernels::Arch::Arm64;
        let base = match (&kernel.flavour, arm64) {
            (kernels::Flavour::Generic, false) => 443,
            (kernels::Flavour::Generic, true) => 502,
            (kernels::Flavour::PreemptRt, false) => 672,
            (kernels::Flavour::PreemptRt, true) => 327,
            (kernels::Flavour::Debug, _) => 167,
        };
        let outputs = match (*outputs, arm64) {
            (false, _) => 0,
            (true, false) => 229,
            (true, true) => 331,
        };
        base + outputs
    }
}

/// Runs the jobs on `workers` threads; results in the jobs' order. Each
/// guest's lines are printed as one block when it ends.
fn run_jobs(jobs: &[Job], workers: usize, args: &TestArgs) -> Vec<GuestRun> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, GuestRun)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let run = run_job(job, args);
                    eprint!("{}", run.printed);
                    results.lock().expect("no worker panics").push((i, run));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no worker panics");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn run_job(job: &Job, args: &TestArgs) -> GuestRun {
    match job {
        Job::Suite {
            kernel,
            modscope,
            modules,
            binaries,
            sibling,
            outputs,
        } => {
            let run = vm::work_dir("runs", kernel).and_then(|work| {
                let guest = GuestEnv {
                    kernel,
                    modscope,
                    modules,
                    sibling: sibling.as_ref(),
                    work: &work,
                    outputs: *outputs,
                };
                run_guest(&guest, binaries, args)
            });
            run.unwrap_or_else(|e| GuestRun {
                passed: 0,
                failed: 1,
                line: format!("{:<34} could not run: {e:#}", kernel.describe()),
                printed: String::new(),
            })
        }
        Job::Postmortem {
            kernel,
            modscope,
            generic,
        } => {
            let (ok, line) = run_postmortem(kernel, modscope, generic, args);
            GuestRun {
                passed: usize::from(ok),
                failed: usize::from(!ok),
                printed: format!("==> {} {line}\n", kernel.describe()),
                line: format!("  {line}"),
            }
        }
    }
}

/// The kernels `--kernel` names (each must be installed), else the
/// required set.
fn select_kernels(
    args: &TestArgs,
    all: &[kernels::Kernel],
) -> anyhow::Result<Vec<kernels::Kernel>> {
    if args.kernel.is_empty() {
        return kernels::required_set(all);
    }
    let picked: Vec<_> = all
        .iter()
        .filter(|k| args.kernel.contains(&k.release))
        .cloned()
        .collect();
    if picked.len() != args.kernel.len() {
        bail!(
            "--kernel {:?}: not all of these are installed with headers",
            args.kernel
        );
    }
    Ok(picked)
}

fn wants_postmortem(args: &TestArgs) -> bool {
    args.filter
        .as_deref()
        .is_none_or(|f| "postmortem".contains(f))
}

fn run_postmortem(
    kernel: &kernels::Kernel,
    modscope: &Path,
    generic: &Path,
    args: &TestArgs,
) -> (bool, String) {
    match postmortem::run(kernel, modscope, generic, Duration::from_secs(args.timeout)) {
        Ok(o) => (true, format!("post-mortem ok: {}", o.summary)),
        Err(e) => (false, format!("post-mortem FAILED: {e:#}")),
    }
}

/// One guest's run: its counts, its summary line, and what it reported
/// test by test (printed as one block).
struct GuestRun {
    passed: usize,
    failed: usize,
    line: String,
    printed: String,
}

/// Boots the kernel with the suite's script and reads the results back
/// from its console.
fn run_guest(
    env: &GuestEnv,
    binaries: &[GuestBinary],
    args: &TestArgs,
) -> anyhow::Result<GuestRun> {
    let script = env.work.join("guest.sh");
    std::fs::write(&script, guest_script(env, binaries, args.filter.as_deref()))?;
    let log = env.work.join("console.log");
    let outcome = vm::run(&vm::Boot {
        kernel: env.kernel,
        script: &script,
        rw_dir: env.work,
        timeout: Duration::from_secs(args.timeout),
        log: &log,
        echo: false,
        // A guest that cannot power off (the lock-debugging kernel has no
        // ACPI) is done once the script has said so.
        grace_after: Some(("MODSCOPE-VM-END", Duration::from_secs(15))),
        tcg: vm::Tcg::SingleThread,
    })?;
    let report = parse_console(&outcome.lines);
    let mut printed = format!(
        "==> VM suite on {} ({:.0} s)\n",
        env.kernel.describe(),
        outcome.wall.as_secs_f64()
    );
    for (t, seconds) in report
        .tests
        .iter()
        .zip(test_seconds(&report, &outcome.arrived))
    {
        printed.push_str(&format!(
            "    {} {:>6.1} s  {}\n",
            if t.passed { "ok    " } else { "FAILED" },
            seconds,
            t.name
        ));
        if !t.passed {
            for line in failure_excerpt(&outcome.lines, &t.name) {
                printed.push_str(&format!("      | {line}\n"));
            }
        }
    }
    let oops = vm::oops_excerpt(&outcome.lines, 40);
    if !oops.is_empty() {
        printed.push_str(&format!(
            "    the kernel crashed; its account (full console: {}):\n",
            log.display()
        ));
        for line in oops {
            printed.push_str(&format!("      {line}\n"));
        }
    }
    let problems = problems_of(&report, &outcome, args.timeout);
    let ok_count = report.tests.iter().filter(|t| t.passed).count();
    let bad_count = report.tests.len() - ok_count;
    let line = format!(
        "{:<34} {:>3} passed {:>3} failed {:>6.1} s{}{}",
        env.kernel.describe(),
        ok_count,
        bad_count,
        outcome.wall.as_secs_f64(),
        if problems.is_empty() {
            String::new()
        } else {
            format!("  [{}]", problems.join("; "))
        },
        if bad_count > 0 || !problems.is_empty() {
            format!("  (console: {})", log.display())
        } else {
            String::new()
        },
    );
    Ok(GuestRun {
        passed: ok_count,
        failed: bad_count + usize::from(bad_count == 0 && !problems.is_empty()),
        line,
        printed,
    })
}

/// Each test's time: from the previous verdict (or the suite's start) to
/// its own, as the console lines arrived. The guest runs one test at a
/// time, so this is the test's time plus its binary's start-up.
fn test_seconds(report: &GuestReport, arrived: &[Duration]) -> Vec<f64> {
    let at = |line: usize| arrived.get(line).copied().unwrap_or_default();
    let mut previous = report.began.map(at).unwrap_or_default();
    report
        .tests
        .iter()
        .map(|t| {
            let now = at(t.line);
            let seconds = now.saturating_sub(previous).as_secs_f64();
            previous = now;
            seconds
        })
        .collect()
}

/// What went wrong with a guest besides failed tests.
fn problems_of(report: &GuestReport, outcome: &vm::Outcome, timeout: u64) -> Vec<String> {
    let mut problems: Vec<String> = report.binaries_failed.clone();
    if outcome.panicked {
        problems.push(match &report.unfinished {
            Some(test) => format!("the guest kernel panicked during {test}"),
            None => "the guest kernel panicked".into(),
        });
    }
    if outcome.timed_out {
        problems.push(format!("timed out after {timeout} s; the guest was killed"));
    }
    if !report.finished && !outcome.timed_out && !outcome.panicked {
        problems.push("the guest stopped before the suite finished".into());
    }
    if report.tests.is_empty() {
        problems.push("no test ran".into());
    }
    problems
}

/// A test binary a guest runs, and which of its tests (all when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GuestBinary {
    path: PathBuf,
    only: &'static [&'static str],
}

/// A focused part of the suite: (test binary's name prefix, its tests;
/// all of them when empty).
type Focus = &'static [(&'static str, &'static [&'static str])];

/// The debug kernel is there for the anomaly detectors and has no Debian
/// modules: it runs the `detectors` tests and the guard's (whose in-kernel
/// `struct module` check is proven there).
const DEBUG_FOCUS: Focus = &[("detectors-", &[]), ("guard-", &[])];

/// The PREEMPT_RT arm64 guest, the suite's longest (800 s for the whole
/// set): what depends on the combination. The generic arm64 guests cover
/// the architecture (attribution, registers, arm64's layouts) and the
/// x86-64 PREEMPT_RT guest the flavour; this one checks PREEMPT_RT's
/// layouts and verdicts on arm64 (the ground truth, the detectors), the
/// registry's events, exact counts on each attach type, and the guard's
/// refusal of a generic module.
const RT_ARM64_FOCUS: Focus = &[
    ("check_ground_truth-", &[]),
    ("detectors-", &[]),
    ("module_events-", &[]),
    (
        "call_counts-",
        &[
            "init_and_triggered_calls_are_counted_exactly",
            "count_call_attaches_each_way_the_kernel_has_and_counts_exactly",
        ],
    ),
    (
        "guard-",
        &["guard_deny_incompatible_refuses_a_generic_module_on_preempt_rt_forced_or_not"],
    ),
];

/// The part of the suite `kernel` runs, when not the whole.
fn focus(kernel: &kernels::Kernel) -> Option<Focus> {
    match (&kernel.flavour, kernel.arch) {
        (kernels::Flavour::Debug, _) => Some(DEBUG_FOCUS),
        (kernels::Flavour::PreemptRt, kernels::Arch::Arm64) => Some(RT_ARM64_FOCUS),
        _ => None,
    }
}

fn binaries_for(kernel: &kernels::Kernel, all: &[PathBuf]) -> Vec<GuestBinary> {
    let Some(focus) = focus(kernel) else {
        return all
            .iter()
            .map(|path| GuestBinary {
                path: path.clone(),
                only: &[],
            })
            .collect();
    };
    all.iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let (_, only) = focus.iter().find(|(prefix, _)| name.starts_with(prefix))?;
            Some(GuestBinary {
                path: path.clone(),
                only,
            })
        })
        .collect()
}

/// What the guest needs to know, exported as environment variables.
struct GuestEnv<'a> {
    kernel: &'a kernels::Kernel,
    modscope: &'a Path,
    modules: &'a Path,
    /// The other flavour's release and its test modules.
    sibling: Option<&'a (String, PathBuf)>,
    work: &'a Path,
    /// `MODSCOPE_OUTPUT_TESTS`: this guest runs the output tests.
    outputs: bool,
}

/// The kernels that run the tests of modscope's own outputs (trace files,
/// metrics, the TUI): on neither the kernel's flavour nor its version do
/// they depend, so one generic kernel per architecture runs them, the
/// newest of those selected. A generic guest of 6.1 skips about 250 s.
fn output_kernels(selected: &[kernels::Kernel]) -> HashSet<String> {
    let mut newest: HashMap<kernels::Arch, &kernels::Kernel> = HashMap::new();
    for k in selected
        .iter()
        .filter(|k| k.flavour == kernels::Flavour::Generic)
    {
        let slot = newest.entry(k.arch).or_insert(k);
        if k.version > slot.version {
            *slot = k;
        }
    }
    newest.into_values().map(|k| k.release.clone()).collect()
}

fn guest_script(env: &GuestEnv, binaries: &[GuestBinary], filter: Option<&str>) -> String {
    let flavour = match env.kernel.flavour {
        kernels::Flavour::Generic => "generic",
        kernels::Flavour::PreemptRt => "rt",
        kernels::Flavour::Debug => "debug",
    };
    let sibling = env
        .sibling
        .map(|(release, dir)| format!("export MODSCOPE_SIBLING_RELEASE='{release}'\nexport MODSCOPE_SIBLING_MODULES='{}'\n", dir.display()))
        .unwrap_or_default();
    // arm64's busybox insmod has no -f and another wording: the tests load
    // through finit_module(2) themselves there.
    let loader = match env.kernel.arch {
        kernels::Arch::Arm64 => "export MODSCOPE_GUEST_LOADER=syscall\n",
        kernels::Arch::X86_64 => "",
    };
    let mut s = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask test`; runs inside the guest.\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export MODSCOPE_BIN='{}'\n\
         export MODSCOPE_TEST_MODULES='{}'\n\
         export MODSCOPE_KERNEL_FLAVOUR={flavour}\n\
         export MODSCOPE_KERNEL_FPROBE={fprobe}\n\
         export MODSCOPE_KERNEL_FENTRY={fentry}\n\
         export MODSCOPE_OUTPUT_TESTS={outputs}\n\
         export MODSCOPE_VM_OUT='{}'\n\
         # The guest's root is read-only: what modscope takes out of a kernel\n\
         # image once (BTF, certificates) is cached where every test finds it.\n\
         export XDG_CACHE_HOME='{}/cache'\n\
         {loader}\
         {sibling}\
         export RUST_BACKTRACE=1\n\
         echo \"MODSCOPE-VM-BEGIN $(uname -r)\"\n",
        env.modscope.display(),
        env.modules.display(),
        env.work.display(),
        env.work.display(),
        fprobe = u8::from(env.kernel.fprobe),
        fentry = u8::from(env.kernel.fentry),
        outputs = u8::from(env.outputs),
    );
    for bin in binaries {
        let name = bin
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `--filter` (a substring) wins over a focus's exact names.
        let selection = match (filter, bin.only) {
            (Some(f), _) => format!("'{f}'"),
            (None, []) => String::new(),
            (None, tests) => {
                let names: Vec<String> = tests.iter().map(|t| format!("'{t}'")).collect();
                format!("--exact {}", names.join(" "))
            }
        };
        s.push_str(&format!(
            "'{}' --test-threads=1 {selection}\necho \"MODSCOPE-VM-EXIT {name} $?\"\n",
            bin.path.display(),
        ));
    }
    s.push_str("echo MODSCOPE-VM-END\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn kernel(release: &str, version: (u32, u32), flavour: kernels::Flavour) -> kernels::Kernel {
        kernels::Kernel {
            release: release.into(),
            image: PathBuf::new(),
            build_dir: PathBuf::new(),
            flavour,
            version,
            arch: if release.ends_with("arm64") {
                kernels::Arch::Arm64
            } else {
                kernels::Arch::X86_64
            },
            fprobe: false,
            fentry: false,
        }
    }

    #[test]
    fn a_focused_guest_runs_its_binaries_and_only_the_named_tests() {
        use kernels::Flavour::{Generic, PreemptRt};
        let all: Vec<PathBuf> = ["call_counts-1a", "trace_files-2b", "detectors-3c"]
            .into_iter()
            .map(|n| PathBuf::from("/t").join(n))
            .collect();
        let rt_arm64 = binaries_for(&kernel("6.1.0-57-rt-arm64", (6, 1), PreemptRt), &all);
        let names: Vec<_> = rt_arm64.iter().map(|b| b.path.clone()).collect();
        assert_eq!(names, [all[0].clone(), all[2].clone()], "no trace files");
        assert_eq!(rt_arm64[0].only.len(), 2, "two of the call-count tests");
        assert!(rt_arm64[1].only.is_empty(), "every detector test");
        let rt_x86 = binaries_for(&kernel("6.1.0-57-rt-amd64", (6, 1), PreemptRt), &all);
        assert_eq!(rt_x86.len(), 3);
        assert!(rt_x86.iter().all(|b| b.only.is_empty()));
        let generic = binaries_for(&kernel("6.1.0-57-arm64", (6, 1), Generic), &all);
        assert_eq!(generic.len(), 3);
        let env = GuestEnv {
            kernel: &kernel("6.1.0-57-rt-arm64", (6, 1), PreemptRt),
            modscope: Path::new("/m"),
            modules: Path::new("/mods"),
            sibling: None,
            work: Path::new("/w"),
            outputs: false,
        };
        let script = guest_script(&env, &rt_arm64, None);
        assert!(
            script.contains(
                "'/t/call_counts-1a' --test-threads=1 --exact \
                 'init_and_triggered_calls_are_counted_exactly' \
                 'count_call_attaches_each_way_the_kernel_has_and_counts_exactly'"
            ),
            "{script}"
        );
        let filtered = guest_script(&env, &rt_arm64, Some("reload"));
        assert!(filtered.contains("'/t/call_counts-1a' --test-threads=1 'reload'"));
    }

    /// Every test a focus names is a test of the suite: a renamed test
    /// would otherwise silently leave the focused guest.
    #[test]
    fn every_focused_test_name_is_a_vm_test() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        let sources: String = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        for (_, tests) in DEBUG_FOCUS.iter().chain(RT_ARM64_FOCUS) {
            for t in *tests {
                assert!(sources.contains(&format!("fn {t}()")), "no VM test {t}");
            }
        }
    }

    #[test]
    fn the_guest_with_the_output_tests_starts_first_and_the_post_mortem_last() {
        use kernels::Flavour::{Debug, Generic, PreemptRt};
        let suite = |k: kernels::Kernel, outputs: bool| Job::Suite {
            kernel: k,
            modscope: PathBuf::new(),
            modules: PathBuf::new(),
            binaries: Vec::new(),
            sibling: None,
            outputs,
        };
        let mut jobs = [
            suite(kernel("6.1.0-57-amd64", (6, 1), Generic), false),
            suite(kernel("6.1.0-57-rt-arm64", (6, 1), PreemptRt), false),
            Job::Postmortem {
                kernel: kernel("6.1.0-57-rt-amd64", (6, 1), PreemptRt),
                modscope: PathBuf::new(),
                generic: PathBuf::new(),
            },
            suite(kernel("6.1.192-modscope-debug", (6, 1), Debug), false),
            suite(kernel("6.12.118+deb12-arm64", (6, 12), Generic), true),
            suite(kernel("6.1.0-57-rt-amd64", (6, 1), PreemptRt), false),
        ];
        jobs.sort_by_key(|j| std::cmp::Reverse(j.expected_seconds()));
        let order: Vec<String> = jobs
            .iter()
            .map(|j| match j {
                Job::Suite { kernel, .. } => kernel.release.clone(),
                Job::Postmortem { .. } => "post-mortem".into(),
            })
            .collect();
        assert_eq!(
            order,
            [
                "6.12.118+deb12-arm64",
                "6.1.0-57-rt-amd64",
                "6.1.0-57-amd64",
                "6.1.0-57-rt-arm64",
                "6.1.192-modscope-debug",
                "post-mortem"
            ]
        );
    }

    #[test]
    fn the_output_tests_run_on_the_newest_generic_kernel_of_each_architecture() {
        use kernels::Flavour::{Debug, Generic, PreemptRt};
        let suite = [
            kernel("6.1.0-57-amd64", (6, 1), Generic),
            kernel("6.12.118+deb12-amd64", (6, 12), Generic),
            kernel("6.1.0-57-rt-amd64", (6, 1), PreemptRt),
            kernel("6.1.192-modscope-debug", (6, 1), Debug),
            kernel("6.12.118+deb12-arm64", (6, 12), Generic),
            kernel("6.1.0-57-arm64", (6, 1), Generic),
            kernel("6.1.0-57-rt-arm64", (6, 1), PreemptRt),
        ];
        let mut picked: Vec<String> = output_kernels(&suite).into_iter().collect();
        picked.sort();
        assert_eq!(picked, ["6.12.118+deb12-amd64", "6.12.118+deb12-arm64"]);
        // `--kernel` with one generic kernel: it runs them.
        let one = output_kernels(&suite[..1]);
        assert!(one.contains("6.1.0-57-amd64") && one.len() == 1);
        // No generic kernel selected: nobody does.
        assert!(output_kernels(&suite[2..4]).is_empty());
    }

    #[test]
    fn a_failed_tests_account_is_cut_to_its_head_and_tail() {
        let mut text = String::from(
            "test hidden::found ... FAILED\n\nfailures:\n\n---- hidden::found stdout ----\n\
             thread 'found' panicked at tests/hidden.rs:149:5:\n\
             condition not met after 90s; events so far:\n",
        );
        for i in 0..100 {
            text.push_str(&format!("event {i}\n"));
            if i == 50 {
                text.push_str("[   99.1] a kernel line\n");
            }
        }
        text.push_str(&format!("{}\n", "x".repeat(1000)));
        text.push_str("---- other stdout ----\nnot this\nfailures:\n    hidden::found\n");
        let excerpt = failure_excerpt(&lines(&text), "hidden::found");
        assert_eq!(
            excerpt.len(),
            FAILURE_HEAD + 1 + FAILURE_TAIL,
            "{excerpt:#?}"
        );
        assert_eq!(
            excerpt[0],
            "thread 'found' panicked at tests/hidden.rs:149:5:"
        );
        assert_eq!(excerpt[2], "event 0");
        assert_eq!(
            excerpt[FAILURE_HEAD],
            "[… 67 lines: the full account is in the console log]"
        );
        assert_eq!(excerpt[excerpt.len() - 2], "event 99");
        assert_eq!(
            excerpt.last().unwrap().chars().count(),
            FAILURE_LINE_CHARS + 1
        );
        assert!(
            !excerpt
                .iter()
                .any(|l| l.contains("kernel line") || l == "not this")
        );
        assert!(failure_excerpt(&lines(&text), "absent").is_empty());
    }

    #[test]
    fn reads_results_through_kernel_noise() {
        let report = parse_console(&lines(
            "[    3.1] virtme-ng-init: ...\n\
             MODSCOPE-VM-BEGIN 6.1.0-56-amd64\n\
             test events::load_then_unload ... ok\n\
             [    9.9] modscope_hello: loaded\n\
             test events::taints_match ... FAILED\n\
             MODSCOPE-VM-EXIT module_events-123 101\n\
             MODSCOPE-VM-END\n",
        ));
        assert_eq!(
            report.tests,
            vec![
                TestResult {
                    name: "events::load_then_unload".into(),
                    passed: true,
                    line: 2
                },
                TestResult {
                    name: "events::taints_match".into(),
                    passed: false,
                    line: 4
                },
            ]
        );
        assert_eq!(
            report.binaries_failed,
            vec!["module_events-123 exited 101".to_owned()]
        );
        assert!(report.finished);
        assert_eq!(report.began, Some(1));
        let arrived: Vec<_> = [0, 1, 3, 4, 6, 6, 7]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        assert_eq!(test_seconds(&report, &arrived), vec![2.0, 3.0]);
    }

    #[test]
    fn a_guest_that_died_is_not_finished() {
        let report = parse_console(&lines(
            "test a ... ok\ntest b ... [ 5.0] BUG: kernel NULL pointer dereference\n\
             [ 5.1] Kernel panic - not syncing\n",
        ));
        assert!(!report.finished);
        assert_eq!(report.tests.len(), 1);
        assert_eq!(report.unfinished.as_deref(), Some("b"));
        let report = parse_console(&lines("test a ... ok\n"));
        assert_eq!(report.unfinished, None);
    }

    #[test]
    fn a_verdict_split_off_by_kernel_messages_still_counts() {
        let report = parse_console(&lines(
            "test a ... [    2.4] modscope_hello: loading out-of-tree module taints kernel.\n\
             [    2.5] modscope_hello: loaded\n\
             ok\n\
             test b ... [    3.0] x: y\n\
             FAILED\n\
             ok\n",
        ));
        assert_eq!(
            report.tests,
            vec![
                TestResult {
                    name: "a".into(),
                    passed: true,
                    line: 2
                },
                TestResult {
                    name: "b".into(),
                    passed: false,
                    line: 4
                },
            ]
        );
        assert_eq!(report.unfinished, None);
    }
}
