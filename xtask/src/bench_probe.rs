//! `cargo xtask bench` (probe part), in one VM run on one suite kernel (the
//! generic x86-64 one, or `--kernel`: arm64 too), so every figure comes
//! from the same machine and boot:
//!
//! - hot path: modscope_calls makes 1M module→kernel calls (500,000 kstrdup
//!   and 500,000 kfree) per trigger, under an empty kprobe on both functions
//!   (bpftrace), under an empty fentry program on both (the cheaper attach
//!   type's floor; disarmed through `ftrace_enabled`), under modscope on
//!   fentry and through one kprobe_multi link where the kernel has them
//!   (both disarmed through `ftrace_enabled` too) and with a kprobe per
//!   function, under modscope with `--no-detectors` (the
//!   detectors' added cost: with them, each kfree goes through the checking
//!   program) and with an allocator followed, and under a bpftrace program
//!   doing the same return-address attribution. Each variant is measured in
//!   pairs against the same work with every kprobe in the kernel disarmed
//!   (`/sys/kernel/debug/kprobes/enabled`), many rounds, the order inside a
//!   pair alternating: TCG's drift and the host's load hit both halves of a
//!   pair alike, so the ratio's median and spread show a 5% difference;
//! - attach time for N probed functions by each attach type (fentry,
//!   kprobe_multi, a kprobe each);
//! - trace bytes per active module-hour and modscope's peak RSS while
//!   recording the test workload;
//! - churn: the time per load/unload cycle with and without a recording
//!   session, and whether every incarnation was counted exactly.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context as _;

use crate::{
    artifacts,
    kernels::{Arch, Kernel},
    vm,
};

/// 1M calls per trigger: kstrdup and kfree, N each.
const CALLS_PER_FUNCTION: u64 = 500_000;

/// Pairs (disarmed, armed) per variant.
const ROUNDS: u64 = 15;

/// Load/unload cycles under a recording session, and without one (the
/// time a cycle takes anyway).
const CHURN_CYCLES: u64 = 1000;
const CHURN_BARE_CYCLES: u64 = 200;

/// bpftrace's baseline programs, each on kstrdup and kfree.
struct Bpftrace {
    /// An empty kprobe program: the attach type's floor.
    empty: &'static str,
    /// The same empty program on fentry (a BPF trampoline called from the
    /// function's ftrace site). Disarmed with
    /// `/proc/sys/kernel/ftrace_enabled`, which the kprobe switch leaves
    /// armed.
    empty_fentry: &'static str,
    /// fentry's attribution floor: an fentry program that reads one kernel
    /// word through bpf_probe_read_kernel, as modscope reads the trampoline
    /// frame's words past the arguments (the context does not reach them).
    fentry_read: &'static str,
    /// Only the read every attribution needs, the return address (the
    /// comparison keeps it from being dropped).
    read: &'static str,
    /// The equivalent of modscope's attribution: the return address,
    /// core-kernel callers skipped, a per-CPU count keyed by the caller's
    /// page and the function.
    attribution: &'static str,
}

const FENTRY_READ: &str = r#"kfunc:kstrdup,kfunc:kfree { $w = *(uint64 *)kaddr("jiffies"); if ($w == 0) { @never = count(); } }"#;

/// Where the return address lies at a kprobe on a function's first
/// instruction differs: on x86-64 at regs->sp (read through
/// bpf_probe_read_kernel), on arm64 in the link register (x30, unsigned
/// before the function's own `paciasp`). Modules lie at 0xffffffffa0000000
/// and up on x86-64, below the kernel image on arm64.
fn bpftrace_programs(arch: Arch) -> Bpftrace {
    match arch {
        Arch::X86_64 => Bpftrace {
            empty: "kprobe:kstrdup,kprobe:kfree { }",
            empty_fentry: "kfunc:kstrdup,kfunc:kfree { }",
            fentry_read: FENTRY_READ,
            read: r#"kprobe:kstrdup,kprobe:kfree { $ra = *(uint64 *)reg("sp"); if ($ra == 0) { @never = count(); } }"#,
            attribution: r#"kprobe:kstrdup,kprobe:kfree { $ra = *(uint64 *)reg("sp"); if (($ra >> 28) >= 0xffffffffa) { @calls[$ra >> 12, func] = count(); } }"#,
        },
        Arch::Arm64 => Bpftrace {
            empty: "kprobe:kstrdup,kprobe:kfree { }",
            empty_fentry: "kfunc:kstrdup,kfunc:kfree { }",
            fentry_read: FENTRY_READ,
            read: r#"kprobe:kstrdup,kprobe:kfree { $ra = reg("r30"); if ($ra == 0) { @never = count(); } }"#,
            attribution: r#"kprobe:kstrdup,kprobe:kfree { $ra = reg("r30"); if ($ra < kaddr("_stext") && ($ra >> 47) == 0x1ffff) { @calls[$ra >> 12, func] = count(); } }"#,
        },
    }
}

