//! The guard's user-space half: which module files have verdicts and how
//! they stay current (`catalog`, `watcher`), and whether this kernel runs
//! BPF-LSM at all (`lsm`). The programs are `probe::guard`; the session
//! ties them together (`session::guard_desk`).

pub mod catalog;
pub mod lsm;
pub mod watcher;
