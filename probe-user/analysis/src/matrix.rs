//! `check --all-kernels`: every module file checked against every installed
//! kernel, one row per file and one cell per kernel.

use std::path::PathBuf;

use serde::Serialize;

use super::{FileError, ModuleReport, check_files, target::TargetKernel, verdict::Verdict};

/// One file on one kernel: its report, or why the kernel could not be read.
#[derive(Debug, Serialize)]
pub struct Cell {
    pub kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ModuleReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub path: String,
    pub results: Vec<Cell>,
}

#[derive(Debug)]
pub struct Matrix {
    pub kernels: Vec<String>,
    pub rows: Vec<Row>,
    /// Files that could not be analysed (found on the first readable kernel).
    pub errors: Vec<FileError>,
}

impl Matrix {
    pub fn any_incompatible(&self) -> bool {
        self.rows.iter().flat_map(|r| &r.results).any(|c| {
            c.report
                .as_ref()
                .is_some_and(|r| r.verdict == Verdict::Incompatible)
        })
    }
}

/// Checks `files` on each release; `resolve` reads a release's files.
/// `errors`: the paths that did not expand, reported with the others.
pub fn check_on_each<E: std::fmt::Display>(
    files: &[PathBuf],
    releases: &[String],
    mut errors: Vec<FileError>,
    resolve: impl Fn(&str) -> Result<TargetKernel, E>,
) -> Matrix {
    let mut columns: Vec<(String, Vec<ModuleReport>, Option<String>)> = Vec::new();
    for release in releases {
        match resolve(release) {
            Ok(t) => {
                let (reports, errs) = check_files(files, &t);
                if columns.is_empty() {
                    errors.extend(errs);
                }
                columns.push((release.clone(), reports, None));
            }
            Err(e) => columns.push((release.clone(), Vec::new(), Some(e.to_string()))),
        }
    }
    let paths: Vec<String> = columns
        .iter()
        .find(|c| c.2.is_none())
        .map(|c| c.1.iter().map(|r| r.path.clone()).collect())
        .unwrap_or_default();
    let rows = paths
        .into_iter()
        .map(|path| Row {
            results: columns
                .iter()
                .map(|(kernel, reports, err)| Cell {
                    kernel: kernel.clone(),
                    report: reports.iter().find(|r| r.path == path).cloned(),
                    error: err.clone(),
                })
                .collect(),
            path,
        })
        .collect();
    Matrix {
        kernels: releases.to_vec(),
        rows,
        errors,
    }
}