fn guest_script(
    arch: Arch,
    modscope: &Path,
    baseline: Option<&Path>,
    modules: &Path,
    work: &Path,
) -> String {
    let bpftrace = bpftrace_programs(arch);
    let baseline = baseline.map_or(String::new(), |b| {
        format!(
            r#"# The same, with the baseline build, in the same boot.
"{b}" record $FUNCS --json > $W/baseline.log 2>&1 & P=$!
wait_for $W/baseline.log '"ready"'
timed baseline
kill -INT $P; wait $P
# baseline_row ROW ATTACH_TYPE: the baseline build's session on that type,
# its pairs where it attached so (disarmed through every ftrace site).
baseline_row() {{
  MODSCOPE_ATTACH=$2 "{b}" record $FUNCS --json > $W/$1.log 2>&1 & P=$!
  wait_for $W/$1.log '"ready"'
  if grep -q "\"$2/count_call" $W/$1.log; then
    timed $1 /proc/sys/kernel/ftrace_enabled
  fi
  kill -INT $P; wait $P
}}
baseline_row baseline_fentry fentry
baseline_row baseline_multi kprobe_multi
"#,
            b = b.display()
        )
    });
    format!(
        r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
M='{modules}'; B='{modscope}'; W='{work}'
T=/sys/module/modscope_calls/parameters/trigger
# The detectors as they run for this module (mutex_lock, kfree: no allocator
# of its own to follow, so no object tracking); then with an allocator
# followed (__kmalloc), which puts every kfree through the checking program
# (count, then forget the allocation): the object-bounds bookkeeping's cost.
FUNCS='--function kstrdup --function kfree --function mutex_lock'
FOLLOWING="$FUNCS --function __kmalloc"
insmod "$M/modscope_calls.ko" || echo "BENCH-ERROR insmod"
# Nanoseconds: GNU date's %N, else (busybox, the arm64 guests) the kernel's
# monotonic clock as /proc/timer_list prints it; only differences are used.
if [ "$(date +%N)" != "%N" ]; then now() {{ date +%s%N; }}
else now() {{ sed -n 's/^now at \([0-9]*\) nsecs$/\1/p' /proc/timer_list; }}; fi
# Every kprobe in the kernel disarmed (0) or armed (1), without detaching;
# a variant may name another switch (fentry: every ftrace site).
KP=/sys/kernel/debug/kprobes/enabled
[ -e $KP ] || mount -t debugfs debugfs /sys/kernel/debug
[ -e $KP ] || echo "BENCH-ERROR no $KP: kprobes cannot be disarmed here"
run_us() {{ s=$(now); echo {n} > $T; e=$(now); echo $(( (e - s) / 1000 )); }}
# One line per round: the same work disarmed and armed, in alternating
# order, by the switch $2 (default: every kprobe). Leaves it armed.
timed() {{
  i=0; S=${{2:-$KP}}
  while [ $i -lt {rounds} ]; do
    if [ $((i % 2)) -eq 0 ]; then
      echo 0 > $S; off=$(run_us); echo 1 > $S; on=$(run_us)
    else
      echo 1 > $S; on=$(run_us); echo 0 > $S; off=$(run_us); echo 1 > $S
    fi
    echo "BENCH-PAIR $1 $off $on"
    i=$((i + 1))
  done
}}
# Up to 5 minutes for a session's start under TCG.
wait_for() {{ i=0; until grep -q "$2" "$1" 2>/dev/null; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && echo "BENCH-ERROR waiting for $2 in $1" && return 1; done; }}
# bpftrace_row ROW PROGRAM [SWITCH]: the pairs under bpftrace running
# PROGRAM. A kernel that refuses the program (fentry without trampolines:
# arm64 before 6.4) skips the row: bpftrace says "Attaching", then fails
# and exits.
bpftrace_row() {{
  bpftrace -e "$2" > $W/bt-$1.log 2>&1 & P=$!
  i=0; until grep -q Attaching $W/bt-$1.log 2>/dev/null || ! kill -0 $P 2>/dev/null; do
    sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && echo "BENCH-ERROR bpftrace did not attach $1" && return 1
  done
  sleep 2
  if ! kill -0 $P 2>/dev/null || grep -q '^ERROR' $W/bt-$1.log; then
    kill -INT $P 2>/dev/null; wait $P
    echo "BENCH-SKIP-ROW $1: bpftrace could not attach it: $(grep -v '^$' $W/bt-$1.log | tail -1)"
    return
  fi
  timed $1 $3
  kill -INT $P; wait $P
}}
echo 1000 > $T
# Instructions per call need a PMU event that counts them (x86's
# cpu/instructions, arm64's inst_retired): the event sources, then those.
E=/sys/bus/event_source/devices
echo "BENCH-PMU $(ls $E | tr '\n' ' ')/ $(ls -d $E/*/events/instructions $E/*/events/inst_retired 2>/dev/null | tr '\n' ' ')"
if command -v bpftrace > /dev/null; then
  bpftrace_row empty_kprobe '{empty}'
  bpftrace_row empty_fentry '{empty_fentry}' /proc/sys/kernel/ftrace_enabled
  bpftrace_row fentry_read '{fentry_read}' /proc/sys/kernel/ftrace_enabled
  bpftrace_row bpftrace_read '{read}'
else
  # No bpftrace (an arm64 tree unpacked without it): the kernel's own
  # kprobe events, no BPF program at all, are the empty-kprobe baseline.
  echo "BENCH-SKIP bpftrace is not in this guest: the empty kprobe is a tracefs kprobe event, and there is no bpftrace attribution row"
  K=/sys/kernel/tracing
  echo 'p:bench_kstrdup kstrdup' >> $K/kprobe_events; echo 'p:bench_kfree kfree' >> $K/kprobe_events
  echo 1 > $K/events/kprobes/enable
  timed empty_kprobe
  echo 0 > $K/events/kprobes/enable
  echo '-:bench_kstrdup' >> $K/kprobe_events; echo '-:bench_kfree' >> $K/kprobe_events
fi
# count_call on a core-kernel function by fentry (asked for), and through
# one kprobe_multi link where the kernel has them (the default). The kprobe
# switch disarms neither; every ftrace site's does (and the kprobes with
# it), so those pairs are compared by the time added per call. The rows
# that set the detectors' figures use a kprobe per function, the same
# attach type as the empty kprobe, disarmed the same way.
# attach_row ROW ATTACH_TYPE SKIP_TAG: a session on that type, its pairs
# where it attached so, its calls line.
attach_row() {{
  "$B" record $FUNCS --attach $2 --json > $W/$1.log 2>&1 & P=$!
  wait_for $W/$1.log '"ready"'
  if grep -q "\"$2/count_call" $W/$1.log; then
    timed $1 /proc/sys/kernel/ftrace_enabled
    kill -INT $P; wait $P
    echo "BENCH-CALLS $2 $(grep '"type":"calls"' $W/$1.log)"
  else
    echo "BENCH-SKIP-$3 no $2 on this kernel: count_call attached otherwise"
    kill -INT $P; wait $P
  fi
}}
attach_row modscope_fentry fentry FENTRY
attach_row modscope_multi kprobe_multi MULTI
# The environment's form of --attach: a --baseline build may predate the flag.
export MODSCOPE_ATTACH=kprobe
"$B" record $FUNCS --json > $W/modscope.log 2>&1 & P=$!
wait_for $W/modscope.log '"ready"'
timed modscope
kill -INT $P; wait $P
echo "BENCH-CALLS kprobe $(grep '"type":"calls"' $W/modscope.log)"
{baseline}"$B" record $FOLLOWING --json > $W/modscope-f.log 2>&1 & P=$!
wait_for $W/modscope-f.log '"ready"'
timed modscope_following
kill -INT $P; wait $P
"$B" record $FUNCS --no-detectors --json > $W/modscope-nd.log 2>&1 & P=$!
wait_for $W/modscope-nd.log '"ready"'
timed modscope_no_detectors
kill -INT $P; wait $P
if command -v bpftrace > /dev/null; then
  bpftrace_row bpftrace '{attribution}'
fi

unset MODSCOPE_ATTACH
# Attach time as modscope attaches (fentry where the kernel can), through
# one kprobe_multi link, and with a kprobe per function.
FS=/lib/modules/$(uname -r)/kernel/fs
attach_runs() {{
  for K in 0 64 128 256; do
    s=$(now); "$B" record --watch $FS --attach $1 --max-probes $K --duration 0 --json > $W/attach.log 2>&1; e=$(now)
    echo "BENCH-ATTACH $1 $K $(grep -o '"attached":[0-9]*' $W/attach.log | head -1 | cut -d: -f2) $(( (e - s) / 1000 ))"
  done
}}
attach_runs fentry
attach_runs kprobe_multi
attach_runs kprobe

# Memory. The first session on a machine takes the trusted certificates out
# of the kernel image (decompressing it); later ones read them from the cache.
export XDG_CACHE_HOME=$W/cache; rm -rf $W/cache
# Its peak until it exits (an exited, unreaped child keeps its /proc entry
# without VmHWM: that ends the loop too).
hwm() {{ h=0; while v=$(grep VmHWM /proc/$1/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2); [ -n "$v" ]; do h=$v; sleep 0.2; done; wait $1; echo $h; }}
"$B" record -o $W/cold.trace --watch "$M/modscope_calls.ko" --duration 2 > /dev/null 2>&1 & P=$!
echo "BENCH-RSS-COLD $(hwm $P)"
"$B" record -o $W/workload.trace --watch "$M/modscope_calls.ko" > $W/record.log 2>&1 & P=$!
# Started once the session header and the modules present are written.
i=0; until [ "$(stat -c %s $W/workload.trace 2>/dev/null || echo 0)" -gt 16 ]; do sleep 0.2; i=$((i+1)); [ $i -gt 600 ] && echo "BENCH-ERROR no trace header" && break; done
# The modules present reach the file with the session's first batch of
# events (it flushes after each): one trigger first, so the start size
# holds them whenever that batch comes.
echo 1000 > $T; sleep 2; S0=$(stat -c %s $W/workload.trace)
i=0; while [ $i -lt 60 ]; do echo 1000 > $T; sleep 0.5; i=$((i+1)); done
S1=$(stat -c %s $W/workload.trace)
echo "BENCH-RSS $(grep VmHWM /proc/$P/status | tr -s ' ' | cut -d' ' -f2) $(grep VmRSS /proc/$P/status | tr -s ' ' | cut -d' ' -f2)"
kill -INT $P; wait $P
echo "BENCH-TRACE $S0 $S1"

# Churn: load/unload cycles of modscope_calls (its init calls kstrdup 1000
# and mutex_lock 500 times), without a session, then under one.
rmmod modscope_calls
cycles() {{ i=0; s=$(now); while [ $i -lt $1 ]; do insmod "$M/modscope_calls.ko" && rmmod modscope_calls; i=$((i+1)); done; e=$(now); echo $(( (e - s) / 1000 )); }}
echo "BENCH-CHURN bare {churn_bare} $(cycles {churn_bare})"
"$B" record --watch "$M/modscope_calls.ko" --json > $W/churn.log 2>&1 & P=$!
wait_for $W/churn.log '"ready"'
echo "BENCH-CHURN recorded {churn} $(cycles {churn})"
sleep 3; kill -INT $P; wait $P
echo "BENCH-DONE"
"#,
        modules = modules.display(),
        modscope = modscope.display(),
        work = work.display(),
        n = CALLS_PER_FUNCTION,
        rounds = ROUNDS,
        empty = bpftrace.empty,
        empty_fentry = bpftrace.empty_fentry,
        fentry_read = bpftrace.fentry_read,
        read = bpftrace.read,
        attribution = bpftrace.attribution,
        churn = CHURN_CYCLES,
        churn_bare = CHURN_BARE_CYCLES,
    )
}

