//! Copies of a program aya has already loaded, loaded again by
//! `bpf(BPF_PROG_LOAD)` with what aya 0.14 cannot give them: an expected
//! attach type (kprobe_multi links) or one copy per traced function (fentry
//! trampolines). The same instructions, parsed from the same object by
//! aya-obj and relocated against the maps aya created, found through the
//! loaded program's map ids.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

use aya::{
    maps::MapInfo,
    programs::{ProgramError, ProgramInfo},
};

use super::bpf_syscall::{BPF_PROG_LOAD, bpf, owned};

/// Names in the kernel's BPF objects hold 15 bytes and a NUL.
const OBJECT_NAME_BYTES: usize = 15;
/// The verifier's account of a refused load, when one is asked for.
const VERIFIER_LOG_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
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
    #[error("{program} holds no {patch} for the loader to write")]
    Unpatched { program: String, patch: Patch },
    #[error("loading {program} for {purpose}: {source}{log}")]
    Load {
        program: String,
        purpose: String,
        source: io::Error,
        log: String,
    },
}

/// What a copy is loaded for: the program type, attach type and BTF target
/// of `BPF_PROG_LOAD`.
#[derive(Clone, Copy, Debug)]
pub enum CopyKind {
    /// A kprobe program for kprobes opened as perf events (`kprobe_pmu`).
    Kprobe,
    /// A kprobe program for kprobe_multi links.
    KprobeMulti,
    /// A tracing program on the entry of the vmlinux function whose BTF id
    /// this is.
    Fentry { btf_id: u32 },
}

impl CopyKind {
    const BPF_PROG_TYPE_KPROBE: u32 = 2;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FENTRY: u32 = 24;
    pub const BPF_TRACE_KPROBE_MULTI: u32 = 42;

    /// `(prog_type, expected_attach_type, attach_btf_id)`.
    fn attributes(self) -> (u32, u32, u32) {
        match self {
            Self::Kprobe => (Self::BPF_PROG_TYPE_KPROBE, 0, 0),
            Self::KprobeMulti => (Self::BPF_PROG_TYPE_KPROBE, Self::BPF_TRACE_KPROBE_MULTI, 0),
            Self::Fentry { btf_id } => {
                (Self::BPF_PROG_TYPE_TRACING, Self::BPF_TRACE_FENTRY, btf_id)
            }
        }
    }

    fn purpose(self) -> String {
        match self {
            Self::Kprobe => "a kprobe each".to_owned(),
            Self::KprobeMulti => "kprobe_multi".to_owned(),
            Self::Fentry { btf_id } => format!("fentry on BTF id {btf_id}"),
        }
    }
}

/// A program's instructions, relocated against the maps of aya's loaded
/// copy, ready to be loaded as often as needed.
pub struct ProgramCopy {
    program: String,
    insns: Vec<aya_obj::generated::bpf_insn>,
    license: CString,
    /// The descriptors the instructions name, open for as long as the copy
    /// may be loaded.
    _maps: Vec<aya::maps::MapFd>,
}

impl ProgramCopy {
    /// `program` from `object`, its maps those `loaded` (a program aya
    /// loaded from the same object) uses.
    pub fn relocate(object: &[u8], program: &str, loaded: &ProgramInfo) -> Result<Self, CopyError> {
        let mut obj = aya_obj::Object::parse(object).map_err(CopyError::Parse)?;
        let key = obj
            .programs
            .get(program)
            .ok_or_else(|| CopyError::NoProgram(program.to_owned()))?
            .function_key();
        obj.programs.retain(|name, _| name == program);
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        let maps: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
        let fds = map_fds_of(loaded, program, maps.iter().map(|(name, _)| name.as_str()))?;
        // The maps the loaded program does not use get no descriptor: a
        // reference to one makes the kernel refuse the load, not load
        // something else.
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
        relocated.map_err(|source| CopyError::Relocate {
            program: program.to_owned(),
            source,
        })?;
        let function = obj
            .functions
            .remove(&key)
            .ok_or_else(|| CopyError::NoProgram(program.to_owned()))?;
        Ok(Self {
            program: program.to_owned(),
            insns: function.instructions,
            license: obj.license,
            _maps: fds.into_values().collect(),
        })
    }

    /// Loads the copy for `kind`, with `patches` written in
    /// (`write_patches`); a refused load is tried again with the verifier's
    /// log, whose end the error carries.
    pub fn load(&self, kind: CopyKind, patches: &[Patch]) -> Result<OwnedFd, CopyError> {
        let mut insns = self.insns.clone();
        write_patches(&mut insns, patches).map_err(|patch| CopyError::Unpatched {
            program: self.program.clone(),
            patch,
        })?;
        let (prog_type, expected_attach_type, attach_btf_id) = kind.attributes();
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
            insns: insns.as_ptr() as u64,
            license: self.license.as_ptr() as u64,
            expected_attach_type,
            attach_btf_id,
            ..ProgLoadAttr::default()
        };
        let name = kernel_object_name(&self.program);
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
        Err(CopyError::Load {
            program: self.program.clone(),
            purpose: kind.purpose(),
            source,
            log: log_tail(&log, 6),
        })
    }
}

