//! Allocation following for the object-bounds check
//! (`probe-ebpf/src/alloc_ring.rs`): `alloc_entry` and `alloc_return` on
//! the allocators the watched modules call.

use probe_common::names::{map, program};

use super::{AttachOutcome, ModuleProbe, ProbeError, attach_one};
use crate::detectors::probes::FollowedAllocator;
use crate::kernel::kallsyms::NotAttached;

impl ModuleProbe {
    /// Follows each allocator: `alloc_entry` on entry (the size, for calls
    /// by modules) and `alloc_return` on return (the address). `attached`
    /// lists the allocators followed at both ends.
    pub fn attach_allocators(
        &mut self,
        allocators: &[FollowedAllocator],
    ) -> Result<AttachOutcome, ProbeError> {
        if allocators.is_empty() {
            return Ok(AttachOutcome::default());
        }
        self.fill_by_address(
            map::ALLOC_FUNCS,
            allocators.iter().map(|a| (a.address, a.size_arg)),
        )?;
        let mut outcome = AttachOutcome::default();
        let mut links = Vec::new();
        // The return probe first: a kprobe registered later on the same
        // address runs before the earlier ones, and a kretprobe's entry
        // replaces the return address at the stack pointer with the
        // kernel's trampoline. Attached after it, `alloc_entry` (and
        // `count_call`, attached after this) still read the module's
        // return address there.
        for name in [program::ALLOC_RETURN, program::ALLOC_ENTRY] {
            let prog = self.loaded_kprobe(name)?;
            for a in allocators {
                if outcome.refused.iter().any(|r| r.function == a.function) {
                    continue;
                }
                match attach_one(prog, &a.function) {
                    Err(e) => outcome
                        .refused
                        .push(NotAttached::new(a.function.clone(), e.to_string())),
                    Ok(link) => {
                        if name == program::ALLOC_ENTRY {
                            outcome.attached.push(a.function.clone());
                        }
                        links.push(link);
                    }
                }
            }
        }
        self.links.keep(links);
        if !outcome.attached.is_empty() {
            self.attached.push(format!(
                "kprobe+kretprobe/alloc x{}",
                outcome.attached.len()
            ));
        }
        Ok(outcome)
    }
}
