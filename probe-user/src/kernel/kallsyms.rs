//! `/proc/kallsyms`: kernel function addresses, to name the functions the
//! call probe reports by address and to tell functions from data.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Kallsyms {
    /// Text symbols of the core kernel and modules: name -> address.
    text: HashMap<String, u64>,
}

impl Kallsyms {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T") {
                continue;
            }
            if let Ok(addr) = u64::from_str_radix(addr, 16) {
                out.text.entry(name.to_owned()).or_insert(addr);
            }
        }
        out
    }

    /// Address of a function, if `name` is one.
    pub fn function(&self, name: &str) -> Option<u64> {
        self.text.get(name).copied().filter(|&a| a != 0)
    }
}

/// The symbol (function or data) at exactly `addr` in a kallsyms text.
pub fn name_at(text: &str, addr: u64) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let a = u64::from_str_radix(f.next()?, 16).ok()?;
        let _kind = f.next()?;
        (a == addr && a != 0).then_some(f.next()?)
    })
}

/// Functions ftrace can trace (`available_filter_functions`): a kprobe on
/// one of them runs through ftrace, whose recursion guard makes a probe hit
/// from inside the probe's own path (RCU, BPF helpers) a counted miss. A
/// function missing from the list (`notrace`, or part of the probe path)
/// would be probed with a breakpoint, and a hit while another breakpoint
/// probe is single-stepping is an "Unrecoverable kprobe" kernel BUG.
pub fn parse_traceable(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

pub const TRACEABLE_PATHS: [&str; 2] = [
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
];

pub fn read_traceable() -> std::io::Result<HashSet<String>> {
    let mut last = None;
    for p in TRACEABLE_PATHS {
        match super::text_file::read(p) {
            Ok(t) => return Ok(parse_traceable(&t)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("two paths were tried"))
}

/// A probed kernel function: its name and its address from kallsyms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct KernelFunction {
    pub name: String,
    pub address: u64,
}

impl KernelFunction {
    pub fn new(name: impl Into<String>, address: u64) -> Self {
        Self {
            name: name.into(),
            address,
        }
    }
}

/// A function the kernel would not probe (or modscope refused to), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotAttached {
    pub function: String,
    pub error: String,
}

impl NotAttached {
    pub fn new(function: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            error: error.into(),
        }
    }
}

/// Names the function a probe reported: `bpf_get_func_ip` gives the probed
/// address, which on kernels with IBT may sit a few bytes past the symbol.
#[derive(Debug, Default)]
pub struct FunctionNames {
    sorted: Vec<(u64, String)>,
}

impl FunctionNames {
    pub fn new(functions: impl IntoIterator<Item = KernelFunction>) -> Self {
        let mut sorted: Vec<(u64, String)> =
            functions.into_iter().map(|f| (f.address, f.name)).collect();
        sorted.sort();
        Self { sorted }
    }

    /// Adds functions probed later.
    pub fn extend(&mut self, functions: impl IntoIterator<Item = KernelFunction>) {
        self.sorted
            .extend(functions.into_iter().map(|f| (f.address, f.name)));
        self.sorted.sort();
    }

    pub fn name(&self, ip: u64) -> Option<&str> {
        let i = self.sorted.partition_point(|(a, _)| *a <= ip);
        let (addr, name) = self.sorted.get(i.checked_sub(1)?)?;
        (ip - addr < 32).then_some(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceable_functions_drop_module_tags() {
        let t = parse_traceable("kfree\nkstrdup\nfuse_init [fuse]\n\n");
        assert!(t.contains("kfree") && t.contains("fuse_init"));
        assert!(!t.contains("[fuse]"));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn keeps_functions_only() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81234560 T kfree\nffffffff82000000 D jiffies\n\
             ffffffffc0a00000 t helper\t[modscope_calls]\n0000000000000000 T hidden\n",
        );
        assert_eq!(k.function("kfree"), Some(0xffff_ffff_8123_4560));
        assert_eq!(k.function("jiffies"), None);
        assert_eq!(k.function("helper"), Some(0xffff_ffff_c0a0_0000));
        assert_eq!(k.function("hidden"), None, "unprivileged readers see zeros");
    }

    #[test]
    fn names_probe_addresses_past_the_endbr() {
        let n = FunctionNames::new([
            KernelFunction::new("kfree", 0x1000),
            KernelFunction::new("kstrdup", 0x2000),
        ]);
        assert_eq!(n.name(0x1000), Some("kfree"));
        assert_eq!(n.name(0x1004), Some("kfree"));
        assert_eq!(n.name(0x2004), Some("kstrdup"));
        assert_eq!(n.name(0x1800), None);
        assert_eq!(n.name(0x10), None);
    }
}
