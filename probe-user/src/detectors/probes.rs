//! The live session's side of the anomaly detectors: which functions get
//! which check on this kernel (planned from its BTF, `detector_plan`), and
//! the per-site records the session writes: one at a site's first anomaly,
//! then one whenever its exact count changes.

use std::{collections::BTreeMap, path::Path};

use modscope_analysis::{btf, kconfig::KernelConfig, struct_layout};
use probe_common::{FieldCheck, anomaly::FREES_OBJECT};

use super::plan::{self, PlannedCheck};
use crate::kernel::kallsyms::Kallsyms;

/// A kernel function that gets an in-kernel check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFunction {
    pub function: String,
    pub address: u64,
    pub check: FieldCheck,
}

/// An allocator whose results the object-bounds check follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedAllocator {
    pub function: String,
    pub address: u64,
    /// The index of the size among its arguments.
    pub size_arg: u32,
}

/// What the detectors attach on this kernel.
#[derive(Debug, Default)]
pub struct DetectorProbes {
    pub checks: Vec<CheckedFunction>,
    pub allocators: Vec<FollowedAllocator>,
}

/// The detectors for the running kernel, whose BTF is at `btf_path` and
/// configuration is `config` (None: unknown). `counted` is the call plan:
/// object-bounds checks and allocation tracking go only on functions it
/// probes anyway (the imports of the modules watched), so they add no
/// kprobe of their own to the lock functions.
pub fn for_kernel(
    btf_path: &Path,
    kallsyms: &Kallsyms,
    config: Option<&KernelConfig>,
    counted: &BTreeMap<String, u64>,
    probeable: impl Fn(&str) -> bool,
) -> Result<DetectorProbes, btf::BtfError> {
    let btf = crate::kernel::lean_btf::open(btf_path)?;
    let spin = struct_layout::layout(&btf, "raw_spinlock");
    let mutex = struct_layout::layout(&btf, "mutex");
    let mut checks: BTreeMap<&str, FieldCheck> = plan::plan(spin.as_ref(), mutex.as_ref(), |f| {
        probeable(f) && kallsyms.function(f).is_some()
    })
    .into_iter()
    .map(|PlannedCheck { function, check }| (function, check))
    .collect();
    // Objects are measured against the module's own allocations: without
    // an allocator to follow there is nothing to measure against, and
    // bounds checks and free tracking would only cost (a lookup per call).
    let allocators: Vec<FollowedAllocator> = plan::ALLOCATORS
        .iter()
        .filter_map(|&(function, size_arg)| {
            counted.get(function).map(|&address| FollowedAllocator {
                function: function.to_owned(),
                address,
                size_arg,
            })
        })
        .collect();
    let bounds = if allocators.is_empty() {
        Vec::new()
    } else {
        plan::bounds_plan(
            |name| struct_layout::layout(&btf, name).map(|l| l.size),
            |option| config.is_some_and(|c| c.enabled(option)),
            |f| counted.contains_key(f),
        )
    };
    for b in &bounds {
        let merged = plan::add_bounds(checks.get(b.function).copied(), b);
        checks.insert(b.function, merged);
    }
    let allocators = if bounds.is_empty() {
        Vec::new()
    } else {
        for &function in plan::FREES {
            if counted.contains_key(function) {
                checks.insert(
                    function,
                    FieldCheck {
                        flags: FREES_OBJECT,
                        ..FieldCheck::NONE
                    },
                );
            }
        }
        allocators
    };
    let checks = checks
        .into_iter()
        .filter_map(|(function, check)| {
            kallsyms.function(function).map(|address| CheckedFunction {
                function: function.to_owned(),
                address,
                check,
            })
        })
        .collect();
    Ok(DetectorProbes { checks, allocators })
}
