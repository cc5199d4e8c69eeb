//! Every type that crosses the boundary between modscope's eBPF programs and
//! its userspace lives here, `#[repr(C)]` and `Copy`, so both sides compile
//! against one definition. Sizes are pinned with `const` asserts: a layout
//! change that would silently desynchronise the two sides fails the build.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod anomaly;
pub mod calls;
pub mod count_table;
pub mod event;
pub mod guard;
pub mod kernel_view;
pub mod layout;
pub mod module;
pub mod names;

#[cfg(feature = "user")]
pub mod decode;

#[cfg(feature = "user")]
mod pod;

pub use anomaly::{
    AnomalyEvent, AnomalyKey, Detector, FieldCheck, LoadCheckConfig, LoadLayoutEvent,
};
pub use calls::{CallKey, CallProbeConfig, FirstUseEvent, UnownedCallKey};
pub use count_table::{CountTableConfig, FunctionColumn};
pub use event::{EventHeader, EventKind, ModuleEvent};
pub use guard::{FileKey, GuardConfig, GuardEvent};
pub use layout::ModuleLayout;
pub use module::{MODULE_NAME_LEN, ModuleName, ModuleRecord, RecordFlags};

/// Slots of the per-CPU `COUNTERS` array.
pub const LOST_EVENTS: u32 = 0;
pub const READ_ERRORS: u32 = 1;
pub const REGISTRY_FULL: u32 = 2;
/// A module text page could not be added to the page map.
pub const PAGE_MAP_FULL: u32 = 3;
/// A (module, function) pair could not get a call counter.
/// Also: an anomaly call site could not get a counter.
pub const CALL_MAP_FULL: u32 = 4;
pub const COUNTER_SLOTS: u32 = 5;
