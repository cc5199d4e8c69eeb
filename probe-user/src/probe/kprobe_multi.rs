//! One kprobe_multi link for many functions (`BPF_TRACE_KPROBE_MULTI`,
//! fprobe; kernels with `CONFIG_FPROBE`, Debian's from 6.12): one
//! `BPF_LINK_CREATE` and one ftrace update attach every function, and one
//! close detaches them, where a kprobe each costs a `perf_event_open`, an
//! ftrace update and, at the end, an RCU grace period.
//!
//! aya 0.14 loads kprobe programs without an expected attach type, and the
//! kernel refuses a kprobe_multi link to such a program. So this loader
//! shim loads a second copy of a program aya has already loaded: the same
//! instructions, parsed from the same object by aya-obj and relocated
//! against the maps aya created (found through the loaded copy's map ids),
//! loaded with the kprobe_multi attach type by `bpf(BPF_PROG_LOAD)`.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

use aya::{
    maps::MapInfo,
    programs::{ProgramError, ProgramInfo},
};
use probe_common::CallProbeConfig;

use super::bpf_syscall::{BPF_LINK_CREATE, BPF_PROG_LOAD, bpf, owned};

/// Program type and attach type (uapi `linux/bpf.h`).
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_TRACE_KPROBE_MULTI: u32 = 42;
/// Names in the kernel's BPF objects hold 15 bytes and a NUL.
const OBJECT_NAME_BYTES: usize = 15;
/// The verifier's account of a refused load, when one is asked for.
const VERIFIER_LOG_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error("parsing the eBPF object: {0}")]
    Parse(#[source] aya_obj::ParseError),
    #[error("the eBPF object has no program {0}")]
    NoProgram(String),
    #[error("reading the loaded {program}'s maps: {source}")]
    MapIds {
        program: String,
        source: ProgramError,
    },
    #[error("the kernel's map {name} matches {matches} of the object's maps, not one")]
    AmbiguousMap { name: String, matches: usize },
    #[error("relocating {program}: {source}")]
    Relocate {
        program: String,
        source: aya_obj::relocation::EbpfRelocationError,
    },
    #[error("loading {program} for kprobe_multi: {source}{log}")]
    Load {
        program: String,
        source: io::Error,
        log: String,
    },
    #[error("creating the kprobe_multi link for {functions} functions: {source}")]
    Link { functions: usize, source: io::Error },
    #[error("a function name holds a NUL byte: {0:?}")]
    BadName(String),
}

/// `functions` split into those in the core kernel's text, which one link
/// takes, and the rest (a module's, or of unknown place), which get a
/// kprobe each: a kprobe_multi link holds a reference on every module it
/// probes, and `rmmod` of such a module would fail while the session runs.
pub fn split_core(
    functions: &[String],
    addresses: &BTreeMap<String, u64>,
    config: &CallProbeConfig,
) -> (Vec<String>, Vec<String>) {
    let core = config.core_text_start..config.core_text_end;
    functions
        .iter()
        .cloned()
        .partition(|f| addresses.get(f).is_some_and(|a| core.contains(a)))
}

/// The kernel's name for an object named `name`: its first 15 bytes.
pub fn kernel_object_name(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(OBJECT_NAME_BYTES)]
}

/// For each map of the object the loaded copy uses, the map aya created
/// for it, matched by the kernel's (truncated) names; a map that copy does
/// not use has no entry.
pub fn match_maps<'n, T>(
    object_maps: impl IntoIterator<Item = &'n str>,
    kernel_maps: Vec<(Vec<u8>, T)>,
) -> Result<HashMap<&'n str, T>, MultiError> {
    let object_maps: Vec<&str> = object_maps.into_iter().collect();
    let mut matched = HashMap::new();
    for (kernel_name, map) in kernel_maps {
        let named: Vec<&&str> = object_maps
            .iter()
            .filter(|m| kernel_object_name(m) == kernel_name.as_slice())
            .collect();
        let [object_name] = named.as_slice() else {
            return Err(MultiError::AmbiguousMap {
                name: String::from_utf8_lossy(&kernel_name).into_owned(),
                matches: named.len(),
            });
        };
        matched.insert(**object_name, map);
    }
    Ok(matched)
}

