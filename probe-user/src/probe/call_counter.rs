//! The call counter (`probe-ebpf/src/call_counter.rs`): `count_call` on
//! every planned function, and the exact counts and first uses it keeps.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuHashMap};
use probe_common::{
    UnownedCallKey,
    names::{map, program},
};

use super::{AttachOutcome, ModuleProbe, ProbeError, attach_each, sum_cpus};

/// Calls (or first-use times) per (incarnation, function address).
pub type PerFunction = BTreeMap<(u64, u64), u64>;

impl ModuleProbe {
    /// Loads `count_call`, attaches it to each function, then the init
    /// pair on `do_init_module`.
    pub fn attach_calls(&mut self, functions: &[String]) -> Result<AttachOutcome, ProbeError> {
        self.loaded_kprobe(program::COUNT_CALL)?;
        let outcome = self.attach_more(functions)?;
        self.attached
            .push(format!("kprobe/count_call x{}", outcome.attached.len()));
        self.attach_init_done()?;
        Ok(outcome)
    }

    /// Attaches the (loaded) call counter to more functions, during a session.
    /// Their columns in the count table come first (`place_columns`).
    pub fn attach_more(&mut self, functions: &[String]) -> Result<AttachOutcome, ProbeError> {
        let prog = self.kprobe_program(program::COUNT_CALL)?;
        let (outcome, links) = attach_each(prog, functions);
        self.links.keep(links);
        Ok(outcome)
    }

    /// Calls from module memory no incarnation owns, per (return address,
    /// function), summed over CPUs.
    pub fn unowned_calls(&self) -> Result<BTreeMap<UnownedCallKey, u64>, ProbeError> {
        let calls: PerCpuHashMap<&MapData, UnownedCallKey, u64> = self.map(map::UNOWNED_CALLS)?;
        // An LRU map: an entry evicted between its key and its value is
        // skipped, not an error.
        Ok(calls
            .iter()
            .filter_map(Result::ok)
            .map(|(key, values)| (key, sum_cpus(&values)))
            .collect())
    }
}