fn median(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

pub fn run(kernel: &Kernel, baseline: Option<&Path>) -> anyhow::Result<()> {
    let modscope = artifacts::modscope_for(kernel.arch)?;
    let modules = artifacts::test_modules(kernel)?;
    let work = vm::work_dir("bench", kernel)?;
    if kernel.arch == Arch::Arm64 {
        crate::arm64::ensure_bpftrace()?;
    }
    let script = work.join("bench.sh");
    std::fs::write(
        &script,
        guest_script(kernel.arch, &modscope, baseline, &modules, &work),
    )?;
    crate::shell::step(&format!(
        "bench probe: hot path, attach time, trace size and RSS on {} (VM, ~30 minutes)",
        kernel.describe()
    ));
    let outcome = vm::run(&vm::Boot {
        kernel,
        script: &script,
        rw_dir: &work,
        timeout: Duration::from_secs(3600),
        log: &work.join("console.log"),
        echo: false,
        grace_after: None,
        tcg: vm::Tcg::SingleThread,
    })?;
    let log = work.join("console.log");
    if outcome.timed_out || outcome.panicked {
        anyhow::bail!(
            "the benchmark VM did not finish; console in {}",
            log.display()
        );
    }
    let lines: Vec<&str> = outcome
        .lines
        .iter()
        .filter_map(|l| l.find("BENCH-").map(|i| &l[i..]))
        .collect();
    if let Some(e) = lines.iter().find(|l| l.starts_with("BENCH-ERROR")) {
        anyhow::bail!("{e}; console in {}", log.display());
    }
    if !lines.contains(&"BENCH-DONE") {
        anyhow::bail!(
            "the benchmark did not complete; console in {}",
            log.display()
        );
    }
    print_hot_path(&lines)?;
    print_attach(&lines);
    print_trace(&lines)?;
    print_churn(&lines, &work.join("churn.log"))
}

/// One variant's pairs: microseconds disarmed and armed.
struct Pairs(Vec<(u64, u64)>);

impl Pairs {
    /// Armed over disarmed, per pair, sorted.
    fn ratios(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self
            .0
            .iter()
            .map(|&(off, on)| on as f64 / off.max(1) as f64)
            .collect();
        r.sort_by(f64::total_cmp);
        r
    }

    /// The ratio's quartiles: (p25, median, p75).
    fn quartiles(&self) -> (f64, f64, f64) {
        let r = self.ratios();
        let at = |q: usize| r[(r.len() - 1) * q / 4];
        (at(1), at(2), at(3))
    }

    /// Median time added per call, armed less disarmed, in nanoseconds.
    fn added_ns_per_call(&self, calls: u64) -> f64 {
        let mut d: Vec<i64> = self
            .0
            .iter()
            .map(|&(off, on)| on as i64 - off as i64)
            .collect();
        d.sort_unstable();
        d[d.len() / 2] as f64 * 1000.0 / calls as f64
    }

    fn median_ms(&self, armed: bool) -> f64 {
        let v: Vec<u64> = self
            .0
            .iter()
            .map(|&(off, on)| if armed { on } else { off })
            .collect();
        median(&v) / 1000.0
    }
}

fn pairs<'a>(lines: &[&'a str]) -> anyhow::Result<BTreeMap<&'a str, Pairs>> {
    let mut out: BTreeMap<&str, Pairs> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && f[0] == "BENCH-PAIR" {
            let pair = (f[2].parse()?, f[3].parse()?);
            out.entry(f[1])
                .or_insert_with(|| Pairs(Vec::new()))
                .0
                .push(pair);
        }
    }
    Ok(out)
}

