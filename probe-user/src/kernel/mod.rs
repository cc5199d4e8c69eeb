//! Facts read from the running kernel, never hard-coded: its features and
//! privileges, paths, /proc/kallsyms and the functions ftrace can trace,
//! /proc/modules, taint letters, clocks, and `struct module`'s layout from
//! its BTF, the kernel's views of which modules are loaded (`module_views`),
//! and the architecture's facts the call probe needs (`arch`, from
//! `kcore` and kallsyms). No eBPF here.

pub mod arch;
pub mod clock;
pub mod features;
pub mod file_identity;
pub mod kallsyms;
pub mod kcore;
pub mod lean_btf;
pub mod module_layout;
pub mod module_views;
pub mod proc_modules;
pub mod taint;
pub mod text_file;
pub mod thread_priority;
