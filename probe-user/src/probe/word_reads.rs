//! How a copy of the call counter reads the kernel words it attributes a
//! call by (the return address at a kprobe on x86-64, the trampoline's
//! frame at fentry): through the `bpf_probe_read_kernel` helper, or, where
//! the kernel has the kfunc `bpf_rdonly_cast` (Linux 6.2 on), as loads
//! through a read-only view of a BTF struct, which costs no helper call
//! (the eBPF side's `kernel_words`). The view's copies are separate
//! programs, patched by the loader (`program_copy::Patch`).

use probe_common::{
    kernel_view::{CAST_CALL, VIEW_TYPE},
    names::program,
};

use super::{CallAttach, program_copy::Patch};
use crate::kernel::lean_btf::ViewIds;

/// The struct the words are viewed as: a 64-bit scalar at each word the
/// programs read (4 on x86-64, 8 on arm64, from offset 0).
#[cfg(target_arch = "x86_64")]
pub const VIEW_STRUCT: &str = "pt_regs";
#[cfg(not(target_arch = "x86_64"))]
pub const VIEW_STRUCT: &str = "user_pt_regs";

/// Whether a kprobe reads memory for the return address: x86-64's is on
/// the stack, arm64's in a register.
const KPROBES_READ_MEMORY: bool = cfg!(target_arch = "x86_64");

/// Whether a session whose attach starts at `start` has a copy that can
/// read through a view: fentry's, or, where kprobes read memory, the
/// kprobe_multi link's and the kprobe each's (every session may take some:
/// a module's functions always get a kprobe each).
pub fn view_can_serve(start: CallAttach) -> bool {
    start <= CallAttach::Fentry || KPROBES_READ_MEMORY
}

/// The read a copy makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordReads {
    Helper,
    View(ViewIds),
}

impl WordReads {
    /// A view where the kernel's BTF gave its ids.
    pub fn new(view: Option<ViewIds>) -> Self {
        view.map_or(Self::Helper, Self::View)
    }

    /// The fentry program that reads this way.
    pub fn fentry_program(self) -> &'static str {
        match self {
            Self::Helper => program::COUNT_CALL_FENTRY,
            Self::View(_) => program::COUNT_CALL_FENTRY_VIEW,
        }
    }

    /// The way a kprobe reads: only x86-64 reads memory for the return
    /// address (arm64's is a register), so only there is there a view.
    pub fn on_kprobes(self) -> Self {
        if KPROBES_READ_MEMORY {
            self
        } else {
            Self::Helper
        }
    }

    /// The kprobe program that reads this way (after `on_kprobes`).
    pub fn kprobe_program(self) -> &'static str {
        match self {
            Self::Helper => program::COUNT_CALL,
            Self::View(_) => program::COUNT_CALL_VIEW,
        }
    }

    /// What the loader writes into the program for its reads.
    pub fn patches(self) -> Vec<Patch> {
        match self {
            Self::Helper => Vec::new(),
            Self::View(ids) => vec![
                Patch::KfuncCall {
                    helper: CAST_CALL,
                    btf_id: ids.kfunc,
                },
                Patch::Constant {
                    marker: VIEW_TYPE,
                    value: u64::from(ids.view_struct),
                },
            ],
        }
    }

    /// How the attach list says which (after the count).
    pub fn label(self) -> &'static str {
        match self {
            Self::Helper => "",
            Self::View(_) => " (rdonly_cast)",
        }
    }
}

#[cfg(test)]
mod tests {
    use probe_common::{
        kernel_view::{CAST_CALL, VIEW_TYPE},
        names::program,
    };

    use super::{CallAttach, Patch, ViewIds, WordReads, view_can_serve};

    #[test]
    fn a_view_needs_its_programs_and_both_patches_the_helper_neither() {
        let ids = ViewIds {
            kfunc: 61_000,
            view_struct: 1_234,
        };
        let view = WordReads::new(Some(ids));
        assert_eq!(view.fentry_program(), program::COUNT_CALL_FENTRY_VIEW);
        assert_eq!(
            view.patches(),
            [
                Patch::KfuncCall {
                    helper: CAST_CALL,
                    btf_id: 61_000
                },
                Patch::Constant {
                    marker: VIEW_TYPE,
                    value: 1_234
                },
            ]
        );
        let helper = WordReads::new(None);
        assert_eq!(helper, WordReads::Helper);
        assert_eq!(helper.fentry_program(), program::COUNT_CALL_FENTRY);
        assert_eq!(helper.kprobe_program(), program::COUNT_CALL);
        assert!(helper.patches().is_empty());
        let kprobes = view.on_kprobes();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(kprobes.kprobe_program(), program::COUNT_CALL_VIEW);
        } else {
            assert_eq!(kprobes, WordReads::Helper);
        }
    }

    #[test]
    fn a_view_serves_fentry_and_every_kprobe_where_kprobes_read_memory() {
        assert!(view_can_serve(CallAttach::Fentry));
        for kprobes in [CallAttach::KprobeMulti, CallAttach::Kprobe] {
            assert_eq!(view_can_serve(kprobes), cfg!(target_arch = "x86_64"));
        }
    }
}