/// What the guest's perf event sources say about counting instructions per
/// call (`BENCH-PMU SOURCES / EVENTS`): only an event that counts them
/// (x86's `cpu/events/instructions`, arm64's `inst_retired`) could.
fn pmu_finding(line: &str) -> String {
    let (sources, events) = line.split_once('/').unwrap_or((line, ""));
    match events.split_whitespace().next() {
        None => format!(
            "instructions per call: not counted, no event source of the guest counts instructions (its sources: {})",
            sources.trim()
        ),
        Some(event) => format!(
            "instructions per call: the guest has an instruction event ({event}), which this bench does not read yet"
        ),
    }
}

fn print_hot_path(lines: &[&str]) -> anyhow::Result<()> {
    let all = pairs(lines)?;
    if let Some(skip) = lines.iter().find(|l| l.starts_with("BENCH-SKIP ")) {
        println!(
            "hot-path: {} (its rows are left out)",
            &skip["BENCH-SKIP ".len()..]
        );
    }
    if let Some(sources) = lines.iter().find_map(|l| l.strip_prefix("BENCH-PMU ")) {
        println!("hot-path: {}", pmu_finding(sources));
    }
    let calls = 2 * CALLS_PER_FUNCTION;
    println!(
        "hot-path: {calls} module→kernel calls per run; {ROUNDS} pairs per variant (every kprobe \
         disarmed, then armed, alternating), TCG guest; ratio = armed / disarmed, median [p25, p75]"
    );
    for (name, key) in [
        ("empty kprobe", "empty_kprobe"),
        ("empty fentry", "empty_fentry"),
        ("fentry, one kernel read", "fentry_read"),
        ("return address read only", "bpftrace_read"),
        ("modscope (fentry)", "modscope_fentry"),
        ("modscope (kprobe_multi)", "modscope_multi"),
        ("modscope (a kprobe each)", "modscope"),
        ("baseline build", "baseline"),
        ("baseline build (fentry)", "baseline_fentry"),
        ("baseline build (kprobe_multi)", "baseline_multi"),
        ("modscope --no-detectors", "modscope_no_detectors"),
        ("modscope, kfree tracked", "modscope_following"),
        ("bpftrace attribution", "bpftrace"),
    ] {
        let Some(p) = all.get(key) else { continue };
        let (lo, mid, hi) = p.quartiles();
        println!(
            "hot-path:   {name:<29} {:>8.1} ms armed, {:>8.1} ms disarmed, +{:>5.0} ns/call, ratio {mid:.3} [{lo:.3}, {hi:.3}]",
            p.median_ms(true),
            p.median_ms(false),
            p.added_ns_per_call(calls),
        );
    }
    let ratio = |k: &str| all.get(k).map(Pairs::quartiles);
    let ours = ratio("modscope").context("no modscope pairs")?;
    if let Some(empty) = ratio("empty_kprobe") {
        println!(
            "hot-path: modscope / empty kprobe = {:.3} [{:.3}, {:.3}] (goal <= 1.10)",
            ours.1 / empty.1,
            ours.0 / empty.2,
            ours.2 / empty.0
        );
    }
    if let (Some(empty), Some(read)) = (ratio("empty_kprobe"), ratio("bpftrace_read")) {
        println!(
            "hot-path: reading the return address alone = {:.3} x the empty kprobe: the floor of any attribution on this attach type",
            read.1 / empty.1
        );
    }
    // Per call, not by ratio: the fentry pairs' switch re-patches every
    // ftrace site, and under TCG that retranslation lands in both halves.
    if let (Some(empty), Some(fentry)) = (all.get("empty_kprobe"), all.get("empty_fentry")) {
        println!(
            "hot-path: the empty fentry's added time per call / the empty kprobe's = {:.2}: what the attach type alone would save",
            fentry.added_ns_per_call(calls) / empty.added_ns_per_call(calls)
        );
    }
    // Per call: the fentry and kprobe_multi pairs are disarmed through
    // every ftrace site.
    for (key, attach, baseline) in [
        ("modscope_fentry", "fentry", "baseline_fentry"),
        ("modscope_multi", "one kprobe_multi link", "baseline_multi"),
    ] {
        let Some(ours) = all.get(key) else { continue };
        let ours_ns = ours.added_ns_per_call(calls);
        let same_type = format!("the baseline build's by {attach}");
        for (other, label) in [
            (
                "fentry_read",
                "fentry's floor's (an fentry program's one kernel read)",
            ),
            ("modscope", "through a kprobe each"),
            (baseline, same_type.as_str()),
            ("empty_kprobe", "the empty kprobe's (goal <= 1.10)"),
            ("bpftrace", "bpftrace's attribution's (goal <= 0.40)"),
        ] {
            if let Some(p) = all.get(other) {
                println!(
                    "hot-path: modscope's added time per call by {attach} / {label} = {:.2}",
                    ours_ns / p.added_ns_per_call(calls)
                );
            }
        }
    }
    // The least any attribution on fentry costs, against bpftrace's: above
    // 0.40, that goal is out of reach on this kernel by fentry.
    if let (Some(floor), Some(bt)) = (all.get("fentry_read"), all.get("bpftrace")) {
        println!(
            "hot-path: fentry's floor (one kernel read)'s added time per call / bpftrace's attribution's = {:.2}",
            floor.added_ns_per_call(calls) / bt.added_ns_per_call(calls)
        );
    }
    for skip in ["BENCH-SKIP-FENTRY ", "BENCH-SKIP-MULTI ", "BENCH-SKIP-ROW "] {
        for l in lines.iter().filter(|l| l.starts_with(skip)) {
            println!("hot-path: {}", &l[skip.len()..]);
        }
    }
    if let Some(base) = ratio("baseline") {
        println!(
            "hot-path: modscope's added time / the baseline build's = {:.3}",
            (ours.1 - 1.0) / (base.1 - 1.0)
        );
    }
    if let Some(plain) = ratio("modscope_no_detectors") {
        println!(
            "hot-path: detectors' added cost over plain attribution = {:+.1}% (goal <= 10%)",
            ((ours.1 - 1.0) / (plain.1 - 1.0) - 1.0) * 100.0
        );
        if let Some(following) = ratio("modscope_following") {
            println!(
                "hot-path: with allocations followed (every kfree checked) = {:+.1}% over plain attribution",
                ((following.1 - 1.0) / (plain.1 - 1.0) - 1.0) * 100.0
            );
        }
    }
    if let Some(bt) = ratio("bpftrace") {
        println!(
            "hot-path: modscope overhead / bpftrace overhead = {:.2} (goal <= 0.40)",
            (ours.1 - 1.0) / (bt.1 - 1.0)
        );
    }
    print_counted(lines, calls)
}

