//! `modscope diff KERNEL_A KERNEL_B [PATH...]`: what changed between two
//! kernels and which modules built for A can be reused on B unchanged.

use std::{
    io::{self, IsTerminal as _, Write},
    path::PathBuf,
};

use modscope::trace::display::sanitize;
use modscope_analysis::{
    self as analysis,
    kernel_diff::{self, KernelDiff, ModuleImpact},
    target::{self, TargetKernel, TargetSpec},
    verdict::Verdict,
};
use serde::Serialize;

use super::{check, stdout, style::Style};

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The kernel modules were built for: an installed release, or a directory
    /// holding `.config` (or `config`), `Module.symvers` and optionally `vmlinux` BTF.
    kernel_a: String,
    /// The kernel to move them to (same forms).
    kernel_b: String,
    /// Modules to assess (default: those installed for KERNEL_A).
    paths: Vec<PathBuf>,
    /// JSON for scripts (schema in the README).
    #[arg(long)]
    json: bool,
    /// List every changed option, symbol and struct, not the first few.
    #[arg(long, short)]
    verbose: bool,
}

fn spec(kernel: &str) -> TargetSpec {
    let dir = PathBuf::from(kernel);
    if dir.is_dir() {
        let pick = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.exists());
        TargetSpec {
            release: Some(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            config: pick(&[".config", "config"]).or_else(|| Some(dir.join(".config"))),
            symvers: Some(dir.join("Module.symvers")),
            btf: pick(&["vmlinux", "btf", "vmlinux.btf"]),
            keyring: pick(&["certs/signing_key.x509", "certs.pem"]),
            root: None,
            struct_module_size: None,
        }
    } else {
        TargetSpec {
            release: Some(kernel.to_owned()),
            ..Default::default()
        }
    }
}

/// `diff`'s way to give each target input (it has no per-file options).
fn diff_flag(what: &str) -> Option<&'static str> {
    match what {
        "kernel config" | "Module.symvers" => Some(
            "give a directory holding .config and Module.symvers instead of the release, \
             or install the kernel's headers package",
        ),
        _ => None,
    }
}

fn resolve(kernel: &str, json: bool) -> anyhow::Result<Result<TargetKernel, u8>> {
    match target::resolve(&spec(kernel)) {
        Ok(t) => Ok(Ok(t)),
        Err(e) => check::target_failed(&e, diff_flag, json).map(Err),
    }
}

pub fn run(args: DiffArgs) -> anyhow::Result<u8> {
    let a = match resolve(&args.kernel_a, args.json)? {
        Ok(a) => a,
        Err(status) => return Ok(status),
    };
    let b = match resolve(&args.kernel_b, args.json)? {
        Ok(b) => b,
        Err(status) => return Ok(status),
    };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(format!("/lib/modules/{}", a.release))]
    } else {
        args.paths.clone()
    };
    let (files, mut errors) = analysis::expand_paths(&paths);
    let mut d = kernel_diff::diff(&a, &b);
    for w in a.warnings().into_iter().chain(b.warnings()) {
        eprintln!("modscope: warning: {}", sanitize(&w));
    }
    let (reports, more) = analysis::check_files(&files, &b);
    errors.extend(more);
    let any_incompatible = reports.iter().any(|r| r.verdict == Verdict::Incompatible);
    kernel_diff::rank_by_use(&mut d, &reports);
    let impact = kernel_diff::impact(reports);
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            schema: u32,
            kernel_a: &'a str,
            kernel_b: &'a str,
            diff: &'a KernelDiff,
            modules: &'a ModuleImpact,
            errors: &'a [analysis::FileError],
        }
        let out = Out {
            schema: 1,
            kernel_a: &a.release,
            kernel_b: &b.release,
            diff: &d,
            modules: &impact,
            errors: &errors,
        };
        check::write_json(&out)?;
    } else {
        let text = Text {
            st: Style::detect(std::io::stdout().is_terminal()),
            limit: if args.verbose { usize::MAX } else { 12 },
        };
        stdout::write_with(|out| text.print(out, &a, &b, &d, &impact, &errors))?;
    }
    Ok(check::status::of(any_incompatible, !errors.is_empty()))
}

/// The text report: its style and how many lines each list shows.
struct Text {
    st: Style,
    limit: usize,
}

impl Text {
    fn print(
        &self,
        out: &mut impl Write,
        a: &TargetKernel,
        b: &TargetKernel,
        d: &KernelDiff,
        impact: &ModuleImpact,
        errors: &[analysis::FileError],
    ) -> io::Result<()> {
        let (ra, rb) = (sanitize(&a.release), sanitize(&b.release));
        writeln!(out, "{} {ra} -> {rb}", self.st.bold("diff"))?;
        self.config(out, d)?;
        self.symbols(out, d)?;
        self.structs(out, d)?;
        self.modules(out, impact)?;
        check::print_file_errors(out, &self.st, errors)
    }

