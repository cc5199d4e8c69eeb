//! Reading only the parts of a module file that `check` parses. A module is
//! mostly code, relocations and BTF; the headers, `.modinfo`, the version
//! tables and the symbol table are a few percent of it. This locates those
//! ranges from the ELF64 header and section headers, reads each with one
//! `pread`, and serves them to the object crate through `ReadRef`. Anything
//! else object asks for is an error, which surfaces as "corrupt ELF".

use std::{ops::Range, os::unix::fs::FileExt as _};

/// Sections whose contents `ko_file::parse` reads.
const WANTED: &[&str] = &[
    ".modinfo",
    "__versions",
    "__version_ext_names",
    "__version_ext_crcs",
];
const SHT_SYMTAB: u32 = 2;
const SIGNATURE_TAIL: u64 = 28;
/// How much before the section headers the tail read starts: the symbol and
/// string tables of most modules fit (16 KB on average for Debian's).
const TAIL_BEFORE: u64 = 24 * 1024;
/// After the section headers: room for an appended signature.
const TAIL_AFTER: u64 = 4 * 1024;

pub struct SparseFile {
    len: u64,
    /// (file offset, bytes); backed by u64 so every piece is 8-byte aligned,
    /// as object's struct reads require.
    pieces: Vec<(u64, Vec<u64>, usize)>,
}

