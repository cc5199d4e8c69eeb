//! The init pair (`probe-ebpf/src/init_done.rs`): a kprobe and a kretprobe
//! on `do_init_module`, which unmap a module's init pages once its init
//! has run, so code later placed there is not credited to it.

use probe_common::names::{hook, program};

use super::{ModuleProbe, ProbeError};

impl ModuleProbe {
    pub(super) fn attach_init_done(&mut self) -> Result<(), ProbeError> {
        for (name, what) in [
            (program::INIT_START, "kprobe/do_init_module"),
            (program::INIT_DONE, "kretprobe/do_init_module"),
        ] {
            let prog = self.loaded_kprobe(name)?;
            prog.attach(hook::DO_INIT_MODULE, 0)
                .map_err(|source| ProbeError::Attach {
                    program: name,
                    function: hook::DO_INIT_MODULE,
                    source,
                })?;
            self.attached.push(what.to_owned());
        }
        Ok(())
    }
}
