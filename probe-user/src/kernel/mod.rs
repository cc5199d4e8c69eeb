//! Facts read from the running kernel, never hard-coded: its features and
//! privileges, paths, /proc/kallsyms and the functions ftrace can trace,
//! /proc/modules, taint letters, clocks, and `struct module`'s layout from
//! its BTF. No eBPF here.

pub mod clock;
pub mod features;
pub mod kallsyms;
pub mod module_layout;
pub mod proc_modules;
pub mod taint;
