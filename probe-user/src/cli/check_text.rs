//! `check`'s text for people: the target, then each module's root causes
//! in the loader's order before their consequences (CRC mismatches, unknown
//! symbols), summarised; over many modules, a one-screen overview.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use modscope::trace::display::sanitize;
use modscope_analysis::{
    ModuleReport,
    target::TargetKernel,
    verdict::{Code, Reason, Severity, Verdict},
};

use super::{check::Summary, style::Style};

/// Past this many modules that are not compatible, the text is an overview
/// (`-v` lists every module).
const DETAILED_MODULES: usize = 20;
/// Per-symbol reasons of one code named before "… and N more".
const NAMED_PER_CODE: usize = 3;
/// The most-at-risk modules in the overview.
const AT_RISK_SHOWN: usize = 10;

pub fn print(
    out: &mut impl Write,
    st: &Style,
    target: &TargetKernel,
    reports: &[ModuleReport],
    verbose: bool,
) -> io::Result<()> {
    print_target(out, st, target)?;
    let flagged = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Compatible)
        .count();
    if flagged > DETAILED_MODULES && !verbose {
        return print_overview(out, st, reports);
    }
    for verdict in [Verdict::Incompatible, Verdict::Warning, Verdict::Compatible] {
        if verdict == Verdict::Compatible && !verbose {
            continue;
        }
        for r in reports.iter().filter(|r| r.verdict == verdict) {
            writeln!(out)?;
            print_module(out, st, r, verbose)?;
        }
    }
    Ok(())
}

fn print_target(out: &mut impl Write, st: &Style, target: &TargetKernel) -> io::Result<()> {
    writeln!(out, "{} {}", st.bold("target"), sanitize(&target.release))?;
    writeln!(
        out,
        "  config {}  symvers {} ({} exports)",
        sanitize(&target.config_path),
        sanitize(&target.symvers_path),
        target.symvers.len()
    )?;
    match target.struct_module_size {
        Some(size) => writeln!(
            out,
            "  BTF {}  sizeof(struct module) = {size}",
            sanitize(&target.btf_path)
        )?,
        None => writeln!(out, "  BTF {}: not usable", sanitize(&target.btf_path))?,
    }
    writeln!(out, "  vermagic {:?}", target.vermagic.raw.trim_end())?;
    for skipped in target.skipped_checks() {
        writeln!(out, "  {} {}", st.bold("skipped:"), sanitize(&skipped))?;
    }
    Ok(())
}

fn loader_line(r: &ModuleReport) -> String {
    match (&r.loader.insmod, &r.loader.insmod_force) {
        (None, _) => "loads".to_owned(),
        (Some(e), None) => format!("insmod: {e}; insmod -f: loads (taints F)"),
        (Some(e), Some(f)) => format!("insmod: {e}; insmod -f: {f}"),
    }
}

/// The reasons a person reads first: root causes in the loader's order
/// (the order the rules found them), the gravest first, then per-symbol
/// consequences grouped by severity and code.
pub fn reading_order(reasons: &[Reason], verbose: bool) -> Vec<&Reason> {
    let shown = |x: &&Reason| verbose || x.severity > Severity::Info;
    let mut ordered: Vec<&Reason> = reasons.iter().filter(shown).collect();
    // A stable sort: within a group, the rules' order stands.
    ordered.sort_by_key(|x| {
        let per_symbol = x.code.is_per_symbol();
        let group = if per_symbol {
            x.code.as_str()
        } else {
            String::new()
        };
        (per_symbol, std::cmp::Reverse(x.severity), group)
    });
    ordered
}

fn print_module(
    out: &mut impl Write,
    st: &Style,
    r: &ModuleReport,
    verbose: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "{} {}  {}  [{}]",
        st.verdict(r.verdict),
        st.bold(&sanitize(&r.name)),
        sanitize(&r.path),
        loader_line(r)
    )?;
    let ordered = reading_order(&r.reasons, verbose);
    let mut i = 0;
    while let Some(first) = ordered.get(i) {
        let run = ordered[i..]
            .iter()
            .take_while(|x| x.code == first.code && x.severity == first.severity)
            .count();
        if first.code.is_per_symbol() && run > NAMED_PER_CODE && !verbose {
            print_consequences(out, st, &ordered[i..i + run])?;
        } else {
            for reason in &ordered[i..i + run] {
                print_reason(out, st, reason)?;
            }
        }
        i += run;
    }
    Ok(())
}

