//! `/proc/kcore`'s headers: the kernel's memory map (its `PT_LOAD`
//! segments) and the VMCOREINFO note (`KEY=value` lines the kernel writes
//! for crash tools). Only the ELF header, the program headers and the note
//! are read, each bounded; the file's size is the address space, not data.

use std::{
    collections::HashMap,
    fs::File,
    ops::Range,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

pub const PROC_KCORE: &str = "/proc/kcore";

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
/// More program headers than any kernel writes (one per memory range).
const MAX_PHDRS: usize = 4096;
/// The notes are a few KiB (prstatus, prpsinfo, the task struct, VMCOREINFO).
const MAX_NOTES: u64 = 1 << 20;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_CORE: u16 = 4;

#[derive(Debug, thiserror::Error)]
pub enum KcoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a little-endian ELF64 core file")]
    NotCore(String),
    #[error("{0}: {1}")]
    Malformed(String, &'static str),
}

/// One `PT_LOAD` segment: kernel virtual addresses and where the file
/// holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: Range<u64>,
    pub offset: u64,
}

/// What kcore's headers say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kcore {
    path: PathBuf,
    /// `PT_LOAD` segments, in header order.
    pub segments: Vec<Segment>,
    /// VMCOREINFO's `KEY=value` lines.
    pub vmcoreinfo: HashMap<String, String>,
}

/// The longest string `read_c_string` reads.
const MAX_STRING: usize = 256;

impl Kcore {
    /// The range of the segment that holds `addr`.
    pub fn segment_holding(&self, addr: u64) -> Option<Range<u64>> {
        self.segments
            .iter()
            .find(|s| s.vaddr.contains(&addr))
            .map(|s| s.vaddr.clone())
    }

    /// `len` bytes of kernel memory at `addr` (within one segment).
    pub fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.open()?.read(addr, len)
    }

    /// The file opened once, for many reads.
    pub fn open(&self) -> Option<KcoreFile<'_>> {
        Some(KcoreFile {
            kcore: self,
            file: File::open(&self.path).ok()?,
        })
    }

    /// The NUL-terminated string whose address is the word at `addr` (a
    /// `const char *` field), up to 256 bytes.
    pub fn read_c_string(&self, pointer_at: u64) -> Option<String> {
        let word = self.read(pointer_at, 8)?;
        let target = u64_at(&word, 0);
        // Up to the end of its segment, at most MAX_STRING bytes.
        let segment = self.segments.iter().find(|s| s.vaddr.contains(&target))?;
        let room = (segment.vaddr.end - target).min(MAX_STRING as u64) as usize;
        let bytes = self.read(target, room)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        String::from_utf8(bytes[..end].to_vec()).ok()
    }

    /// A VMCOREINFO value as a number (`0x` hex or decimal, as the kernel
    /// writes them; `KERNELOFFSET` is bare hex and not read here).
    pub fn number(&self, key: &str) -> Option<u64> {
        let v = self.vmcoreinfo.get(key)?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }
}

/// An open kcore: reads of kernel memory without opening it each time.
pub struct KcoreFile<'a> {
    kcore: &'a Kcore,
    file: File,
}

impl KcoreFile<'_> {
    /// `len` bytes of kernel memory at `addr` (within one segment).
    pub fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let segment = self
            .kcore
            .segments
            .iter()
            .find(|s| s.vaddr.contains(&addr))?;
        let end = addr.checked_add(len as u64)?;
        if end > segment.vaddr.end {
            return None;
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, segment.offset + (addr - segment.vaddr.start))
            .ok()?;
        Some(buf)
    }

    /// The little-endian word at `addr`.
    pub fn word(&self, addr: u64) -> Option<u64> {
        Some(u64_at(&self.read(addr, 8)?, 0))
    }
}

/// Reads the headers and the VMCOREINFO note of the kcore file at `path`.
pub fn read_headers(path: impl AsRef<Path>) -> Result<Kcore, KcoreError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |source| KcoreError::Io {
        path: name.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut ehdr = [0u8; EHDR_LEN];
    file.read_exact_at(&mut ehdr, 0).map_err(io)?;
    let table = ProgramTable::parse(&ehdr, &name)?;
    let mut phdrs = vec![0u8; table.count * PHDR_LEN];
    file.read_exact_at(&mut phdrs, table.offset).map_err(io)?;
    let (segments, note) = parse_program_headers(&phdrs);
    let mut kcore = Kcore {
        path: path.to_owned(),
        segments,
        vmcoreinfo: HashMap::new(),
    };
    if let Some((offset, size)) = note {
        if size > MAX_NOTES {
            return Err(KcoreError::Malformed(name, "note segment too large"));
        }
        let mut notes = vec![0u8; size as usize];
        file.read_exact_at(&mut notes, offset).map_err(io)?;
        kcore.vmcoreinfo = vmcoreinfo(&notes);
    }
    Ok(kcore)
}

