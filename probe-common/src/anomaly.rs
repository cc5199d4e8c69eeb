//! Runtime anomaly detectors: checks run in the kernel on calls a module
//! makes to selected kernel functions. Userspace decides, from the running
//! kernel's BTF and config, which function gets which [`FieldCheck`] (keyed
//! by the function's address in `FIELD_CHECKS`); the `check_fields` kprobe
//! reads the object the module passed and, when it is not what the kernel's
//! layout requires, counts the call per call site and reports the first one
//! as an [`AnomalyEvent`]. Deduplicated per (site, function, detector), so a
//! hot path cannot flood the ring buffer; the counts stay exact.

/// What a detector checks. The values are on the wire.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// A spinlock whose debug magic (`raw_spinlock.magic`, DEBUG_SPINLOCK)
    /// is not `SPINLOCK_MAGIC`: it was not initialised with this kernel's
    /// layout.
    SpinlockMagic = 1,
    /// A mutex whose debug magic (`mutex.magic`, DEBUG_MUTEXES) does not
    /// point at the mutex itself.
    MutexMagic = 2,
    /// A module registering a probe on a kernel tracepoint.
    TracepointProbe = 3,
    /// A kernel-typed object (lock, wait queue, ...) that a module passed
    /// and that runs past the end of the module's own allocation at this
    /// kernel's size of the type: the module was built with a smaller
    /// layout, and the kernel writes past its object.
    ObjectBounds = 4,
}

impl TryFrom<u32> for Detector {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::SpinlockMagic),
            2 => Ok(Self::MutexMagic),
            3 => Ok(Self::TracepointProbe),
            4 => Ok(Self::ObjectBounds),
            other => Err(other),
        }
    }
}

/// `expected` value meaning "the object's own address".
pub const EXPECT_SELF: u64 = u64::MAX;

/// `FieldCheck::flags`: the function is in the call plan, and the checking
/// program counts its calls (no `count_call` kprobe is attached to it).
pub const COUNT_CALLS: u32 = 1;

/// `FieldCheck::flags`: the function frees the object passed as its first
/// argument (`kfree`): a module's allocation there stops being tracked.
/// Such a function gets the `count_free` program, not `check_fields`.
pub const FREES_OBJECT: u32 = 2;

/// `FieldCheck::detector` when the function has no field check (only an
/// object-bounds check, or only [`FREES_OBJECT`]).
pub const NO_FIELD_CHECK: u32 = 0;

/// Allocations remembered per module incarnation for the object-bounds
/// check (the most recent ones; older ones are overwritten in turn).
pub const ALLOC_RING_LEN: usize = 32;

/// A module incarnation's recent allocations (`ALLOC_RING`): the returned
/// address and the size the module asked for, in slot `next % LEN` order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRing {
    pub next: u64,
    pub base: [u64; ALLOC_RING_LEN],
    pub size: [u64; ALLOC_RING_LEN],
}

/// An allocation call by a module in flight on one thread (between the
/// allocator's entry and its return).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingAlloc {
    pub incarnation: u64,
    pub size: u64,
}

/// The checks for one kernel function: a field check (a detector reading
/// one field of the object passed as the first argument) and/or an
/// object-bounds check (`object_size` non-zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldCheck {
    /// A [`Detector`] value, or [`NO_FIELD_CHECK`].
    pub detector: u32,
    /// Offset of the checked field in the object passed as the first
    /// argument.
    pub field_offset: u32,
    /// 4 or 8: the field is read and compared; 0: every call by a module is
    /// reported (registrations).
    pub field_size: u32,
    /// Index of the config option that explains the check, in userspace's
    /// table; carried through to the event.
    pub option: u32,
    /// [`COUNT_CALLS`], [`FREES_OBJECT`], or 0.
    pub flags: u32,
    /// This kernel's size of the type the first argument points at; when
    /// non-zero and the object lies in one of the module's recent
    /// allocations, it must end inside it ([`Detector::ObjectBounds`]).
    pub object_size: u32,
    /// The value the field must hold, or [`EXPECT_SELF`].
    pub expected: u64,
    /// The option that explains the object's size on this kernel
    /// (userspace's table, like `option`).
    pub bounds_option: u32,
    pub _pad: u32,
}

impl FieldCheck {
    /// No check at all (a function that only frees, or only bounds).
    pub const NONE: Self = Self {
        detector: NO_FIELD_CHECK,
        field_offset: 0,
        field_size: 0,
        option: 0,
        flags: 0,
        object_size: 0,
        expected: 0,
        bounds_option: 0,
        _pad: 0,
    };
}

/// Per call site and detector.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AnomalyKey {
    pub incarnation: u64,
    /// Return address of the call: the site inside the module.
    pub caller: u64,
    /// The kernel function called.
    pub func_ip: u64,
    pub detector: u32,
    pub _pad: u32,
}

/// The first anomaly at a call site.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnomalyEvent {
    pub header: crate::EventHeader,
    pub key: AnomalyKey,
    /// The object the module passed (first argument).
    pub object: u64,
    pub expected: u64,
    pub observed: u64,
    pub option: u32,
    pub _pad: u32,
}

/// What the load-time layout check (a kprobe on `load_module`, before the
/// loader looks at the image) needs: where `struct load_info` keeps the
/// image, and this kernel's `sizeof(struct module)`, from BTF. A zero size
/// turns the check off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCheckConfig {
    /// Offsets of `load_info.hdr` and `load_info.len`.
    pub info_hdr: u32,
    pub info_len: u32,
    pub struct_module_size: u64,
}

impl LoadCheckConfig {
    pub const UNSET: Self = Self {
        info_hdr: 0,
        info_len: 0,
        struct_module_size: 0,
    };
}

/// A module image whose compiled `struct module`
/// (`.gnu.linkonce.this_module`) is not this kernel's size, seen as the
/// kernel starts loading it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoadLayoutEvent {
    pub header: crate::EventHeader,
    pub pid_tgid: u64,
    /// Size of the image's `.gnu.linkonce.this_module`.
    pub module_size: u64,
    /// `sizeof(struct module)` of the running kernel.
    pub kernel_size: u64,
    /// The name in the image's `struct module`.
    pub name: crate::ModuleName,
    /// The loading task's command.
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<LoadCheckConfig>() == 16);
const _: () = assert!(core::mem::size_of::<LoadLayoutEvent>() == 16 + 24 + 56 + 16);
const _: () = assert!(core::mem::size_of::<FieldCheck>() == 40);
const _: () = assert!(core::mem::size_of::<AllocRing>() == 8 + 16 * ALLOC_RING_LEN);
const _: () = assert!(core::mem::size_of::<AnomalyKey>() == 32);
const _: () = assert!(core::mem::size_of::<AnomalyEvent>() == 16 + 32 + 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_tags_round_trip_and_unknown_tags_are_errors() {
        for d in [
            Detector::SpinlockMagic,
            Detector::MutexMagic,
            Detector::TracepointProbe,
            Detector::ObjectBounds,
        ] {
            assert_eq!(Detector::try_from(d as u32), Ok(d));
        }
        assert_eq!(Detector::try_from(0), Err(0));
        assert_eq!(Detector::try_from(5), Err(5));
    }
}
