//! The eBPF side of a session, through aya and nothing else: one loader
//! type, [`ModuleProbe`], and one file per program family, mirroring
//! `probe-ebpf/src` (`module_registry`, `call_counter`, `init_done`,
//! `text_pages`, `field_checks`, `alloc_ring`, `load_check`). Map, program
//! and global names come from `probe_common::names`; every error names the
//! program or map involved.

mod alloc_ring;
mod bpf_syscall;
mod call_counter;
mod count_table;
pub mod diagnostics;
mod fentry;
mod field_checks;
mod guard;
mod init_done;
mod kprobe_links;
mod kprobe_multi;
mod kprobe_pmu;
mod load_check;
mod module_registry;
mod program_copy;
mod program_stats;
mod text_pages;
mod word_reads;

use crate::kernel::kallsyms::NotAttached;
use std::os::fd::AsFd as _;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapError},
    programs::{KProbe, ProgramError, kprobe::KProbeLink},
};
use kprobe_links::KProbeLinks;
use probe_common::{
    CallProbeConfig, CountTableConfig, GuardConfig, LoadCheckConfig, ModuleLayout,
    names::{global, map, program},
};

pub use call_counter::{ATTACH_ENV, AttachIds, CallAttach, PerFunction};
pub use count_table::shape as count_table_shape;
pub use diagnostics::{Diagnostics, LogLevel};
pub use guard::{GuardMode, remove_pinned};
pub use module_registry::Counters;
pub use program_stats::{ProgramStats, skipped_runs};
pub use word_reads::{VIEW_STRUCT, view_can_serve};

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
    #[error("pinning a guard program at {path}: {source}")]
    Pin {
        path: std::path::PathBuf,
        source: aya::pin::PinError,
    },
    #[error("enabling the kernel's BPF run-time statistics (BPF_ENABLE_STATS): {0}")]
    RunStatistics(#[source] aya::sys::SyscallError),
    #[error("eBPF map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("the module window has {0} pages, more than one eBPF array holds")]
    WindowTooLarge(u64),
    #[error("mapping the page map PAGES into memory: {0}")]
    PageWindow(#[source] std::io::Error),
    #[error("reading the programs' diagnostics (map AYA_LOGS): {0}")]
    Logs(#[source] aya_log::Error),
    #[error("MODSCOPE_ATTACH={0:?} names no attach type; it takes fentry, kprobe_multi or kprobe")]
    AttachType(String),
}

/// What one attach pass did: functions attached, and the others with the
/// kernel's reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttachOutcome {
    pub attached: Vec<String>,
    pub refused: Vec<NotAttached>,
}

/// The reader of the programs' diagnostics (see `diagnostics`).
pub type ProbeLogger = aya_log::EbpfLogger<diagnostics::ProbeLog>;

/// The loaded programs and maps of one session.
pub struct ModuleProbe {
    /// First, so the kprobes are detached before their programs unload.
    links: KProbeLinks,
    /// `count_call`'s kprobe_multi link, where the kernel has them.
    multi: Option<program_copy::CopyLink>,
    /// `count_call`'s fentry copies, one per function.
    fentry: Vec<program_copy::CopyLink>,
    /// The copy of `count_call` that takes a kprobe each in aya's place,
    /// where it reads through a view (`call_counter::EachCopy`).
    each: Option<call_counter::EachCopy>,
    ebpf: Ebpf,
    attached: Vec<String>,
    call_config: CallProbeConfig,
    /// `PAGES`, mapped into this process.
    pages: text_pages::PageWindow,
    /// The count table's columns, rows and retired totals.
    book: count_table::CountBook,
    /// Taken by the session, which polls it; holds the AYA_LOGS map open.
    logger: Option<ProbeLogger>,
}

/// The load-time globals (`probe_common::names::global`), written before
/// the verifier sees the programs.
pub struct ProbeGlobals<'a> {
    pub layout: &'a ModuleLayout,
    pub calls: &'a CallProbeConfig,
    /// `CountTableConfig::UNSET` without a call probe.
    pub count_table: &'a CountTableConfig,
    pub load_check: &'a LoadCheckConfig,
    /// `GuardConfig::UNSET` but for `modscope guard`.
    pub guard: &'a GuardConfig,
    pub diagnostics: &'a Diagnostics,
}

