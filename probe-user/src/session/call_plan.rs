//! What a live session probes, decided before the probes load: the
//! imports of the watched module files (or of the loaded modules), ranked
//! and capped, the functions ftrace cannot trace, the detectors' checks,
//! and the planner for modules that load later.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
};

use anyhow::Context as _;
use modscope_analysis::{self as analysis, target::running_config};
use probe_common::anomaly::COUNT_CALLS;

use super::probe_policy::{self, LatePlanner, ProbeDecision};
use crate::{
    detectors::probes::{
        self as detector_probes, CheckedFunction, DetectorProbes, FollowedAllocator,
    },
    kernel::{
        features::{self, KernelPaths},
        kallsyms::{self, Kallsyms},
        proc_modules,
    },
};

/// What the user asked to probe (`--watch`, `--function`, `--module`,
/// `--max-probes`, `--no-detectors`).
#[derive(Debug, Clone, Default)]
pub struct ProbeRequest {
    /// Module files (or directories of them) whose imports are probed
    /// before they load, so calls from their init are counted.
    pub watch: Vec<PathBuf>,
    /// Kernel functions probed as well.
    pub functions: Vec<String>,
    /// Report only these modules (empty: every module seen).
    pub modules: Vec<String>,
    /// At most this many functions are probed; the rest are capped.
    pub max_probes: usize,
    pub no_detectors: bool,
}

/// What to count calls to, decided before the probes load.
pub struct CallPlan {
    /// Functions to probe, with their addresses.
    pub functions: BTreeMap<String, u64>,
    /// Functions left out by the cap.
    pub capped: Vec<String>,
    /// Functions ftrace cannot trace, never probed (see `kallsyms::parse_traceable`).
    pub untraceable: Vec<String>,
    /// Imported functions per module name, from the module files found.
    pub imports: HashMap<String, BTreeSet<String>>,
    /// Only report these modules (empty: all).
    pub modules: Vec<String>,
    /// Probes for the imports of modules that load during the session.
    pub late: Option<LatePlanner>,
    /// Module files by name, for static verdicts.
    pub files: HashMap<String, PathBuf>,
    /// The anomaly detectors' checks.
    pub checks: Vec<CheckedFunction>,
    /// Allocators the object-bounds check follows.
    pub allocators: Vec<FollowedAllocator>,
}

pub fn plan(args: &ProbeRequest, paths: &KernelPaths) -> anyhow::Result<CallPlan> {
    let kallsyms = Kallsyms::read().context("reading /proc/kallsyms")?;
    let traceable = kallsyms::read_traceable().with_context(|| {
        format!(
            "reading the functions ftrace can trace ({}); is tracefs mounted \
             (mount -t tracefs nodev /sys/kernel/tracing)?",
            kallsyms::TRACEABLE_PATHS[0]
        )
    })?;
    let mut imports = analysis::imports_of(&args.watch).map_err(|e| match e {
        analysis::ImportsError::Path(e) => anyhow::anyhow!("--watch {}: {}", e.path, e.error),
        read => anyhow::Error::new(read),
    })?;
    let mut module_files = None;
    let mut wanted: Vec<String> = args.functions.clone();
    wanted.extend(imports.values().flatten().cloned());
    // Without --watch, modules that load during the session are probed as
    // they load (their files are looked up on this kernel's module path).
    let release = features::release(paths);
    let on_module_path =
        analysis::module_files(&[PathBuf::from(format!("/lib/modules/{release}"))]);
    let mut files = on_module_path.clone();
    files.extend(analysis::module_files(&args.watch));
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
        for (name, set) in analysis::imports_of(&loaded_files)? {
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
        match probe_policy::classify(&name, &kallsyms, &traceable) {
            ProbeDecision::Probe(_) => ranked.push((name, n)),
            ProbeDecision::Refuse => untraceable.push(name),
            ProbeDecision::Skip => {}
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
        detector_probes::for_kernel(
            &paths.vmlinux_btf,
            &kallsyms,
            config.as_ref(),
            &functions,
            |f| {
                matches!(
                    probe_policy::classify(f, &kallsyms, &traceable),
                    ProbeDecision::Probe(_)
                )
            },
        )
        .with_context(|| format!("reading {} for the detectors", paths.vmlinux_btf.display()))?
    };
    // A planned function that also has a check is counted by the checking
    // program: one kprobe per call.
    let DetectorProbes {
        mut checks,
        allocators,
    } = detectors;
    for c in &mut checks {
        if functions.contains_key(c.function.as_str()) {
            c.check.flags |= COUNT_CALLS;
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
