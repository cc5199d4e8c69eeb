//! Static compatibility analysis of `.ko` files against a target kernel:
//! no root, no eBPF. `check` and `diff` are built on it, and the live probe
//! reuses it for modules it sees load.

pub mod btf;
pub mod call_sites;
pub mod feature_symbols;
pub mod input;
pub mod kconfig;
pub mod kernel_btf;
pub mod kernel_diff;
pub mod kernel_image;
pub mod keyring;
pub mod ko_file;
pub mod matrix;
pub mod modinfo;
pub mod module_btf;
pub mod module_path;
pub mod rules;
pub mod signature;
mod sparse_elf;
pub mod struct_layout;
pub mod symvers;
pub mod target;
pub mod verdict;
pub mod vermagic;

/// Hand-built module files and targets, for tests here and in the binary's.
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use serde::Serialize;

use self::{
    target::TargetKernel,
    verdict::{LoaderAnswer, Reason, Verdict},
};

/// One module's result.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    pub path: String,
    pub name: String,
    pub verdict: Verdict,
    /// Plain `insmod` would fail.
    pub kernel_would_refuse: bool,
    pub loader: LoaderAnswer,
    pub imports: usize,
    pub versioned_imports: usize,
    pub reasons: Vec<Reason>,
}

/// A file that could not be analysed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: String,
    pub error: String,
}

/// Module name → file, for every module file under `paths` (later paths
/// win, so `--watch` files given after the module path override it).
pub fn module_files(paths: &[PathBuf]) -> HashMap<String, PathBuf> {
    let (files, _) = expand_paths(paths);
    files
        .into_iter()
        .map(|f| (module_name_from_path(&f), f))
        .collect()
}

/// Why the imports of a set of module files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportsError {
    /// A path given could not be expanded into module files.
    #[error("{}: {}", .0.path, .0.error)]
    Path(FileError),
    #[error("reading {path}: {error}")]
    Read {
        path: String,
        error: ko_file::KoError,
    },
}

/// What a module imports, and how its code reaches the functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    /// Every undefined symbol (functions and data).
    pub symbols: BTreeSet<String>,
    /// Those some code reaches by a tail call (`call_sites`): their calls
    /// from there are credited to the module's caller.
    pub tail_called: BTreeSet<String>,
}

impl Imports {
    /// Only symbols, no call sites read (tests, the live view's fallbacks).
    pub fn of_symbols(symbols: impl IntoIterator<Item = String>) -> Self {
        Self {
            symbols: symbols.into_iter().collect(),
            tail_called: BTreeSet::new(),
        }
    }
}

/// Imports per module name, for every module file under `paths` (each
/// file read whole: its code shows the tail calls).
pub fn imports_of(paths: &[PathBuf]) -> Result<HashMap<String, Imports>, ImportsError> {
    let (files, errors) = expand_paths(paths);
    if let Some(e) = errors.into_iter().next() {
        return Err(ImportsError::Path(e));
    }
    let mut out = HashMap::new();
    for f in files {
        let read = ko_file::with_module(&f, true, |facts, image| {
            let name = facts
                .name()
                .map(str::to_owned)
                .unwrap_or_else(|| module_name_from_path(&f));
            let symbols = facts.imports.iter().map(|s| s.to_string()).collect();
            let tail_called = image.map(call_sites::tail_called_imports).transpose()?;
            Ok((name, symbols, tail_called.unwrap_or_default()))
        });
        let (name, symbols, tail_called) =
            read.and_then(|r| r).map_err(|e| ImportsError::Read {
                path: f.display().to_string(),
                error: e,
            })?;
        out.insert(
            name,
            Imports {
                symbols,
                tail_called,
            },
        );
    }
    Ok(out)
}