/// What the loader writes into a copy: the eBPF side's `copy_patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patch {
    /// `value` over every plain `ld_imm64` (no map or BTF reference) that
    /// loads `marker` (the program's `loader_constant`).
    Constant { marker: u64, value: u64 },
    /// Every call of the helper numbered `helper`, which no helper is,
    /// made a call of the vmlinux kfunc whose BTF id is `btf_id`.
    KfuncCall { helper: i32, btf_id: u32 },
}

impl std::fmt::Display for Patch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Constant { marker, .. } => write!(f, "constant marked {marker:#x}"),
            Self::KfuncCall { helper, .. } => write!(f, "call of helper {helper:#x}"),
        }
    }
}

/// `BPF_LD | BPF_IMM | BPF_DW`: a 64-bit immediate over two instructions.
const LD_IMM64: u8 = 0x18;
/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// A call's `src_reg` for a kfunc, whose `imm` is its BTF id.
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Writes each patch wherever its site is; the first patch with no site
/// is the error: a program built without it.
fn write_patches(
    insns: &mut [aya_obj::generated::bpf_insn],
    patches: &[Patch],
) -> Result<(), Patch> {
    let mut found = vec![false; patches.len()];
    let mut i = 0;
    let count = insns.len();
    while i < count {
        let width = if insns[i].code == LD_IMM64 { 2 } else { 1 };
        let site = &mut insns[i..(i + width).min(count)];
        for (patch, found) in patches.iter().zip(found.iter_mut()) {
            *found |= patch.write(site);
        }
        i += width;
    }
    match found.iter().position(|f| !f) {
        Some(n) => Err(patches[n]),
        None => Ok(()),
    }
}

impl Patch {
    /// Writes this patch into `site` (one instruction, or an `ld_imm64`'s
    /// two) if it is this patch's; whether it was.
    fn write(&self, site: &mut [aya_obj::generated::bpf_insn]) -> bool {
        match (*self, site) {
            (Self::Constant { marker, value }, [first, second])
                if first.code == LD_IMM64 && first.src_reg() == 0 =>
            {
                let loaded = u64::from(first.imm as u32) | (u64::from(second.imm as u32) << 32);
                if loaded != marker {
                    return false;
                }
                first.imm = value as u32 as i32;
                second.imm = (value >> 32) as u32 as i32;
                true
            }
            (Self::KfuncCall { helper, btf_id }, [call])
                if call.code == CALL && call.src_reg() == 0 && call.imm == helper =>
            {
                call.set_src_reg(BPF_PSEUDO_KFUNC_CALL);
                call.off = 0;
                call.imm = btf_id as i32;
                true
            }
            _ => false,
        }
    }
}

/// A loaded copy and the link that attaches it: closing the link detaches
/// it (every function of a kprobe_multi link at once), then the program
/// unloads.
pub struct CopyLink {
    /// Held open, never read: closing it detaches. Before `prog`, so it is
    /// closed first (fields drop in order): the link holds the program.
    #[expect(dead_code, reason = "held for its drop, which detaches")]
    link: OwnedFd,
    prog: OwnedFd,
}

impl CopyLink {
    pub fn new(link: OwnedFd, prog: OwnedFd) -> Self {
        Self { link, prog }
    }

    /// The program, for its statistics.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
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
) -> Result<HashMap<&'n str, T>, CopyError> {
    let object_maps: Vec<&str> = object_maps.into_iter().collect();
    let mut matched = HashMap::new();
    for (kernel_name, map) in kernel_maps {
        let named: Vec<&&str> = object_maps
            .iter()
            .filter(|m| kernel_object_name(m) == kernel_name.as_slice())
            .collect();
        let [object_name] = named.as_slice() else {
            return Err(CopyError::AmbiguousMap {
                name: String::from_utf8_lossy(&kernel_name).into_owned(),
                matches: named.len(),
            });
        };
        matched.insert(**object_name, map);
    }
    Ok(matched)
}

/// Descriptors of the maps `loaded` uses, by the object's map names.
fn map_fds_of<'n>(
    loaded: &ProgramInfo,
    program: &str,
    object_maps: impl IntoIterator<Item = &'n str>,
) -> Result<HashMap<&'n str, aya::maps::MapFd>, CopyError> {
    let map_error = |source| CopyError::MapIds {
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
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    /// 0: the target is in vmlinux' BTF.
    attach_btf_obj_fd: u32,
    core_relo_cnt: u32,
}

const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 120);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id) == 108);

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

#[cfg(test)]
mod tests {
    use aya_obj::generated::bpf_insn;

