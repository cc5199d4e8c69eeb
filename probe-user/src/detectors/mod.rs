//! The runtime anomaly detectors, user-space side: which kernel function
//! gets which in-kernel check on this kernel (from its BTF and config),
//! what a finding means, and the per-site records a session writes. The
//! in-kernel side is `probe-ebpf/src/field_checks.rs`, `alloc_ring.rs` and
//! `load_check.rs`; `probe::field_checks` attaches it.

pub mod explain;
pub mod plan;
pub mod probes;