    /// Options that differ, those known to change module ABI first.
    fn config(&self, out: &mut impl Write, d: &KernelDiff) -> io::Result<()> {
        let relevant = d.config.iter().filter(|c| c.layout_relevant).count();
        writeln!(
            out,
            "\n{} {} options differ, {relevant} of them known to change module ABI",
            self.st.bold("config:"),
            d.config.len()
        )?;
        let show = |v: &Option<String>| sanitize(v.as_deref().unwrap_or("(unset)"));
        let mut listed: Vec<_> = d.config.iter().filter(|c| c.layout_relevant).collect();
        listed.extend(d.config.iter().filter(|c| !c.layout_relevant));
        for c in listed.iter().take(self.limit) {
            let mark = if c.layout_relevant { "   [ABI]" } else { "" };
            let option = sanitize(&c.option);
            writeln!(out, "  {option:<44} {} -> {}{mark}", show(&c.a), show(&c.b))?;
        }
        self.more(out, listed.len(), "--verbose")
    }

    /// Changed and vanished exports, those the given modules use most first.
    fn symbols(&self, out: &mut impl Write, d: &KernelDiff) -> io::Result<()> {
        writeln!(
            out,
            "\n{} {} CRCs changed, {} gone, {} new",
            self.st.bold("exported symbols:"),
            d.crc_changed.len(),
            d.symbols_gone.len(),
            d.symbols_new.len()
        )?;
        let used = |n: usize| match n {
            0 => String::new(),
            1 => "   used by 1 module".to_owned(),
            n => format!("   used by {n} modules"),
        };
        for c in d.crc_changed.iter().take(self.limit) {
            let symbol = sanitize(&c.symbol);
            let (a, b, u) = (c.crc_a, c.crc_b, used(c.used_by));
            writeln!(out, "  {symbol:<44} {a:#010x} -> {b:#010x}{u}")?;
        }
        self.more(out, d.crc_changed.len(), "--verbose")?;
        for s in d.symbols_gone.iter().take(self.limit) {
            writeln!(out, "  {:<44} gone", sanitize(s))?;
        }
        self.more(out, d.symbols_gone.len(), "--verbose")
    }

    fn structs(&self, out: &mut impl Write, d: &KernelDiff) -> io::Result<()> {
        let bold = self.st.bold("structs:");
        let Some(changes) = &d.structs_changed else {
            let note = d.btf_note.as_deref().unwrap_or("not compared");
            return writeln!(out, "\n{bold} {}", sanitize(note));
        };
        writeln!(out, "\n{bold} {} layouts differ", changes.len())?;
        for c in changes.iter().take(self.limit) {
            let mut what = Vec::new();
            if c.size_a != c.size_b {
                what.push(format!("size {} -> {} bytes", c.size_a, c.size_b));
            }
            if !c.moved.is_empty() {
                what.push(format!("{} members moved", c.moved.len()));
            }
            if !c.only_in_b.is_empty() {
                what.push(format!("added {}", c.only_in_b.join(", ")));
            }
            if !c.only_in_a.is_empty() {
                what.push(format!("removed {}", c.only_in_a.join(", ")));
            }
            let name = sanitize(&c.name);
            writeln!(out, "  struct {name:<37} {}", sanitize(&what.join("; ")))?;
        }
        self.more(out, changes.len(), "--verbose")
    }

    fn modules(&self, out: &mut impl Write, impact: &ModuleImpact) -> io::Result<()> {
        let limit = self.limit.max(30);
        writeln!(
            out,
            "\n{} {} safe to reuse unchanged, {} affected",
            self.st.bold("modules:"),
            impact.safe_to_reuse.len(),
            impact.affected.len()
        )?;
        for r in impact.affected.iter().take(limit) {
            let first = r.reasons.first().map(|x| sanitize(&x.message));
            let (verdict, name) = (self.st.verdict(r.verdict), sanitize(&r.name));
            writeln!(out, "  {verdict} {name:<24} {}", first.unwrap_or_default())?;
        }
        if impact.affected.len() > limit {
            let n = impact.affected.len() - limit;
            writeln!(out, "  … {n} more (--verbose, or --json)")?;
        }
        Ok(())
    }

    /// "… N more" under a list of `total` cut at the limit.
    fn more(&self, out: &mut impl Write, total: usize, how: &str) -> io::Result<()> {
        if total > self.limit {
            writeln!(out, "  … {} more ({how})", total - self.limit)?;
        }
        Ok(())
    }
}