/// What modscope's own report counted over its armed runs, by attach type,
/// against what the module made (disarmed runs are not seen).
fn print_counted(lines: &[&str], calls: u64) -> anyhow::Result<()> {
    for l in lines {
        let Some(rest) = l.strip_prefix("BENCH-CALLS ") else {
            continue;
        };
        let (attach, json) = rest.split_once(' ').unwrap_or((rest, ""));
        if json.is_empty() {
            println!("hot-path: modscope on {attach} printed no calls line");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(json).context("modscope's calls line")?;
        let counted: u64 = v["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["name"] == "modscope_calls")
            .flat_map(|m| m["calls"].as_array().cloned().unwrap_or_default())
            .map(|c| c["count"].as_u64().unwrap_or(0))
            .sum();
        println!(
            "hot-path: modscope on {attach} counted {counted} calls (expected {})",
            ROUNDS * calls
        );
    }
    Ok(())
}

/// One `record --duration 0` run: how it attached, the cap, the functions
/// attached, and its time in microseconds.
#[derive(Debug, PartialEq, Eq)]
struct AttachRun<'a> {
    mode: &'a str,
    cap: u64,
    attached: u64,
    us: u64,
}

fn attach_runs<'a>(lines: &[&'a str]) -> Vec<AttachRun<'a>> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 5 || f[0] != "BENCH-ATTACH" {
                return None;
            }
            Some(AttachRun {
                mode: f[1],
                cap: f[2].parse().ok()?,
                attached: f[3].parse().ok()?,
                us: f[4].parse().ok()?,
            })
        })
        .collect()
}

