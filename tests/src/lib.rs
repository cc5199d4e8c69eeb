//! Helpers for tests that run inside a guest kernel: the modscope binary
//! under test, the test modules built for this kernel, insmod/rmmod, and
//! what the kernel itself says (/proc/modules, /sys/module).
//!
//! Helpers panic on failure, with what was running and what it printed, so
//! a failing test keeps its backtrace.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod bpf_maps;
pub mod bpf_objects;
pub mod http;
pub mod tmux;

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: these tests run inside the VM, through `cargo xtask test`")
    })
}

pub fn modscope_bin() -> PathBuf {
    env_path("MODSCOPE_BIN")
}

pub fn module_file(name: &str) -> PathBuf {
    env_path("MODSCOPE_TEST_MODULES").join(format!("{name}.ko"))
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

pub fn flavour() -> String {
    std::env::var("MODSCOPE_KERNEL_FLAVOUR").unwrap_or_default()
}

/// Whether this guest runs a test that does not depend on the kernel's
/// flavour (modules that hide). The generic guests (6.1 and 6.12, x86-64
/// and arm64) run it; the PREEMPT_RT guests, the suite's longest, and the
/// lock-debugging one leave it out, which keeps the suite in its time.
pub fn generic_kernel(what: &str) -> bool {
    if flavour() == "generic" {
        return true;
    }
    eprintln!(
        "{what}: the generic guests cover it, not this {} one",
        flavour()
    );
    false
}

/// Whether this guest runs a test of modscope's own outputs (trace files
/// and their I/O faults, metrics, the TUI), which depend on neither the
/// kernel's flavour nor its version. `cargo xtask test` sets
/// `MODSCOPE_OUTPUT_TESTS=1` on one generic guest per architecture (the
/// newest kernel it boots) and 0 on the others; without it (a test binary
/// run by hand), any generic guest runs them.
pub fn output_kernel(what: &str) -> bool {
    match std::env::var("MODSCOPE_OUTPUT_TESTS").as_deref() {
        Ok("1") => true,
        Ok(_) => {
            eprintln!("{what}: one generic guest per architecture covers it, not this one");
            false
        }
        Err(_) => generic_kernel(what),
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loaded test module, unloaded when dropped (also when a test panics).
pub struct Loaded {
    pub name: String,
    unloaded: bool,
}

impl Loaded {
    pub fn unload(mut self) {
        rmmod(&self.name);
        self.unloaded = true;
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if !self.unloaded {
            let _ = unload_module(&self.name);
        }
    }
}

/// `insmod [-f] <module>.ko`; panics with insmod's message on failure.
pub fn insmod(name: &str, flags: &[&str]) -> Loaded {
    assert!(
        flags.iter().all(|f| *f == "-f"),
        "insmod takes -f only here: {flags:?}"
    );
    // A leftover from an earlier failed test would make insmod fail.
    let _ = unload_module(name);
    let file = module_file(name);
    if let Err(e) = load_module_file(&file, flags.contains(&"-f")) {
        panic!("insmod {flags:?} {}: {e}", file.display());
    }
    Loaded {
        name: name.to_owned(),
        unloaded: false,
    }
}

pub fn rmmod(name: &str) {
    if let Err(e) = unload_module(name) {
        panic!("rmmod {name}: {e}");
    }
}

/// Whether modules are loaded through finit_module(2) here rather than
/// kmod (`MODSCOPE_GUEST_LOADER=syscall`: the arm64 guests, whose busybox
/// insmod has no -f and words its errors its own way).
fn loads_by_syscall() -> bool {
    std::env::var("MODSCOPE_GUEST_LOADER").as_deref() == Ok("syscall")
}

/// Loads `path` (`force`: as `insmod -f`, ignoring vermagic and symbol
/// versions); the error is kmod's text for the kernel's answer.
pub fn load_module_file(path: &std::path::Path, force: bool) -> Result<(), String> {
    if loads_by_syscall() {
        return finit_module(path, force);
    }
    let mut cmd = Command::new("insmod");
    if force {
        cmd.arg("-f");
    }
    let out = run(cmd.arg(path));
    if out.status.success() {
        return Ok(());
    }
    Err(kmod_error_text(&String::from_utf8_lossy(&out.stderr)))
}

/// Unloads the module `name`: rmmod, or delete_module(2).
pub fn unload_module(name: &str) -> Result<(), String> {
    if loads_by_syscall() {
        let c_name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name; the kernel copies it.
        let rc =
            unsafe { libc::syscall(libc::SYS_delete_module, c_name.as_ptr(), libc::O_NONBLOCK) };
        return if rc == 0 {
            Ok(())
        } else {
            Err(errno_text(last_errno()))
        };
    }
    let out = run(Command::new("rmmod").arg(name));
    if out.status.success() {
        Ok(())
    } else {
        Err(kmod_error_text(&String::from_utf8_lossy(&out.stderr)))
    }
}

/// The part of kmod's message after the last ": ".
fn kmod_error_text(stderr: &str) -> String {
    stderr
        .trim()
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// finit_module(2) with insmod -f's flags when `force`.
fn finit_module(path: &std::path::Path, force: bool) -> Result<(), String> {
    use std::os::fd::AsRawFd as _;
    const MODULE_INIT_IGNORE_MODVERSIONS: libc::c_long = 1;
    const MODULE_INIT_IGNORE_VERMAGIC: libc::c_long = 2;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let flags = if force {
        MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC
    } else {
        0
    };
    let params = c"";
    // SAFETY: an open fd, a NUL-terminated empty parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno_text(last_errno()))
    }
}

/// init_module(2): the module from a memory buffer, no flags.
pub fn init_module_from_buffer(path: &std::path::Path) -> Result<(), String> {
    let image = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let params = c"";
    // SAFETY: the image and the NUL-terminated parameters outlive the call;
    // the kernel copies both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len() as libc::c_ulong,
            params.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno_text(last_errno()))
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// kmod's wording for the loader's errnos (its insmod's `mod_strerror`),
/// else the C library's.
fn errno_text(errno: i32) -> String {
    match errno {
        libc::ENOEXEC => "Invalid module format".into(),
        libc::ENOENT => "Unknown symbol in module".into(),
        _ => {
            let text = std::io::Error::from_raw_os_error(errno).to_string();
            text.split(" (os error")
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    }
}

/// The core base /proc/modules shows for `name`.
pub fn proc_modules_address(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/modules").expect("reading /proc/modules");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not in /proc/modules:\n{text}"));
    let addr = line.split_whitespace().nth(5).expect("address field");
    parse_hex(addr)
}

pub fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{s:?} is not hex: {e}"))
}

/// `/sys/module/<name>/<file>`, trimmed.
pub fn sys_module(name: &str, file: &str) -> String {
    let path = format!("/sys/module/{name}/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .trim()
        .to_owned()
}

pub fn module_param_u64(name: &str, param: &str) -> u64 {
    let text = sys_module(name, &format!("parameters/{param}"));
    text.parse()
        .unwrap_or_else(|e| panic!("{name}.{param} = {text:?}: {e}"))
}

/// `modscope events --json` running in the background.
pub struct EventStream {
    /// Type of the last line modscope prints when stopped.
    last: &'static str,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl EventStream {
    /// Starts modscope and waits for its `ready` event: from then on every
    /// module load is seen.
    pub fn start() -> Self {
        Self::start_with(&["events", "--json"], "registry")
    }

    /// Starts modscope with `args` (a live command with --json); `last` is the
    /// type of the final line it prints when stopped.
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(args: &[S], last: &'static str) -> Self {
        Self::start_with_env(args, &[], last)
    }

    /// `start_with`, with `env` set for modscope.
    pub fn start_with_env<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        env: &[(&str, &str)],
        last: &'static str,
    ) -> Self {
        let mut child = Command::new(modscope_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting modscope events");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("modscope printed non-JSON {line:?}: {e}"));
                sink.lock().unwrap().push(value);
            }
        });
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut stream = Self {
            last,
            child,
            events,
            stderr,
        };
        stream.wait_for(Duration::from_secs(120), |e| e["type"] == "ready");
        stream
    }

    /// Waits until an event matching `pred` has arrived; returns it.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let events = self.wait_until(timeout, |events| events.iter().any(&pred));
        events
            .into_iter()
            .find(|e| pred(e))
            .expect("wait_until checked it")
    }

    /// Waits until the events so far satisfy `pred`; returns them.
    pub fn wait_until(&mut self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            {
                let events = self.events.lock().unwrap();
                if pred(&events) {
                    return events.clone();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "modscope exited ({status}) early; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "condition not met after {timeout:?}; events so far:\n{:#?}\nstderr:\n{}",
                self.events.lock().unwrap(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What modscope has written on standard error so far (it keeps
    /// filling after `stop`, until the pipe closes).
    pub fn stderr(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.stderr)
    }

    /// SIGKILL: nothing is flushed or finished. Returns the events so far.
    pub fn kill(mut self) -> Vec<Value> {
        self.child.kill().expect("killing modscope");
        let status = self.child.wait().expect("waiting for modscope");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
        self.events.lock().unwrap().clone()
    }

    /// SIGINT, then every event it printed, the final registry included.
    pub fn stop(mut self) -> Vec<Value> {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("waiting for modscope");
        // Let the reader threads drain the pipes.
        let start = Instant::now();
        while !self
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == self.last)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "modscope ended ({status}) without its {} event; stderr:\n{}",
                self.last,
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            status.success(),
            "modscope exited {status}; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
        self.events.lock().unwrap().clone()
    }
}

/// A stream dropped without `stop` or `kill` (a test that panicked) takes
/// its modscope with it, so no probe or guard outlives the test.
impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events of `kind` about module `name`.
pub fn events_for<'a>(events: &'a [Value], kind: &str, name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind && e["name"] == name)
        .collect()
}

/// The registry entries for `name` in the final `registry` event.
pub fn registry_entries<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    let registry = events
        .iter()
        .rev()
        .find(|e| e["type"] == "registry")
        .expect("a registry event");
    registry["modules"]
        .as_array()
        .expect("modules array")
        .iter()
        .filter(|m| m["name"] == name)
        .collect()
}

