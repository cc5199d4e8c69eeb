//! The options of the live commands (`record`, `live`): what to probe and
//! where the trace goes.

use std::{path::PathBuf, time::Duration};

use modscope::{
    kernel::features::KernelPaths,
    probe::{Diagnostics, LogLevel},
    session::{ProbeRequest, TraceOptions},
};

/// Where the kernel's BTF and config are, for kernels that do not publish
/// them (vendor builds without CONFIG_DEBUG_INFO_BTF or /proc/config.gz).
#[derive(clap::Args, Default)]
pub struct KernelArgs {
    /// The kernel's BTF: a raw BTF file, or its vmlinux with a .BTF section
    /// (`pahole -J vmlinux`). Default: /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE")]
    btf: Option<PathBuf>,
    /// The kernel's config. Default: /proc/config.gz, else /boot/config-RELEASE.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl KernelArgs {
    pub fn paths(&self) -> KernelPaths {
        let mut paths = KernelPaths::default();
        if let Some(btf) = &self.btf {
            paths.vmlinux_btf = btf.clone();
        }
        paths.config = self.config.clone();
        paths
    }
}

/// The options every capture (`record`, `live`) takes.
#[derive(clap::Args, Default)]
pub struct SessionArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM, or `q` in the TUI).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub probes: ProbeArgs,
    #[command(flatten)]
    pub trace: TraceFileArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What a live session probes.
#[derive(clap::Args, Default)]
pub struct ProbeArgs {
    /// A module file (or directory of them) to watch: its imported functions
    /// are probed before it loads, so calls from its init are counted.
    #[arg(long, value_name = "PATH")]
    watch: Vec<PathBuf>,
    /// Also probe this kernel function.
    #[arg(long = "function", value_name = "NAME")]
    functions: Vec<String>,
    /// Report only these modules (default: every module seen).
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// At most this many functions are probed; the rest are listed as capped.
    #[arg(long, default_value_t = 64)]
    max_probes: usize,
    /// Count calls only: no in-kernel anomaly detectors (lock debug magic,
    /// tracepoint registrations).
    #[arg(long)]
    no_detectors: bool,
}

impl ProbeArgs {
    pub fn request(&self) -> ProbeRequest {
        ProbeRequest {
            watch: self.watch.clone(),
            functions: self.functions.clone(),
            modules: self.modules.clone(),
            max_probes: self.max_probes,
            no_detectors: self.no_detectors,
        }
    }
}

/// Where a live session's trace goes.
#[derive(clap::Args, Default)]
pub struct TraceFileArgs {
    /// Write a trace file (read it with `modscope report`); standard output
    /// then gets a one-screen summary instead of the event stream, unless
    /// --json is given.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Add a session to an existing trace file instead of replacing it.
    #[arg(long, requires = "output")]
    append: bool,
    /// Seconds between counter snapshots written to the trace.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = positive_seconds)]
    snapshot_interval: f64,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.01 and 3600"
        )),
    }
}

impl TraceFileArgs {
    pub fn options(&self, modules: &[String]) -> Option<TraceOptions> {
        self.output.as_ref().map(|path| TraceOptions {
            path: path.clone(),
            append: self.append,
            snapshot_interval: Duration::from_secs_f64(self.snapshot_interval),
            modules: modules.to_vec(),
        })
    }
}

/// The eBPF programs' own diagnostics.
#[derive(clap::Args, Default)]
pub struct LogArgs {
    /// Show what the eBPF programs report (failed kernel reads, full maps,
    /// a full ring buffer), by program: off, error, warn, info, debug,
    /// trace. The counters at exit count the same failures either way.
    #[arg(long, value_name = "LEVEL", default_value = "off", value_parser = str::parse::<LogLevel>)]
    log_level: LogLevel,
}

impl LogArgs {
    /// Diagnostics printed on standard error as they come.
    pub fn to_stderr(&self) -> Diagnostics {
        Diagnostics {
            level: self.log_level,
            kept: None,
        }
    }

    pub fn level(&self) -> LogLevel {
        self.log_level
    }
}