fn print_reason(out: &mut impl Write, st: &Style, reason: &Reason) -> io::Result<()> {
    writeln!(
        out,
        "    {} {:<24} {}",
        st.severity(reason.severity),
        reason.code.as_str(),
        sanitize(&reason.message)
    )
}

/// Many reasons of one per-symbol code: how many, the first few named.
fn print_consequences(out: &mut impl Write, st: &Style, run: &[&Reason]) -> io::Result<()> {
    let first = run[0];
    let noun = if first.struct_name.is_some() {
        "structs"
    } else {
        "symbols"
    };
    let named: Vec<String> = run
        .iter()
        .take(NAMED_PER_CODE)
        .map(|x| {
            sanitize(
                x.symbol
                    .as_deref()
                    .or(x.struct_name.as_deref())
                    .unwrap_or("?"),
            )
        })
        .collect();
    writeln!(
        out,
        "    {} {:<24} {} {noun}: {}, … and {} more (-v lists them; --json always does)",
        st.severity(first.severity),
        first.code.as_str(),
        run.len(),
        named.join(", "),
        run.len() - named.len()
    )
}

/// Over many modules: counts per root cause and the modules most at risk.
fn print_overview(out: &mut impl Write, st: &Style, reports: &[ModuleReport]) -> io::Result<()> {
    let mut causes: BTreeMap<(std::cmp::Reverse<Severity>, String), usize> = BTreeMap::new();
    for r in reports.iter().filter(|r| r.verdict != Verdict::Compatible) {
        let mut codes: Vec<(Severity, Code)> = r
            .reasons
            .iter()
            .filter(|x| x.severity > Severity::Info)
            .map(|x| (x.severity, x.code))
            .collect();
        codes.sort_by_key(|(s, c)| (*s, c.as_str()));
        codes.dedup();
        for (severity, code) in codes {
            *causes
                .entry((std::cmp::Reverse(severity), code.as_str()))
                .or_default() += 1;
        }
    }
    writeln!(
        out,
        "\n{}",
        st.bold("reasons, by how many modules have them:")
    )?;
    let mut causes: Vec<_> = causes.into_iter().collect();
    causes.sort_by_key(|((severity, _), modules)| (*severity, std::cmp::Reverse(*modules)));
    for ((severity, code), modules) in &causes {
        writeln!(
            out,
            "  {} {code:<24} {modules} modules",
            st.severity(severity.0)
        )?;
    }
    let mut at_risk: Vec<&ModuleReport> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Incompatible)
        .collect();
    at_risk.sort_by_key(|r| {
        std::cmp::Reverse(
            r.reasons
                .iter()
                .filter(|x| x.severity == Severity::Incompatible)
                .count(),
        )
    });
    if !at_risk.is_empty() {
        writeln!(
            out,
            "\n{}",
            st.bold("most at risk (most incompatible reasons):")
        )?;
    }
    for r in at_risk.iter().take(AT_RISK_SHOWN) {
        writeln!(
            out,
            "  {} {:<24} {}",
            st.verdict(r.verdict),
            sanitize(&r.name),
            incompatible_counts(r)
        )?;
    }
    writeln!(
        out,
        "\n(-v lists every module with its reasons; --json gives all of it)"
    )
}

/// "412 incompatible reasons: 300 CRC_MISMATCH, 12 UNKNOWN_SYMBOL", the
/// codes by count.
fn incompatible_counts(r: &ModuleReport) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for x in r
        .reasons
        .iter()
        .filter(|x| x.severity == Severity::Incompatible)
    {
        *counts.entry(x.code.as_str()).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
    let listed: Vec<String> = counts
        .iter()
        .map(|(code, n)| format!("{n} {code}"))
        .collect();
    format!("{total} incompatible reasons: {}", listed.join(", "))
}

pub fn print_summary(out: &mut impl Write, summary: &Summary, verbose: bool) -> io::Result<()> {
    writeln!(
        out,
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
    )
}
