//! The packages proven on this machine, as a user would meet them: the
//! amd64 `.deb` installed with `dpkg -i`; `modscope --version`, `man
//! modscope` and bash's completion of `modscope ch<TAB>` (typed into an
//! interactive bash in tmux, with Debian's bash-completion loading the
//! installed script) from the installed files; the unit file passing
//! `systemd-analyze verify`; the arm64 package holding the same files.
//! The package is removed again at the end, whatever happened.

use std::{path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, bail, ensure};

use crate::{dist::Built, shell};

pub fn run(built: &Built) -> anyhow::Result<()> {
    shell::step("the .deb packages: dpkg -i, --version, man, bash completion, the unit file");
    let deb = |arch: &str| {
        built
            .debs
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("no {arch} package was built"))
    };
    let (amd64, arm64) = (deb("amd64")?, deb("arm64")?);
    same_files(&amd64, &arm64)?;
    shell::run("dpkg -i", Command::new("dpkg").arg("-i").arg(&amd64))?;
    let checked = installed_checks();
    let removed = shell::run(
        "dpkg --purge",
        Command::new("dpkg").args(["--purge", "modscope"]),
    );
    checked?;
    removed?;
    eprintln!(
        "    package checks passed: {}, {}",
        amd64.display(),
        arm64.display()
    );
    Ok(())
}

/// `dpkg-deb -c` of both lists the same paths and modes.
fn same_files(amd64: &Path, arm64: &Path) -> anyhow::Result<()> {
    let list = |deb: &Path| -> anyhow::Result<Vec<String>> {
        let out = shell::output(Command::new("dpkg-deb").arg("-c").arg(deb))
            .with_context(|| format!("dpkg-deb -c {}", deb.display()))?;
        // mode owner size date time path: keep mode and path.
        let mut rows: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(format!("{} {}", f.first()?, f.get(5)?))
            })
            .collect();
        rows.sort();
        Ok(rows)
    };
    let (a, b) = (list(amd64)?, list(arm64)?);
    ensure!(a == b, "the packages differ:\namd64: {a:#?}\narm64: {b:#?}");
    for needed in [
        "./usr/bin/modscope",
        "./usr/share/man/man1/modscope.1.gz",
        "./usr/share/man/man1/modscope-record.1.gz",
        "./usr/share/bash-completion/completions/modscope",
        "./usr/share/zsh/vendor-completions/_modscope",
        "./usr/share/fish/vendor_completions.d/modscope.fish",
        "./lib/systemd/system/modscope-record.service",
        "./usr/share/doc/modscope/README.md",
    ] {
        ensure!(
            a.iter().any(|r| r.ends_with(needed)),
            "{needed} is not in the packages: {a:#?}"
        );
    }
    Ok(())
}

fn installed_checks() -> anyhow::Result<()> {
    let version = shell::output(Command::new("/usr/bin/modscope").arg("--version"))
        .context("the installed /usr/bin/modscope --version")?;
    ensure!(
        version.trim() == format!("modscope {}", env!("CARGO_PKG_VERSION")),
        "modscope --version said {version:?}"
    );
    let page = shell::output(
        Command::new("man")
            .args(["-P", "cat", "modscope"])
            .env("MANWIDTH", "100"),
    )
    .context("man modscope")?;
    ensure!(
        page.contains("SUBCOMMANDS") && page.contains("modscope-record(1)"),
        "man modscope:\n{page}"
    );
    let record = shell::output(Command::new("man").args(["-P", "cat", "modscope-record"]))
        .context("man modscope-record")?;
    ensure!(
        record.contains("--rotate-size"),
        "man modscope-record:\n{record}"
    );
    shell::run(
        "systemd-analyze verify of the installed unit",
        Command::new("systemd-analyze")
            .args(["verify", "/lib/systemd/system/modscope-record.service"]),
    )?;
    let line = completed_line("modscope ch")?;
    ensure!(
        line.ends_with("modscope check"),
        "bash completed `modscope ch` to {line:?}"
    );
    Ok(())
}

/// Types `typed` and a TAB into an interactive bash (in tmux) whose
/// completion is Debian's bash-completion, and returns the prompt line.
fn completed_line(typed: &str) -> anyhow::Result<String> {
    let session = format!("modscope-completion-{}", std::process::id());
    let rc = std::env::temp_dir().join(format!("{session}.bashrc"));
    std::fs::write(
        &rc,
        "PS1='$ '\n. /usr/share/bash-completion/bash_completion\n",
    )?;
    let tmux = |args: &[&str]| Command::new("tmux").args(args).status();
    let rc_path = rc.display().to_string();
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "10",
        "bash",
        "--rcfile",
        &rc_path,
        "-i",
    ])?;
    ensure!(started.success(), "tmux could not start bash");
    let result = (|| {
        thread::sleep(Duration::from_millis(800));
        tmux(&["send-keys", "-t", &session, typed, "Tab"])?;
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(250));
            let pane =
                shell::output(Command::new("tmux").args(["capture-pane", "-p", "-t", &session]))
                    .context("tmux capture-pane")?;
            let line = pane
                .lines()
                .rev()
                .find(|l| l.starts_with("$ "))
                .unwrap_or("")
                .trim_end();
            if line.len() > 2 + typed.len() {
                return Ok(line.to_owned());
            }
        }
        bail!("bash did not complete `{typed}` within 5 s")
    })();
    let _ = tmux(&["kill-session", "-t", &session]);
    let _ = std::fs::remove_file(&rc);
    result
}