/// A copy of `program` from `object`, loaded for kprobe_multi, its maps
/// those of `loaded` (aya's copy of the same program).
pub fn load_copy(
    object: &[u8],
    program: &str,
    loaded: &ProgramInfo,
) -> Result<OwnedFd, MultiError> {
    let mut obj = aya_obj::Object::parse(object).map_err(MultiError::Parse)?;
    let key = obj
        .programs
        .get(program)
        .ok_or_else(|| MultiError::NoProgram(program.to_owned()))?
        .function_key();
    obj.programs.retain(|name, _| name == program);
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    let maps: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
    let fds = map_fds_of(loaded, program, maps.iter().map(|(name, _)| name.as_str()))?;
    // The maps this program does not use get no descriptor: a reference to
    // one would make the kernel refuse the load, not load something else.
    let relocated = obj.relocate_maps(
        maps.iter().map(|(name, map)| {
            let fd = fds
                .get(name.as_str())
                .map_or(-1, |fd| fd.as_fd().as_raw_fd());
            (name.as_str(), fd, map)
        }),
        &text_sections,
    );
    let relocated = relocated.and_then(|()| obj.relocate_calls(&text_sections));
    relocated.map_err(|source| MultiError::Relocate {
        program: program.to_owned(),
        source,
    })?;
    let function = obj
        .functions
        .get(&key)
        .ok_or_else(|| MultiError::NoProgram(program.to_owned()))?;
    load_kprobe_multi(program, &function.instructions, &obj.license)
}

/// Descriptors of the maps `loaded` uses, by the object's map names.
fn map_fds_of<'n>(
    loaded: &ProgramInfo,
    program: &str,
    object_maps: impl IntoIterator<Item = &'n str>,
) -> Result<HashMap<&'n str, aya::maps::MapFd>, MultiError> {
    let map_error = |source| MultiError::MapIds {
        program: program.to_owned(),
        source,
    };
    let ids = loaded.map_ids().map_err(map_error)?.unwrap_or_default();
    let mut kernel_maps = Vec::with_capacity(ids.len());
    for id in ids {
        let info = MapInfo::from_id(id).map_err(|e| map_error(ProgramError::MapError(e)))?;
        let fd = info
            .fd()
            .map_err(|e| map_error(ProgramError::MapError(e)))?;
        kernel_maps.push((info.name().to_vec(), fd));
    }
    match_maps(object_maps, kernel_maps)
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, as far as the fields used here.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with its `kprobe_multi` part.
#[repr(C)]
#[derive(Default)]
struct KprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(std::mem::size_of::<KprobeMultiLinkAttr>() == 48);

/// Loads `insns` as a kprobe program for kprobe_multi links; a refused load
/// is tried again with the verifier's log, whose end the error carries.
fn load_kprobe_multi(
    program: &str,
    insns: &[aya_obj::generated::bpf_insn],
    license: &CString,
) -> Result<OwnedFd, MultiError> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_TRACE_KPROBE_MULTI,
        ..ProgLoadAttr::default()
    };
    let name = kernel_object_name(program);
    attr.prog_name[..name.len()].copy_from_slice(name);
    let source = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; VERIFIER_LOG_BYTES];
    attr.log_level = 1;
    attr.log_size = VERIFIER_LOG_BYTES as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // Loaded with the log where it failed without: keep it.
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        return Ok(owned(fd));
    }
    Err(MultiError::Load {
        program: program.to_owned(),
        source,
        log: log_tail(&log, 6),
    })
}

/// The last `lines` lines of a NUL-terminated verifier log, each indented
/// on a line of its own; empty for an empty log.
fn log_tail(log: &[u8], lines: usize) -> String {
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let kept: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("\n  {l}"))
        .collect()
}

/// Attaches `prog` (loaded by `load_copy`) to every function of
/// `functions` in one link; the kernel refuses all of them if it refuses
/// one.
pub fn attach(prog: BorrowedFd<'_>, functions: &[String]) -> Result<OwnedFd, MultiError> {
    let names: Vec<CString> = functions
        .iter()
        .map(|f| CString::new(f.as_str()).map_err(|_| MultiError::BadName(f.clone())))
        .collect::<Result<_, _>>()?;
    let pointers: Vec<u64> = names.iter().map(|n| n.as_ptr() as u64).collect();
    let mut attr = KprobeMultiLinkAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_TRACE_KPROBE_MULTI,
        cnt: u32::try_from(pointers.len()).unwrap_or(u32::MAX),
        syms: pointers.as_ptr() as u64,
        ..KprobeMultiLinkAttr::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr)
        .map(owned)
        .map_err(|source| MultiError::Link {
            functions: functions.len(),
            source,
        })
}

