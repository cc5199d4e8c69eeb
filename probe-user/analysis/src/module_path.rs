//! The module files on a kernel's module path (`/lib/modules/RELEASE`), by
//! module name, as modprobe finds them: the files depmod indexed in
//! `modules.dep` (depmod has already chosen among duplicates), plus the
//! files it has not indexed yet in the path's other directories (`extra/`,
//! `updates/`, where vendor modules are dropped). The distribution's own
//! `kernel/` tree is taken from the index alone: walking its thousand
//! directories took 3 s per session start in a TCG guest, for files the
//! index already names. Without an index, the whole path is walked.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// depmod's index of the module path.
const INDEX: &str = "modules.dep";
/// The distribution's modules, all of them in the index.
const DISTRIBUTION_TREE: &str = "kernel";
/// A `modules.dep` larger than this is not an index (Debian's: 400 KiB).
const INDEX_LIMIT: u64 = 64 << 20;

/// Module name → file under `dir`, a kernel's module path.
pub fn files(dir: &Path) -> HashMap<String, PathBuf> {
    let Some(indexed) = read_index(dir) else {
        return crate::module_files(&[dir.to_path_buf()]);
    };
    let unindexed_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name() != DISTRIBUTION_TREE)
        .map(|e| e.path())
        .collect();
    let mut files = crate::module_files(&unindexed_dirs);
    // The index's choice wins where both have a name: it is what loads.
    files.extend(indexed);
    files
}

/// The files `dir/modules.dep` lists, by name; `None` where it cannot be
/// read or lists nothing.
fn read_index(dir: &Path) -> Option<HashMap<String, PathBuf>> {
    let bytes = crate::input::read_bounded(&dir.join(INDEX), INDEX_LIMIT, "module index").ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let files: HashMap<String, PathBuf> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(file, _deps)| dir.join(file.trim()))
        .filter(|file| crate::is_module_file(file))
        .map(|file| (crate::module_name_from_path(&file), file))
        .collect();
    (!files.is_empty()).then_some(files)
}

#[cfg(test)]
mod tests {
    use super::files;
    use std::path::{Path, PathBuf};

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn module_path(tag: &str, modules: &[&str]) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("modscope-module-path-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for m in modules {
            let file = dir.join(m);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, b"\x7fELF").unwrap();
        }
        Scratch(dir)
    }

    fn named(dir: &Path, found: &std::collections::HashMap<String, PathBuf>) -> Vec<String> {
        let mut v: Vec<String> = found
            .iter()
            .map(|(name, f)| format!("{name}={}", f.strip_prefix(dir).unwrap().display()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_index_names_the_distribution_tree_and_unindexed_vendor_files_are_found_too() {
        let s = module_path(
            "indexed",
            &[
                "kernel/drivers/net/e1000.ko",
                "kernel/fs/not-yet-indexed.ko",
                "updates/e1000.ko",
                "extra/vendor-wifi.ko.xz",
                "extra/notes.txt",
            ],
        );
        std::fs::write(
            s.0.join("modules.dep"),
            "kernel/drivers/net/e1000.ko: kernel/lib/crc.ko\nkernel/lib/crc.ko:\n",
        )
        .unwrap();
        // updates/e1000.ko came after depmod ran: modprobe still loads the
        // indexed file, so that is the one judged.
        assert_eq!(
            named(&s.0, &files(&s.0)),
            [
                "crc=kernel/lib/crc.ko",
                "e1000=kernel/drivers/net/e1000.ko",
                "vendor_wifi=extra/vendor-wifi.ko.xz",
            ]
        );
    }

    #[test]
    fn without_an_index_the_whole_path_is_walked() {
        let s = module_path("walked", &["kernel/fs/a-b.ko", "extra/c.ko.zst"]);
        assert_eq!(
            named(&s.0, &files(&s.0)),
            ["a_b=kernel/fs/a-b.ko", "c=extra/c.ko.zst"]
        );
        std::fs::write(s.0.join("modules.dep"), "").unwrap();
        assert_eq!(files(&s.0).len(), 2, "an empty index is no index");
    }
}
