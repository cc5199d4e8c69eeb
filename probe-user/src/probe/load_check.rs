//! The load-time layout check (`probe-ebpf/src/load_check.rs`): a kprobe
//! on `load_module` that compares the image's `struct module` size with
//! this kernel's before the loader reads it.

use probe_common::names::{hook, program};

use super::{ModuleProbe, ProbeError};

impl ModuleProbe {
    /// Attaches the check to `load_module`; the kernel's reason when it
    /// will not probe it (inlined, say).
    pub fn attach_load_check(&mut self) -> Result<Option<String>, ProbeError> {
        let prog = self.loaded_kprobe(program::LOAD_CHECK)?;
        Ok(match prog.attach(hook::LOAD_MODULE, 0) {
            Ok(_) => {
                self.attached
                    .push("kprobe/load_module (layout check)".into());
                None
            }
            Err(e) => Some(e.to_string()),
        })
    }
}