struct ProgramTable {
    offset: u64,
    count: usize,
}

impl ProgramTable {
    fn parse(ehdr: &[u8; EHDR_LEN], name: &str) -> Result<Self, KcoreError> {
        // ELF magic, ELFCLASS64, ELFDATA2LSB.
        if ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 || u16_at(ehdr, 16) != ET_CORE {
            return Err(KcoreError::NotCore(name.to_owned()));
        }
        let offset = u64_at(ehdr, 32);
        let entry_size = usize::from(u16_at(ehdr, 54));
        let count = usize::from(u16_at(ehdr, 56));
        if entry_size != PHDR_LEN {
            return Err(KcoreError::Malformed(
                name.to_owned(),
                "program header size",
            ));
        }
        if count == 0 || count > MAX_PHDRS {
            return Err(KcoreError::Malformed(
                name.to_owned(),
                "program header count",
            ));
        }
        Ok(Self { offset, count })
    }
}

/// The `PT_LOAD` segments and the `PT_NOTE` segment's `(offset, size)`.
fn parse_program_headers(phdrs: &[u8]) -> (Vec<Segment>, Option<(u64, u64)>) {
    let mut segments = Vec::new();
    let mut note = None;
    for ph in phdrs.chunks_exact(PHDR_LEN) {
        match u32_at(ph, 0) {
            PT_LOAD => {
                let start = u64_at(ph, 16);
                let size = u64_at(ph, 40);
                if let Some(end) = start.checked_add(size) {
                    segments.push(Segment {
                        vaddr: start..end,
                        offset: u64_at(ph, 8),
                    });
                }
            }
            PT_NOTE => note = Some((u64_at(ph, 8), u64_at(ph, 32))),
            _ => {}
        }
    }
    (segments, note)
}

/// The `KEY=value` lines of the VMCOREINFO note among `notes` (ELF notes:
/// namesz, descsz, type, name and desc each padded to 4 bytes).
pub fn vmcoreinfo(notes: &[u8]) -> HashMap<String, String> {
    let mut rest = notes;
    while rest.len() >= 12 {
        let name_len = u32_at(rest, 0) as usize;
        let desc_len = u32_at(rest, 4) as usize;
        let name_end = 12 + name_len.next_multiple_of(4);
        let desc_end = name_end.saturating_add(desc_len.next_multiple_of(4));
        if desc_end > rest.len() || name_end + desc_len > rest.len() {
            break;
        }
        let name = &rest[12..12 + name_len];
        if name.strip_suffix(b"\0").unwrap_or(name) == b"VMCOREINFO" {
            let text = String::from_utf8_lossy(&rest[name_end..name_end + desc_len]);
            return text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_end_matches('\0').to_owned()))
                .collect();
        }
        rest = &rest[desc_end..];
    }
    HashMap::new()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
