//! Booting a Debian kernel under qemu (software emulation) with virtme-ng,
//! running one script in it, and reading the console back. The host's root
//! filesystem is the guest's, over 9p, so the guest runs the host's
//! modscope, kmod and test binaries as they are.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    arm64,
    kernels::{Arch, Kernel},
    setup,
};

/// What the console said, and how the guest ended.
pub struct Outcome {
    pub lines: Vec<String>,
    /// When each line arrived, from the boot's start (parallel to `lines`).
    pub arrived: Vec<Duration>,
    pub timed_out: bool,
    pub panicked: bool,
    pub wall: Duration,
}

/// Console lines that mean the guest is gone for good.
fn is_fatal(line: &str) -> bool {
    line.contains("Kernel panic - not syncing")
        || line.contains("---[ end Kernel panic")
        // An oops without panic_on_oops can leave the guest looping.
        || line.contains("kernel BUG at")
}

/// Lines that start the kernel's own account of a crash.
const OOPS_STARTS: [&str; 5] = [
    "BUG: ",
    "Oops: ",
    "general protection fault",
    "kernel BUG at",
    "Kernel panic - not syncing",
];

/// The kernel's account of the first crash on the console (the oops, its
/// registers and call trace): at most `max` kernel lines from the first
/// line that starts one. Empty when the kernel never crashed.
pub fn oops_excerpt(lines: &[String], max: usize) -> Vec<&str> {
    let Some(start) = lines
        .iter()
        .position(|l| OOPS_STARTS.iter().any(|m| l.contains(m)))
    else {
        return Vec::new();
    };
    lines[start..]
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with('['))
        .take(max)
        .collect()
}

pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    pub script: &'a Path,
    /// A host directory the guest may write to.
    pub rw_dir: &'a Path,
    pub timeout: Duration,
    /// Every console line goes here as it arrives.
    pub log: &'a Path,
    /// Echo console lines to the terminal (the demo); otherwise only to the log.
    pub echo: bool,
    /// Once a console line holds this marker, the guest gets at most this
    /// long before it is killed (a scenario that is expected to hang it).
    pub grace_after: Option<(&'a str, Duration)>,
    pub tcg: Tcg,
}

/// vng booting `kernel` under software emulation with the host's root
/// (9p), `rw_dir` writable; the caller says what runs in it.
pub fn vng_boot(kernel: &Kernel, rw_dir: &Path) -> Command {
    vng_boot_with(kernel, rw_dir, Tcg::SingleThread)
}

/// How qemu emulates the guest's CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcg {
    /// One host thread for both vCPUs: what everything here uses.
    SingleThread,
    /// qemu's default, a host thread per vCPU (`xtask stress` compares).
    MultiThread,
}

pub fn vng_boot_with(kernel: &Kernel, rw_dir: &Path, tcg: Tcg) -> Command {
    let mut cmd = Command::new(setup::vng());
    cmd.arg("--run")
        .arg(&kernel.image)
        .args([
            "--disable-kvm",
            "--force-9p",
            "--memory",
            "1G",
            "--cpus",
            "2",
        ])
        .arg("--rwdir")
        .arg(rw_dir);
    // One host thread runs both vCPUs. With multi-threaded TCG, disarming
    // a kprobe on a hot function (kfree) while the other vCPU runs it
    // intermittently ended in a call to address 0 (free_ftrace_hash,
    // process_srcu): see `cargo xtask stress` for the figures.
    if tcg == Tcg::SingleThread {
        cmd.arg("--qemu-opts=-accel tcg,thread=single");
    }
    cmd
}

/// The guest's command: vng for x86-64, qemu-system-aarch64 for arm64.
fn guest_command(boot: &Boot) -> anyhow::Result<Command> {
    match boot.kernel.arch {
        Arch::X86_64 => Ok(vng_command(boot)),
        Arch::Arm64 => arm64::command(boot.kernel, boot.script),
    }
}

