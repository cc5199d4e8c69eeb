//! modscope's library: everything the `modscope` binary does, with one
//! folder per concern. Dependencies run one way:
//! `session` → `probe` / `detectors` / `trace` → `kernel` →
//! `modscope_analysis` / `probe_common`; `tui` reads `trace` records only.
//! (`tests/layers.rs` enforces the order.)

pub mod detectors;
pub mod export;
pub mod guard;
pub mod kernel;
pub mod metrics;
pub mod probe;
pub mod session;
pub mod trace;
pub mod tui;
