//! The static verdict on each module a live session sees: its file (from
//! `--watch`, or this kernel's module path) checked against the running
//! kernel, as a trace record. Files are checked once per name.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

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
    /// When a module was last checked: the target's parsed BTF is dropped
    /// once it has not been needed for [`BTF_IDLE`].
    last_check: Option<Instant>,
}

/// How long the target's parsed BTF (about 30 MB for Debian's vmlinux) is
/// kept after a check: long enough for the modules present at start, or a
/// burst of loads, to share one parse.
const BTF_IDLE: Duration = Duration::from_secs(10);

impl StaticVerdicts {
    /// `files`: module name → its file; `struct_module_size` as the
    /// session read it. With why there will be no verdicts, when the
    /// running kernel's files cannot be read.
    pub fn new(
        files: HashMap<String, PathBuf>,
        paths: &KernelPaths,
        struct_module_size: Option<u64>,
    ) -> (Self, Option<String>) {
        // The running kernel's own BTF is the target's default, read (and
        // indexed: 30 MB and more) only when a module built for another
        // kernel is compared; a `--btf` file is read now, as `check` does.
        let given_btf = paths.vmlinux_btf != KernelPaths::default().vmlinux_btf;
        let spec = TargetSpec {
            config: paths.config.clone(),
            btf: given_btf.then(|| paths.vmlinux_btf.clone()),
            struct_module_size,
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
            last_check: Some(Instant::now()),
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
                self.last_check = Some(Instant::now());
                analysis::check_file(file, target).ok()
            })
            .as_ref()?;
        Some(to_record(report, ts_ns, incarnation))
    }

    /// Starts the quiet spell now: the session is live, and the modules
    /// present were checked during a start-up that may have taken longer
    /// than [`BTF_IDLE`] (attaching, under emulation).
    pub fn live(&mut self) {
        self.last_check = Some(Instant::now());
    }

    /// Drops the target's parsed BTF once no module has been checked for a
    /// while; the next check reads it again. Whether it was dropped now.
    pub fn release_when_idle(&mut self, now: Instant) -> bool {
        let idle = self
            .last_check
            .is_some_and(|t| now.saturating_duration_since(t) >= BTF_IDLE);
        match (&mut self.target, idle) {
            (Some(target), true) => {
                self.last_check = None;
                target.release_btf()
            }
            _ => false,
        }
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
    fn the_targets_btf_is_dropped_after_a_quiet_spell_and_read_again_on_use() {
        let target = TargetKernel::from_parts(
            "6.1.0-57-amd64",
            modscope_analysis::kconfig::KernelConfig::parse("CONFIG_MODULES=y\n"),
            modscope_analysis::symvers::Symvers::parse(""),
            Err("no BTF here".into()),
            None,
        );
        let mut v = StaticVerdicts {
            target: Some(target),
            files: HashMap::new(),
            cache: HashMap::new(),
            last_check: Some(Instant::now()),
        };
        let start = Instant::now();
        v.last_check = start.checked_sub(2 * BTF_IDLE);
        v.live();
        assert!(
            !v.release_when_idle(start),
            "the quiet spell starts when the session is live"
        );
        assert!(v.release_when_idle(start + BTF_IDLE + Duration::from_secs(1)));
        assert!(
            !v.release_when_idle(start + 3 * BTF_IDLE),
            "released once, until a check needs it again"
        );
        let target = v.target.as_ref().unwrap();
        // Read again from its source: here a path that is not there.
        let Err(again) = target.btf() else {
            panic!("a BTF from nowhere")
        };
        assert!(again.starts_with("reading BTF from (given)"), "{again}");
    }

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
