//! The anomaly detectors' side of [`ModuleProbe`]: writing each function's
//! check into `FIELD_CHECKS`, attaching `check_fields`, and reading the
//! exact per-site counts back.

use std::collections::BTreeMap;

use aya::{
    maps::{HashMap, PerCpuHashMap},
    programs::KProbe,
};
use probe_common::{AnomalyKey, FieldCheck};

use crate::probe::{ModuleProbe, ProbeError, RefusedProbe};

impl ModuleProbe {
    /// Loads `check_fields` and attaches it to each `(function, address,
    /// check)`; returns those attached and, for the others, why not.
    pub fn attach_field_checks(
        &mut self,
        checks: &[(String, u64, FieldCheck)],
    ) -> Result<(Vec<String>, Vec<RefusedProbe>), ProbeError> {
        {
            let map = self
                .ebpf
                .map_mut("FIELD_CHECKS")
                .ok_or(ProbeError::Missing("FIELD_CHECKS map"))?;
            let mut table: HashMap<_, u64, FieldCheck> =
                HashMap::try_from(map).map_err(|source| ProbeError::Map {
                    map: "FIELD_CHECKS",
                    source,
                })?;
            for (_, address, check) in checks {
                table
                    .insert(address, check, 0)
                    .map_err(|source| ProbeError::Map {
                        map: "FIELD_CHECKS",
                        source,
                    })?;
            }
        }
        let prog: &mut KProbe = self
            .ebpf
            .program_mut("check_fields")
            .ok_or(ProbeError::Missing("check_fields program"))?
            .try_into()
            .map_err(ProbeError::KProbeLoad)?;
        prog.load().map_err(ProbeError::KProbeLoad)?;
        let mut attached = Vec::new();
        let mut failed = Vec::new();
        for (function, _, _) in checks {
            match prog.attach(function, 0) {
                Ok(_) => attached.push(function.clone()),
                Err(e) => failed.push((function.clone(), e.to_string())),
            }
        }
        if !attached.is_empty() {
            self.attached
                .push(format!("kprobe/check_fields x{}", attached.len()));
        }
        Ok((attached, failed))
    }

    /// Attaches the load-time layout check to `load_module`; the error
    /// text when the kernel will not probe it (inlined, say).
    pub fn attach_load_check(&mut self) -> Result<Option<String>, ProbeError> {
        let prog: &mut KProbe = self
            .ebpf
            .program_mut("load_check")
            .ok_or(ProbeError::Missing("load_check program"))?
            .try_into()
            .map_err(ProbeError::KProbeLoad)?;
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
