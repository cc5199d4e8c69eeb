use std::collections::HashMap;

use probe_common::FieldCheck;

use super::*;
use crate::{kernel::kallsyms::KernelFunction, probe::CallAttach};

fn check(function: &str, address: u64, counts: bool) -> CheckedFunction {
    CheckedFunction {
        function: function.into(),
        address,
        check: FieldCheck {
            flags: if counts { COUNT_CALLS } else { 0 },
            ..FieldCheck::NONE
        },
    }
}

fn call_plan() -> CallPlan {
    CallPlan {
        functions: [("kfree", 1), ("kmalloc_trace", 2), ("mutex_lock", 3)]
            .into_iter()
            .map(|(n, a)| (n.to_owned(), a))
            .collect(),
        attach: CallAttach::KprobeMulti,
        image: Default::default(),
        capped: vec!["msleep".into()],
        untraceable: vec!["__rcu_read_lock".into()],
        imports: HashMap::new(),
        modules: Vec::new(),
        late: None,
        files: HashMap::new(),
        // mutex_lock is planned and checked: the checking program counts it.
        // _raw_spin_lock is checked only.
        checks: vec![
            check("mutex_lock", 3, true),
            check("_raw_spin_lock", 9, false),
        ],
        allocators: vec![FollowedAllocator {
            function: "kmalloc_trace".into(),
            address: 2,
            size_arg: 2,
        }],
    }
}

fn refused(function: &str) -> NotAttached {
    NotAttached {
        function: function.into(),
        error: "EINVAL".into(),
    }
}

#[test]
fn return_probes_attach_before_every_kprobe_that_reads_the_return_address() {
    let plan = AttachPlan::new(&call_plan(), true);
    assert_eq!(
        plan.stages(),
        vec![
            Stage::Allocators,
            Stage::Calls,
            Stage::FieldChecks,
            Stage::Recount,
            Stage::LoadCheck
        ]
    );
    assert!(
        !AttachPlan::new(&call_plan(), false)
            .stages()
            .contains(&Stage::LoadCheck)
    );
}

#[test]
fn a_function_the_check_counts_gets_no_count_call() {
    let plan = AttachPlan::new(&call_plan(), false);
    assert_eq!(plan.counted, vec!["kfree", "kmalloc_trace"]);
    assert_eq!(plan.checks.len(), 2);
    assert_eq!(plan.allocators[0].function, "kmalloc_trace");
}

#[test]
fn a_counted_function_whose_check_is_refused_is_counted_by_count_call() {
    let plan = AttachPlan::new(&call_plan(), false);
    let checks = AttachOutcome {
        attached: vec!["_raw_spin_lock".into()],
        refused: vec![refused("mutex_lock")],
    };
    assert_eq!(plan.recount(&checks), vec!["mutex_lock"]);
    let only_checked = AttachOutcome {
        attached: vec!["mutex_lock".into()],
        refused: vec![refused("_raw_spin_lock")],
    };
    assert!(plan.recount(&only_checked).is_empty());
}

#[test]
fn status_counts_each_counted_function_once_and_names_every_refusal() {
    let plan = AttachPlan::new(&call_plan(), true);
    let attached = plan.status(AttachResults {
        allocators: AttachOutcome::default(),
        calls: AttachOutcome {
            attached: vec!["kfree".into()],
            refused: vec![refused("kmalloc_trace")],
        },
        checks: AttachOutcome {
            attached: vec!["mutex_lock".into()],
            refused: vec![refused("_raw_spin_lock")],
        },
        recount: AttachOutcome::default(),
        load_check: Some("ENOENT".into()),
    });
    // kfree by count_call, mutex_lock by check_fields.
    assert_eq!(attached.status.attached, 2);
    let names: Vec<&str> = attached
        .status
        .not_attached
        .iter()
        .map(|n| n.function.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "__rcu_read_lock",
            "kmalloc_trace",
            "_raw_spin_lock",
            "load_module"
        ]
    );
    assert_eq!(attached.status.not_attached[0].error, UNTRACEABLE);
    assert_eq!(attached.status.capped, vec!["msleep"]);
    assert_eq!(attached.checked, vec![KernelFunction::new("mutex_lock", 3)]);
}

#[test]
fn a_refused_check_on_a_counted_function_is_not_reported_when_count_call_took_it() {
    let plan = AttachPlan::new(&call_plan(), false);
    let attached = plan.status(AttachResults {
        calls: AttachOutcome {
            attached: vec!["kfree".into(), "kmalloc_trace".into()],
            refused: vec![],
        },
        checks: AttachOutcome {
            attached: vec!["_raw_spin_lock".into()],
            refused: vec![refused("mutex_lock")],
        },
        recount: AttachOutcome {
            attached: vec!["mutex_lock".into()],
            refused: vec![],
        },
        ..AttachResults::default()
    });
    assert_eq!(attached.status.attached, 3);
    assert_eq!(
        attached.status.not_attached.len(),
        1,
        "only the untraceable one"
    );
    assert_eq!(
        attached.checked,
        vec![KernelFunction::new("_raw_spin_lock", 9)]
    );
}
