//! `modscope check`: static compatibility of module files with a kernel.

use std::{io::IsTerminal as _, path::PathBuf};

use anyhow::Context as _;
use modscope::trace::display::sanitize;
use modscope_analysis::{
    self as analysis, FileError, ModuleReport,
    target::{self, TargetKernel, TargetSpec},
    verdict::{Severity, Verdict},
};
use serde::Serialize;

use super::style::Style;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Module files (.ko, .ko.xz, .ko.zst, .ko.gz) or directories to search.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Target kernel release (default: the running kernel).
    #[arg(long, value_name = "RELEASE", conflicts_with = "all_kernels")]
    kernel: Option<String>,
    /// Check against every kernel installed in /boot: one column per kernel.
    #[arg(long)]
    all_kernels: bool,
    /// The target's .config (default: /proc/config.gz or /boot/config-RELEASE).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The target's Module.symvers (default: /lib/modules/RELEASE/build/Module.symvers).
    #[arg(long, value_name = "FILE")]
    symvers: Option<PathBuf>,
    /// The target's vmlinux BTF (default: /sys/kernel/btf/vmlinux, or taken out of /boot/vmlinuz-RELEASE).
    #[arg(long, value_name = "FILE")]
    btf: Option<PathBuf>,
    /// JSON for scripts (schema in the README).
    #[arg(long)]
    json: bool,
    /// Also list compatible modules and informational reasons.
    #[arg(long, short)]
    verbose: bool,
}

/// Exit statuses of `check` (README).
pub mod status {
    pub const ALL_COMPATIBLE: u8 = 0;
    pub const SOME_INCOMPATIBLE: u8 = 5;
    pub const BAD_INPUT: u8 = 6;
}

#[derive(Serialize)]
struct TargetJson<'a> {
    release: &'a str,
    config: &'a str,
    symvers: &'a str,
    btf: &'a str,
    btf_error: Option<&'a str>,
    vermagic: &'a str,
    struct_module_size: Option<u64>,
    warnings: Vec<String>,
}

impl<'a> TargetJson<'a> {
    fn of(t: &'a TargetKernel) -> Self {
        Self {
            release: &t.release,
            config: &t.config_path,
            symvers: &t.symvers_path,
            btf: &t.btf_path,
            btf_error: if t.struct_module_size.is_some() {
                None
            } else {
                t.btf().err()
            },
            vermagic: t.vermagic.raw.trim_end(),
            struct_module_size: t.struct_module_size,
            warnings: t.warnings(),
        }
    }
}

#[derive(Serialize, Default)]
struct Summary {
    compatible: usize,
    warning: usize,
    incompatible: usize,
    unreadable: usize,
}

impl Summary {
    fn of(reports: &[ModuleReport], errors: &[FileError]) -> Self {
        let count = |v| reports.iter().filter(|r| r.verdict == v).count();
        Self {
            compatible: count(Verdict::Compatible),
            warning: count(Verdict::Warning),
            incompatible: count(Verdict::Incompatible),
            unreadable: errors.len(),
        }
    }

    fn status(&self) -> u8 {
        if self.unreadable > 0 {
            status::BAD_INPUT
        } else if self.incompatible > 0 {
            status::SOME_INCOMPATIBLE
        } else {
            status::ALL_COMPATIBLE
        }
    }
}

/// One line per file that could not be analysed.
pub fn print_file_errors(st: &Style, errors: &[FileError]) {
    for e in errors {
        println!(
            "{} {}: {}",
            st.red("error"),
            sanitize(&e.path),
            sanitize(&e.error)
        );
    }
}

/// One JSON document on standard output, compact: reports over thousands of
/// modules are for programs (pipe through `jq` to read them).
pub fn write_json(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut out, value).context("writing the JSON report")?;
    writeln!(out)
        .and_then(|()| out.flush())
        .context("writing the JSON report")
}

fn spec(args: &CheckArgs, release: Option<String>) -> TargetSpec {
    TargetSpec {
        release,
        config: args.config.clone(),
        symvers: args.symvers.clone(),
        btf: args.btf.clone(),
        root: None,
    }
}

/// Returns the exit status.
pub fn run(args: CheckArgs) -> anyhow::Result<u8> {
    if args.all_kernels {
        let (files, errors) = analysis::expand_paths(&args.paths);
        return run_matrix(&args, &files, errors);
    }
    // Reading the target (Module.symvers, config) and walking the paths
    // are independent: do them at once.
    let spec = spec(&args, args.kernel.clone());
    let (target, (files, mut errors)) = std::thread::scope(|s| {
        let target = s.spawn(|| target::resolve(&spec));
        let paths = analysis::expand_paths(&args.paths);
        (
            target.join().expect("target resolution does not panic"),
            paths,
        )
    });
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("modscope: target kernel: {e}");
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "schema": 1, "error": format!("target kernel: {e}") })
                );
            }
            return Ok(status::BAD_INPUT);
        }
    };
    for w in target.warnings() {
        eprintln!("modscope: warning: {w}");
    }
    let (reports, more_errors) = analysis::check_files(&files, &target);
    errors.extend(more_errors);
    let summary = Summary::of(&reports, &errors);
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            schema: u32,
            target: TargetJson<'a>,
            modules: &'a [ModuleReport],
            errors: &'a [FileError],
            summary: &'a Summary,
        }
        let out = Out {
            schema: 1,
            target: TargetJson::of(&target),
            modules: &reports,
            errors: &errors,
            summary: &summary,
        };
        write_json(&out)?;
    } else {
        print_text(&target, &reports, &errors, &summary, args.verbose);
    }
    Ok(summary.status())
}