/// Analyses every file against `target` on all cores; results in input order.
pub fn check_files(
    files: &[PathBuf],
    target: &TargetKernel,
) -> (Vec<ModuleReport>, Vec<FileError>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    // Files are handed out one at a time, so a thread that drew large
    // modules does not leave the other idle at the end.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut indexed: Vec<(usize, Result<ModuleReport, FileError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break out };
                        out.push((i, check_file(f, target)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("analysis threads do not panic"))
            .collect()
    });
    indexed.sort_unstable_by_key(|(i, _)| *i);
    let results = indexed.into_iter().map(|(_, r)| r);
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(report) => reports.push(report),
            Err(e) => errors.push(e),
        }
    }
    (reports, errors)
}

pub fn check_file(path: &Path, target: &TargetKernel) -> Result<ModuleReport, FileError> {
    let error = |e: ko_file::KoError| FileError {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    let verify = target.verifies_signatures();
    let (mut report, btf_from) = ko_file::with_module(path, verify, |facts, image| {
        // Built for another kernel, with BTF: the kernel structs it uses are
        // compared between that kernel and the target below.
        let build_release = facts
            .modinfo
            .get("vermagic")
            .map(|v| vermagic::Vermagic::parse(v).release);
        let btf_from = build_release.filter(|r| facts.btf_size > 0 && *r != target.release);
        let keyring = target.keyring().ok();
        let signature = image
            .zip(keyring)
            .filter(|_| facts.signed)
            .map(|(image, keys)| signature::check(image, keys));
        (report(path, facts, signature.as_ref(), target), btf_from)
    })
    .map_err(error)?;
    if let Some(release) = btf_from {
        let btf = ko_file::read_section(path, ".BTF")
            .map_err(error)?
            .unwrap_or_default();
        report
            .reasons
            .extend(module_btf::reasons(&btf, &release, target));
        report
            .reasons
            .sort_by_key(|r| std::cmp::Reverse(r.severity));
        report.verdict = Verdict::from_reasons(&report.reasons);
    }
    Ok(report)
}

/// One module's report; `signature` is what its signature check found,
/// when it was checked.
pub fn report(
    path: &Path,
    facts: &ko_file::ModuleFacts,
    signature: Option<&signature::Outcome>,
    target: &TargetKernel,
) -> ModuleReport {
    let (mut reasons, loader) = rules::check(facts, signature, target);
    reasons.sort_by_key(|r| std::cmp::Reverse(r.severity));
    ModuleReport {
        path: path.display().to_string(),
        name: facts
            .name()
            .map(str::to_owned)
            .unwrap_or_else(|| module_name_from_path(path)),
        verdict: Verdict::from_reasons(&reasons),
        kernel_would_refuse: loader.refuses(),
        loader,
        imports: facts.imports.len(),
        versioned_imports: facts.versions.len(),
        reasons,
    }
}

/// Module name as the kernel spells it, from a file name
/// (`nf-conntrack.ko.xz` -> `nf_conntrack`).
pub fn module_name_from_path(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.split(".ko").next().unwrap_or(&file).replace('-', "_")
}

/// Is this a module file name (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`)?
pub fn is_module_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Expands directories into the module files under them, sorted. Paths
/// that do not exist are returned as errors.
pub fn expand_paths(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<FileError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let before = files.len();
                walk(p, &mut files, &mut errors);
                if files.len() == before {
                    errors.push(FileError {
                        path: p.display().to_string(),
                        error: "no module files (.ko, .ko.xz, .ko.zst, .ko.gz) under it".into(),
                    });
                }
            }
            Ok(_) => files.push(p.clone()),
            Err(e) => errors.push(FileError {
                path: p.display().to_string(),
                error: format!("cannot read: {e}"),
            }),
        }
    }
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<FileError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(FileError {
                path: dir.display().to_string(),
                error: format!("cannot list: {e}"),
            });
            return;
        }
    };
    // The directory entry's type saves a stat per file.
    let mut paths: Vec<(PathBuf, bool)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.path(), is_dir)
        })
        .collect();
    paths.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    for (p, is_dir) in paths {
        if is_dir {
            walk(&p, files, errors);
        } else if is_module_file(&p) {
            files.push(p);
        }
    }
}
