//! `modscope record`: the module registry plus exact call counts per module
//! and kernel function, streamed live, with a per-module report at the end.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use modscope::{
    analysis::target::running_config,
    analysis::{self, ko_file},
    kallsyms::{self, Kallsyms},
    kernel_features::{self, KernelPaths},
    proc_modules,
};
use probe_common::anomaly::COUNT_CALLS;

use super::{
    anomalies::{self, DetectorProbes},
    live::{self, CallPlan, LiveOptions, TraceOptions},
    probe_plan::{self, LatePlanner, Verdict},
    static_verdicts,
};

#[derive(clap::Args)]
pub struct RecordArgs {
    /// One JSON object per line (schema in the README).
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    probes: ProbeArgs,
    #[command(flatten)]
    trace: TraceFileArgs,
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

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let paths = KernelPaths::default();
    kernel_features::check_live_probe(&paths)?;
    let plan = plan(&args.probes, &paths)?;
    let trace = args.trace.options(&args.probes.modules);
    live::run(LiveOptions {
        json: args.json,
        duration: args.duration,
        calls: Some(plan),
        trace,
        view: None,
    })
    .await
}

/// Imported symbols per module name, for every module file under `paths`.
pub fn imports_of(paths: &[PathBuf]) -> anyhow::Result<HashMap<String, BTreeSet<String>>> {
    let (files, errors) = analysis::expand_paths(paths);
    if let Some(e) = errors.first() {
        anyhow::bail!("--watch {}: {}", e.path, e.error);
    }
    let mut out = HashMap::new();
    for f in files {
        let (name, imports) = ko_file::with_module(&f, |facts| {
            let name = facts
                .name()
                .map(str::to_owned)
                .unwrap_or_else(|| analysis::module_name_from_path(&f));
            (
                name,
                facts
                    .imports
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<BTreeSet<_>>(),
            )
        })
        .with_context(|| format!("reading {}", f.display()))?;
        out.insert(name, imports);
    }
    Ok(out)
}

pub fn plan(args: &ProbeArgs, paths: &KernelPaths) -> anyhow::Result<CallPlan> {
    let kallsyms = Kallsyms::read().context("reading /proc/kallsyms")?;
    let traceable = kallsyms::read_traceable().with_context(|| {
        format!(
            "reading the functions ftrace can trace ({}); is tracefs mounted \
             (mount -t tracefs nodev /sys/kernel/tracing)?",
            kallsyms::TRACEABLE_PATHS[0]
        )
    })?;
    let mut imports = imports_of(&args.watch)?;
    let mut module_files = None;
    let mut wanted: Vec<String> = args.functions.clone();
    wanted.extend(imports.values().flatten().cloned());
    // Without --watch, modules that load during the session are probed as
    // they load (their files are looked up on this kernel's module path).
    let release = kernel_features::release(paths);
    let on_module_path =
        static_verdicts::module_files(&[PathBuf::from(format!("/lib/modules/{release}"))]);
    let mut files = on_module_path.clone();
    files.extend(static_verdicts::module_files(&args.watch));
    if args.watch.is_empty() && !args.functions.is_empty() {
        module_files = Some(on_module_path.clone());
    }
    // Without --watch or --function: also the imports of every loaded
    // module whose file is on the module path.
    if args.watch.is_empty() && args.functions.is_empty() {
        let loaded: BTreeSet<String> = proc_modules::read(&paths.proc_modules)?
            .into_iter()
            .map(|m| m.name)
            .collect();
        let loaded_files: Vec<PathBuf> = on_module_path
            .iter()
            .filter(|(name, _)| loaded.contains(*name))
            .map(|(_, f)| f.clone())
            .collect();
        for (name, set) in imports_of(&loaded_files)? {
            wanted.extend(set.iter().cloned());
            imports.entry(name).or_insert(set);
        }
        module_files = Some(on_module_path);
    }
    // Functions only (data symbols cannot be probed), each once, in order of
    // how many modules import them: the cap drops the least shared.
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for w in wanted {
        *uses.entry(w).or_default() += 1;
    }
    let mut untraceable = Vec::new();
    let mut ranked: Vec<(String, usize)> = Vec::new();
    for (name, n) in uses {
        match probe_plan::classify(&name, &kallsyms, &traceable) {
            Verdict::Probe(_) => ranked.push((name, n)),
            Verdict::Refuse => untraceable.push(name),
            Verdict::Skip => {}
        }
    }
    ranked.sort_by(|a, b| {
        let explicit = |n: &str| args.functions.iter().any(|f| f == n);
        explicit(&b.0)
            .cmp(&explicit(&a.0))
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(&b.0))
    });
    let capped = ranked
        .split_off(ranked.len().min(args.max_probes))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let functions: BTreeMap<String, u64> = ranked
        .into_iter()
        .filter_map(|(n, _)| kallsyms.function(&n).map(|a| (n, a)))
        .collect();
    let detectors = if args.no_detectors {
        DetectorProbes::default()
    } else {
        let config = running_config(&release).map(|(_, c)| c);
        anomalies::plan(
            &paths.vmlinux_btf,
            &kallsyms,
            config.as_ref(),
            &functions,
            |f| {
                matches!(
                    probe_plan::classify(f, &kallsyms, &traceable),
                    Verdict::Probe(_)
                )
            },
        )?
    };
    // A planned function that also has a check is counted by the checking
    // program: one kprobe per call.
    let DetectorProbes {
        mut checks,
        allocators,
    } = detectors;
    for (function, _, check) in &mut checks {
        if functions.contains_key(function.as_str()) {
            check.flags |= COUNT_CALLS;
        }
    }
    // Modules loaded later get their imports probed as they load.
    let late = module_files.map(|files| {
        LatePlanner::new(
            kallsyms,
            traceable,
            files,
            functions.keys().cloned().collect(),
            args.max_probes.saturating_sub(functions.len()),
        )
    });
    Ok(CallPlan {
        functions,
        untraceable,
        capped,
        imports,
        modules: args.modules.clone(),
        late,
        files,
        checks,
        allocators,
    })
}
