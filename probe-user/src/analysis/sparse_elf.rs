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
        let len = file.metadata()?.len();
        let mut sparse = Self {
            len,
            pieces: Vec::new(),
        };
        let header = sparse.fetch(file, 0, 64.min(len))?;
        if header.len() < 64 || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return Ok(None);
        }
        let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) = (
            le64(&header, 0x28),
            le16(&header, 0x3a),
            le16(&header, 0x3c),
            le16(&header, 0x3e),
        ) else {
            return Ok(None);
        };
        if shentsize != 64
            || shnum == 0
            || shstrndx >= shnum
            || shoff.checked_add(shnum * 64).is_none_or(|e| e > len)
        {
            return Ok(None);
        }
        let shdrs = sparse.fetch(file, shoff, shnum * 64)?;
        let section = |i: u64| -> Option<(u64, u32, u64, u64, u64)> {
            let at = (i * 64) as usize;
            Some((
                le32(&shdrs, at)?,
                le32(&shdrs, at + 4)? as u32,
                le64(&shdrs, at + 0x18)?,
                le64(&shdrs, at + 0x20)?,
                le32(&shdrs, at + 0x28)?,
            ))
        };
        let Some((_, _, str_off, str_size, _)) = section(shstrndx) else {
            return Ok(None);
        };
        if str_off.checked_add(str_size).is_none_or(|e| e > len) {
            return Ok(None);
        }
        let names = sparse.fetch(file, str_off, str_size)?;
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for i in 0..shnum {
            let Some((name_off, kind, off, size, link)) = section(i) else {
                return Ok(None);
            };
            let name = names
                .get(name_off as usize..)
                .and_then(|n| n.split(|&b| b == 0).next())
                .unwrap_or_default();
            let wanted = WANTED.iter().any(|w| w.as_bytes() == name);
            if wanted || kind == SHT_SYMTAB {
                ranges.push(off..off.saturating_add(size));
            }
            if kind == SHT_SYMTAB
                && let Some((_, _, s_off, s_size, _)) = section(link)
            {
                ranges.push(s_off..s_off.saturating_add(s_size));
            }
        }
        ranges.push(len.saturating_sub(SIGNATURE_TAIL)..len);
        for r in ranges {
            if r.end > len || r.start >= r.end {
                continue; // object reports the bad section when it gets there
            }
            sparse.fetch(file, r.start, r.end - r.start)?;
        }
        Ok(Some(sparse))
    }

    /// Reads `size` bytes at `offset` into a new piece and returns a copy of them.
    fn fetch(&mut self, file: &std::fs::File, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
        // Buffers are recycled per thread: fresh ones would cost a page fault
        // per page on every file.
        let mut words = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        words.clear();
        words.resize(size.div_ceil(8) as usize, 0);
        // SAFETY: viewing a u64 buffer as bytes; every bit pattern is valid for both.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), size as usize)
        };
        file.read_exact_at(bytes, offset)?;
        let copy = bytes.to_vec();
        self.pieces.push((offset, words, size as usize));
        Ok(copy)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{fixtures::Ko, ko_file};

    #[test]
    fn sparse_read_sees_what_a_whole_read_sees() {
        let mut ko = Ko::good().import("mutex_lock", Some(0x4dfa8d4b));
        ko.tracepoints = vec!["t".into()];
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