pub(crate) mod samples {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// `core_file`'s bytes in a file of their own, read back.
    pub fn read_core_file(loads: &[Range<u64>], info: &str) -> Kcore {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("modscope-kcore-{}-{n}", std::process::id()));
        std::fs::write(&path, core_file(loads, info)).unwrap();
        let kcore = read_headers(&path);
        std::fs::remove_file(&path).unwrap();
        kcore.unwrap()
    }

    /// A kcore whose one LOAD segment at `base` holds `memory`.
    pub fn with_memory(base: u64, memory: &[u8]) -> Kcore {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("modscope-kmem-{}-{n}", std::process::id()));
        let offset = (EHDR_LEN + PHDR_LEN) as u64;
        let mut out = vec![0u8; EHDR_LEN];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        out[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        out[56..58].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; PHDR_LEN];
        ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&base.to_le_bytes());
        ph[40..48].copy_from_slice(&(memory.len() as u64).to_le_bytes());
        out.extend_from_slice(&ph);
        out.extend_from_slice(memory);
        std::fs::write(&path, out).unwrap();
        let kcore = read_headers(&path).unwrap();
        // Kcore reads lazily: the file stays for the test's reads.
        kcore
    }

    /// An ELF64 core with the given LOAD ranges and one VMCOREINFO note.
    pub fn core_file(loads: &[Range<u64>], info: &str) -> Vec<u8> {
        let mut note = Vec::new();
        let name = b"VMCOREINFO\0";
        note.extend_from_slice(&(name.len() as u32).to_le_bytes());
        note.extend_from_slice(&(info.len() as u32).to_le_bytes());
        note.extend_from_slice(&0u32.to_le_bytes());
        note.extend_from_slice(name);
        note.resize(12 + name.len().next_multiple_of(4), 0);
        note.extend_from_slice(info.as_bytes());
        note.resize(note.len().next_multiple_of(4), 0);
        let count = loads.len() + 1;
        let note_offset = (EHDR_LEN + count * PHDR_LEN) as u64;
        let mut out = vec![0u8; EHDR_LEN];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        out[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(count as u16).to_le_bytes());
        let mut ph = vec![0u8; PHDR_LEN];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&note_offset.to_le_bytes());
        ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        out.extend_from_slice(&ph);
        for r in loads {
            let mut ph = vec![0u8; PHDR_LEN];
            ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[16..24].copy_from_slice(&r.start.to_le_bytes());
            ph[40..48].copy_from_slice(&(r.end - r.start).to_le_bytes());
            out.extend_from_slice(&ph);
        }
        out.extend_from_slice(&note);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{samples::core_file, *};

    #[test]
    fn segments_and_vmcoreinfo_are_read_from_the_headers() {
        let dir = std::env::temp_dir().join(format!("modscope-kcore-{}", std::process::id()));
        let info = "PAGESIZE=16384\nNUMBER(KERNELPACMASK)=0xffff000000000000\n";
        let text = 0xffff_d3d9_6720_0000..0xffff_d3d9_6921_0000;
        std::fs::write(
            &dir,
            core_file(
                &[text.clone(), 0xffff_8000_0000_0000..0xffff_8000_0800_0000],
                info,
            ),
        )
        .unwrap();
        let kcore = read_headers(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(kcore.segments.len(), 2);
        assert_eq!(kcore.segment_holding(0xffff_d3d9_6721_0000), Some(text));
        assert_eq!(kcore.segment_holding(1), None);
        assert_eq!(kcore.number("PAGESIZE"), Some(16384));
        assert_eq!(
            kcore.number("NUMBER(KERNELPACMASK)"),
            Some(0xffff_0000_0000_0000)
        );
        assert_eq!(kcore.number("NUMBER(VA_BITS)"), None);
    }

    #[test]
    fn a_file_that_is_not_a_core_is_refused() {
        let dir = std::env::temp_dir().join(format!("modscope-notcore-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 128]).unwrap();
        let err = read_headers(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(err, KcoreError::NotCore(_)), "{err}");
        let mut truncated = core_file(&[0..1, 2..3], "PAGESIZE=4096\n");
        truncated.truncate(EHDR_LEN + 10);
        let path = std::env::temp_dir().join(format!("modscope-short-{}", std::process::id()));
        std::fs::write(&path, truncated).unwrap();
        let err = read_headers(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, KcoreError::Io { .. }), "{err}");
    }

    #[test]
    fn a_string_field_is_read_through_its_pointer() {
        let mut file = core_file(&[0x1000..0x1100, 0x8000..0x8010], "PAGESIZE=4096\n");
        let data_at = file.len() as u64;
        // The LOAD header follows the NOTE header: point it at the data.
        let load = EHDR_LEN + PHDR_LEN;
        file[load + 8..load + 16].copy_from_slice(&data_at.to_le_bytes());
        let mut data = vec![0u8; 0x100];
        data[..8].copy_from_slice(&0x1010u64.to_le_bytes());
        data[8..16].copy_from_slice(&0x9999u64.to_le_bytes());
        data[0x10..0x1c].copy_from_slice(b"module_free\0");
        file.extend_from_slice(&data);
        let path = std::env::temp_dir().join(format!("modscope-kstr-{}", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let kcore = read_headers(&path).unwrap();
        assert_eq!(kcore.read_c_string(0x1000).as_deref(), Some("module_free"));
        assert_eq!(
            kcore.read_c_string(0x1008),
            None,
            "a pointer outside every segment"
        );
        assert_eq!(kcore.read(0x10f8, 16), None, "past the segment's end");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_truncated_note_yields_nothing_rather_than_garbage() {
        let file = core_file(&[], "PAGESIZE=4096\n");
        let notes = &file[EHDR_LEN + PHDR_LEN..];
        assert_eq!(
            vmcoreinfo(notes).get("PAGESIZE").map(String::as_str),
            Some("4096")
        );
        assert!(vmcoreinfo(&notes[..notes.len() - 8]).is_empty());
    }
}
