//! The guard (`modscope guard`): BPF-LSM programs on the module load paths
//! decide from verdicts user space computed ahead of time, keyed by the
//! file's identity and change time, and from the image's own
//! `struct module` size. The decision table is here, one definition for
//! the programs and for user space's tests.

/// How strict the guard is. The tag is the `policy` field of
/// [`GuardConfig`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Allow everything; record what `DenyIncompatible` would refuse.
    Audit = 0,
    /// Refuse modules judged incompatible with this kernel.
    DenyIncompatible = 1,
    /// Also refuse what was not checked: memory buffers, unknown files.
    DenyUnchecked = 2,
}

impl TryFrom<u32> for Policy {
    type Error = u32;

    fn try_from(tag: u32) -> Result<Self, u32> {
        match tag {
            0 => Ok(Self::Audit),
            1 => Ok(Self::DenyIncompatible),
            2 => Ok(Self::DenyUnchecked),
            other => Err(other),
        }
    }
}

/// What the guard knows about the module being loaded.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// No verdict for this file as it is now (never checked, or changed
    /// since), or a buffer from memory.
    Unchecked = 0,
    Compatible = 1,
    /// Loads, with warnings `check` gives.
    Warning = 2,
    Incompatible = 3,
    /// The image's `struct module` is not this kernel's size (seen in the
    /// kernel, checked or not).
    ForeignStructModule = 4,
}

impl TryFrom<u32> for Judgement {
    type Error = u32;

    fn try_from(tag: u32) -> Result<Self, u32> {
        match tag {
            0 => Ok(Self::Unchecked),
            1 => Ok(Self::Compatible),
            2 => Ok(Self::Warning),
            3 => Ok(Self::Incompatible),
            4 => Ok(Self::ForeignStructModule),
            other => Err(other),
        }
    }
}

/// What the guard did.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed = 0,
    /// The load failed with EPERM.
    Refused = 1,
    /// Allowed, though refusing it is what the policy is for: the policy
    /// only audits (and `deny-incompatible` would refuse it), or the
    /// programs cannot refuse (the kprobe fallback).
    WouldRefuse = 2,
}

impl TryFrom<u32> for Decision {
    type Error = u32;

    fn try_from(tag: u32) -> Result<Self, u32> {
        match tag {
            0 => Ok(Self::Allowed),
            1 => Ok(Self::Refused),
            2 => Ok(Self::WouldRefuse),
            other => Err(other),
        }
    }
}

/// Where in the load the decision was taken.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `kernel_read_file` (finit_module), before the file is read.
    File = 1,
    /// `kernel_post_read_file` / `kernel_post_load_data`: the image read.
    Image = 2,
    /// `kernel_load_data` (init_module from a memory buffer).
    Buffer = 3,
    /// `kernel_module_request`: the kernel asks modprobe for a module.
    Request = 4,
}

impl TryFrom<u32> for Stage {
    type Error = u32;

    fn try_from(tag: u32) -> Result<Self, u32> {
        match tag {
            1 => Ok(Self::File),
            2 => Ok(Self::Image),
            3 => Ok(Self::Buffer),
            4 => Ok(Self::Request),
            other => Err(other),
        }
    }
}

/// The decision for `judgement` under `policy` (tags, as the programs hold
/// them; an unknown policy tag audits). `can_refuse` is false for the
/// kprobe fallback, which only observes.
pub const fn decide(policy: u32, judgement: u32, can_refuse: bool) -> Decision {
    let incompatible = judgement == Judgement::Incompatible as u32
        || judgement == Judgement::ForeignStructModule as u32;
    let unchecked = judgement == Judgement::Unchecked as u32;
    let refuse = (incompatible
        && (policy == Policy::DenyIncompatible as u32 || policy == Policy::DenyUnchecked as u32))
        || (unchecked && policy == Policy::DenyUnchecked as u32);
    if refuse && can_refuse {
        Decision::Refused
    } else if refuse || incompatible {
        Decision::WouldRefuse
    } else {
        Decision::Allowed
    }
}

/// A file as the kernel sees it at the moment of the load: the inode's
/// device (the kernel's `dev_t`, `MAJOR << 20 | MINOR`) and number, and its
/// change time, which any write, truncate, chmod or rename moves. A file
/// replaced after it was checked has another key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u64,
}

