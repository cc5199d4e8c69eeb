//! Faults while recording: the trace's file system fills up, turns
//! read-only under it (or was read-only from the start), the process is
//! killed at twenty moments. Each time the
//! capture ends with a clear error or cleanly, nothing of modscope's stays
//! attached in the kernel, and `report` reads everything that was flushed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use vm_tests::*;

const CALLS: &str = "modscope_calls";
const WAIT: Duration = Duration::from_secs(90);

/// A tmpfs of `size` mounted at a fresh directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("modscope-faults-{name}"));
        let _ = Command::new("umount").arg(&dir).output();
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Self(dir)
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {options}: {out:?}");
    }
}

/// A `record` child killed when dropped, so a failed test leaves no
/// session running into the next.
struct Recording(Option<Child>);

impl Recording {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    fn take(mut self) -> Child {
        self.0.take().expect("running")
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

fn record(trace: &Path) -> Recording {
    let child = Command::new(modscope_bin())
        .args(["record", "--snapshot-interval", "0.05", "-o"])
        .arg(trace)
        .arg("--watch")
        .arg(module_file(CALLS))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting modscope record");
    Recording(Some(child))
}

/// Waits until the session header is in the file.
fn wait_for_header(trace: &Path, child: &mut Recording) {
    let child = child.child();
    let start = Instant::now();
    while std::fs::metadata(trace).map_or(true, |m| m.len() < 100) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("record ended before writing its header: {status}");
        }
        assert!(start.elapsed() < WAIT, "no trace header written");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads, drives and unloads the test module until `child` ends (or the
/// time runs out): each load and unload is a record synced at once.
fn churn_until_exit(child: Recording, timeout: Duration) -> Output {
    let mut child = child.take();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < timeout {
        let loaded = insmod(CALLS, &[]);
        let _ = std::fs::write(format!("/sys/module/{CALLS}/parameters/trigger"), "50");
        loaded.unload();
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < timeout,
        "record kept running on a trace it cannot write: {out:?}"
    );
    out
}

/// Nothing of modscope's is left in the kernel, once the kernel has
/// finished releasing what the dead process held: a link's last reference
/// drops its program after an RCU grace period (6.12), not in `exit`.
fn assert_nothing_attached(context: &str) {
    let ours = |progs: &[String]| {
        ["count_call", "module_load", "module_free"]
            .into_iter()
            .filter(|name| progs.iter().any(|p| p == name))
            .collect::<Vec<_>>()
    };
    let released = Instant::now();
    while (!ours(&bpf_objects::program_names()).is_empty() || bpf_objects::link_count() != 0)
        && released.elapsed() < RELEASE_GRACE
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let progs = bpf_objects::program_names();
    assert!(
        ours(&progs).is_empty(),
        "{context}: still loaded {RELEASE_GRACE:?} after the exit: {progs:?}"
    );
    assert_eq!(bpf_objects::link_count(), 0, "{context}: BPF links left");
}

/// How long the kernel gets to release a dead process's programs.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// `report --json` on what was flushed: it reads, whatever the cut.
fn report_reads(trace: &Path, context: &str) -> serde_json::Value {
    let out = Command::new(modscope_bin())
        .args(["report", "--json"])
        .arg(trace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{context}: report: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Exit 1, one of `whys` (the kernel's errno text), and the trace's path.
fn assert_clear_error(out: &Output, trace: &Path, whys: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{whys:?}: {stderr}");
    assert!(
        whys.iter().any(|w| stderr.contains(w)),
        "{whys:?}: {stderr}"
    );
    assert!(
        stderr.contains(&trace.display().to_string()),
        "the error names the trace: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_full_file_system_ends_the_capture_with_a_clear_error() {
    if !output_kernel("trace I/O faults") {
        return;
    }
    let fs = Tmpfs::mount("full", "64k");
    let trace = fs.0.join("t.trace");
    let mut child = record(&trace);
    wait_for_header(&trace, &mut child);
    // Under arm64 emulation a load takes most of a second: room for enough.
    let out = churn_until_exit(child, Duration::from_secs(300));
    assert_clear_error(&out, &trace, &["No space left on device"]);
    assert_nothing_attached("after ENOSPC");
    let report = report_reads(&trace, "after ENOSPC");
    let loads = report["sessions"][0]["modules"].as_array().unwrap().len();
    assert!(
        loads > 0,
        "the loads flushed before the disk filled: {report:#}"
    );
}

/// An ext4 file system on a loop device, mounted `errors=remount-ro`: an
/// error it meets (triggered through its sysfs `trigger_fs_error`) turns it
/// read-only under open files, as a failing disk does. Unmounted, and its
/// loop device freed, when dropped. `None` where the guest lacks mkfs.ext4
/// (the arm64 busybox guests).
struct Ext4 {
    dir: PathBuf,
    image: PathBuf,
    device: String,
}

impl Ext4 {
    fn mount(name: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("modscope-faults-{name}"));
        let image = std::env::temp_dir().join(format!("modscope-faults-{name}.img"));
        let _ = Command::new("umount").arg(&dir).output();
        std::fs::create_dir_all(&dir).unwrap();
        let run = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
        for m in ["loop", "ext4"] {
            let _ = Command::new("modprobe").arg(m).output();
        }
        let made = run(Command::new("truncate").args(["-s", "16M"]).arg(&image))
            && run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        if !made {
            eprintln!("no mkfs.ext4 here: the read-only turn is not tried");
            return None;
        }
        let out = Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&image)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount ext4: {out:?}");
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&dir)
            .output();
        let device = String::from_utf8_lossy(&source.unwrap().stdout)
            .trim()
            .trim_start_matches("/dev/")
            .to_owned();
        Some(Self { dir, image, device })
    }

    /// Unmounts the failed file system and mounts its image again (its
    /// journal replayed): what reached the disk (6.12 refuses even reads
    /// on the failed mount).
    fn remount_image(&self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&self.image)
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount the image again: {out:?}");
    }

    /// The error an ext4 file system remounts read-only on.
    fn fail(&self) {
        let knob = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device);
        std::fs::write(&knob, "modscope test").unwrap_or_else(|e| panic!("{knob}: {e}"));
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

#[test]
fn a_file_system_turned_read_only_under_the_capture_ends_it_with_a_clear_error() {
    if !output_kernel("trace I/O faults") {
        return;
    }
    let Some(fs) = Ext4::mount("ro") else {
        return;
    };
    let trace = fs.dir.join("t.trace");
    let mut recording = record(&trace);
    wait_for_header(&trace, &mut recording);
    insmod(CALLS, &[]).unload();
    // The load is on the disk (loads and unloads are synced at once).
    let start = Instant::now();
    while !has_module(&report_reads(&trace, "before the error"), CALLS) {
        assert!(start.elapsed() < WAIT, "the load never reached the trace");
        std::thread::sleep(Duration::from_millis(200));
    }
    fs.fail();
    let out = churn_until_exit(recording, WAIT);
    // ext4 aborts its journal as it remounts read-only: the next write
    // fails with EROFS or, while the abort is under way, EIO (both seen on 6.1).
    assert_clear_error(
        &out,
        &trace,
        &["Read-only file system", "Input/output error"],
    );
    assert_nothing_attached("after the remount");
    // What was flushed before the error is on the disk.
    fs.remount_image();
    let report = report_reads(&trace, "after the remount");
    assert!(
        has_module(&report, CALLS),
        "the load before the error is kept: {report:#}"
    );
}

fn has_module(report: &serde_json::Value, name: &str) -> bool {
    report["sessions"][0]["modules"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["name"] == name))
}

/// A read-only directory refuses the trace before anything is attached.
#[test]
fn a_read_only_directory_is_a_clear_error_before_anything_attaches() {
    let fs = Tmpfs::mount("rodir", "4m");
    fs.remount("ro");
    let trace = fs.0.join("t.trace");
    let out = churn_until_exit(record(&trace), WAIT);
    assert_clear_error(&out, &trace, &["Read-only file system"]);
    assert_nothing_attached("after EROFS");
    assert!(!trace.exists());
}

#[test]
fn sigkill_at_twenty_moments_leaves_nothing_attached_and_a_readable_trace() {
    let dir = std::env::temp_dir().join("modscope-faults-kill");
    std::fs::create_dir_all(&dir).unwrap();
    // The same twenty moments every run: start-up, attaching, loads, counts.
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut next_ms = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % 4000
    };
    for round in 0..20 {
        let trace = dir.join(format!("{round}.trace"));
        let _ = std::fs::remove_file(&trace);
        let at = Duration::from_millis(next_ms());
        let recording = record(&trace);
        let start = Instant::now();
        while start.elapsed() < at {
            if round % 2 == 0 && std::fs::metadata(&trace).is_ok_and(|m| m.len() >= 100) {
                insmod(CALLS, &[]).unload();
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut child = recording.take();
        child.kill().unwrap();
        child.wait().unwrap();
        let context = format!("SIGKILL {round} at {at:?}");
        assert_nothing_attached(&context);
        let len = std::fs::metadata(&trace).map_or(0, |m| m.len());
        // Killed before the file header was written: nothing was flushed.
        if len >= 16 {
            report_reads(&trace, &context);
        }
        eprintln!("{context}: {len} bytes flushed, report reads them");
    }
}
