//! The order in which a session's kprobes attach and which functions each
//! program covers, decided from the call plan before anything attaches.
//! Pure: the session runs [`AttachPlan::stages`] in order and hands the
//! outcomes back to [`AttachPlan::status`].
//!
//! The order is the kernel's rule, not a preference: the kernel runs the
//! newest probe on an address first, and a kretprobe's entry handler
//! replaces the return address at the stack pointer with its trampoline.
//! So the allocators' return probes attach before every kprobe that reads
//! the return address (`count_call`, `check_fields`, `alloc_entry`), or
//! those would see the trampoline and credit nothing to the module.

use crate::kernel::kallsyms::KernelFunction;
use std::collections::BTreeSet;

use probe_common::anomaly::COUNT_CALLS;

use super::{call_plan::CallPlan, event::CallProbeStatus};
use crate::{
    detectors::probes::{CheckedFunction, FollowedAllocator},
    kernel::kallsyms::NotAttached,
    probe::AttachOutcome,
};

/// Why a function ftrace cannot trace is never probed.
pub const UNTRACEABLE: &str = "not traceable by ftrace (notrace, or on the probe's own path); \
                               a breakpoint probe there could recurse into itself";

/// One step of attaching, in the order [`AttachPlan::stages`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `alloc_return` then `alloc_entry` on the followed allocators.
    Allocators,
    /// `count_call` on the functions no check counts, and the init pair.
    Calls,
    /// `check_fields` / `count_free` on the checked functions.
    FieldChecks,
    /// `count_call` on counted functions whose check would not attach.
    Recount,
    /// `load_check` on `load_module`.
    LoadCheck,
}

/// What attaches where, before anything does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPlan {
    pub allocators: Vec<FollowedAllocator>,
    /// Functions `count_call` attaches to: the plan's functions less those
    /// the checking program counts itself (one kprobe per call).
    pub counted: Vec<String>,
    pub checks: Vec<CheckedFunction>,
    /// The load-time layout check is on (detectors on, and BTF had what it
    /// needs).
    pub load_check: bool,
    /// Planned functions never probed: ftrace cannot trace them.
    pub untraceable: Vec<String>,
    pub capped: Vec<String>,
}

/// What each stage did, as the session hands it back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttachResults {
    pub allocators: AttachOutcome,
    pub calls: AttachOutcome,
    pub checks: AttachOutcome,
    pub recount: AttachOutcome,
    /// The kernel's reason when `load_module` could not be probed.
    pub load_check: Option<String>,
}

/// What the probes cover, once attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub status: CallProbeStatus,
    /// Checked functions whose check attached, with their addresses (their
    /// names resolve anomaly and call records).
    pub checked: Vec<KernelFunction>,
}

impl AttachPlan {
    pub fn new(plan: &CallPlan, load_check: bool) -> Self {
        let by_checks = counted_by_checks(&plan.checks);
        Self {
            allocators: plan.allocators.clone(),
            counted: plan
                .functions
                .keys()
                .filter(|f| !by_checks.contains(f.as_str()))
                .cloned()
                .collect(),
            checks: plan.checks.clone(),
            load_check,
            untraceable: plan.untraceable.clone(),
            capped: plan.capped.clone(),
        }
    }

    /// The stages, in the order they must run (see the module's comment).
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages = vec![
            Stage::Allocators,
            Stage::Calls,
            Stage::FieldChecks,
            Stage::Recount,
        ];
        if self.load_check {
            stages.push(Stage::LoadCheck);
        }
        stages
    }

    /// Counted functions whose check was refused: `count_call` takes them.
    pub fn recount(&self, checks: &AttachOutcome) -> Vec<String> {
        let by_checks = counted_by_checks(&self.checks);
        checks
            .refused
            .iter()
            .filter(|r| by_checks.contains(r.function.as_str()))
            .map(|r| r.function.clone())
            .collect()
    }

    /// The probe status for the trace, the summary and the final report.
    pub fn status(&self, results: AttachResults) -> Attached {
        let by_checks = counted_by_checks(&self.checks);
        let checked_ok: BTreeSet<&str> =
            results.checks.attached.iter().map(String::as_str).collect();
        let mut refused: Vec<NotAttached> = results.allocators.refused;
        refused.extend(results.calls.refused);
        refused.extend(results.recount.refused);
        refused.extend(
            results
                .checks
                .refused
                .iter()
                .filter(|r| !by_checks.contains(r.function.as_str()))
                .cloned(),
        );
        if let Some(error) = results.load_check {
            refused.push(NotAttached {
                function: probe_common::names::hook::LOAD_MODULE.to_owned(),
                error,
            });
        }
        let attached = results.calls.attached.len()
            + results.recount.attached.len()
            + checked_ok.iter().filter(|f| by_checks.contains(*f)).count();
        let not_attached = self
            .untraceable
            .iter()
            .map(|function| NotAttached {
                function: function.clone(),
                error: UNTRACEABLE.to_owned(),
            })
            .chain(refused.into_iter().map(|r| NotAttached {
                function: r.function,
                error: r.error,
            }))
            .collect();
        Attached {
            status: CallProbeStatus {
                attached,
                not_attached,
                capped: self.capped.clone(),
            },
            checked: self
                .checks
                .iter()
                .filter(|c| checked_ok.contains(c.function.as_str()))
                .map(|c| KernelFunction::new(c.function.clone(), c.address))
                .collect(),
        }
    }
}

/// Functions the checking program counts as well as checks.
fn counted_by_checks(checks: &[CheckedFunction]) -> BTreeSet<&str> {
    checks
        .iter()
        .filter(|c| c.check.flags & COUNT_CALLS != 0)
        .map(|c| c.function.as_str())
        .collect()
}

#[cfg(test)]
#[path = "attach_plan_tests.rs"]
mod tests;
