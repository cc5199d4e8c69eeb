//! The module registry (`probe-ebpf/src/module_registry.rs`): the raw
//! tracepoints on module load and free, the ring buffer they write, the
//! registry map, seeding modules loaded before the session, and the
//! per-CPU counters.

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::RawTracePoint,
};
use probe_common::{
    ModuleName, ModuleRecord,
    names::{hook, map, program},
};

use super::{ModuleProbe, ProbeError, read_entries, sum_cpus};

/// `BPF_NOEXIST`: insert only when the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Raw tracepoints and the programs attached to them.
const TRACEPOINTS: [(&str, &str); 2] = [
    (program::MODULE_LOAD, hook::MODULE_LOAD),
    (program::MODULE_FREE, hook::MODULE_FREE),
];

/// Per-CPU counters summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub lost_events: u64,
    pub read_errors: u64,
    pub registry_full: u64,
    pub page_map_full: u64,
    pub call_map_full: u64,
}

impl ModuleProbe {
    /// Hands out the ring buffer, so the consumer can start before attach.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let events = self
            .ebpf
            .take_map(map::EVENTS)
            .ok_or(ProbeError::MissingMap(map::EVENTS))?;
        RingBuf::try_from(events).map_err(|source| ProbeError::Map {
            map: map::EVENTS,
            source,
        })
    }

    /// Attaches the registry's raw tracepoints.
    pub fn attach_registry(&mut self) -> Result<(), ProbeError> {
        for (program, tracepoint) in TRACEPOINTS {
            let failed = |source| ProbeError::AttachTracepoint {
                program,
                tracepoint,
                source,
            };
            let prog: &mut RawTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?
                .try_into()
                .map_err(failed)?;
            prog.load().map_err(failed)?;
            prog.attach(tracepoint).map_err(failed)?;
            self.attached.push(format!("raw_tracepoint/{tracepoint}"));
        }
        Ok(())
    }

    /// Adds modules that were loaded before the probes attached. A module
    /// the probes already recorded (loaded in the meantime) is left alone.
    /// Returns the records actually inserted.
    pub fn seed(&mut self, records: &[ModuleRecord]) -> Result<Vec<ModuleRecord>, ProbeError> {
        let mut registry: HashMap<&mut MapData, ModuleName, ModuleRecord> =
            self.map_mut(map::MODULES)?;
        let mut inserted = Vec::new();
        for r in records {
            match registry.insert(r.name, *r, BPF_NOEXIST) {
                Ok(()) => inserted.push(*r),
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(ProbeError::Map {
                        map: map::MODULES,
                        source,
                    });
                }
            }
        }
        for r in &inserted {
            self.claim_user_row(r.incarnation)?;
        }
        Ok(inserted)
    }

    /// The registry as the kernel holds it now.
    pub fn registry(&self) -> Result<Vec<ModuleRecord>, ProbeError> {
        let registry: HashMap<&MapData, ModuleName, ModuleRecord> = self.map(map::MODULES)?;
        let mut out: Vec<ModuleRecord> =
            read_entries(map::MODULES, registry.iter(), |_, record| record)?;
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let counters: PerCpuArray<&MapData, u64> = self.map(map::COUNTERS)?;
        let sum = |slot: u32| -> Result<u64, ProbeError> {
            let values = counters.get(&slot, 0).map_err(|source| ProbeError::Map {
                map: map::COUNTERS,
                source,
            })?;
            Ok(sum_cpus(&values))
        };
        Ok(Counters {
            lost_events: sum(probe_common::LOST_EVENTS)?,
            read_errors: sum(probe_common::READ_ERRORS)?,
            registry_full: sum(probe_common::REGISTRY_FULL)?,
            page_map_full: sum(probe_common::PAGE_MAP_FULL)?,
            call_map_full: sum(probe_common::CALL_MAP_FULL)?,
        })
    }
}
