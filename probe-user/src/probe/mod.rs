//! The eBPF side of a session, through aya and nothing else: one loader
//! type, [`ModuleProbe`], and one file per program family, mirroring
//! `probe-ebpf/src` (`module_registry`, `call_counter`, `init_done`,
//! `text_pages`, `field_checks`, `alloc_ring`, `load_check`). Map, program
//! and global names come from `probe_common::names`; every error names the
//! program or map involved.

mod alloc_ring;
mod call_counter;
mod field_checks;
mod init_done;
mod load_check;
mod module_registry;
mod text_pages;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapError},
    programs::{KProbe, ProgramError},
};
use probe_common::{
    CallProbeConfig, LoadCheckConfig, ModuleLayout,
    names::{global, program},
};

pub use module_registry::Counters;

/// The eBPF object built from probe-ebpf by build.rs; empty when the build
/// was made with AYA_BUILD_SKIP=1.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/modscope-probe"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this modscope binary was built with AYA_BUILD_SKIP=1 and carries no eBPF programs; \
         rebuild it after `cargo xtask setup`"
    )]
    NotEmbedded,
    #[error("loading modscope's eBPF programs into the kernel: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no map {0}; it does not match this modscope build")]
    MissingMap(&'static str),
    #[error("the eBPF object has no {0} program; it does not match this modscope build")]
    MissingProgram(&'static str),
    #[error("attaching {program} to raw tracepoint {tracepoint}: {source}")]
    AttachTracepoint {
        program: &'static str,
        tracepoint: &'static str,
        source: ProgramError,
    },
    #[error("loading the {program} program: {source}")]
    ProgramLoad {
        program: &'static str,
        source: ProgramError,
    },
    #[error("attaching {program} to {function}: {source}")]
    Attach {
        program: &'static str,
        function: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map {map}: {source}")]
    Map { map: &'static str, source: MapError },
}

/// A function the kernel would not probe, and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedProbe {
    pub function: String,
    pub error: String,
}

/// What one attach pass did: functions attached, and the others with the
/// kernel's reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttachOutcome {
    pub attached: Vec<String>,
    pub refused: Vec<RefusedProbe>,
}

/// The loaded programs and maps of one session.
pub struct ModuleProbe {
    ebpf: Ebpf,
    attached: Vec<String>,
    call_config: CallProbeConfig,
}

/// The load-time globals (`probe_common::names::global`), written before
/// the verifier sees the programs.
pub struct ProbeGlobals<'a> {
    pub layout: &'a ModuleLayout,
    pub calls: &'a CallProbeConfig,
    pub load_check: &'a LoadCheckConfig,
}

impl ModuleProbe {
    /// Loads the programs with the globals written in.
    pub fn load(globals: &ProbeGlobals) -> Result<Self, ProbeError> {
        if PROBE_OBJECT.is_empty() {
            return Err(ProbeError::NotEmbedded);
        }
        raise_memlock_limit();
        let ebpf = EbpfLoader::new()
            .override_global(global::MODULE_LAYOUT, globals.layout, true)
            .override_global(global::CALL_PROBE, globals.calls, true)
            .override_global(global::LOAD_CHECK, globals.load_check, true)
            .load(PROBE_OBJECT)
            .map_err(ProbeError::Load)?;
        Ok(Self {
            ebpf,
            attached: Vec::new(),
            call_config: *globals.calls,
        })
    }

    /// What is attached, for status lines.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// The map `name`, typed as `T`.
    fn map<'m, T>(&'m self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<&'m Map, Error = MapError>,
    {
        let map = self.ebpf.map(name).ok_or(ProbeError::MissingMap(name))?;
        T::try_from(map).map_err(|source| ProbeError::Map { map: name, source })
    }

    /// The map `name`, typed as `T`, for writing.
    fn map_mut<'m, T>(&'m mut self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<&'m mut Map, Error = MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(ProbeError::MissingMap(name))?;
        T::try_from(map).map_err(|source| ProbeError::Map { map: name, source })
    }

    /// The kprobe (or kretprobe) program `name` of the eBPF object.
    fn kprobe_program(&mut self, name: &'static str) -> Result<&mut KProbe, ProbeError> {
        self.ebpf
            .program_mut(name)
            .ok_or(ProbeError::MissingProgram(name))?
            .try_into()
            .map_err(|source| ProbeError::ProgramLoad {
                program: name,
                source,
            })
    }

    /// The kprobe program `name`, loaded into the kernel.
    fn loaded_kprobe(&mut self, name: &'static str) -> Result<&mut KProbe, ProbeError> {
        let prog = self.kprobe_program(name)?;
        prog.load().map_err(|source| ProbeError::ProgramLoad {
            program: name,
            source,
        })?;
        Ok(prog)
    }
}

/// Attaches the (loaded) `prog` to each function.
fn attach_each<'a>(
    prog: &mut KProbe,
    functions: impl IntoIterator<Item = &'a String>,
) -> AttachOutcome {
    let mut out = AttachOutcome::default();
    for f in functions {
        match prog.attach(f, 0) {
            Ok(_) => out.attached.push(f.clone()),
            Err(e) => out.refused.push(RefusedProbe {
                function: f.clone(),
                error: e.to_string(),
            }),
        }
    }
    out
}

/// Sums a per-CPU value.
fn sum_cpus(values: &aya::maps::PerCpuValues<u64>) -> u64 {
    values.iter().sum()
}

/// The program names this object must carry (for tests of a real build).
pub fn required_programs() -> &'static [&'static str] {
    &program::ALL
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use
/// memcg and ignore it. Failure is harmless either way.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct for the duration of the call.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
}
