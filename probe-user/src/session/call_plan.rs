//! What a live session probes, decided before the probes load: the
//! imports of the watched module files (or of the loaded modules), ranked
//! and capped, the functions ftrace cannot trace, the detectors' checks,
//! and the planner for modules that load later.

use super::error::{Result, SessionError};
use modscope_analysis::Imports;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
};

use modscope_analysis as analysis;
use probe_common::anomaly::COUNT_CALLS;

use super::probe_policy::{self, LatePlanner, ProbeDecision};
use crate::{
    detectors::probes::{
        self as detector_probes, CheckedFunction, DetectorProbes, FollowedAllocator,
    },
    kernel::{
        arch::ImageSymbols,
        features::{self, KernelPaths},
        kallsyms::{self, Kallsyms, KernelFunction},
        proc_modules, text_file,
    },
    probe::CallAttach,
};

/// What the user asked to probe (`--watch`, `--function`, `--module`,
/// `--max-probes`, `--no-detectors`, `--attach`).
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
    /// Where `count_call`'s attach types start (None: `MODSCOPE_ATTACH`,
    /// else kprobe_multi).
    pub attach: Option<CallAttach>,
}

/// What to count calls to, decided before the probes load.
pub struct CallPlan {
    /// Functions to probe, with their addresses.
    pub functions: BTreeMap<String, u64>,
    /// Where `count_call`'s attach types start on core-kernel functions.
    pub attach: CallAttach,
    /// The kernel image's symbols, from the same read of /proc/kallsyms,
    /// for the architecture's facts (`ArchFacts::read`).
    pub image: ImageSymbols,
    /// Functions left out by the cap.
    pub capped: Vec<String>,
    /// Functions ftrace cannot trace, never probed (see `kallsyms::parse_traceable`).
    pub untraceable: Vec<String>,
    /// Imported functions per module name, from the module files found.
    pub imports: HashMap<String, Imports>,
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

pub fn plan(args: &ProbeRequest, paths: &KernelPaths) -> Result<CallPlan> {
    let attach = match args.attach {
        Some(attach) => attach,
        None => CallAttach::from_env()?,
    };
    // One read for the plan and the architecture's facts (`image`).
    let text =
        text_file::read("/proc/kallsyms").map_err(SessionError::io("reading /proc/kallsyms"))?;
    let kallsyms = Kallsyms::parse(&text);
    let image = ImageSymbols::parse(&text);
    drop(text);
    let traceable = kallsyms::read_traceable().map_err(SessionError::io(format!(
        "reading the functions ftrace can trace ({}); is tracefs mounted \
             (mount -t tracefs nodev /sys/kernel/tracing)?",
        kallsyms::TRACEABLE_PATHS[0]
    )))?;
    let release = features::release(paths);
    let wanted = wanted_imports(args, paths, &release)?;
    let ranked = rank(&wanted.functions, args, |name| {
        probe_policy::classify(name, &kallsyms, &traceable)
    });
    let functions: BTreeMap<String, u64> = ranked
        .probed
        .into_iter()
        .filter_map(|n| kallsyms.function(&n).map(|a| (n, a)))
        .collect();
    let DetectorProbes { checks, allocators } = if args.no_detectors {
        DetectorProbes::default()
    } else {
        detectors(paths, &release, &kallsyms, &traceable, &functions)?
    };
    // Modules loaded later get their imports probed as they load.
    let late = wanted.late_files.map(|files| {
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
        attach,
        image,
        untraceable: ranked.untraceable,
        capped: ranked.capped,
        imports: wanted.imports,
        modules: args.modules.clone(),
        late,
        files: wanted.files,
        checks,
        allocators,
    })
}

/// The functions asked for, before ranking, and where they come from.
struct Wanted {
    /// Each function once per module importing it (and once per --function).
    functions: Vec<String>,
    imports: HashMap<String, Imports>,
    /// Module files by name, for static verdicts.
    files: HashMap<String, PathBuf>,
    /// Files on the module path for modules that load later (None: --watch
    /// names the modules, no late probes).
    late_files: Option<HashMap<String, PathBuf>>,
}

/// The imports of the `--watch` files; without `--watch`, the module path
/// serves modules that load later, and without `--function` either, the
/// imports of every loaded module whose file is found are wanted too.
fn wanted_imports(args: &ProbeRequest, paths: &KernelPaths, release: &str) -> Result<Wanted> {
    let mut imports = analysis::imports_of(&args.watch)?;
    let mut functions: Vec<String> = args.functions.clone();
    functions.extend(imports.values().flat_map(|i| i.symbols.iter().cloned()));
    let on_module_path =
        analysis::module_path::files(&PathBuf::from(format!("/lib/modules/{release}")));
    let mut files = on_module_path.clone();
    files.extend(analysis::module_files(&args.watch));
    let late_files = match (args.watch.is_empty(), args.functions.is_empty()) {
        (false, _) => None,
        (true, false) => Some(on_module_path),
        (true, true) => {
            let loaded: BTreeSet<String> = proc_modules::read(&paths.proc_modules)?
                .into_iter()
                .map(|m| m.name)
                .collect();
            let loaded_files: Vec<PathBuf> = on_module_path
                .iter()
                .filter(|(name, _)| loaded.contains(*name))
                .map(|(_, f)| f.clone())
                .collect();
            for (name, found) in analysis::imports_of(&loaded_files)? {
                functions.extend(found.symbols.iter().cloned());
                imports.entry(name).or_insert(found);
            }
            Some(on_module_path)
        }
    };
    Ok(Wanted {
        functions,
        imports,
        files,
        late_files,
    })
}

impl CallPlan {
    /// The planned functions, in name order.
    pub fn probed_functions(&self) -> impl Iterator<Item = KernelFunction> + '_ {
        self.functions
            .iter()
            .map(|(name, &address)| KernelFunction::new(name.clone(), address))
    }
}