/// Turns the kernel's BPF run-time statistics on (`BPF_ENABLE_STATS`) for
/// as long as the returned descriptor is open; closing it restores what
/// was there (the kernel counts the holders).
pub fn run_statistics() -> Result<std::os::fd::OwnedFd, ProbeError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(ProbeError::RunStatistics)
}

impl ModuleProbe {
    /// Loads the programs with the globals written in.
    pub fn load(globals: &ProbeGlobals) -> Result<Self, ProbeError> {
        if PROBE_OBJECT.is_empty() {
            return Err(ProbeError::NotEmbedded);
        }
        raise_memlock_limit();
        let level = globals.diagnostics.level.code();
        let mut loader = EbpfLoader::new();
        if globals.calls.module_area_pages != 0 {
            let pages = u32::try_from(globals.calls.module_area_pages)
                .map_err(|_| ProbeError::WindowTooLarge(globals.calls.module_area_pages))?;
            loader.map_max_entries(map::PAGES, pages);
        }
        let table = globals.count_table;
        if table.rows != 0 {
            loader.map_max_entries(map::ROWS, table.rows);
            loader.map_max_entries(map::COLUMNS, table.buckets());
            loader.map_max_entries(map::COUNTS, table.rows.saturating_mul(table.columns));
        }
        let mut ebpf = loader
            .override_global(global::MODULE_LAYOUT, globals.layout, true)
            .override_global(global::CALL_PROBE, globals.calls, true)
            .override_global(global::LOAD_CHECK, globals.load_check, true)
            .override_global(global::GUARD, globals.guard, true)
            .override_global(global::COUNT_TABLE, table, true)
            .override_global(global::AYA_LOG_LEVEL, &level, true)
            .load(PROBE_OBJECT)
            .map_err(ProbeError::Load)?;
        // Before any program loads: the logger holds AYA_LOGS' fd, which
        // the programs' relocations name.
        let logger = match globals.diagnostics.level {
            LogLevel::Off => None,
            _ => Some(
                aya_log::EbpfLogger::init_with_logger(
                    &mut ebpf,
                    diagnostics::ProbeLog::new(globals.diagnostics),
                )
                .map_err(ProbeError::Logs)?,
            ),
        };
        let pages = Self::map_page_window(&ebpf)?;
        Ok(Self {
            links: KProbeLinks::default(),
            multi: None,
            fentry: Vec::new(),
            each: None,
            pages,
            ebpf,
            attached: Vec::new(),
            call_config: *globals.calls,
            book: count_table::CountBook::new(*table),
            logger,
        })
    }

    /// The diagnostics reader, when `--log-level` asked for one.
    pub fn take_logger(&mut self) -> Option<ProbeLogger> {
        self.logger.take()
    }

    /// The call probe's settings the programs were loaded with.
    pub fn call_config(&self) -> &CallProbeConfig {
        &self.call_config
    }

    /// What is attached, for status lines.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// Each loaded program's figures so far (run time and runs while BPF
    /// statistics are enabled, `run_statistics`; skipped runs), by name;
    /// `count_call`'s copies (kprobe_multi, fentry, a kprobe each) count as
    /// `count_call`.
    pub fn program_stats(&self) -> Vec<(String, ProgramStats)> {
        let mut all: Vec<(String, ProgramStats)> = self
            .ebpf
            .programs()
            .filter_map(|(name, p)| {
                let fd = p.fd().ok()?;
                let stats = program_stats::read(fd.as_fd())
                    .inspect_err(|e| log::debug!("reading {name}'s statistics: {e}"))
                    .ok()?;
                Some((name.to_owned(), stats))
            })
            .collect();
        let copies = self
            .multi
            .iter()
            .map(|m| m.program())
            .chain(self.fentry.iter().map(|f| f.program()))
            .chain(self.each.iter().map(|e| e.program()));
        if let Some((_, stats)) = all.iter_mut().find(|(n, _)| n == program::COUNT_CALL) {
            for copy in copies.filter_map(|fd| program_stats::read(fd).ok()) {
                stats.run_time_ns = stats.run_time_ns.saturating_add(copy.run_time_ns);
                stats.runs = stats.runs.saturating_add(copy.runs);
                stats.skipped = stats.skipped.saturating_add(copy.skipped);
            }
        }
        all
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
        self.program(name)
    }

