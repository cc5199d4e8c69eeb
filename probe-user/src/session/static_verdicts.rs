//! The static verdict on each module a live session sees: its file (from
//! `--watch`, or this kernel's module path) checked against the running
//! kernel, as a trace record. Files are checked once per name.

use std::{collections::HashMap, path::PathBuf};

use modscope_analysis::{
    self as analysis, ModuleReport,
    target::{self, TargetKernel, TargetSpec},
    verdict::{Severity, Verdict},
};

use crate::{
    kernel::features::KernelPaths,
    trace::records::{self, ModuleVerdict},
};

pub struct StaticVerdicts {
    /// `None` when the running kernel's config or Module.symvers cannot be
    /// read; no verdicts then.
    target: Option<TargetKernel>,
    files: HashMap<String, PathBuf>,
    cache: HashMap<String, Option<ModuleReport>>,
}

impl StaticVerdicts {
    /// `files`: module name → its file. With why there will be no
    /// verdicts, when the running kernel's files cannot be read.
    pub fn new(files: HashMap<String, PathBuf>, paths: &KernelPaths) -> (Self, Option<String>) {
        let spec = TargetSpec {
            config: paths.config.clone(),
            btf: Some(paths.vmlinux_btf.clone()),
            ..TargetSpec::default()
        };
        let (target, warning) = match target::resolve(&spec) {
            Ok(t) => {
                // The trusted certificates, read now (out of the kernel image,
                // or its cache) rather than on the first module's load; only
                // when this kernel checks signatures at all.
                let _ = t.verifies_signatures();
                (Some(t), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let verdicts = Self {
            target,
            files,
            cache: HashMap::new(),
        };
        (verdicts, warning)
    }

    /// The verdict record for a module incarnation, when its file is known.
    pub fn verdict(&mut self, name: &str, ts_ns: u64, incarnation: u64) -> Option<ModuleVerdict> {
        let target = self.target.as_ref()?;
        let report = self
            .cache
            .entry(name.to_owned())
            .or_insert_with(|| {
                let file = self.files.get(name)?;
                analysis::check_file(file, target).ok()
            })
            .as_ref()?;
        Some(to_record(report, ts_ns, incarnation))
    }
}

pub fn to_record(report: &ModuleReport, ts_ns: u64, incarnation: u64) -> ModuleVerdict {
    ModuleVerdict {
        ts_ns,
        incarnation,
        file: report.path.clone(),
        severity: match report.verdict {
            Verdict::Compatible => Severity::Info,
            Verdict::Warning => Severity::Warning,
            Verdict::Incompatible => Severity::Incompatible,
        },
        kernel_would_refuse: report.kernel_would_refuse,
        reasons: records::reasons_of(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modscope_analysis::verdict::{Code, LoaderAnswer, Reason};

    #[test]
    fn a_report_becomes_a_record_with_every_reason() {
        let report = ModuleReport {
            path: "/x/m.ko".into(),
            name: "m".into(),
            verdict: Verdict::Incompatible,
            kernel_would_refuse: true,
            loader: LoaderAnswer {
                insmod: Some("Invalid module format".into()),
                insmod_force: None,
            },
            imports: 3,
            versioned_imports: 3,
            reasons: vec![
                Reason::new(Code::CrcMismatch, Severity::Incompatible, "crc differs")
                    .symbol("mutex_lock")
                    .config("PREEMPT_RT"),
                Reason::new(Code::OutOfTree, Severity::Info, "out of tree"),
            ],
        };
        let v = to_record(&report, 5, 6);
        assert_eq!(
            (v.ts_ns, v.incarnation, v.severity),
            (5, 6, Severity::Incompatible)
        );
        assert!(v.kernel_would_refuse);
        assert_eq!(v.reasons[0].code, "CRC_MISMATCH");
        assert_eq!(v.reasons[0].symbol, "mutex_lock");
        assert_eq!(v.reasons[0].config, "CONFIG_PREEMPT_RT");
        assert_eq!(v.reasons[1].severity, Some(Severity::Info));
    }
}
