//! Which files a list of trace arguments names: a file is itself; a
//! directory (what `record --rotate-*` writes) is its `*.trace` files in
//! name order, which is time order for the names rotation gives.

use std::{
    io,
    path::{Path, PathBuf},
};

/// The trace files `paths` name, in order. A directory without any is an
/// error naming it, so an empty capture directory is never taken for an
/// empty capture.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = in_directory(p).map_err(|e| (p.clone(), e))?;
            if found.is_empty() {
                let e = io::Error::new(io::ErrorKind::NotFound, "no *.trace files in it");
                return Err((p.clone(), e));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The directory's regular `*.trace` files, sorted by name.
pub fn in_directory(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_file() && path.extension().is_some_and(|e| e == "trace") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_its_trace_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("modscope-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.trace")).unwrap();
        for name in ["b.trace", "a.trace", "notes.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let single = PathBuf::from("/x/one.trace");
        let got = expand(&[dir.clone(), single.clone()]).unwrap();
        assert_eq!(got, vec![dir.join("a.trace"), dir.join("b.trace"), single]);
        let empty = dir.join("sub.trace");
        let err = expand(std::slice::from_ref(&empty)).unwrap_err();
        assert_eq!(err.0, empty);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
