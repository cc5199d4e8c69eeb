//! Empty on purpose: this library target exists so that probe-user can name
//! probe-ebpf as a build-dependency, which makes cargo rebuild the programs
//! when they change. The programs themselves are the `modscope-probe` binary.
#![no_std]
