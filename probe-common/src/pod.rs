//! `aya::Pod` for the types userspace writes into maps or globals.

use crate::{CallKey, CallProbeConfig, ModuleLayout, ModuleName, ModuleRecord};

// SAFETY: #[repr(C)], Copy, made only of integers and integer arrays, with
// explicit padding fields: every bit pattern is a valid value.
unsafe impl aya::Pod for ModuleLayout {}
// SAFETY: as above; a byte array.
unsafe impl aya::Pod for ModuleName {}
// SAFETY: as above; integers, a byte array and an explicit `_pad`.
unsafe impl aya::Pod for ModuleRecord {}
// SAFETY: two u64s, repr(C).
unsafe impl aya::Pod for CallKey {}
// SAFETY: one u64, repr(C).
unsafe impl aya::Pod for CallProbeConfig {}
