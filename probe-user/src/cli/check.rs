//! `modscope check`: static compatibility of module files with a kernel.

use std::{
    io::{self, IsTerminal as _, Write},
    path::PathBuf,
};

use modscope::trace::display::sanitize;
use modscope_analysis::{
    self as analysis, FileError, ModuleReport,
    target::{self, TargetKernel, TargetSpec},
    verdict::{Severity, Verdict},
};
use serde::Serialize;

use super::{check_text, stdout, style::Style};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Module files (.ko, .ko.xz, .ko.zst, .ko.gz) or directories to search.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Target kernel release (default: the running kernel).
    #[arg(long, value_name = "RELEASE", conflicts_with = "all_kernels")]
    kernel: Option<String>,
    /// Check against every kernel installed in /boot: one line per kernel under each module.
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
    /// Certificates the target trusts for module signatures, PEM or DER
    /// (default: those built into /boot/vmlinuz-RELEASE).
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// JSON for scripts (schema in the README).
    #[arg(long)]
    json: bool,
    /// Also list compatible modules and informational reasons.
    #[arg(long, short)]
    verbose: bool,
}

/// Exit statuses of `check` and `diff` (README): 4 plus one bit per
/// outcome, so no outcome hides another (7 = both).
pub mod status {
    pub const ALL_COMPATIBLE: u8 = 0;
    /// Bit 0: some module is incompatible.
    pub const SOME_INCOMPATIBLE: u8 = 4 | 1;
    /// Bit 1: some input could not be read or is not what it claims.
    pub const BAD_INPUT: u8 = 4 | 2;

    /// The status for a run that found incompatible modules, bad input, both or neither.
    pub fn of(incompatible: bool, bad_input: bool) -> u8 {
        match (incompatible, bad_input) {
            (false, false) => ALL_COMPATIBLE,
            (true, false) => SOME_INCOMPATIBLE,
            (false, true) => BAD_INPUT,
            (true, true) => SOME_INCOMPATIBLE | BAD_INPUT,
        }
    }
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
    skipped: Vec<String>,
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
            skipped: t.skipped_checks(),
        }
    }
}

#[derive(Serialize, Default)]
pub struct Summary {
    pub compatible: usize,
    pub warning: usize,
    pub incompatible: usize,
    pub unreadable: usize,
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
        status::of(self.incompatible > 0, self.unreadable > 0)
    }
}

/// One line per file that could not be analysed.
pub fn print_file_errors(out: &mut impl Write, st: &Style, errors: &[FileError]) -> io::Result<()> {
    for e in errors {
        writeln!(
            out,
            "{} {}: {}",
            st.red("error"),
            sanitize(&e.path),
            sanitize(&e.error)
        )?;
    }
    Ok(())
}

/// One JSON document on standard output, compact: reports over thousands of
/// modules are for programs (pipe through `jq` to read them).
pub fn write_json(value: &impl Serialize) -> anyhow::Result<()> {
    stdout::write_with(|out| {
        serde_json::to_writer(&mut *out, value)?;
        writeln!(out)
    })
}

/// Says on standard error (and in JSON) why the target could not be read,
/// with the option that gives what was missing (`flags`: the input → the
/// command's option for it). Returns the exit status.
pub fn target_failed(
    e: &target::TargetError,
    flags: impl Fn(&str) -> Option<&'static str>,
    json: bool,
) -> anyhow::Result<u8> {
    let hint = e
        .missing()
        .and_then(flags)
        .map(|f| format!("; {f}"))
        .unwrap_or_default();
    let message = sanitize(&format!("target kernel: {e}{hint}"));
    eprintln!("modscope: {message}");
    if json {
        write_json(&serde_json::json!({ "schema": 1, "error": message }))?;
    }
    Ok(status::BAD_INPUT)
}

/// `check`'s option for each target input.
fn check_flag(what: &str) -> Option<&'static str> {
    match what {
        "kernel config" => Some("pass --config FILE"),
        "Module.symvers" => Some("pass --symvers FILE (or install the kernel's headers package)"),
        _ => None,
    }
}

fn spec(args: &CheckArgs, release: Option<String>) -> TargetSpec {
    TargetSpec {
        release,
        config: args.config.clone(),
        symvers: args.symvers.clone(),
        btf: args.btf.clone(),
        keyring: args.keyring.clone(),
        root: None,
        struct_module_size: None,
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
        Err(e) => return target_failed(&e, check_flag, args.json),
    };
    for w in target.warnings() {
        eprintln!("modscope: warning: {}", sanitize(&w));
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
        let st = Style::detect(std::io::stdout().is_terminal());
        stdout::write_with(|out| {
            check_text::print(out, &st, &target, &reports, args.verbose)?;
            if !errors.is_empty() {
                writeln!(out)?;
                print_file_errors(out, &st, &errors)?;
            }
            check_text::print_summary(out, &summary, args.verbose)
        })?;
    }
    Ok(summary.status())
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
        stdout::write_with(|out| print_matrix(out, &matrix))?;
    }
    Ok(status::of(
        matrix.any_incompatible(),
        !matrix.errors.is_empty(),
    ))
}

fn print_matrix(out: &mut impl Write, matrix: &analysis::matrix::Matrix) -> io::Result<()> {
    let st = Style::detect(std::io::stdout().is_terminal());
    for row in &matrix.rows {
        let name = row
            .results
            .iter()
            .find_map(|c| c.report.as_ref().map(|r| r.name.clone()))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  {}",
            st.bold(&sanitize(&name)),
            sanitize(&row.path)
        )?;
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
                    writeln!(
                        out,
                        "  {:<28} {} {:<15} {}",
                        sanitize(&c.kernel),
                        st.verdict(r.verdict),
                        refuse,
                        why
                    )?;
                }
                (None, Some(e)) => writeln!(
                    out,
                    "  {:<28} {} {}",
                    sanitize(&c.kernel),
                    st.red("error"),
                    sanitize(e)
                )?,
                (None, None) => {}
            }
        }
    }
    print_file_errors(out, &st, &matrix.errors)
}