pub fn hex_field(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    parse_hex(
        cur.as_str()
            .unwrap_or_else(|| panic!("{path:?} is not a string in {v}")),
    )
}

/// Runs modscope as an unprivileged user (nobody) with no capabilities:
/// root's capabilities go with the change of uid, and the supplementary
/// groups with it (std's `uid`), so no setpriv is needed.
pub fn modscope_unprivileged(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt as _;
    run(Command::new(modscope_bin())
        .args(args)
        .uid(65534)
        .gid(65534))
}

/// `insmod [-f] path`: Ok when it loaded (and it is unloaded again), or
/// kmod's error text (the part after the last ": ").
pub fn try_insmod(path: &std::path::Path, force: bool) -> Result<(), String> {
    load_module_file(path, force)?;
    let name = path
        .file_stem()
        .expect("module file name")
        .to_string_lossy()
        .replace('-', "_");
    rmmod(&name);
    Ok(())
}

/// `modscope check --json path` against the running kernel; the module's report.
pub fn modscope_check(path: &std::path::Path) -> Value {
    let out = run(Command::new(modscope_bin())
        .args(["check", "--json"])
        .arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "modscope check printed non-JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["modules"][0].clone()
}

/// The first session's report entry for module `name`.
pub fn report_module<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sessions"][0]["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("a report with a session: {report:#}"))
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the trace report: {report:#}"))
}

/// `modscope report --json path`: the whole report.
pub fn modscope_report(path: &std::path::Path) -> Value {
    let out = run_ok(
        Command::new(modscope_bin())
            .args(["report", "--json"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "modscope report printed non-JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
