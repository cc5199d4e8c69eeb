//! Running commands with their failures explained.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `cmd` with inherited stdio; an error names `what` and the command.
pub fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{what}: {cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` with its output going to `log`; on failure the error names
/// `what` and carries the log's last 40 lines.
pub fn run_logged(what: &str, cmd: &mut Command, log: &std::path::Path) -> anyhow::Result<()> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = cmd
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("{what}: could not start {cmd:?}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        bail!(
            "{what} failed (log: {}):\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; true/false for "did it succeed" is
/// the caller's business, so a failure is not an error here.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Announces a step, with the time since this xtask started: a CI log
/// then shows where its minutes went.
pub fn step(msg: &str) {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let at = STARTED.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("==> [{:>4} s] {msg}", at.as_secs());
}

pub fn skip(msg: &str) {
    eprintln!("    {msg}: already there, skipping");
}
