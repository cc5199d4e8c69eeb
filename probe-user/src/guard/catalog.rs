//! The files the guard has verdicts for: each module file checked against
//! the running kernel with `check`'s rules, and keyed by its identity as
//! the kernel will see it at load (device, inode, change time), taken
//! before the check so a file that changes during it is not mistaken for
//! the checked one.

use std::path::{Path, PathBuf};

use modscope_analysis::{self as analysis, target::TargetKernel, verdict::Verdict};
use probe_common::{FileKey, guard::Judgement};

use crate::{
    kernel::file_identity,
    trace::records::{VerdictReason, reasons_of},
};

/// One file as the guard judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    pub path: PathBuf,
    /// `None` when the file could not be read (gone, say).
    pub key: Option<FileKey>,
    pub module: String,
    pub judgement: Judgement,
    pub reasons: Vec<VerdictReason>,
    /// Why there is no verdict, when there is none.
    pub error: Option<String>,
}

impl CheckedFile {
    fn unchecked(path: &Path, key: Option<FileKey>, error: String) -> Self {
        Self {
            path: path.to_owned(),
            key,
            module: String::new(),
            judgement: Judgement::Unchecked,
            reasons: Vec::new(),
            error: Some(error),
        }
    }
}

/// The judgement for `check`'s verdict.
pub fn judgement(verdict: Verdict) -> Judgement {
    match verdict {
        Verdict::Compatible => Judgement::Compatible,
        Verdict::Warning => Judgement::Warning,
        Verdict::Incompatible => Judgement::Incompatible,
    }
}

/// Checks `path` against `target`. The key is read before and after the
/// check; a file that changed meanwhile gets no key (it is checked again
/// when its change is seen).
pub fn check(path: &Path, target: &TargetKernel) -> CheckedFile {
    let before = match file_identity::file_key(path) {
        Ok(k) => k,
        Err(e) => return CheckedFile::unchecked(path, None, e.to_string()),
    };
    let report = analysis::check_file(path, target);
    let after = file_identity::file_key(path).ok();
    let key = (after == Some(before)).then_some(before);
    match report {
        Ok(r) => CheckedFile {
            path: path.to_owned(),
            key,
            module: r.name.clone(),
            judgement: judgement(r.verdict),
            reasons: reasons_of(&r),
            error: None,
        },
        Err(e) => CheckedFile::unchecked(path, key, e.error),
    }
}

/// A name the module loaders accept as a module file.
pub fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Every module file under `dir` (recursively, without following links),
/// and every directory visited, for the watcher.
pub fn module_tree(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        dirs.push(d);
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && is_module_file(&entry.file_name().to_string_lossy()) {
                files.push(path);
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_files_are_found_by_the_names_loaders_take() {
        assert!(is_module_file("ext4.ko"));
        assert!(is_module_file("ext4.ko.xz"));
        assert!(is_module_file("ext4.ko.zst"));
        assert!(!is_module_file("modules.dep"));
        assert!(!is_module_file("ko"));
        let dir = std::env::temp_dir().join(format!("modscope-tree-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        std::fs::write(dir.join("kernel/fs/a.ko"), b"x").unwrap();
        std::fs::write(dir.join("kernel/b.ko.xz"), b"x").unwrap();
        std::fs::write(dir.join("modules.dep"), b"x").unwrap();
        let (files, dirs) = module_tree(&dir);
        assert_eq!(
            files,
            vec![dir.join("kernel/b.ko.xz"), dir.join("kernel/fs/a.ko")]
        );
        assert_eq!(dirs.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_module_has_no_verdict_but_keeps_its_key() {
        let Ok(target) = modscope_analysis::target::resolve(&Default::default()) else {
            return; // no kernel config here: nothing to check against
        };
        let path = std::env::temp_dir().join(format!("modscope-notko-{}.ko", std::process::id()));
        std::fs::write(&path, b"not an ELF file").unwrap();
        let c = check(&path, &target);
        assert_eq!(c.judgement, Judgement::Unchecked);
        assert!(c.error.is_some());
        assert!(c.key.is_some());
        std::fs::remove_file(&path).unwrap();
        let gone = check(&path, &target);
        assert_eq!(gone.key, None);
    }
}
