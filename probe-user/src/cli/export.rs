//! `modscope export --format parquet|jsonl|perfetto -o OUT TRACE...`: traces
//! in the formats other engines read. A file that cannot be read or is not
//! a trace is named and skipped (exit 6), the others are exported; damaged
//! stretches are skipped as `report` skips them, and said.

use std::path::PathBuf;

use anyhow::Context as _;
use modscope::{
    export::{Exported, Format, Sink},
    trace::display::sanitize,
};

use super::{
    check::status,
    report::{open_trace, say_damage, trace_files},
};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// `parquet`: a directory of tables (sessions, modules, calls,
    /// anomalies, verdict_reasons); `jsonl`: one JSON object per row;
    /// `perfetto`: a timeline for ui.perfetto.dev.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// The output: a directory for parquet, a file for the others (`-`:
    /// standard output, for jsonl).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// Trace files, or directories of them (what `record --rotate-*` writes).
    #[arg(required = true, value_name = "TRACE")]
    traces: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Jsonl,
    Perfetto,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Perfetto => Format::Perfetto,
        }
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<u8> {
    let Some(inputs) = trace_files(&args.traces) else {
        return Ok(status::BAD_INPUT);
    };
    let format = Format::from(args.format);
    let out_name = sanitize(&args.output.display().to_string());
    let mut sink = Sink::create(format, &args.output)
        .with_context(|| format!("creating the export {out_name}"))?;
    let mut done = Exported::default();
    let mut bad = false;
    for path in &inputs {
        // open_trace names the file and says why on standard error.
        let Some((_, t)) = open_trace(path) else {
            bad = true;
            continue;
        };
        sink.add(path, t, &mut done)
            .with_context(|| format!("exporting {}", sanitize(&path.display().to_string())))?;
    }
    sink.finish(&mut done)
        .with_context(|| format!("writing the export {out_name}"))?;
    summary(&done, &out_name);
    Ok(if bad { status::BAD_INPUT } else { 0 })
}

/// One line on standard error (standard output may be the export), and
/// one per damaged stretch.
fn summary(done: &Exported, out: &str) {
    for (path, d) in &done.damage {
        say_damage(path, d);
    }
    let rows: Vec<String> = done.rows.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "modscope: exported {} traces ({} sessions, {} records) to {out}: {}",
        done.traces,
        done.sessions,
        done.records,
        rows.join(", ")
    );
}