    /// The program `name` of the eBPF object, as its type `T`.
    fn program<'p, T>(&'p mut self, name: &'static str) -> Result<&'p mut T, ProbeError>
    where
        &'p mut T: TryFrom<&'p mut aya::programs::Program, Error = ProgramError>,
    {
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

/// Attaches the (loaded) `prog` to each function; with the links, which
/// the caller keeps (`ModuleProbe::links`).
fn attach_each<'a>(
    prog: &mut KProbe,
    functions: impl IntoIterator<Item = &'a String>,
) -> (AttachOutcome, Vec<KProbeLink>) {
    attach_each_by(functions, |f| attach_one(prog, f))
}

/// `attach` on each function: those attached with their links, and the
/// others with the kernel's reason.
fn attach_each_by<'a, L, E: std::fmt::Display>(
    functions: impl IntoIterator<Item = &'a String>,
    mut attach: impl FnMut(&str) -> Result<L, E>,
) -> (AttachOutcome, Vec<L>) {
    let mut out = AttachOutcome::default();
    let mut links = Vec::new();
    for f in functions {
        match attach(f) {
            Ok(link) => {
                out.attached.push(f.clone());
                links.push(link);
            }
            Err(e) => out.refused.push(NotAttached::new(f.clone(), e.to_string())),
        }
    }
    (out, links)
}

/// Attaches `prog` to `function`, the link owned by the caller.
fn attach_one(prog: &mut KProbe, function: &str) -> Result<KProbeLink, ProgramError> {
    let id = prog.attach(function, 0)?;
    prog.take_link(id)
}

/// Every entry of a map as `f` makes it, or the first read error, naming
/// the map.
fn read_entries<K, V, T, C: FromIterator<T>>(
    map: &'static str,
    entries: impl Iterator<Item = Result<(K, V), MapError>>,
    mut f: impl FnMut(K, V) -> T,
) -> Result<C, ProbeError> {
    entries
        .map(|e| {
            e.map(|(k, v)| f(k, v))
                .map_err(|source| ProbeError::Map { map, source })
        })
        .collect()
}

/// Sums a per-CPU value.
fn sum_cpus(values: &aya::maps::PerCpuValues<u64>) -> u64 {
    values.iter().sum()
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

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSymbol as _};
    use probe_common::names::{global, map, program};

    use super::PROBE_OBJECT;

    /// Every name user space looks up is in the object build.rs embedded
    /// (skipped only by a build made with AYA_BUILD_SKIP=1, which embeds
    /// nothing).
    #[test]
    fn the_embedded_object_has_every_map_program_and_global_user_space_names() {
        if PROBE_OBJECT.is_empty() {
            assert!(
                option_env!("AYA_BUILD_SKIP").is_some(),
                "the eBPF object is empty, yet this build did not set AYA_BUILD_SKIP"
            );
            return;
        }
        let file = object::File::parse(PROBE_OBJECT).expect("the embedded eBPF object is ELF");
        let symbols: Vec<&str> = file.symbols().filter_map(|s| s.name().ok()).collect();
        let missing: Vec<&&str> = map::ALL
            .iter()
            .chain(&program::ALL)
            .chain(cfg!(target_arch = "x86_64").then_some(&program::COUNT_CALL_VIEW))
            .chain(&global::ALL)
            .filter(|n| !symbols.contains(n))
            .collect();
        assert!(missing.is_empty(), "not in the eBPF object: {missing:?}");
    }
}
