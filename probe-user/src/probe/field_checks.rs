//! The anomaly detectors' programs (`probe-ebpf/src/field_checks.rs`):
//! each function's check written into `FIELD_CHECKS`, `check_fields` (or
//! `count_free` for a function that only frees) attached, and the exact
//! per-site counts read back.

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData, PerCpuHashMap};
use probe_common::{
    AnomalyKey,
    anomaly::FREES_OBJECT,
    names::{map, program},
};

use super::{AttachOutcome, ModuleProbe, ProbeError, attach_each, read_entries, sum_cpus};
use crate::detectors::probes::CheckedFunction;

impl ModuleProbe {
    /// Writes `(function address, value)` entries into the hash map `name`.
    pub(super) fn fill_by_address<V: aya::Pod>(
        &mut self,
        name: &'static str,
        entries: impl Iterator<Item = (u64, V)>,
    ) -> Result<(), ProbeError> {
        let mut table: HashMap<&mut MapData, u64, V> = self.map_mut(name)?;
        for (address, value) in entries {
            table
                .insert(address, value, 0)
                .map_err(|source| ProbeError::Map { map: name, source })?;
        }
        Ok(())
    }

    /// Loads `check_fields` and attaches it to each checked function, or
    /// `count_free` where the check only frees (`kfree`: count, forget the
    /// allocation, no check to look up).
    pub fn attach_field_checks(
        &mut self,
        checks: &[CheckedFunction],
    ) -> Result<AttachOutcome, ProbeError> {
        // count_free looks no check up: only check_fields' functions go in
        // the table.
        let (frees, checked): (Vec<_>, Vec<_>) = checks
            .iter()
            .partition(|c| c.check.flags & FREES_OBJECT != 0);
        self.fill_by_address(
            map::FIELD_CHECKS,
            checked.iter().map(|c| (c.address, c.check)),
        )?;
        let mut outcome = AttachOutcome::default();
        for (name, functions) in [
            (program::CHECK_FIELDS, checked),
            (program::COUNT_FREE, frees),
        ] {
            if functions.is_empty() {
                continue;
            }
            let prog = self.loaded_kprobe(name)?;
            let (pass, links) = attach_each(prog, functions.iter().map(|c| &c.function));
            self.links.keep(links);
            if !pass.attached.is_empty() {
                self.attached
                    .push(format!("kprobe/{name} x{}", pass.attached.len()));
            }
            outcome.attached.extend(pass.attached);
            outcome.refused.extend(pass.refused);
        }
        Ok(outcome)
    }

    /// Anomalous calls per site, summed over CPUs.
    pub fn anomaly_counts(&self) -> Result<BTreeMap<AnomalyKey, u64>, ProbeError> {
        let counts: PerCpuHashMap<&MapData, AnomalyKey, u64> = self.map(map::ANOMALIES)?;
        read_entries(map::ANOMALIES, counts.iter(), |key, values| {
            (key, sum_cpus(&values))
        })
    }
}
