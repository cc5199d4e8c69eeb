//! The call counter (`probe-ebpf/src/call_counter.rs`): `count_call` on
//! every planned function, and the exact counts and first uses it keeps.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuHashMap};
use probe_common::{
    UnownedCallKey,
    names::{map, program},
};

use super::{
    AttachOutcome, ModuleProbe, PROBE_OBJECT, ProbeError, attach_each,
    kprobe_multi::{self, MultiError, MultiLink},
    sum_cpus,
};

/// Set (to anything) to attach `count_call` one kprobe per function even
/// where the kernel has kprobe_multi links: the bench compares the two.
pub const SINGLE_KPROBES_ENV: &str = "MODSCOPE_SINGLE_KPROBES";

/// Calls (or first-use times) per (incarnation, function address).
pub type PerFunction = BTreeMap<(u64, u64), u64>;

impl ModuleProbe {
    /// Loads `count_call` and attaches it to the core kernel's functions
    /// in one kprobe_multi link where the kernel allows, and to the others
    /// (and all of them where it does not) with a kprobe each; then the
    /// init pair on `do_init_module`. `addresses` holds each function's.
    pub fn attach_calls(
        &mut self,
        functions: &[String],
        addresses: &BTreeMap<String, u64>,
    ) -> Result<AttachOutcome, ProbeError> {
        self.loaded_kprobe(program::COUNT_CALL)?;
        let (core, others) = kprobe_multi::split_core(functions, addresses, &self.call_config);
        let mut outcome = AttachOutcome::default();
        let singles = match self.attach_in_one_link(&core) {
            Ok(link) => {
                self.attached
                    .push(format!("kprobe_multi/count_call x{}", link.functions));
                self.multi = Some(link);
                outcome.attached = core;
                others
            }
            Err(why) => {
                log::debug!("count_call: one kprobe per function ({why})");
                functions.to_vec()
            }
        };
        if !singles.is_empty() {
            let each = self.attach_more(&singles)?;
            self.attached
                .push(format!("kprobe/count_call x{}", each.attached.len()));
            outcome.attached.extend(each.attached);
            outcome.refused.extend(each.refused);
        }
        self.attach_init_done()?;
        Ok(outcome)
    }

    /// A copy of the loaded `count_call` attached to all of `functions` in
    /// one kprobe_multi link (`kprobe_multi`); refused as a whole by a
    /// kernel without fprobe, or when any function cannot take it.
    fn attach_in_one_link(&mut self, functions: &[String]) -> Result<MultiLink, MultiAttach> {
        if functions.is_empty() {
            return Err(MultiAttach::NothingToAttach);
        }
        if std::env::var_os(SINGLE_KPROBES_ENV).is_some() {
            return Err(MultiAttach::TurnedOff);
        }
        let loaded = self.kprobe_program(program::COUNT_CALL)?;
        let info = loaded.info().map_err(|source| ProbeError::ProgramLoad {
            program: program::COUNT_CALL,
            source,
        })?;
        let prog = kprobe_multi::load_copy(PROBE_OBJECT, program::COUNT_CALL, &info)?;
        let link = kprobe_multi::attach(std::os::fd::AsFd::as_fd(&prog), functions)?;
        Ok(MultiLink::new(link, prog, functions.len()))
    }

    /// Attaches the (loaded) call counter to more functions, during a session.
    /// Their columns in the count table come first (`place_columns`).
    pub fn attach_more(&mut self, functions: &[String]) -> Result<AttachOutcome, ProbeError> {
        let prog = self.kprobe_program(program::COUNT_CALL)?;
        let (outcome, links) = attach_each(prog, functions);
        self.links.keep(links);
        Ok(outcome)
    }

    /// How `count_call` attached to the planned functions: `kprobe_multi`
    /// (one link) or `kprobe` (one each).
    pub fn call_attach_type(&self) -> &'static str {
        if self.multi.is_some() {
            "kprobe_multi"
        } else {
            "kprobe"
        }
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

/// Why `count_call` did not attach through one kprobe_multi link.
#[derive(Debug, thiserror::Error)]
enum MultiAttach {
    #[error("no function to attach")]
    NothingToAttach,
    #[error("{SINGLE_KPROBES_ENV} is set")]
    TurnedOff,
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("the kernel refused a kprobe_multi link: {0}")]
    Refused(#[from] MultiError),
}