fn vng_command(boot: &Boot) -> Command {
    let mut cmd = vng_boot_with(boot.kernel, boot.rw_dir, boot.tcg);
    cmd.arg("--exec")
        .arg(format!("sh {}", boot.script.display()));
    // Kernel messages on the console, so a panic or oops is in the log.
    cmd.arg("--verbose");
    cmd
}

/// Boots, runs the script, and returns the console. The guest (qemu and
/// everything vng started) is killed on timeout or on a kernel panic.
pub fn run(boot: &Boot) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut cmd = guest_command(boot)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut log = std::fs::File::create(boot.log)
        .with_context(|| format!("creating {}", boot.log.display()))?;
    let mut outcome = Outcome {
        lines: Vec::new(),
        arrived: Vec::new(),
        timed_out: false,
        panicked: false,
        wall: Duration::ZERO,
    };
    let mut deadline = boot.timeout;
    let mut graced = false;
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let line = strip_ansi(&line);
                writeln!(log, "{line}").ok();
                if boot.echo {
                    println!("{line}");
                }
                if is_fatal(&line) {
                    outcome.panicked = true;
                }
                if let Some((marker, grace)) = boot.grace_after
                    && line.contains(marker)
                {
                    deadline = deadline.min(start.elapsed() + grace);
                    graced = true;
                }
                outcome.lines.push(line);
                outcome.arrived.push(start.elapsed());
                if outcome.panicked {
                    kill_group(pgid);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() >= deadline => {
                // Past the marker's grace the kill is expected, not a timeout.
                outcome.timed_out = !graced;
                kill_group(pgid);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    outcome.wall = start.elapsed();
    Ok(outcome)
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we
    // created for vng; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Console output carries terminal colour codes; the log should not.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c == '\x1b' && matches!(chars.peek(), Some('(' | ')')) {
            // A character-set designation (terminfo's sgr0 ends with `ESC ( B`).
            chars.next();
            chars.next();
        } else if !c.is_control() || c == '\t' {
            // Carriage returns and shift-in/out (`\x0f` ends some sgr0s) go.
            out.push(c);
        }
    }
    out
}

/// Where per-run files go: target/vm/<what>/<release>.
pub fn work_dir(what: &str, kernel: &Kernel) -> anyhow::Result<PathBuf> {
    let dir = crate::artifacts::target_dir()
        .join("vm")
        .join(what)
        .join(&kernel.release);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_character_set_designations() {
        assert_eq!(strip_ansi("\x1b[32mok\x1b(B\x1b[m"), "ok");
        assert_eq!(strip_ansi("ok\x0f"), "ok");
    }

    #[test]
    fn strips_colour_codes_and_carriage_returns() {
        assert_eq!(
            strip_ansi("\x1b[1;32mtest a ... ok\x1b[0m\r"),
            "test a ... ok"
        );
    }

    #[test]
    fn kernel_bugs_are_fatal() {
        assert!(is_fatal(
            "[  118.142022] kernel BUG at arch/x86/kernel/kprobes/core.c:917!"
        ));
    }

    #[test]
    fn the_oops_excerpt_starts_at_the_first_crash_and_keeps_kernel_lines() {
        let console: Vec<String> = [
            "[   11.0] virtme-ng-init: starting script",
            "test a ... ok",
            "[   97.7] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "test b ... ",
            "[   97.8] RIP: 0010:0x0",
            "[   97.9]  free_ftrace_hash.part.0+0xc6/0x100",
            "[   98.0] Kernel panic - not syncing: Fatal exception",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            oops_excerpt(&console, 3),
            [
                "[   97.7] BUG: kernel NULL pointer dereference, address: 0000000000000000",
                "[   97.8] RIP: 0010:0x0",
                "[   97.9]  free_ftrace_hash.part.0+0xc6/0x100",
            ]
        );
        assert!(oops_excerpt(&console[..2], 40).is_empty());
    }

    #[test]
    fn panic_lines_are_fatal() {
        assert!(is_fatal(
            "[   12.3] Kernel panic - not syncing: Fatal exception"
        ));
        assert!(!is_fatal("test panics_are_reported ... ok"));
    }
}
