//! A guard decision for people (one line) and scripts (`GuardInfo`, the
//! JSON of `guard`, `report --json` and the exports' source).

use serde::Serialize;

use super::{
    display::sanitize,
    records::{Decision, GuardRecord, Judgement, Policy, Stage, VerdictReason},
};

pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allowed => "allowed",
        Decision::Refused => "refused",
        Decision::WouldRefuse => "would_refuse",
    }
}

pub fn judgement_name(j: Judgement) -> &'static str {
    match j {
        Judgement::Unchecked => "unchecked",
        Judgement::Compatible => "compatible",
        Judgement::Warning => "warning",
        Judgement::Incompatible => "incompatible",
        Judgement::ForeignStructModule => "foreign_struct_module",
    }
}

pub fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Audit => "audit",
        Policy::DenyIncompatible => "deny-incompatible",
        Policy::DenyUnchecked => "deny-unchecked",
    }
}

pub fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::File => "file",
        Stage::Image => "image",
        Stage::Buffer => "buffer",
        Stage::Request => "request",
    }
}

/// One reason, as `check --json` gives it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GuardReason {
    pub code: String,
    pub message: String,
}

impl GuardReason {
    pub fn list(reasons: &[VerdictReason]) -> Vec<Self> {
        reasons
            .iter()
            .map(|r| Self {
                code: r.code.clone(),
                message: r.message.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GuardInfo {
    pub ktime_ns: u64,
    pub decision: &'static str,
    pub policy: &'static str,
    pub stage: &'static str,
    pub verdict: &'static str,
    pub module: String,
    pub file: String,
    /// The file's device (`MAJOR:MINOR`) and inode as the kernel saw them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    pub pid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub struct_module_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_struct_module_size: Option<u64>,
    pub reasons: Vec<GuardReason>,
    /// The one line for people (`guard_line`).
    #[serde(skip)]
    pub line: String,
}

impl GuardInfo {
    pub fn new(g: &GuardRecord) -> Self {
        let foreign = g.judgement == Judgement::ForeignStructModule;
        Self {
            ktime_ns: g.ts_ns,
            decision: decision_name(g.decision),
            policy: policy_name(g.policy),
            stage: stage_name(g.stage),
            verdict: judgement_name(g.judgement),
            module: g.module.clone(),
            file: g.file.clone(),
            device: (g.stage == Stage::File)
                .then(|| format!("{}:{}", g.dev >> 20, g.dev & 0xf_ffff)),
            inode: (g.stage == Stage::File).then_some(g.ino),
            pid: g.pid,
            comm: g.comm.clone(),
            struct_module_size: foreign.then_some(g.module_size),
            kernel_struct_module_size: foreign.then_some(g.kernel_size),
            reasons: GuardReason::list(&g.reasons),
            line: guard_line(g),
        }
    }
}

/// "REFUSED modscope_hello (/tmp/m.ko, incompatible: CRC_MISMATCH …) by
/// insmod[812] under deny-incompatible".
pub fn guard_line(g: &GuardRecord) -> String {
    let what = match g.decision {
        Decision::Allowed => "allowed",
        Decision::Refused => "REFUSED",
        Decision::WouldRefuse => "would refuse",
    };
    let name = if g.module.is_empty() {
        "a module".to_owned()
    } else {
        sanitize(&g.module)
    };
    let from = match (g.stage, g.file.is_empty()) {
        (Stage::Request, _) => "requested by the kernel".to_owned(),
        (Stage::Buffer, _) => "from a memory buffer".to_owned(),
        (_, false) => sanitize(&g.file),
        (_, true) => format!("file dev {:#x} inode {}", g.dev, g.ino),
    };
    let why = match g.judgement {
        Judgement::ForeignStructModule => format!(
            "struct module is {} bytes, this kernel's {}",
            g.module_size, g.kernel_size
        ),
        j => {
            let codes: Vec<&str> = g.reasons.iter().map(|r| r.code.as_str()).collect();
            if codes.is_empty() {
                judgement_name(j).to_owned()
            } else {
                format!("{}: {}", judgement_name(j), sanitize(&codes.join(", ")))
            }
        }
    };
    format!(
        "{what} {name} ({from}; {why}) for {}[{}] under {}",
        sanitize(&g.comm),
        g.pid,
        policy_name(g.policy)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::samples;

    #[test]
    fn a_refusal_names_the_module_file_reasons_and_policy() {
        let g = samples::guard_refusal();
        let line = guard_line(&g);
        assert!(line.starts_with("REFUSED modscope_hello (/tmp/modscope_hello.ko; incompatible: "));
        assert!(
            line.ends_with("for insmod[812] under deny-incompatible"),
            "{line}"
        );
        let info = GuardInfo::new(&g);
        assert_eq!(info.decision, "refused");
        assert_eq!(info.reasons.len(), g.reasons.len());
        assert_eq!(info.struct_module_size, None);
    }

    #[test]
    fn a_foreign_struct_module_gives_both_sizes() {
        let g = GuardRecord {
            judgement: Judgement::ForeignStructModule,
            stage: Stage::Image,
            file: String::new(),
            module_size: 1344,
            kernel_size: 1280,
            reasons: Vec::new(),
            ..samples::guard_refusal()
        };
        let line = guard_line(&g);
        assert!(
            line.contains(
                "file dev 0x800001 inode 4242; struct module is 1344 bytes, this kernel's 1280"
            ),
            "{line}"
        );
        assert_eq!(GuardInfo::new(&g).kernel_struct_module_size, Some(1280));
    }
}