/// Each run less its mode's run with no function.
fn print_attach(lines: &[&str]) {
    let runs = attach_runs(lines);
    for run in &runs {
        let base = runs
            .iter()
            .find(|r| r.mode == run.mode && r.cap == 0)
            .map_or(0, |r| r.us);
        let mode = match run.mode {
            "kprobe" => "a kprobe each",
            "kprobe_multi" => "kprobe_multi first",
            _ => "fentry first",
        };
        println!(
            "attach: {mode:<20} --max-probes {:<4} {:>4} functions attached, run {:>7.0} ms, attach {:>7.0} ms (the run less the 0-probe run)",
            run.cap,
            run.attached,
            run.us as f64 / 1000.0,
            run.us.saturating_sub(base) as f64 / 1000.0
        );
    }
}

fn print_trace(lines: &[&str]) -> anyhow::Result<()> {
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["BENCH-TRACE", s0, s1] => {
                let (s0, s1): (u64, u64) = (s0.parse()?, s1.parse()?);
                // 60 triggers of 1000 calls, one every 0.5 s: about 30 s busy.
                let per_hour = (s1 - s0) as f64 / 30.0 * 3600.0;
                println!(
                    "trace: {} bytes at start (header, modules present, one first trigger), {} bytes over 30 s of one busy module: {:.0} KiB per module-hour",
                    s0,
                    s1 - s0,
                    per_hour / 1024.0
                );
            }
            ["BENCH-RSS-COLD", kb] => println!(
                "live RSS: modscope record's first start on the machine (certificates taken out of the kernel image) peak {:.1} MB",
                kb.parse::<f64>()? / 1024.0
            ),
            ["BENCH-RSS", peak, now] => println!(
                "live RSS: modscope record (cache warm) peak {:.1} MB (goal <= 50 MB), after 30 s busy {:.1} MB (goal <= 30 MB)",
                peak.parse::<f64>()? / 1024.0,
                now.parse::<f64>()? / 1024.0
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Time per cycle with and without the session, and what the session
/// made of the cycles: every incarnation's counts, events lost.
fn print_churn(lines: &[&str], log: &Path) -> anyhow::Result<()> {
    let mut per_cycle = BTreeMap::new();
    for l in lines {
        if let ["BENCH-CHURN", kind, n, us] = l.split_whitespace().collect::<Vec<_>>()[..] {
            let (n, us): (u64, u64) = (n.parse()?, us.parse()?);
            per_cycle.insert(kind.to_owned(), us as f64 / 1000.0 / n as f64);
        }
    }
    let (Some(bare), Some(recorded)) = (per_cycle.get("bare"), per_cycle.get("recorded")) else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let churn = ChurnOutcome::of(&events);
    println!(
        "churn: {CHURN_CYCLES} load/unload cycles recorded: {recorded:.0} ms per cycle ({bare:.0} ms without a session); {} unloads seen, {} incarnations counted exactly (1000 kstrdup, 500 mutex_lock), {} lost events",
        churn.unloads, churn.exact, churn.lost
    );
    Ok(())
}

/// What a churn session's events say.
#[derive(Debug, PartialEq)]
struct ChurnOutcome {
    unloads: usize,
    /// Incarnations whose init's calls were all counted.
    exact: usize,
    lost: u64,
}

impl ChurnOutcome {
    fn of(events: &[serde_json::Value]) -> Self {
        let calls = |m: &serde_json::Value, symbol: &str| {
            m["calls"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["symbol"] == symbol)
                .and_then(|c| c["count"].as_u64())
        };
        let ours = |e: &&serde_json::Value| e["name"] == "modscope_calls";
        let last = |kind: &str| events.iter().rev().find(|e| e["type"] == kind);
        Self {
            unloads: events
                .iter()
                .filter(|e| e["type"] == "unload")
                .filter(ours)
                .count(),
            exact: last("calls")
                .and_then(|c| c["modules"].as_array())
                .into_iter()
                .flatten()
                .filter(ours)
                .filter(|m| {
                    calls(m, "kstrdup") == Some(1000) && calls(m, "mutex_lock") == Some(500)
                })
                .count(),
            lost: last("registry").map_or(u64::MAX, |r| {
                r["stats"]["lost_events"].as_u64().unwrap_or(u64::MAX)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_churn_session_is_judged_by_its_unloads_exact_counts_and_lost_events() {
        let exact = r#"{"name":"modscope_calls","calls":[{"symbol":"kstrdup","count":1000},{"symbol":"mutex_lock","count":500}]}"#;
        let short = r#"{"name":"modscope_calls","calls":[{"symbol":"kstrdup","count":999},{"symbol":"mutex_lock","count":500}]}"#;
        let events: Vec<serde_json::Value> = [
            r#"{"type":"unload","name":"modscope_calls"}"#.to_owned(),
            r#"{"type":"unload","name":"other"}"#.to_owned(),
            r#"{"type":"unload","name":"modscope_calls"}"#.to_owned(),
            r#"{"type":"registry","stats":{"lost_events":2}}"#.to_owned(),
            format!(r#"{{"type":"calls","modules":[{exact},{short},{exact}]}}"#),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(
            ChurnOutcome::of(&events),
            ChurnOutcome {
                unloads: 2,
                exact: 2,
                lost: 2
            }
        );
        assert_eq!(
            ChurnOutcome::of(&[]).lost,
            u64::MAX,
            "no registry: not zero"
        );
    }

    #[test]
    fn instructions_are_counted_only_where_an_event_counts_them() {
        let tcg = pmu_finding("breakpoint kprobe msr software tracepoint uprobe / ");
        assert!(tcg.contains("not counted"), "{tcg}");
        assert!(tcg.ends_with("(its sources: breakpoint kprobe msr software tracepoint uprobe)"));
        let arm = pmu_finding(
            "armv8_pmuv3_0 kprobe / /sys/bus/event_source/devices/armv8_pmuv3_0/events/inst_retired ",
        );
        assert!(
            arm.contains("(/sys/bus/event_source/devices/armv8_pmuv3_0/events/inst_retired)"),
            "{arm}"
        );
        assert!(
            pmu_finding("cpu kprobe").contains("not counted"),
            "no event list: none"
        );
    }

    #[test]
    fn attach_runs_are_read_with_their_mode_and_malformed_lines_skipped() {
        let lines = [
            "BENCH-ATTACH fentry 0 0 15000000",
            "BENCH-ATTACH kprobe 64 64 17300000",
            "BENCH-ATTACH kprobe 64 64",
            "BENCH-ATTACH 64 64 17300000",
        ];
        assert_eq!(
            attach_runs(&lines),
            [
                AttachRun {
                    mode: "fentry",
                    cap: 0,
                    attached: 0,
                    us: 15_000_000
                },
                AttachRun {
                    mode: "kprobe",
                    cap: 64,
                    attached: 64,
                    us: 17_300_000
                }
            ]
        );
    }

    #[test]
    fn pairs_give_the_armed_to_disarmed_ratio_and_the_added_cost() {
        let lines = [
            "BENCH-PAIR modscope 1000 1100",
            "BENCH-PAIR modscope 1000 1200",
            "BENCH-PAIR modscope 2000 2600",
            "BENCH-PAIR modscope 1000 1150",
            "BENCH-PAIR modscope 1000 1120",
            "BENCH-HOT ignored 5",
        ];
        let all = pairs(&lines).unwrap();
        let p = &all["modscope"];
        let (lo, mid, hi) = p.quartiles();
        assert_eq!((lo, mid, hi), (1.12, 1.15, 1.2));
        // Median difference 150 µs over 1,000 calls.
        assert_eq!(p.added_ns_per_call(1000), 150.0);
        assert_eq!(p.median_ms(true), 1.15);
        assert_eq!(p.median_ms(false), 1.0);
    }

    /// The guest script is one the shell accepts (`sh -n`), on each
    /// architecture, with and without a baseline build.
    #[test]
    fn the_guest_script_parses_as_shell() {
        let p = std::path::Path::new;
        let cases = [Arch::X86_64, Arch::Arm64]
            .into_iter()
            .flat_map(|a| [(a, None), (a, Some(p("/tmp/base/modscope")))]);
        for (arch, baseline) in cases {
            let script =
                super::guest_script(arch, p("/tmp/modscope"), baseline, p("/tmp/m"), p("/tmp/w"));
            let mut sh = std::process::Command::new("sh")
                .arg("-n")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            std::io::Write::write_all(sh.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
            assert!(sh.wait().unwrap().success(), "{script}");
        }
    }

    /// Each architecture's bpftrace programs read the return address where
    /// a kprobe on the first instruction finds it.
    #[test]
    fn the_bpftrace_baselines_read_the_return_address_where_the_arch_keeps_it() {
        for (arch, read) in [
            (Arch::X86_64, r#"*(uint64 *)reg("sp")"#),
            (Arch::Arm64, r#"reg("r30")"#),
        ] {
            let b = bpftrace_programs(arch);
            assert!(b.read.contains(read), "{arch:?}: {}", b.read);
            assert!(b.attribution.contains(read), "{arch:?}: {}", b.attribution);
            assert!(b.empty_fentry.starts_with("kfunc:"));
        }
    }
}