/// Offsets the programs read a `struct file`'s identity with, from the
/// running kernel's BTF, and the guard's settings. Written before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Non-zero once user space filled it in; the programs allow
    /// everything and record nothing until then.
    pub valid: u32,
    /// A [`Policy`] tag.
    pub policy: u32,
    /// `READING_MODULE` of `enum kernel_read_file_id`, from BTF.
    pub reading_module: u32,
    /// `LOADING_MODULE` of `enum kernel_load_data_id`, from BTF.
    pub loading_module: u32,
    /// `file.f_inode`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`.
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    /// The change time's seconds (`i_ctime.tv_sec` before 6.6,
    /// `__i_ctime.tv_sec` in 6.6..6.11, `i_ctime_sec` since) and
    /// nanoseconds, with the nanoseconds' width (8 for a timespec's
    /// `long`, 4 for `i_ctime_nsec`).
    pub inode_ctime_sec: u32,
    pub inode_ctime_nsec: u32,
    pub ctime_nsec_width: u32,
    pub _pad: u32,
}

impl GuardConfig {
    pub const UNSET: Self = Self {
        valid: 0,
        policy: 0,
        reading_module: 0,
        loading_module: 0,
        file_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        inode_ctime_sec: 0,
        inode_ctime_nsec: 0,
        ctime_nsec_width: 0,
        _pad: 0,
    };
}

/// One decision, from the programs to user space.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GuardEvent {
    pub header: crate::EventHeader,
    pub pid_tgid: u64,
    /// Tags: [`Stage`], [`Decision`], [`Judgement`], [`Policy`].
    pub stage: u32,
    pub decision: u32,
    pub judgement: u32,
    pub policy: u32,
    /// The file read (zero for a buffer or a request).
    pub key: FileKey,
    /// For [`Judgement::ForeignStructModule`]: the image's
    /// `.gnu.linkonce.this_module` size and this kernel's
    /// `sizeof(struct module)`.
    pub module_size: u64,
    pub kernel_size: u64,
    /// The module's name from its image, or the name a request asked for.
    pub name: crate::ModuleName,
    /// The loading task's command.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<FileKey>() == 32);
const _: () = assert!(core::mem::size_of::<GuardConfig>() == 48);
const _: () = assert!(core::mem::size_of::<GuardEvent>() == 16 + 24 + 32 + 16 + 56 + 16);

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Judgement; 5] = [
        Judgement::Unchecked,
        Judgement::Compatible,
        Judgement::Warning,
        Judgement::Incompatible,
        Judgement::ForeignStructModule,
    ];

    fn table(policy: Policy, can_refuse: bool) -> [Decision; 5] {
        ALL.map(|j| decide(policy as u32, j as u32, can_refuse))
    }

    #[test]
    fn each_policy_refuses_exactly_what_it_names() {
        use Decision::*;
        // Unchecked, Compatible, Warning, Incompatible, ForeignStructModule
        assert_eq!(
            table(Policy::Audit, true),
            [Allowed, Allowed, Allowed, WouldRefuse, WouldRefuse]
        );
        assert_eq!(
            table(Policy::DenyIncompatible, true),
            [Allowed, Allowed, Allowed, Refused, Refused]
        );
        assert_eq!(
            table(Policy::DenyUnchecked, true),
            [Refused, Allowed, Allowed, Refused, Refused]
        );
    }

    #[test]
    fn programs_that_cannot_refuse_say_what_they_would_have_done() {
        use Decision::*;
        assert_eq!(
            table(Policy::DenyUnchecked, false),
            [WouldRefuse, Allowed, Allowed, WouldRefuse, WouldRefuse]
        );
        assert_eq!(
            decide(99, Judgement::Incompatible as u32, true),
            WouldRefuse
        );
    }

    #[test]
    fn tags_round_trip_and_unknown_tags_are_errors() {
        for j in ALL {
            assert_eq!(Judgement::try_from(j as u32), Ok(j));
        }
        for p in [
            Policy::Audit,
            Policy::DenyIncompatible,
            Policy::DenyUnchecked,
        ] {
            assert_eq!(Policy::try_from(p as u32), Ok(p));
        }
        for s in [Stage::File, Stage::Image, Stage::Buffer, Stage::Request] {
            assert_eq!(Stage::try_from(s as u32), Ok(s));
        }
        for d in [Decision::Allowed, Decision::Refused, Decision::WouldRefuse] {
            assert_eq!(Decision::try_from(d as u32), Ok(d));
        }
        assert_eq!(Judgement::try_from(5), Err(5));
        assert_eq!(Policy::try_from(3), Err(3));
        assert_eq!(Stage::try_from(0), Err(0));
        assert_eq!(Decision::try_from(3), Err(3));
    }
}
