//! Replays every fuzz target's committed seeds and regression corpus
//! (`probe-user/fuzz/seeds/TARGET`, `probe-user/fuzz/regressions/TARGET`,
//! the latter merged from the fuzzing runs by `fuzz/run-all.sh`) through
//! the same code the fuzz binaries run: an input that once crashed a
//! parser fails here first.

use std::path::Path;

#[path = "../fuzz/fuzz_targets/targets.rs"]
mod targets;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_is_handled_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, run) in targets::ALL {
        let seeds = inputs(&fuzz.join("seeds").join(name));
        assert!(!seeds.is_empty(), "{name} has no committed seeds");
        let regressions = inputs(&fuzz.join("regressions").join(name));
        for file in seeds.iter().chain(&regressions) {
            let bytes = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name} panicked on {}", file.display());
        }
        eprintln!(
            "{name}: {} seeds, {} regression inputs",
            seeds.len(),
            regressions.len()
        );
    }
}
