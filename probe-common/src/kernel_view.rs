//! What the loader writes into a copy of a program that reads kernel words
//! through the `bpf_rdonly_cast` kfunc (Linux 6.2 on): the call, and the
//! BTF type the words are viewed as. aya 0.14 relocates no kfunc call, so
//! the program makes a helper call to a number no helper has
//! ([`CAST_CALL`]), which the loader (`probe-user`'s `program_copy`) turns
//! into a call of the kfunc by its BTF id; the type is a 64-bit immediate
//! loading [`VIEW_TYPE`]. The verifier replaces the call with a register
//! move, and each word is then a load the JIT guards against faults: no
//! helper call on the hot path.

/// The helper number of the call the loader makes a kfunc call.
pub const CAST_CALL: i32 = 0x4d53_4b46;
/// The immediate that becomes the viewed struct's BTF id.
pub const VIEW_TYPE: u64 = 0x4d53_5654_5900_0003;
