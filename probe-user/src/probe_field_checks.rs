//! The anomaly detectors' side of [`ModuleProbe`]: writing each function's
//! check into `FIELD_CHECKS`, attaching `check_fields`, and reading the
//! exact per-site counts back.

use std::collections::BTreeMap;

use aya::maps::{HashMap, PerCpuHashMap};
use probe_common::{AnomalyKey, FieldCheck, anomaly::FREES_OBJECT};

use crate::probe::{ModuleProbe, ProbeError, RefusedProbe, attach_each};

impl ModuleProbe {
    /// Writes `(function address, value)` entries into the hash map `name`.
    fn fill_by_address<V: aya::Pod>(
        &mut self,
        name: &'static str,
        entries: impl Iterator<Item = (u64, V)>,
    ) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(name).ok_or(ProbeError::Missing(name))?;
        let mut table: HashMap<_, u64, V> =
            HashMap::try_from(map).map_err(|source| ProbeError::Map { map: name, source })?;
        for (address, value) in entries {
            table
                .insert(address, value, 0)
                .map_err(|source| ProbeError::Map { map: name, source })?;
        }
        Ok(())
    }

    /// Loads `check_fields` and attaches it to each `(function, address,
    /// check)`, or `count_free` where the check only frees (`kfree`: count,
    /// forget the allocation, no check to look up); returns those attached
    /// and, for the others, why not.
    pub fn attach_field_checks(
        &mut self,
        checks: &[(String, u64, FieldCheck)],
    ) -> Result<(Vec<String>, Vec<RefusedProbe>), ProbeError> {
        // count_free looks no check up: only check_fields' functions go in
        // the table.
        let (frees, checked): (Vec<_>, Vec<_>) = checks
            .iter()
            .partition(|(_, _, check)| check.flags & FREES_OBJECT != 0);
        self.fill_by_address(
            "FIELD_CHECKS",
            checked.iter().map(|(_, address, check)| (*address, *check)),
        )?;
        let mut attached = Vec::new();
        let mut failed = Vec::new();
        for (program, functions) in [("check_fields", checked), ("count_free", frees)] {
            if functions.is_empty() {
                continue;
            }
            let prog = self.kprobe_program(program)?;
            prog.load().map_err(ProbeError::KProbeLoad)?;
            let (ok, refused) = attach_each(prog, functions.iter().map(|(f, _, _)| f));
            if !ok.is_empty() {
                self.attached
                    .push(format!("kprobe/{program} x{}", ok.len()));
            }
            attached.extend(ok);
            failed.extend(refused);
        }
        Ok((attached, failed))
    }

    /// Follows the allocators the object-bounds check needs: `alloc_entry`
    /// on entry (the size, for calls by modules) and `alloc_return` on
    /// return (the address) of each `(function, address, size argument)`.
    /// Returns those followed and, for the others, why not.
    pub fn attach_allocators(
        &mut self,
        allocators: &[(String, u64, u32)],
    ) -> Result<(Vec<String>, Vec<RefusedProbe>), ProbeError> {
        if allocators.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        self.fill_by_address(
            "ALLOC_FUNCS",
            allocators
                .iter()
                .map(|(_, address, size_arg)| (*address, *size_arg)),
        )?;
        let mut followed = Vec::new();
        let mut failed = Vec::new();
        // The return probe first: a kprobe registered later on the same
        // address runs before the earlier ones, and a kretprobe's entry
        // replaces the return address at the stack pointer with the
        // kernel's trampoline. Attached after it, `alloc_entry` (and
        // `count_call`, attached after this) still read the module's
        // return address there.
        for program in ["alloc_return", "alloc_entry"] {
            let prog = self.kprobe_program(program)?;
            prog.load().map_err(ProbeError::KProbeLoad)?;
            for (function, _, _) in allocators {
                if failed.iter().any(|(f, _): &RefusedProbe| f == function) {
                    continue;
                }
                if let Err(e) = prog.attach(function, 0) {
                    failed.push((function.clone(), e.to_string()));
                } else if program == "alloc_entry" {
                    followed.push(function.clone());
                }
            }
        }
        if !followed.is_empty() {
            self.attached
                .push(format!("kprobe+kretprobe/alloc x{}", followed.len()));
        }
        Ok((followed, failed))
    }

    /// Attaches the load-time layout check to `load_module`; the error
    /// text when the kernel will not probe it (inlined, say).
    pub fn attach_load_check(&mut self) -> Result<Option<String>, ProbeError> {
        let prog = self.kprobe_program("load_check")?;
        prog.load().map_err(ProbeError::KProbeLoad)?;
        Ok(match prog.attach("load_module", 0) {
            Ok(_) => {
                self.attached
                    .push("kprobe/load_module (layout check)".into());
                None
            }
            Err(e) => Some(e.to_string()),
        })
    }

    /// Anomalous calls per site, summed over CPUs.
    pub fn anomaly_counts(&self) -> Result<BTreeMap<AnomalyKey, u64>, ProbeError> {
        let Some(map) = self.ebpf.map("ANOMALIES") else {
            return Err(ProbeError::Missing("ANOMALIES map"));
        };
        let counts: PerCpuHashMap<_, AnomalyKey, u64> =
            PerCpuHashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "ANOMALIES",
                source,
            })?;
        let mut out = BTreeMap::new();
        for entry in counts.iter() {
            let (key, values) = entry.map_err(|source| ProbeError::Map {
                map: "ANOMALIES",
                source,
            })?;
            out.insert(key, values.iter().sum());
        }
        Ok(out)
    }
}
