//! The TUI in a real terminal: `modscope replay` under tmux, keys sent as a
//! person types them, the pane captured and read as a person sees it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use modscope::trace::{TraceWriter, samples};

#[path = "../../tests/src/tmux.rs"]
#[allow(dead_code)] // shared with the VM tests, which use all of it
mod tmux;
use tmux::Tmux;

fn trace_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modscope-tui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut w = TraceWriter::create(&path).unwrap();
    for r in samples::story() {
        w.write(&r);
    }
    w.sync().unwrap();
    path
}

fn replay_cmd(path: &Path, extra: &str) -> String {
    // After modscope exits, the pane keeps what the terminal shows.
    format!(
        "{} replay {} {extra}; echo MODSCOPE-EXITED $?; sleep 30",
        env!("CARGO_BIN_EXE_modscope"),
        path.display()
    )
}

#[test]
fn replay_in_a_real_terminal_steps_through_the_story() {
    let path = trace_file("story.trace");
    let t = Tmux::start("story", &replay_cmd(&path, ""), 80, 24);
    // Pause at once; the header says where the replay stands.
    t.wait_for("modscope replay");
    t.keys(&["g"]);
    let pane = t.wait_for("record 0/");
    assert!(pane.contains("paused"), "{pane}");
    // n: the first mark is rtbad's unsafe verdict.
    t.keys(&["n"]);
    let pane = t.wait_for("✖ unsafe");
    assert!(pane.contains("rtbad"), "{pane}");
    assert!(pane.contains("record 5/"), "{pane}");
    // n again: the first mutex_lock call, an anomaly.
    t.keys(&["n"]);
    let pane = t.wait_for("record 6/");
    assert!(pane.contains("ANOMALY"), "{pane}");
    // G: the end; rtbad unloaded, the session ended.
    t.keys(&["G"]);
    let pane = t.wait_for("session ended");
    assert!(pane.contains("unloaded"), "{pane}");
    // ← twice: the unload is undone.
    t.keys(&["Left", "Left"]);
    let pane = t.wait_for("record 18/20");
    let row = pane
        .lines()
        .find(|l| l.contains("rtbad") && l.contains("unsafe"))
        .unwrap_or_default();
    assert!(row.contains("live"), "{pane}");
    // Enter opens the detail: the reasons, each with why it matters here.
    t.keys(&["Enter"]);
    let pane = t.wait_for("why it matters");
    assert!(pane.contains("CRC_MISMATCH"), "{pane}");
    // Help overlay, then quit: the terminal is restored.
    t.keys(&["Escape", "?"]);
    t.wait_for("Keys (any key closes)");
    t.keys(&["x", "q"]);
    let pane = t.wait_for("MODSCOPE-EXITED 0");
    assert!(!pane.contains("Modules"), "alternate screen left: {pane}");
    assert!(t.alive());
}

#[test]
fn replay_filters_sorts_and_honours_no_color() {
    let path = trace_file("filter.trace");
    let cmd = format!("NO_COLOR=1 {}", replay_cmd(&path, "--at-end"));
    let t = Tmux::start("filter", &cmd, 80, 24);
    t.wait_for("session ended");
    t.keys(&["/", "e", "x", "t", "Enter"]);
    let pane = t.wait_for("filter: ext");
    assert!(pane.contains("Modules 1 ·"), "{pane}");
    assert!(
        pane.lines().any(|l| l.contains("✔ compatible ext4")),
        "{pane}"
    );
    assert!(
        !pane.lines().any(|l| l.contains("unsafe     rtbad")),
        "{pane}"
    );
    t.keys(&["Escape", "s"]);
    let pane = t.wait_for("sort: module");
    let ext4 = pane.find("compatible ext4").unwrap();
    let rtbad = pane.find("unsafe     rtbad").unwrap();
    assert!(ext4 < rtbad, "by name: {pane}");
    // No colour escape codes reach the terminal: capture with escapes.
    let out = Command::new("tmux")
        .args(["-L", t.socket(), "capture-pane", "-e", "-p", "-t", "0"])
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        !raw.contains("\x1b[31m") && !raw.contains("\x1b[38;5;1m") && !raw.contains("\x1b[91m"),
        "{raw:?}"
    );
    t.keys(&["q"]);
    t.wait_for("MODSCOPE-EXITED 0");
}

#[test]
fn the_screen_follows_the_terminal_size() {
    let path = trace_file("resize.trace");
    let t = Tmux::start("resize", &replay_cmd(&path, "--at-end"), 80, 24);
    let pane = t.wait_for("session ended");
    let width = |pane: &str| pane.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert_eq!(width(&pane), 80, "{pane}");
    t.resize(132, 40);
    // The modules table's bottom border spans the new width.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pane = t.capture();
        if pane.lines().count() == 40
            && pane
                .lines()
                .any(|l| l.starts_with('└') && l.chars().count() == 132)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not redrawn at 132x40:\n{pane}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    t.keys(&["q"]);
    t.wait_for("MODSCOPE-EXITED 0");
}

#[test]
fn sigterm_restores_the_terminal() {
    let path = trace_file("term.trace");
    let t = Tmux::start("term", &replay_cmd(&path, ""), 80, 24);
    t.wait_for("modscope replay");
    let pid = Command::new("pgrep")
        .args([
            "-f",
            &format!(
                "^{} replay {}",
                env!("CARGO_BIN_EXE_modscope"),
                path.display()
            ),
        ])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(!pid.is_empty());
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let pane = t.wait_for("MODSCOPE-EXITED");
    assert!(!pane.contains("Modules"), "{pane}");
    assert!(pane.contains("MODSCOPE-EXITED 0"), "{pane}");
}

#[test]
fn a_closed_terminal_ends_replay() {
    let path = trace_file("hangup.trace");
    let t = Tmux::start("hangup", &replay_cmd(&path, ""), 80, 24);
    t.wait_for("modscope replay");
    let pattern = format!(
        "^{} replay {}",
        env!("CARGO_BIN_EXE_modscope"),
        path.display()
    );
    let running = || {
        Command::new("pgrep")
            .args(["-f", &pattern])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(running());
    // The window goes away (tmux's server, and with it the terminal).
    drop(t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while running() {
        assert!(
            std::time::Instant::now() < deadline,
            "modscope replay outlived its terminal"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_damaged_trace_shows_what_was_readable_and_what_was_skipped() {
    let path = trace_file("damaged.trace");
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte in the middle of the file.
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let t = Tmux::start("damaged", &replay_cmd(&path, "--at-end"), 100, 30);
    let pane = t.wait_for("damaged: 1 stretches");
    assert!(pane.contains("rtbad"), "{pane}");
    assert!(
        pane.contains("damage"),
        "the log says what was skipped: {pane}"
    );
    t.keys(&["q"]);
}

#[test]
fn replay_of_a_file_that_is_not_a_trace_is_a_clear_error() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("not-a-trace-{}", std::process::id()));
    std::fs::write(&path, b"hello").unwrap();
    let t = Tmux::start("bad", &replay_cmd(&path, ""), 80, 24);
    let pane = t.wait_for("MODSCOPE-EXITED");
    assert!(pane.contains("MODSCOPE-EXITED 6"), "{pane}");
    assert!(
        pane.contains("not a modscope trace") || pane.contains("trace"),
        "{pane}"
    );
}
