//! The library's shape, checked from its sources: which folder may use
//! which (dependencies run one way, as ARCHITECTURE.md says), and no
//! import cycle between any two files. Reads every `crate::` and `super::`
//! path in `src/` (tests excluded), resolves it to the file it names, and
//! fails with the offending files.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Folder → the folders it may use. The binary (`main.rs`, `cli/`) sees the
/// library only through `modscope::`, so it is not listed.
const ALLOWED: &[(&str, &[&str])] = &[
    ("kernel", &[]),
    ("detectors", &["kernel"]),
    ("trace", &["kernel", "detectors"]),
    ("probe", &["kernel", "detectors"]),
    ("metrics", &["kernel", "detectors", "trace"]),
    ("guard", &["kernel", "detectors", "trace"]),
    (
        "session",
        &["kernel", "detectors", "trace", "probe", "metrics", "guard"],
    ),
    ("tui", &["kernel", "detectors", "trace"]),
    ("export", &["kernel", "detectors", "trace"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path of a source file: `src/tui/model.rs` → ["tui", "model"].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file a module path names, taking the longest prefix that exists.
fn file_of(path: &[String]) -> Option<PathBuf> {
    let mut found = None;
    for n in 1..=path.len() {
        let base = src().join(path[..n].join("/"));
        if base.with_extension("rs").is_file() {
            found = Some(base.with_extension("rs"));
        } else if base.join("mod.rs").is_file() {
            found = Some(base.join("mod.rs"));
        } else {
            break;
        }
    }
    found
}

fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "cli") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.file_name().unwrap().to_string_lossy();
                if !name.ends_with("tests.rs") && name != "main.rs" {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &mut out);
    out.sort();
    out
}

/// The source without its inline test module, whose `super::` means the
/// file itself.
fn code_of(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Every `crate::…` / `super::…` path in `code`, `use` groups expanded.
fn paths_in(code: &str) -> Vec<String> {
    let lines: Vec<&str> = code
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let tree = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| line.strip_prefix(p));
        if let Some(first) = tree {
            let mut stmt = first.to_owned();
            while !stmt.contains(';') && i + 1 < lines.len() {
                i += 1;
                stmt.push_str(lines[i]);
            }
            let stmt: String = stmt
                .split(';')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            expand("", &stmt, &mut out);
        }
        for (at, _) in line.match_indices("crate::") {
            out.push(ident_path(&line[at..]));
        }
        i += 1;
    }
    out.retain(|p| p.starts_with("crate::") || p.starts_with("super::"));
    out
}

fn ident_path(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_owned()
}

/// Expands a `use` tree (`a::{b, c::{d}}`) into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        out.push(format!("{prefix}{tree}"));
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{head}"), &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&format!("{prefix}{head}"), &inner[start..], out);
    }
}

/// File → the files it uses.
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut graph = BTreeMap::new();
    for file in library_files() {
        let here = module_of(&file);
        let is_folder = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let mut uses = BTreeSet::new();
        for p in paths_in(&code_of(&file)) {
            let mut segs: Vec<String> = p.split("::").map(str::to_owned).collect();
            let mut base = if segs[0] == "crate" {
                Vec::new()
            } else {
                // `super` of a folder's mod.rs is the folder's parent.
                let mut b = here.clone();
                if !is_folder {
                    b.pop();
                }
                b
            };
            segs.remove(0);
            while segs.first().is_some_and(|s| s == "super") {
                base.pop();
                segs.remove(0);
            }
            base.extend(segs);
            if let Some(target) = file_of(&base)
                && target != file
            {
                uses.insert(target);
            }
        }
        graph.insert(file, uses);
    }
    graph
}

fn folder_of(file: &Path) -> Option<String> {
    let parts = module_of(file);
    (parts.len() > 1 || file.ends_with("mod.rs")).then(|| parts[0].clone())
}

#[test]
fn folders_use_only_the_layers_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (file, uses) in graph() {
        let Some(from) = folder_of(&file) else {
            continue;
        };
        let may = allowed
            .get(from.as_str())
            .unwrap_or_else(|| panic!("{from}/ is not in ALLOWED: add it with its layer"));
        for target in uses {
            if let Some(to) = folder_of(&target)
                && to != from
                && !may.contains(&to.as_str())
            {
                wrong.push(format!("{} uses {}", file.display(), target.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_use_each_other_even_through_others() {
    let graph = graph();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        // Depth-first from `start`: a way back to it is a cycle.
        let mut stack: Vec<(PathBuf, Vec<PathBuf>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail
                        .iter()
                        .chain([start])
                        .map(|p| p.strip_prefix(src()).unwrap().display().to_string())
                        .collect();
                    cycles.push(names.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_resolves_paths_as_rustc_does() {
    let mut out = Vec::new();
    expand(
        "",
        "crate::{kernel::{clock,taint},trace::records::Stats}",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "crate::kernel::clock",
            "crate::kernel::taint",
            "crate::trace::records::Stats"
        ]
    );
    let g = graph();
    let live = src().join("session/live.rs");
    assert!(
        g[&live].contains(&src().join("probe/mod.rs")),
        "{:?}",
        g[&live]
    );
    assert!(g[&live].contains(&src().join("session/state.rs")));
}
