//! Loading and attaching the module-registry programs, and reading back
//! what they keep in the kernel.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{KProbe, ProgramError, RawTracePoint},
};
use probe_common::{
    CallKey, CallProbeConfig, LoadCheckConfig, ModuleLayout, ModuleName, ModuleRecord,
    calls::{PAGE_SHIFT, page_index},
};

/// The eBPF object built from probe-ebpf by build.rs; empty when the build
/// was made with AYA_BUILD_SKIP=1.
static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/modscope-probe"));

/// `BPF_NOEXIST`: insert only when the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Raw tracepoints and the programs attached to them.
const TRACEPOINTS: [(&str, &str); 2] = [
    ("module_load", "module_load"),
    ("module_free", "module_free"),
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this modscope binary was built with AYA_BUILD_SKIP=1 and carries no eBPF programs; \
         rebuild it after `cargo xtask setup`"
    )]
    NotEmbedded,
    #[error("loading modscope's eBPF programs into the kernel: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no {0}; it does not match this modscope build")]
    Missing(&'static str),
    #[error("the eBPF object has no {0} program; it does not match this modscope build")]
    MissingProgram(&'static str),
    #[error("attaching {program} to raw tracepoint {tracepoint}: {source}")]
    Attach {
        program: &'static str,
        tracepoint: &'static str,
        source: ProgramError,
    },
    #[error("loading the call-counting kprobe program: {0}")]
    KProbeLoad(#[source] ProgramError),
    #[error("eBPF map {map}: {source}")]
    Map { map: &'static str, source: MapError },
}

/// A function the kernel would not probe, and its reason.
pub type RefusedProbe = (String, String);

/// Attaches the (loaded) `prog` to each function; returns those attached
/// and, for the others, why not.
pub(crate) fn attach_each<'a>(
    prog: &mut KProbe,
    functions: impl IntoIterator<Item = &'a String>,
) -> (Vec<String>, Vec<RefusedProbe>) {
    let mut attached = Vec::new();
    let mut failed = Vec::new();
    for f in functions {
        match prog.attach(f, 0) {
            Ok(_) => attached.push(f.clone()),
            Err(e) => failed.push((f.clone(), e.to_string())),
        }
    }
    (attached, failed)
}

/// Per-CPU counters summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub lost_events: u64,
    pub read_errors: u64,
    pub registry_full: u64,
    pub page_map_full: u64,
    pub call_map_full: u64,
}

pub struct ModuleProbe {
    pub(crate) ebpf: Ebpf,
    pub(crate) attached: Vec<String>,
    call_config: CallProbeConfig,
}

impl ModuleProbe {
    /// Loads the programs with `layout` written into their global, before
    /// the verifier sees them.
    pub fn load(
        layout: &ModuleLayout,
        calls: &CallProbeConfig,
        load_check: &LoadCheckConfig,
    ) -> Result<Self, ProbeError> {
        if PROBE_OBJECT.is_empty() {
            return Err(ProbeError::NotEmbedded);
        }
        raise_memlock_limit();
        let ebpf = EbpfLoader::new()
            .override_global("MODULE_LAYOUT", layout, true)
            .override_global("CALL_PROBE", calls, true)
            .override_global("LOAD_CHECK", load_check, true)
            .load(PROBE_OBJECT)
            .map_err(ProbeError::Load)?;
        Ok(Self {
            ebpf,
            attached: Vec::new(),
            call_config: *calls,
        })
    }

    /// Hands out the ring buffer, so the consumer can start before attach.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::Missing("EVENTS map"))?;
        RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: "EVENTS",
            source,
        })
    }

    pub fn attach(&mut self) -> Result<(), ProbeError> {
        for (program, tracepoint) in TRACEPOINTS {
            let prog: &mut RawTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::Missing("a module_load/module_free program"))?
                .try_into()
                .map_err(|source| ProbeError::Attach {
                    program,
                    tracepoint,
                    source,
                })?;
            prog.load().map_err(|source| ProbeError::Attach {
                program,
                tracepoint,
                source,
            })?;
            prog.attach(tracepoint)
                .map_err(|source| ProbeError::Attach {
                    program,
                    tracepoint,
                    source,
                })?;
            self.attached.push(format!("raw_tracepoint/{tracepoint}"));
        }
        Ok(())
    }

    /// What is attached, for status lines.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// Adds modules that were loaded before the probes attached. A module
    /// the probes already recorded (loaded in the meantime) is left alone.
    /// Returns the records actually inserted.
    pub fn seed(&mut self, records: &[ModuleRecord]) -> Result<Vec<ModuleRecord>, ProbeError> {
        let mut map: HashMap<_, ModuleName, ModuleRecord> = self.registry_map_mut()?;
        let mut inserted = Vec::new();
        for r in records {
            match map.insert(r.name, *r, BPF_NOEXIST) {
                Ok(()) => inserted.push(*r),
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(ProbeError::Map {
                        map: "MODULES",
                        source,
                    });
                }
            }
        }
        Ok(inserted)
    }

    /// The registry as the kernel holds it now.
    pub fn registry(&self) -> Result<Vec<ModuleRecord>, ProbeError> {
        let map = self
            .ebpf
            .map("MODULES")
            .ok_or(ProbeError::Missing("MODULES map"))?;
        let map: HashMap<_, ModuleName, ModuleRecord> =
            HashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "MODULES",
                source,
            })?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (_, record) = entry.map_err(|source| ProbeError::Map {
                map: "MODULES",
                source,
            })?;
            out.push(record);
        }
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let map = self
            .ebpf
            .map("COUNTERS")
            .ok_or(ProbeError::Missing("COUNTERS map"))?;
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| ProbeError::Map {
                map: "COUNTERS",
                source,
            })?;
        let sum = |slot: u32| -> Result<u64, ProbeError> {
            let values = map.get(&slot, 0).map_err(|source| ProbeError::Map {
                map: "COUNTERS",
                source,
            })?;
            Ok(values.iter().sum())
        };
        Ok(Counters {
            lost_events: sum(probe_common::LOST_EVENTS)?,
            read_errors: sum(probe_common::READ_ERRORS)?,
            registry_full: sum(probe_common::REGISTRY_FULL)?,
            page_map_full: sum(probe_common::PAGE_MAP_FULL)?,
            call_map_full: sum(probe_common::CALL_MAP_FULL)?,
        })
    }

    /// Attaches the call counter to each function; returns those attached
    /// and, for the others, why not.
    pub fn attach_calls(
        &mut self,
        functions: &[String],
    ) -> Result<(Vec<String>, Vec<RefusedProbe>), ProbeError> {
        self.kprobe_program("count_call")?
            .load()
            .map_err(ProbeError::KProbeLoad)?;
        let (attached, failed) = self.attach_more(functions)?;
        self.attached
            .push(format!("kprobe/count_call x{}", attached.len()));
        self.attach_init_done()?;
        Ok((attached, failed))
    }

    /// The kprobe (or kretprobe) program `name` of the eBPF object.
    pub(crate) fn kprobe_program(&mut self, name: &'static str) -> Result<&mut KProbe, ProbeError> {
        self.ebpf
            .program_mut(name)
            .ok_or(ProbeError::MissingProgram(name))?
            .try_into()
            .map_err(ProbeError::KProbeLoad)
    }

    /// Attaches the (loaded) call counter to more functions, during a session.
    pub fn attach_more(
        &mut self,
        functions: &[String],
    ) -> Result<(Vec<String>, Vec<RefusedProbe>), ProbeError> {
        let prog = self.kprobe_program("count_call")?;
        Ok(attach_each(prog, functions))
    }

    /// Unmaps a module's init pages when `do_init_module()` returns, so
    /// code later placed there is not credited to it.
    fn attach_init_done(&mut self) -> Result<(), ProbeError> {
        for (program, what) in [
            ("init_start", "kprobe/do_init_module"),
            ("init_done", "kretprobe/do_init_module"),
        ] {
            let prog = self.kprobe_program(program)?;
            prog.load().map_err(ProbeError::KProbeLoad)?;
            prog.attach("do_init_module", 0)
                .map_err(ProbeError::KProbeLoad)?;
            self.attached.push(what.to_owned());
        }
        Ok(())
    }

    /// Maps the pages of `[base, base+size)` to `incarnation` (modules
    /// loaded before the probes, whose loads they never saw, and text past
    /// the kernel-side loop). The probes' own entries (a load seen
    /// meanwhile) win.
    pub fn map_text_pages(
        &mut self,
        base: u64,
        size: u64,
        incarnation: u64,
    ) -> Result<(), ProbeError> {
        self.swap_text_pages(base, size, 0, incarnation)
    }

    /// Clears the pages of `[base, base+size)` still mapped to
    /// `incarnation` (text the kernel-side free path does not reach).
    pub fn unmap_text_pages(
        &mut self,
        base: u64,
        size: u64,
        incarnation: u64,
    ) -> Result<(), ProbeError> {
        self.swap_text_pages(base, size, incarnation, 0)
    }

    /// Sets each page of the range that holds `from` to `to`.
    fn swap_text_pages(
        &mut self,
        base: u64,
        size: u64,
        from: u64,
        to: u64,
    ) -> Result<(), ProbeError> {
        if base == 0 || size == 0 {
            return Ok(());
        }
        let area_start = self.call_config.module_area_start;
        let mut pages = self.pages_map()?;
        for page in (base >> PAGE_SHIFT)..=((base + size - 1) >> PAGE_SHIFT) {
            if let Some(index) = page_index(page << PAGE_SHIFT, area_start)
                && pages.get(&index, 0).map_err(pages_err)? == from
            {
                pages.set(index, to, 0).map_err(pages_err)?;
            }
        }
        Ok(())
    }

    fn pages_map(&mut self) -> Result<Array<&mut MapData, u64>, ProbeError> {
        let map = self
            .ebpf
            .map_mut("PAGES")
            .ok_or(ProbeError::Missing("PAGES map"))?;
        Array::try_from(map).map_err(|source| ProbeError::Map {
            map: "PAGES",
            source,
        })
    }

    /// Calls per (incarnation, function address), summed over CPUs.
    pub fn call_counts(&self) -> Result<BTreeMap<(u64, u64), u64>, ProbeError> {
        let map = self
            .ebpf
            .map("CALLS")
            .ok_or(ProbeError::Missing("CALLS map"))?;
        let calls: PerCpuHashMap<_, CallKey, u64> =
            PerCpuHashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "CALLS",
                source,
            })?;
        let mut out = BTreeMap::new();
        for entry in calls.iter() {
            let (key, values) = entry.map_err(|source| ProbeError::Map {
                map: "CALLS",
                source,
            })?;
            out.insert((key.incarnation, key.func_ip), values.iter().sum());
        }
        Ok(out)
    }

    /// Boot-clock time of each (incarnation, function)'s first call.
    pub fn first_uses(&self) -> Result<BTreeMap<(u64, u64), u64>, ProbeError> {
        let map = self
            .ebpf
            .map("SEEN")
            .ok_or(ProbeError::Missing("SEEN map"))?;
        let seen: HashMap<_, CallKey, u64> =
            HashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "SEEN",
                source,
            })?;
        let mut out = BTreeMap::new();
        for entry in seen.iter() {
            let (key, ts) = entry.map_err(|source| ProbeError::Map {
                map: "SEEN",
                source,
            })?;
            out.insert((key.incarnation, key.func_ip), ts);
        }
        Ok(out)
    }

    fn registry_map_mut(
        &mut self,
    ) -> Result<HashMap<&mut MapData, ModuleName, ModuleRecord>, ProbeError> {
        let map = self
            .ebpf
            .map_mut("MODULES")
            .ok_or(ProbeError::Missing("MODULES map"))?;
        HashMap::try_from(map).map_err(|source| ProbeError::Map {
            map: "MODULES",
            source,
        })
    }
}

fn pages_err(source: MapError) -> ProbeError {
    ProbeError::Map {
        map: "PAGES",
        source,
    }
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
