//! `modscope diff KERNEL_A KERNEL_B [PATH...]`: what changed between two
//! kernels and which modules built for A can be reused on B unchanged.

use std::{io::IsTerminal as _, path::PathBuf};

use modscope::trace::display::sanitize;
use modscope_analysis::{
    self as analysis,
    kernel_diff::{self, KernelDiff, ModuleImpact},
    target::{self, TargetKernel, TargetSpec},
    verdict::Verdict,
};
use serde::Serialize;

use super::{check, style::Style};

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
            root: None,
        }
    } else {
        TargetSpec {
            release: Some(kernel.to_owned()),
            ..Default::default()
        }
    }
}

pub fn run(args: DiffArgs) -> anyhow::Result<u8> {
    let resolve = |k: &str| target::resolve(&spec(k)).map_err(|e| format!("{k}: {e}"));
    let (a, b) = match (resolve(&args.kernel_a), resolve(&args.kernel_b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("modscope: {e}");
            if args.json {
                println!("{}", serde_json::json!({ "schema": 1, "error": e }));
            }
            return Ok(check::status::BAD_INPUT);
        }
    };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(format!("/lib/modules/{}", a.release))]
    } else {
        args.paths.clone()
    };
    let (files, mut errors) = analysis::expand_paths(&paths);
    let d = kernel_diff::diff(&a, &b);
    for w in a.warnings().into_iter().chain(b.warnings()) {
        eprintln!("modscope: warning: {w}");
    }
    let (reports, more) = analysis::check_files(&files, &b);
    errors.extend(more);
    let any_incompatible = reports.iter().any(|r| r.verdict == Verdict::Incompatible);
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
        print_text(&a, &b, &d, &impact, &errors, args.verbose);
    }
    Ok(if !errors.is_empty() {
        check::status::BAD_INPUT
    } else if any_incompatible {
        check::status::SOME_INCOMPATIBLE
    } else {
        check::status::ALL_COMPATIBLE
    })
}

fn print_text(
    a: &TargetKernel,
    b: &TargetKernel,
    d: &KernelDiff,
    impact: &ModuleImpact,
    errors: &[analysis::FileError],
    verbose: bool,
) {
    let st = Style::detect(std::io::stdout().is_terminal());
    let limit = if verbose { usize::MAX } else { 12 };
    println!("{} {} -> {}", st.bold("diff"), a.release, b.release);
    print_config(&st, d, limit);
    print_symbols(&st, d, limit);
    print_structs(&st, d, limit);
    print_modules(&st, impact, limit);
    check::print_file_errors(&st, errors);
}

/// Options that differ, those known to change module ABI first.
fn print_config(st: &Style, d: &KernelDiff, limit: usize) {
    let relevant = d.config.iter().filter(|c| c.layout_relevant).count();
    println!(
        "\n{} {} options differ, {relevant} of them known to change module ABI",
        st.bold("config:"),
        d.config.len()
    );
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
    let mut listed: Vec<_> = d.config.iter().filter(|c| c.layout_relevant).collect();
    listed.extend(d.config.iter().filter(|c| !c.layout_relevant));
    for c in listed.iter().take(limit) {
        println!(
            "  {:<44} {} -> {}{}",
            c.option,
            show(&c.a),
            show(&c.b),
            if c.layout_relevant { "   [ABI]" } else { "" }
        );
    }
    if listed.len() > limit {
        println!("  … {} more (--verbose)", listed.len() - limit);
    }
}

fn print_symbols(st: &Style, d: &KernelDiff, limit: usize) {
    println!(
        "\n{} {} CRCs changed, {} gone, {} new",
        st.bold("exported symbols:"),
        d.crc_changed.len(),
        d.symbols_gone.len(),
        d.symbols_new.len()
    );
    for c in d.crc_changed.iter().take(limit) {
        println!(
            "  {:<44} {:#010x} -> {:#010x}",
            sanitize(&c.symbol),
            c.crc_a,
            c.crc_b
        );
    }
    for s in d.symbols_gone.iter().take(limit) {
        println!("  {:<44} gone", sanitize(s));
    }
}

fn print_structs(st: &Style, d: &KernelDiff, limit: usize) {
    match (&d.structs_changed, &d.btf_note) {
        (Some(changes), _) => {
            println!("\n{} {} layouts differ", st.bold("structs:"), changes.len());
            for c in changes.iter().take(limit) {
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
                println!("  struct {:<37} {}", c.name, what.join("; "));
            }
        }
        (None, note) => println!(
            "\n{} {}",
            st.bold("structs:"),
            note.as_deref().unwrap_or("not compared")
        ),
    }
}

fn print_modules(st: &Style, impact: &ModuleImpact, limit: usize) {
    println!(
        "\n{} {} safe to reuse unchanged, {} affected",
        st.bold("modules:"),
        impact.safe_to_reuse.len(),
        impact.affected.len()
    );
    for r in impact.affected.iter().take(limit.max(30)) {
        let first = r
            .reasons
            .first()
            .map(|x| sanitize(&x.message))
            .unwrap_or_default();
        println!(
            "  {} {:<24} {}",
            st.verdict(r.verdict),
            sanitize(&r.name),
            first
        );
    }
    if impact.affected.len() > limit.max(30) {
        println!(
            "  … {} more (--verbose, or --json)",
            impact.affected.len() - limit.max(30)
        );
    }
}
