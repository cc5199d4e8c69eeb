//! modscope's userspace: loading the probes, reading the kernel's own
//! descriptions of itself (BTF, /proc/modules, taints), and turning probe
//! records into events for people and scripts.

pub mod analysis;
pub mod btf_layout;
pub mod call_report;
pub mod clock;
pub mod detector_plan;
pub mod event;
pub mod kallsyms;
pub mod kernel_features;
pub mod probe;
pub mod probe_field_checks;
pub mod proc_modules;
pub mod taint;
pub mod trace;
pub mod tui;
