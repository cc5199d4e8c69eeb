//! The post-mortem scenario of the VM suite, on the PREEMPT_RT kernel: a
//! module built for the generic flavour (DEFINE_MUTEX + mutex_lock) is
//! force-loaded while `modscope record -o` runs; the RT mutex_lock gets a
//! non-RT mutex and the guest hangs. The guest is killed a while after the
//! insmod, and the trace it left on the host (over 9p) is read here, on
//! another machine, with `modscope report`: it must show the forced load,
//! the CRC mismatch on mutex_lock, and the module's first mutex_lock call.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{kernels::Kernel, vm};

const MODULE: &str = "modscope_mutex_static";
const INSMOD_MARKER: &str = "MODSCOPE-PM-INSMOD";
const RETURNED_MARKER: &str = "MODSCOPE-PM-RETURNED";
/// How long the guest gets after the forced insmod before it is killed.
const GRACE: Duration = Duration::from_secs(40);

/// What happened, for the suite's summary.
pub struct Outcome {
    pub summary: String,
}

fn script(modscope: &Path, module: &Path, out: &Path) -> String {
    let trace = out.join("hang.trace");
    let log = out.join("hang.jsonl");
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask test` (postmortem.rs); runs inside the guest.\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         '{modscope}' record --json -o '{trace}' --watch '{module}' > '{log}' 2>&1 &\n\
         i=0\n\
         while ! grep -q '\"type\":\"ready\"' '{log}' 2>/dev/null; do\n\
         \x20 i=$((i+1)); [ $i -gt 1200 ] && {{ echo 'MODSCOPE-PM-NOT-READY'; cat '{log}'; exit 1; }}\n\
         \x20 sleep 0.1\n\
         done\n\
         echo {INSMOD_MARKER}\n\
         insmod -f '{module}'\n\
         echo \"{RETURNED_MARKER} $?\"\n\
         kill -TERM %1\n\
         wait\n",
        modscope = modscope.display(),
        trace = trace.display(),
        module = module.display(),
        log = log.display(),
    )
}

/// Runs the scenario on `kernel` (the PREEMPT_RT one) with the generic
/// build of the test modules in `generic_modules`.
pub fn run(
    kernel: &Kernel,
    modscope: &Path,
    generic_modules: &Path,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let work = vm::work_dir("postmortem", kernel)?;
    let module = generic_modules.join(format!("{MODULE}.ko"));
    let script_path = work.join("guest.sh");
    std::fs::write(&script_path, script(modscope, &module, &work))?;
    let log = work.join("console.log");
    let outcome = vm::run(&vm::Boot {
        kernel,
        script: &script_path,
        rw_dir: &work,
        timeout,
        log: &log,
        echo: false,
        grace_after: Some((INSMOD_MARKER, GRACE)),
        tcg: vm::Tcg::SingleThread,
    })?;
    let said = |m: &str| outcome.lines.iter().any(|l| l.contains(m));
    if !said(INSMOD_MARKER) {
        bail!(
            "the post-mortem scenario never reached its insmod (console: {})",
            log.display()
        );
    }
    let hung = !said(RETURNED_MARKER);
    let trace = work.join("hang.trace");
    let summary = check_trace(modscope, &trace)
        .with_context(|| format!("the trace left by the guest, {}", trace.display()))?;
    Ok(Outcome {
        summary: format!(
            "{}; {summary}",
            if hung {
                format!(
                    "the guest hung after the forced insmod and was killed {} s later",
                    GRACE.as_secs()
                )
            } else {
                "the forced insmod returned (the guest did not hang this time)".to_owned()
            }
        ),
    })
}

/// Reads the trace on the host and checks the evidence is there.
fn check_trace(modscope: &Path, trace: &PathBuf) -> anyhow::Result<String> {
    let out = Command::new(modscope)
        .args(["report", "--json"])
        .arg(trace)
        .output()
        .context("running modscope report")?;
    if !out.status.success() {
        bail!(
            "modscope report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("report JSON")?;
    let m = report["sessions"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["modules"].as_array())
        .and_then(|ms| ms.iter().find(|m| m["name"] == MODULE))
        .with_context(|| format!("{MODULE} is not in the trace"))?;
    let taints = m["taints"].as_str().unwrap_or_default();
    if !taints.contains('F') {
        bail!("{MODULE}'s load is not marked forced (taints {taints:?})");
    }
    let verdict = &m["verdict"];
    if verdict["kernel_would_refuse"] != true || verdict["verdict"] != "incompatible" {
        bail!("{MODULE}'s verdict is not 'incompatible, refused without -f': {verdict}");
    }
    let crc = verdict["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["code"] == "CRC_MISMATCH" && r["symbol"] == "mutex_lock")
        .with_context(|| format!("no CRC_MISMATCH for mutex_lock: {verdict}"))?;
    if !crc["message"]
        .as_str()
        .unwrap_or_default()
        .contains("PREEMPT_RT")
    {
        bail!("the CRC reason does not name PREEMPT_RT: {crc}");
    }
    let call = m["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["symbol"] == "mutex_lock")
        .with_context(|| format!("no mutex_lock call recorded for {MODULE}: {m}"))?;
    let first = call["first_caller"].as_str().unwrap_or("?");
    if call["first_use_ktime_ns"].is_null() {
        bail!("mutex_lock's first call has no time: {call}");
    }
    Ok(format!(
        "the trace ({} bytes) shows the forced load (taints {taints}), the verdict (CRC_MISMATCH \
         mutex_lock, PREEMPT_RT) and the first mutex_lock call at {first}",
        std::fs::metadata(trace).map_or(0, |m| m.len())
    ))
}