/// A loaded kprobe_multi program and its link: closing the link detaches
/// every function at once, then the program unloads.
pub struct MultiLink {
    /// Held open, never read: closing it detaches. Before `prog`, so it is
    /// closed first (fields drop in order): the link holds the program.
    #[expect(dead_code, reason = "held for its drop, which detaches the functions")]
    link: OwnedFd,
    prog: OwnedFd,
    pub functions: usize,
}

impl MultiLink {
    pub fn new(link: OwnedFd, prog: OwnedFd, functions: usize) -> Self {
        Self {
            link,
            prog,
            functions,
        }
    }

    /// The program, for its statistics.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::{MultiError, kernel_object_name, log_tail, match_maps, split_core};
    use probe_common::CallProbeConfig;

    #[test]
    fn only_functions_in_the_core_kernels_text_share_the_link() {
        let config = CallProbeConfig {
            core_text_start: 0x1000,
            core_text_end: 0x2000,
            ..CallProbeConfig::UNSET
        };
        let addresses = [
            ("kfree", 0x1000),
            ("kstrdup", 0x1fff),
            ("snd_pcm_new", 0x9000),
        ]
        .into_iter()
        .map(|(n, a)| (n.to_owned(), a))
        .collect();
        let functions: Vec<String> = ["kfree", "snd_pcm_new", "unknown", "kstrdup"]
            .into_iter()
            .map(String::from)
            .collect();
        let (core, others) = split_core(&functions, &addresses, &config);
        assert_eq!(core, ["kfree", "kstrdup"]);
        assert_eq!(others, ["snd_pcm_new", "unknown"]);
        let unset = split_core(&functions, &addresses, &CallProbeConfig::UNSET);
        assert!(unset.0.is_empty(), "no core text known: a kprobe each");
    }

    #[test]
    fn kernel_names_are_the_first_fifteen_bytes() {
        assert_eq!(kernel_object_name("COUNTS"), b"COUNTS");
        assert_eq!(
            kernel_object_name("UNOWNED_CALLS_LONGER"),
            b"UNOWNED_CALLS_L"
        );
    }

    #[test]
    fn kernel_maps_are_matched_to_the_object_maps_by_truncated_name() {
        let object = ["COUNTS", ".rodata", "A_VERY_LONG_MAP_NAME", "UNUSED"];
        let kernel = vec![
            (b"COUNTS".to_vec(), 3),
            (b".rodata".to_vec(), 4),
            (b"A_VERY_LONG_MAP".to_vec(), 5),
        ];
        let matched = match_maps(object, kernel).unwrap();
        assert_eq!(matched.len(), 3);
        assert_eq!(matched["A_VERY_LONG_MAP_NAME"], 5);
        assert_eq!(matched[".rodata"], 4);
        assert!(!matched.contains_key("UNUSED"));
    }

    #[test]
    fn a_kernel_map_named_like_two_object_maps_or_none_is_refused() {
        let object = ["A_VERY_LONG_MAP_ONE", "A_VERY_LONG_MAP_TWO"];
        let twice = match_maps(object, vec![(b"A_VERY_LONG_MAP".to_vec(), 1)]);
        assert!(
            matches!(twice, Err(MultiError::AmbiguousMap { name, matches: 2 }) if name == "A_VERY_LONG_MAP")
        );
        let none = match_maps(["COUNTS"], vec![(b"SEEN".to_vec(), 1)]);
        assert!(
            matches!(none, Err(MultiError::AmbiguousMap { name, matches: 0 }) if name == "SEEN")
        );
    }

    #[test]
    fn the_verifier_logs_last_lines_are_kept_up_to_its_nul() {
        let log = b"0: r1 = r2\n1: exit\n\ninvalid mem access\n\0garbage";
        assert_eq!(log_tail(log, 2), "\n  1: exit\n  invalid mem access");
        assert_eq!(log_tail(b"\0", 3), "");
    }
}
