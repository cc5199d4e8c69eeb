//! Records sent from the eBPF programs to userspace through the ring buffer.
//! Every record starts with an [`EventHeader`]; its `kind` tag says which
//! payload follows. Userspace checks the length before it reads the tag, and
//! converts the tag with `TryFrom`, never by transmuting.

use crate::module::ModuleRecord;

/// The `kind` tag values on the wire.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `module:module_load`, fired before the module's init runs.
    ModuleLoad = 1,
    /// `module:module_free`, fired as the module's memory is released.
    ModuleFree = 2,
    /// A module's first call to a probed kernel function.
    FirstUse = 3,
    /// The first anomaly at a call site (`anomaly.rs`).
    Anomaly = 4,
    /// A module image whose `struct module` is not this kernel's size.
    LoadLayout = 5,
    /// A decision of the guard's programs (`guard.rs`).
    Guard = 6,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(tag: u32) -> Result<Self, u32> {
        match tag {
            1 => Ok(Self::ModuleLoad),
            2 => Ok(Self::ModuleFree),
            3 => Ok(Self::FirstUse),
            4 => Ok(Self::Anomaly),
            5 => Ok(Self::LoadLayout),
            6 => Ok(Self::Guard),
            other => Err(other),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EventHeader {
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()`.
    pub ts_ns: u64,
}

/// Load and free events carry the whole registry record, so an unload
/// tells userspace exactly which incarnation went away.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleEvent {
    pub header: EventHeader,
    pub record: ModuleRecord,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);
const _: () = assert!(core::mem::size_of::<ModuleEvent>() == 16 + 128);
