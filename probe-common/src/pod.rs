//! `aya::Pod` for the types userspace writes into maps or globals.

use crate::{
    AnomalyKey, CallKey, CallProbeConfig, CountTableConfig, FieldCheck, FileKey, FunctionColumn,
    GuardConfig, LoadCheckConfig, ModuleLayout, ModuleName, ModuleRecord, UnownedCallKey,
};

// SAFETY: #[repr(C)], Copy, made only of integers and integer arrays, with
// explicit padding fields: every bit pattern is a valid value.
unsafe impl aya::Pod for ModuleLayout {}
// SAFETY: as above; a byte array.
unsafe impl aya::Pod for ModuleName {}
// SAFETY: as above; integers, a byte array and an explicit `_pad`.
unsafe impl aya::Pod for ModuleRecord {}
// SAFETY: two u64s, repr(C).
unsafe impl aya::Pod for CallKey {}
// SAFETY: two u64s, repr(C).
unsafe impl aya::Pod for UnownedCallKey {}
// SAFETY: one u64, repr(C).
unsafe impl aya::Pod for CallProbeConfig {}
// SAFETY: u32s and a u64, repr(C), no implicit padding (size asserted).
unsafe impl aya::Pod for FieldCheck {}
// SAFETY: u64s, a u32 and an explicit `_pad`, repr(C).
unsafe impl aya::Pod for AnomalyKey {}
// SAFETY: two u32s and a u64, repr(C), no padding (size asserted).
unsafe impl aya::Pod for LoadCheckConfig {}
// SAFETY: four 64-bit integers, repr(C), no padding (size asserted).
unsafe impl aya::Pod for FileKey {}
// SAFETY: u32s only, with an explicit `_pad`, repr(C) (size asserted).
unsafe impl aya::Pod for GuardConfig {}
// SAFETY: four u32s, repr(C), no padding (size asserted).
unsafe impl aya::Pod for CountTableConfig {}
// SAFETY: a u64, a u32 and an explicit `_pad`, repr(C) (size asserted).
unsafe impl aya::Pod for FunctionColumn {}