    use super::{
        BPF_PSEUDO_KFUNC_CALL, CALL, CopyError, LD_IMM64, Patch, kernel_object_name, log_tail,
        match_maps, write_patches,
    };

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
            matches!(twice, Err(CopyError::AmbiguousMap { name, matches: 2 }) if name == "A_VERY_LONG_MAP")
        );
        let none = match_maps(["COUNTS"], vec![(b"SEEN".to_vec(), 1)]);
        assert!(
            matches!(none, Err(CopyError::AmbiguousMap { name, matches: 0 }) if name == "SEEN")
        );
    }

    fn insn(code: u8, src_reg: u8, imm: i32) -> bpf_insn {
        bpf_insn {
            code,
            _bitfield_align_1: [],
            _bitfield_1: bpf_insn::new_bitfield_1(1, src_reg),
            off: 0,
            imm,
        }
    }

    /// `r1 = value ll`, or a map reference when `src_reg` is 1.
    fn ld_imm64(src_reg: u8, value: u64) -> [bpf_insn; 2] {
        [
            insn(LD_IMM64, src_reg, value as u32 as i32),
            insn(0, 0, (value >> 32) as u32 as i32),
        ]
    }

    fn loaded(insns: &[bpf_insn], at: usize) -> u64 {
        u64::from(insns[at].imm as u32) | (u64::from(insns[at + 1].imm as u32) << 32)
    }

    #[test]
    fn each_marked_immediate_gets_its_value_and_nothing_else_changes() {
        const MARK: u64 = 0x4d53_4649_5000_0001;
        const COLUMN: u64 = 0x4d53_434f_4c00_0002;
        let mov = insn(0xb7, 0, 7); // r0 = 7
        let mut insns: Vec<bpf_insn> = [
            &ld_imm64(0, MARK)[..],
            &[mov],
            &ld_imm64(1, MARK)[..], // a map reference that happens to match
            &ld_imm64(0, COLUMN)[..],
            &ld_imm64(0, MARK)[..], // inlined twice
        ]
        .concat();
        let constants = [
            Patch::Constant {
                marker: MARK,
                value: 0xffff_ffff_8123_4560,
            },
            Patch::Constant {
                marker: COLUMN,
                value: 17,
            },
        ];
        write_patches(&mut insns, &constants).unwrap();
        assert_eq!(loaded(&insns, 0), 0xffff_ffff_8123_4560);
        assert_eq!(insns[2].imm, 7, "other instructions untouched");
        assert_eq!(loaded(&insns, 3), MARK, "a map reference is not a constant");
        assert_eq!(loaded(&insns, 5), 17);
        assert_eq!(loaded(&insns, 7), 0xffff_ffff_8123_4560);
    }

    #[test]
    fn a_marker_the_program_never_loads_is_named() {
        let mut insns = ld_imm64(0, 5).to_vec();
        let constant = Patch::Constant {
            marker: 0x4d53_434f_4c00_0002,
            value: 1,
        };
        assert_eq!(write_patches(&mut insns, &[constant]), Err(constant));
        assert_eq!(loaded(&insns, 0), 5);
        let error = CopyError::Unpatched {
            program: "count_call_fentry".to_owned(),
            patch: constant,
        };
        assert_eq!(
            error.to_string(),
            "count_call_fentry holds no constant marked 0x4d53434f4c000002 for the loader to write"
        );
    }

    /// The marked helper call becomes the kfunc's; real helper calls, and
    /// an `ld_imm64` whose high word looks like a call, stay as they are.
    #[test]
    fn the_marked_helper_call_becomes_the_kfunc_call() {
        const HELPER: i32 = 0x4d53_4b46;
        let mut lookalike = ld_imm64(0, 7);
        lookalike[1].code = CALL;
        lookalike[1].imm = HELPER;
        let mut insns: Vec<bpf_insn> = [
            &[insn(CALL, 0, 1)][..], // bpf_map_lookup_elem
            &[insn(CALL, 0, HELPER)],
            &lookalike,
            &[insn(CALL, 0, HELPER)], // inlined twice
        ]
        .concat();
        let kfunc = Patch::KfuncCall {
            helper: HELPER,
            btf_id: 41_234,
        };
        write_patches(&mut insns, &[kfunc]).unwrap();
        assert_eq!((insns[0].src_reg(), insns[0].imm), (0, 1), "a helper call");
        for at in [1, 4] {
            assert_eq!(insns[at].src_reg(), BPF_PSEUDO_KFUNC_CALL);
            assert_eq!((insns[at].imm, insns[at].off), (41_234, 0));
        }
        assert_eq!(
            (insns[3].src_reg(), insns[3].imm),
            (0, HELPER),
            "inside an ld_imm64"
        );
        let mut none = vec![insn(CALL, 0, 1)];
        assert_eq!(write_patches(&mut none, &[kfunc]), Err(kfunc));
        assert_eq!(
            kfunc.to_string(),
            "call of helper 0x4d534b46",
            "how a missing call is named"
        );
    }

    #[test]
    fn the_verifier_logs_last_lines_are_kept_up_to_its_nul() {
        let log = b"0: r1 = r2\n1: exit\n\ninvalid mem access\n\0garbage";
        assert_eq!(log_tail(log, 2), "\n  1: exit\n  invalid mem access");
        assert_eq!(log_tail(b"\0", 3), "");
    }
}
