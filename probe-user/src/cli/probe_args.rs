//! The options of the live commands (`record`, `live`): what to probe and
//! where the trace goes.

use std::{path::PathBuf, time::Duration};

use clap::builder::TypedValueParser;

use modscope::{
    kernel::features::KernelPaths,
    probe::{CallAttach, Diagnostics, LogLevel},
    session::{ProbeRequest, TraceOptions, rotation::RotationPolicy},
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
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR:PORT/metrics
    /// while the session runs: loads, verdicts, exact call counts, anomalies,
    /// lost events, probe states and the programs' own run time.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
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
    /// How calls to core-kernel functions are counted, tried in this order
    /// from the one named: fentry (a BPF trampoline each: the cheapest per
    /// call, seconds slower to start and stop), kprobe_multi (one link, on
    /// kernels with fprobe), kprobe (one each). Default: MODSCOPE_ATTACH,
    /// else kprobe_multi. A module's own functions always get a kprobe.
    #[arg(long, value_name = "TYPE", value_parser = attach_type())]
    attach: Option<CallAttach>,
}

/// `--attach`'s values, offered to completions and named in its error.
fn attach_type() -> impl TypedValueParser<Value = CallAttach> {
    clap::builder::PossibleValuesParser::new(CallAttach::ALL.map(CallAttach::name)).try_map(
        |name: String| {
            CallAttach::parse(&name).ok_or_else(|| format!("{name:?} is not an attach type"))
        },
    )
}

impl ProbeArgs {
    pub fn request(&self) -> ProbeRequest {
        ProbeRequest {
            watch: self.watch.clone(),
            functions: self.functions.clone(),
            modules: self.modules.clone(),
            max_probes: self.max_probes,
            no_detectors: self.no_detectors,
            attach: self.attach,
        }
    }
}

/// Where a live session's trace goes.
#[derive(clap::Args, Default)]
#[command(group(clap::ArgGroup::new("rotation").multiple(true).args(["rotate_size", "rotate_time"])))]
pub struct TraceFileArgs {
    /// Write a trace file (read it with `modscope report`); standard output
    /// then gets a one-screen summary instead of the event stream, unless
    /// --json is given.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Add a session to an existing trace file instead of replacing it.
    #[arg(long, requires = "output", conflicts_with_all = ["rotate_size", "rotate_time"])]
    append: bool,
    /// Rotate: -o is a directory of trace files, each complete on its own;
    /// the next one starts at the first snapshot after the file reaches
    /// this size (suffixes K, M, G: KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", requires = "output", value_parser = byte_size)]
    rotate_size: Option<u64>,
    /// Rotate (as --rotate-size) once a file is this many seconds old.
    #[arg(long, value_name = "SECS", requires = "output", value_parser = rotation_seconds)]
    rotate_time: Option<f64>,
    /// With rotation: keep only the newest N files (the one being written
    /// included); the oldest are removed.
    #[arg(long, value_name = "N", requires = "rotation", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
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

/// `4096`, `64K`, `100M`, `2G` (binary multiples).
fn byte_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.trim().char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.trim().split_at(i),
        None => (s.trim(), ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        _ => return Err(format!("{s:?}: not a size (digits, then K, M or G)")),
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
    {
        Some(n) if n >= 4096 => Ok(n),
        _ => Err(format!("{s:?}: not a size of at least 4096 bytes")),
    }
}

fn rotation_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds, at least 1")),
    }
}

impl TraceFileArgs {
    pub fn options(&self, modules: &[String]) -> Option<TraceOptions> {
        self.output.as_ref().map(|path| TraceOptions {
            path: path.clone(),
            append: self.append,
            snapshot_interval: Duration::from_secs_f64(self.snapshot_interval),
            modules: modules.to_vec(),
            rotation: self.rotation(path),
        })
    }

    fn rotation(&self, dir: &std::path::Path) -> Option<RotationPolicy> {
        if self.rotate_size.is_none() && self.rotate_time.is_none() {
            return None;
        }
        Some(RotationPolicy {
            dir: dir.to_owned(),
            max_bytes: self.rotate_size,
            max_age: self.rotate_time.map(Duration::from_secs_f64),
            keep: self.keep.map(|n| n as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{CallAttach, ProbeArgs, byte_size};

    #[derive(clap::Parser)]
    struct Probes {
        #[command(flatten)]
        probes: ProbeArgs,
    }

    #[test]
    fn attach_takes_the_three_types_and_names_them_when_refused() {
        let parse = |args: &[&str]| Probes::try_parse_from([&["modscope"], args].concat());
        for attach in CallAttach::ALL {
            let parsed = parse(&["--attach", attach.name()]).expect("a known type");
            assert_eq!(parsed.probes.request().attach, Some(attach));
        }
        assert_eq!(parse(&[]).unwrap().probes.request().attach, None);
        let refused = parse(&["--attach", "kprobe-multi"]).err().expect("refused");
        let message = refused.to_string();
        assert!(
            message.contains("fentry") && message.contains("kprobe_multi"),
            "{message}"
        );
    }

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_nonsense() {
        assert_eq!(byte_size("4096"), Ok(4096));
        assert_eq!(byte_size("64K"), Ok(64 << 10));
        assert_eq!(byte_size("100m"), Ok(100 << 20));
        assert_eq!(byte_size("2GiB"), Ok(2 << 30));
        for bad in ["", "12", "1T", "K", "-5M", "99999999999999G"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
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