fn print_text(
    target: &TargetKernel,
    reports: &[ModuleReport],
    errors: &[FileError],
    summary: &Summary,
    verbose: bool,
) {
    let st = Style::detect(std::io::stdout().is_terminal());
    println!("{} {}", st.bold("target"), target.release);
    println!(
        "  config {}  symvers {} ({} exports)",
        target.config_path,
        target.symvers_path,
        target.symvers.len()
    );
    match (
        target
            .struct_module_size
            .map_or_else(|| target.btf().map(|_| ()), |_| Ok(())),
        target.struct_module_size,
    ) {
        (Ok(_), Some(size)) => {
            println!("  BTF {}  sizeof(struct module) = {size}", target.btf_path)
        }
        (Ok(_), None) => println!("  BTF {} (no struct module in it)", target.btf_path),
        (Err(e), _) => println!("  BTF unavailable: {e}"),
    }
    println!("  vermagic {:?}", target.vermagic.raw.trim_end());
    for verdict in [Verdict::Incompatible, Verdict::Warning, Verdict::Compatible] {
        let group: Vec<&ModuleReport> = reports.iter().filter(|r| r.verdict == verdict).collect();
        if group.is_empty() || (verdict == Verdict::Compatible && !verbose) {
            continue;
        }
        println!();
        for r in group {
            let loader = match (&r.loader.insmod, &r.loader.insmod_force) {
                (None, _) => "loads".to_owned(),
                (Some(e), None) => format!("insmod: {e}; insmod -f: loads (taints F)"),
                (Some(e), Some(f)) => format!("insmod: {e}; insmod -f: {f}"),
            };
            println!(
                "{} {}  {}  [{}]",
                st.verdict(verdict),
                st.bold(&sanitize(&r.name)),
                sanitize(&r.path),
                loader
            );
            for reason in r
                .reasons
                .iter()
                .filter(|x| verbose || x.severity > Severity::Info)
            {
                println!(
                    "    {} {:<24} {}",
                    st.severity(reason.severity),
                    reason.code.as_str(),
                    sanitize(&reason.message)
                );
            }
        }
    }
    if !errors.is_empty() {
        println!();
        print_file_errors(&st, errors);
    }
    println!(
        "\n{} compatible, {} warning, {} incompatible, {} unreadable{}",
        summary.compatible,
        summary.warning,
        summary.incompatible,
        summary.unreadable,
        if verbose || summary.compatible == 0 {
            ""
        } else {
            " (--verbose lists the compatible ones)"
        }
    );
}

fn run_matrix(args: &CheckArgs, files: &[PathBuf], errors: Vec<FileError>) -> anyhow::Result<u8> {
    let releases = target::installed_releases(None);
    let matrix = analysis::matrix::check_on_each(files, &releases, errors, |release| {
        target::resolve(&spec(args, Some(release.to_owned())))
    });
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            schema: u32,
            kernels: &'a [String],
            modules: &'a [analysis::matrix::Row],
            errors: &'a [FileError],
        }
        write_json(&Out {
            schema: 1,
            kernels: &matrix.kernels,
            modules: &matrix.rows,
            errors: &matrix.errors,
        })?;
    } else {
        print_matrix(&matrix);
    }
    Ok(if !matrix.errors.is_empty() {
        status::BAD_INPUT
    } else if matrix.any_incompatible() {
        status::SOME_INCOMPATIBLE
    } else {
        status::ALL_COMPATIBLE
    })
}

fn print_matrix(matrix: &analysis::matrix::Matrix) {
    let st = Style::detect(std::io::stdout().is_terminal());
    for row in &matrix.rows {
        let name = row
            .results
            .iter()
            .find_map(|c| c.report.as_ref().map(|r| r.name.clone()))
            .unwrap_or_default();
        println!("{}  {}", st.bold(&sanitize(&name)), sanitize(&row.path));
        for c in &row.results {
            match (&c.report, &c.error) {
                (Some(r), _) => {
                    let why = r
                        .reasons
                        .iter()
                        .find(|x| x.severity > Severity::Info)
                        .map(|x| sanitize(&x.message))
                        .unwrap_or_default();
                    let refuse = if r.kernel_would_refuse {
                        "insmod refuses"
                    } else {
                        "insmod loads"
                    };
                    println!(
                        "  {:<28} {} {:<15} {}",
                        c.kernel,
                        st.verdict(r.verdict),
                        refuse,
                        why
                    );
                }
                (None, Some(e)) => println!("  {:<28} {} {}", c.kernel, st.red("error"), e),
                (None, None) => {}
            }
        }
    }
    print_file_errors(&st, &matrix.errors);
}