/// The wanted functions sorted into probed, capped and untraceable.
#[derive(Debug, PartialEq, Eq)]
pub struct Ranked {
    pub probed: Vec<String>,
    pub capped: Vec<String>,
    pub untraceable: Vec<String>,
}

/// Functions only (data symbols cannot be probed), each once: `--function`
/// names first, then by how many modules import them, so the cap drops the
/// least shared. Pure.
pub fn rank(
    wanted: &[String],
    args: &ProbeRequest,
    decide: impl Fn(&str) -> ProbeDecision,
) -> Ranked {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for w in wanted {
        *uses.entry(w).or_default() += 1;
    }
    let mut untraceable = Vec::new();
    let mut ranked: Vec<(&str, usize)> = Vec::new();
    for (name, n) in uses {
        match decide(name) {
            ProbeDecision::Probe(_) => ranked.push((name, n)),
            ProbeDecision::Refuse => untraceable.push(name.to_owned()),
            ProbeDecision::Skip => {}
        }
    }
    let explicit = |n: &str| args.functions.iter().any(|f| f == n);
    ranked.sort_by(|a, b| {
        explicit(b.0)
            .cmp(&explicit(a.0))
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(b.0))
    });
    let capped = ranked
        .split_off(ranked.len().min(args.max_probes))
        .into_iter()
        .map(|(n, _)| n.to_owned())
        .collect();
    Ranked {
        probed: ranked.into_iter().map(|(n, _)| n.to_owned()).collect(),
        capped,
        untraceable,
    }
}

/// The detectors' checks for this kernel. A planned function that also has
/// a check is counted by the checking program: one kprobe per call.
fn detectors(
    paths: &KernelPaths,
    release: &str,
    kallsyms: &Kallsyms,
    traceable: &std::collections::HashSet<String>,
    functions: &BTreeMap<String, u64>,
) -> Result<DetectorProbes> {
    let config = paths
        .kernel_config(release)
        .map_err(SessionError::Config)?
        .map(|(_, c)| c);
    let mut probes = detector_probes::for_kernel(
        &paths.vmlinux_btf,
        kallsyms,
        config.as_ref(),
        functions,
        |f| {
            matches!(
                probe_policy::classify(f, kallsyms, traceable),
                ProbeDecision::Probe(_)
            )
        },
    )
    .map_err(|source| SessionError::Detectors {
        path: paths.vmlinux_btf.display().to_string(),
        source,
    })?;
    for c in &mut probes.checks {
        if functions.contains_key(c.function.as_str()) {
            c.check.flags |= COUNT_CALLS;
        }
    }
    Ok(probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn explicit_functions_first_then_the_most_shared_and_the_cap_drops_the_rest() {
        let wanted = names(&[
            "kfree",
            "kstrdup",
            "kfree",
            "msleep",
            "kfree",
            "kstrdup",
            "jiffies",
            "__rcu_read_lock",
        ]);
        let args = ProbeRequest {
            functions: names(&["msleep"]),
            max_probes: 2,
            ..ProbeRequest::default()
        };
        let ranked = rank(&wanted, &args, |n| match n {
            "jiffies" => ProbeDecision::Skip,
            "__rcu_read_lock" => ProbeDecision::Refuse,
            _ => ProbeDecision::Probe(1),
        });
        assert_eq!(ranked.probed, names(&["msleep", "kfree"]));
        assert_eq!(ranked.capped, names(&["kstrdup"]));
        assert_eq!(ranked.untraceable, names(&["__rcu_read_lock"]));
    }
}
