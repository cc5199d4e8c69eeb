//! What can end a live session early, each naming the file, map, program
//! or kernel feature involved. The binary adds nothing but the exit status
//! (`main.rs` reads `Unsupported` out of it).

use modscope_analysis::{ImportsError, btf::BtfError, target::TargetError};

use crate::{
    kernel::{arch::ArchError, features::Unsupported, proc_modules::ProcModulesError},
    probe::ProbeError,
    trace::writer::WriteError,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// This kernel or these privileges cannot run the probes.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    ProcModules(#[from] ProcModulesError),
    /// An I/O step of the session (reading a kernel file, polling the ring
    /// buffer, writing standard output); `what` says which.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel config given with --config")]
    Config(#[source] TargetError),
    #[error("reading this kernel's facts for call attribution")]
    Arch(#[from] ArchError),
    #[error("finding struct module's layout in the running kernel's BTF")]
    ModuleLayout(#[source] BtfError),
    #[error("reading {path} for the detectors")]
    Detectors {
        path: String,
        #[source]
        source: BtfError,
    },
    /// A `--watch` path that holds no module file.
    #[error("--watch {path}: {error}")]
    Watch { path: String, error: String },
    #[error(transparent)]
    ModuleFile(ImportsError),
    /// The guard cannot refuse loads here, and the policy asks it to.
    #[error("{0}")]
    GuardUnavailable(String),
    #[error("the guard judges modules against the running kernel, whose files cannot be read")]
    GuardTarget(#[source] TargetError),
    #[error("reading the running kernel's BTF for the guard: {0}")]
    GuardBtf(String),
    #[error("a guard is already pinned at {0}; `modscope guard --remove` takes it away first")]
    GuardPinned(String),
    /// The trace file could not be opened (`what`: creating or appending).
    #[error("{what} {path}")]
    TraceOpen {
        what: &'static str,
        path: String,
        #[source]
        source: WriteError,
    },
    #[error("writing trace {path}")]
    TraceWrite {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SessionError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| SessionError::Io { what, source }
    }

    /// The missing feature or privilege, when that is why it ended.
    pub fn unsupported(&self) -> Option<&Unsupported> {
        match self {
            SessionError::Unsupported(u) => Some(u),
            _ => None,
        }
    }
}

impl From<ImportsError> for SessionError {
    fn from(e: ImportsError) -> Self {
        match e {
            ImportsError::Path(e) => SessionError::Watch {
                path: e.path,
                error: e.error,
            },
            read => SessionError::ModuleFile(read),
        }
    }
}

pub type Result<T, E = SessionError> = std::result::Result<T, E>;
