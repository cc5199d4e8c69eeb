//! Trace exports that other engines read (`modscope export`): the trace as
//! five tables (`tables`), written as Parquet (`parquet`) or JSON lines
//! (`jsonl`), and as a Perfetto timeline (`perfetto`, with
//! `perfetto_proto`'s messages). Traces are read one at a time, so a
//! fleet's worth exports in bounded memory (the timeline holds its events).

pub mod jsonl;
pub mod parquet;
pub mod perfetto;
pub mod perfetto_proto;
pub mod tables;

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use crate::trace::{self, Damage, Trace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A directory of Parquet tables.
    Parquet,
    /// One JSON object per table row.
    Jsonl,
    /// A Perfetto TrackEvent trace.
    Perfetto,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the Parquet table {table}: {source}")]
    Parquet {
        table: &'static str,
        source: ::parquet::errors::ParquetError,
    },
}

impl ExportError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn parquet(table: &'static str, source: ::parquet::errors::ParquetError) -> Self {
        Self::Parquet { table, source }
    }
}

/// What an export read and wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    pub traces: u64,
    pub sessions: u64,
    pub records: u64,
    /// Rows per table (Parquet, JSON lines) or packets (Perfetto).
    pub rows: Vec<(&'static str, u64)>,
    /// Damaged stretches skipped, per file.
    pub damage: Vec<(PathBuf, Damage)>,
}

impl Exported {
    fn count(&mut self, source: &Path, t: &Trace) {
        self.traces += 1;
        self.records += t.records.len() as u64;
        self.sessions += t
            .records
            .iter()
            .filter(|(_, r)| matches!(r, trace::TraceRecord::SessionStart(_)))
            .count() as u64;
        self.damage
            .extend(t.damage.iter().map(|d| (source.to_owned(), d.clone())));
    }

    fn add_rows(&mut self, tables: &[tables::Table]) {
        if self.rows.is_empty() {
            self.rows = tables.iter().map(|t| (t.name, 0)).collect();
        }
        for ((_, n), t) in self.rows.iter_mut().zip(tables) {
            *n += t.rows.len() as u64;
        }
    }
}

/// Where the rows go, one trace at a time: a file, or a run of rotated
/// files that go on with one session (`pending` until the run ends).
pub struct Sink {
    out: Output,
    pending: Option<(PathBuf, Trace)>,
}

enum Output {
    Parquet(parquet::ParquetTables),
    Jsonl {
        path: PathBuf,
        out: Box<dyn io::Write>,
    },
    Perfetto {
        path: PathBuf,
        records: Vec<(u64, trace::TraceRecord)>,
    },
}

/// Whether `next` begins by going on with `previous`'s last session (the
/// next file of a rotating capture).
fn continues(previous: &Trace, next: &Trace) -> bool {
    let header = |r: &(u64, trace::TraceRecord)| match &r.1 {
        trace::TraceRecord::SessionStart(s) => Some(s.clone()),
        _ => None,
    };
    let last = previous.records.iter().rev().find_map(header);
    let first = next.records.first().and_then(header);
    matches!((last, first), (Some(a), Some(b)) if a.continues(&b))
}

impl Sink {
    /// Opens the output: a directory for Parquet (created when missing),
    /// a file for the others (`-`: standard output, for JSON lines).
    pub fn create(format: Format, out: &Path) -> Result<Self, ExportError> {
        let out = match format {
            Format::Parquet => {
                std::fs::create_dir_all(out).map_err(|e| ExportError::io(out, e))?;
                Output::Parquet(parquet::ParquetTables::create(out)?)
            }
            Format::Jsonl => {
                let writer: Box<dyn io::Write> = if out == Path::new("-") {
                    Box::new(io::BufWriter::new(io::stdout()))
                } else {
                    let f = std::fs::File::create(out).map_err(|e| ExportError::io(out, e))?;
                    Box::new(io::BufWriter::new(f))
                };
                Output::Jsonl {
                    path: out.to_owned(),
                    out: writer,
                }
            }
            Format::Perfetto => Output::Perfetto {
                path: out.to_owned(),
                records: Vec::new(),
            },
        };
        Ok(Self { out, pending: None })
    }

    /// Adds one trace file's records; a file that goes on with the previous
    /// one's session joins it.
    pub fn add(&mut self, source: &Path, t: Trace, done: &mut Exported) -> Result<(), ExportError> {
        done.count(source, &t);
        match &mut self.pending {
            Some((_, run)) if continues(run, &t) => {
                run.records.extend(t.records);
                run.damage.extend(t.damage);
                Ok(())
            }
            _ => {
                let previous = self.pending.replace((source.to_owned(), t));
                match previous {
                    Some((path, run)) => self.out.write(&path, run, done),
                    None => Ok(()),
                }
            }
        }
    }

    /// Writes what is held and closes the output.
    pub fn finish(mut self, done: &mut Exported) -> Result<(), ExportError> {
        if let Some((path, run)) = self.pending.take() {
            self.out.write(&path, run, done)?;
        }
        self.out.finish(done)
    }
}

impl Output {
    fn write(&mut self, source: &Path, t: Trace, done: &mut Exported) -> Result<(), ExportError> {
        match self {
            Output::Parquet(w) => {
                let tables = tables::of_trace(&source.display().to_string(), &t);
                w.write(&tables)?;
                done.add_rows(&tables);
            }
            Output::Jsonl { path, out } => {
                let tables = tables::of_trace(&source.display().to_string(), &t);
                jsonl::write_tables(out, &tables).map_err(|e| ExportError::io(path, e))?;
                done.add_rows(&tables);
            }
            Output::Perfetto { records, .. } => records.extend(t.records),
        }
        Ok(())
    }

    fn finish(self, done: &mut Exported) -> Result<(), ExportError> {
        match self {
            Output::Parquet(w) => w.finish(),
            Output::Jsonl { path, mut out } => out.flush().map_err(|e| ExportError::io(&path, e)),
            Output::Perfetto { path, records } => {
                let t = Trace {
                    records,
                    damage: Vec::new(),
                };
                let timeline = perfetto::timeline(&t);
                done.rows = vec![("packets", timeline.packet.len() as u64)];
                let bytes = ::prost::Message::encode_to_vec(&timeline);
                std::fs::write(&path, bytes).map_err(|e| ExportError::io(&path, e))
            }
        }
    }
}