fn le16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
}
fn le32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?).into())
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl SparseFile {
    /// `None` when the file is not a little-endian ELF64 whose headers make
    /// sense; the caller then reads it whole and lets object explain.
    pub fn open(file: &std::fs::File) -> std::io::Result<Option<Self>> {
        let mut sparse = Self {
            len: 0,
            pieces: Vec::new(),
        };
        if sparse.fetch(file, 0, 64)? < 64 {
            return Ok(None);
        }
        let Some(table) = SectionTable::parse(sparse.bytes(0, 64).expect("just read")) else {
            return Ok(None);
        };
        let (shoff, shnum) = (table.offset, table.count);
        // One read for the end of the file: `ld -r` puts the symbol and string
        // tables just before the section headers, and the signature follows
        // them. A short read also tells the file's length, saving a stat.
        let tail_start = shoff.saturating_sub(TAIL_BEFORE);
        let tail_want = (shoff - tail_start) + shnum * 64 + TAIL_AFTER;
        let got = sparse.fetch(file, tail_start, tail_want)? as u64;
        sparse.len = if got < tail_want {
            tail_start + got
        } else {
            file.metadata()?.len()
        };
        let len = sparse.len;
        if shoff + shnum * 64 > len {
            return Ok(None);
        }
        let shdrs = sparse
            .bytes(shoff, shnum * 64)
            .expect("within the tail")
            .to_vec();
        let Some(names) = section(&shdrs, table.names) else {
            return Ok(None);
        };
        if names.offset.checked_add(names.size).is_none_or(|e| e > len) {
            return Ok(None);
        }
        sparse.ensure(file, names.offset..names.offset + names.size)?;
        let names = sparse
            .bytes(names.offset, names.size)
            .expect("just ensured")
            .to_vec();
        let Some(mut ranges) = wanted_ranges(&shdrs, &names, shnum) else {
            return Ok(None);
        };
        ranges.push(len.saturating_sub(SIGNATURE_TAIL)..len);
        for r in ranges {
            if r.end > len || r.start >= r.end {
                continue; // object reports the bad section when it gets there
            }
            sparse.ensure(file, r)?;
        }
        Ok(Some(sparse))
    }

    /// Reads `range` unless a piece already holds all of it.
    fn ensure(&mut self, file: &std::fs::File, range: Range<u64>) -> std::io::Result<()> {
        if self.bytes(range.start, range.end - range.start).is_none() {
            let want = range.end - range.start;
            if (self.fetch(file, range.start, want)? as u64) < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shorter than its section headers say",
                ));
            }
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` into a new piece; returns how
    /// many there were (fewer at the end of the file).
    fn fetch(&mut self, file: &std::fs::File, offset: u64, size: u64) -> std::io::Result<usize> {
        // Buffers are recycled per thread: fresh ones would cost a page fault
        // per page on every file.
        let mut words = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        words.clear();
        words.resize(size.div_ceil(8) as usize, 0);
        // SAFETY: viewing a u64 buffer as bytes; every bit pattern is valid for both.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), size as usize)
        };
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pieces.push((offset, words, got));
        Ok(got)
    }

    /// `size` bytes at `offset`, when one piece holds them all.
    fn bytes(&self, offset: u64, size: u64) -> Option<&[u8]> {
        self.piece(offset).and_then(|p| p.get(..size as usize))
    }

    fn piece(&self, offset: u64) -> Option<&[u8]> {
        self.pieces.iter().find_map(|(start, words, size)| {
            let end = start + *size as u64;
            (*start <= offset && offset < end).then(|| {
                // SAFETY: as in fetch; `size` bytes of the buffer were initialised.
                let all = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), *size) };
                &all[(offset - start) as usize..]
            })
        })
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for SparseFile {
    fn drop(&mut self) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            for (_, words, _) in self.pieces.drain(..) {
                if pool.len() < 32 {
                    pool.push(words);
                }
            }
        });
    }
}

impl<'a> object::ReadRef<'a> for &'a SparseFile {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        if size == 0 {
            return Ok(&[]);
        }
        self.piece(offset)
            .and_then(|p| p.get(..size as usize))
            .ok_or(())
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        let piece = self.piece(range.start).ok_or(())?;
        let limit = piece.len().min((range.end - range.start) as usize);
        let piece = &piece[..limit];
        let end = piece.iter().position(|&b| b == delimiter).ok_or(())?;
        Ok(&piece[..end])
    }
}

/// Where an ELF64 little-endian file's section headers are.
struct SectionTable {
    offset: u64,
    count: u64,
    /// The index of the section-name string table.
    names: u64,
}

impl SectionTable {
    /// From the 64-byte ELF header; `None` unless it is ELF64 LE with a
    /// plausible section table.
    fn parse(header: &[u8]) -> Option<Self> {
        if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return None;
        }
        let offset = le64(header, 0x28)?;
        let entry_size = le16(header, 0x3a)?;
        let count = le16(header, 0x3c)?;
        let names = le16(header, 0x3e)?;
        (entry_size == 64 && count > 0 && names < count && offset.checked_add(count * 64).is_some())
            .then_some(Self {
                offset,
                count,
                names,
            })
    }
}

/// The fields of one section header this reader uses.
struct SectionHeader {
    name: u64,
    kind: u32,
    offset: u64,
    size: u64,
    link: u64,
}

fn section(shdrs: &[u8], i: u64) -> Option<SectionHeader> {
    let at = (i * 64) as usize;
    Some(SectionHeader {
        name: le32(shdrs, at)?,
        kind: le32(shdrs, at + 4)? as u32,
        offset: le64(shdrs, at + 0x18)?,
        size: le64(shdrs, at + 0x20)?,
        link: le32(shdrs, at + 0x28)?,
    })
}

/// The byte ranges of the sections `check` reads: the symbol table and its
/// strings, and the `WANTED` sections by name.
fn wanted_ranges(shdrs: &[u8], names: &[u8], count: u64) -> Option<Vec<Range<u64>>> {
    let mut ranges = Vec::new();
    for i in 0..count {
        let s = section(shdrs, i)?;
        let name = names
            .get(s.name as usize..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if s.kind == SHT_SYMTAB || WANTED.iter().any(|w| w.as_bytes() == name) {
            ranges.push(s.offset..s.offset.saturating_add(s.size));
        }
        if s.kind == SHT_SYMTAB
            && let Some(strings) = section(shdrs, s.link)
        {
            ranges.push(strings.offset..strings.offset.saturating_add(strings.size));
        }
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures::Ko, ko_file};

    #[test]
    fn sparse_read_sees_what_a_whole_read_sees() {
        let mut ko = Ko::good().import("mutex_lock", Some(0x4dfa8d4b));
        ko.tracepoints = vec!["t".into()];
        // A large section nobody reads, as code and relocations are in real modules.
        ko.mcount_sites = 50_000;
        let bytes = ko.build();
        let path = std::env::temp_dir().join(format!("modscope-sparse-{}.ko", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let sparse = SparseFile::open(&file).unwrap().expect("a good ELF64");
        let a = ko_file::parse(&sparse).unwrap();
        let b = ko_file::parse(&bytes[..]).unwrap();
        assert_eq!(a.imports, b.imports);
        assert_eq!(a.versions, b.versions);
        assert_eq!(a.modinfo, b.modinfo);
        assert_eq!(a.this_module_size, b.this_module_size);
        assert!(a.signed && b.signed);
        assert_eq!(a.defined_tracepoints, b.defined_tracepoints);
        let fetched: usize = sparse.pieces.iter().map(|p| p.2).sum();
        assert!(
            fetched < bytes.len(),
            "read {fetched} of {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn not_elf64_falls_back() {
        let path =
            std::env::temp_dir().join(format!("modscope-sparse-text-{}.ko", std::process::id()));
        std::fs::write(
            &path,
            b"definitely not an ELF file, but long enough to hold a header........",
        )
        .unwrap();
        assert!(
            SparseFile::open(&std::fs::File::open(&path).unwrap())
                .unwrap()
                .is_none()
        );
    }
}
