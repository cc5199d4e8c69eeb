//! A kernel that is not running, read from its image (`/boot/vmlinuz-RELEASE`):
//! an x86 bzImage carries the whole vmlinux ELF compressed; an arm64 `Image`
//! is the kernel uncompressed. What `check` wants from it (the BTF, the
//! built-in certificates) is looked for in the image as it is, then in each
//! compressed payload it holds. Decompressing takes seconds, so callers
//! cache what they took out, per image.

use std::path::{Path, PathBuf};

use super::{
    input::{self, InputError, limit},
    ko_file,
};

/// Compression magics bzImage payloads start with.
const MAGICS: [&[u8]; 3] = [
    &[0xfd, b'7', b'z', b'X', b'Z', 0],
    &[0x28, 0xb5, 0x2f, 0xfd],
    &[0x1f, 0x8b, 0x08],
];

/// The image's bytes, bounded as kernel images are.
pub fn read(image: &Path) -> Result<Vec<u8>, InputError> {
    input::read_bounded(image, limit::KERNEL_IMAGE, "kernel image")
}

/// The first thing `found` finds: in the image itself, then in each
/// payload that decompresses to an ELF file (within the image bound).
pub fn find_in<T>(data: &[u8], mut found: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    found(data).or_else(|| find_in_payloads(data, found))
}

/// The first thing `found` finds in a payload of the image that
/// decompresses to an ELF file (within the image bound).
pub fn find_in_payloads<T>(data: &[u8], mut found: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    MAGICS.iter().find_map(|magic| {
        find_all(data, magic).find_map(|offset| {
            let elf =
                ko_file::decompress_bounded(data[offset..].to_vec(), limit::KERNEL_IMAGE, true)
                    .ok()?;
            found(&elf)
        })
    })
}

/// The first thing `found` finds in a payload of the image that
/// decompresses to an ELF file, read as a stream: the vmlinux (66 MB for
/// Debian's 6.1) is never held whole, only the decompressor's window.
pub fn find_in_payload_streams<T>(
    data: &[u8],
    mut found: impl FnMut(&mut dyn std::io::Read) -> Option<T>,
) -> Option<T> {
    MAGICS.iter().find_map(|magic| {
        find_all(data, magic).find_map(|offset| {
            let mut elf = ko_file::elf_stream(&data[offset..], limit::KERNEL_IMAGE)?;
            found(&mut elf)
        })
    })
}

/// Whether `data` is an arm64 `Image`: the kernel uncompressed, "ARM\x64"
/// at offset 56 of its header (Documentation/arch/arm64/booting.rst).
pub fn is_arm64_image(data: &[u8]) -> bool {
    data.get(56..60) == Some(b"ARM\x64")
}

/// The image without its Authenticode signature (an EFI-signed PE image
/// ends with the certificates that signed it for Secure Boot, which are not
/// the kernel's own keys): cut at the PE security directory.
pub fn without_pe_signature(data: &[u8]) -> &[u8] {
    let le32 = |at: usize| -> Option<usize> {
        let b = data.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let cut = || -> Option<usize> {
        if !data.starts_with(b"MZ") {
            return None;
        }
        let pe = le32(0x3c)?;
        if data.get(pe..pe + 4)? != b"PE\0\0" {
            return None;
        }
        let optional = pe + 24;
        // Data directory 4 (security) of a PE32+ (0x20b) or PE32 optional header.
        let directories = match data.get(optional..optional + 2)? {
            [0x0b, 0x02] => optional + 112,
            [0x0b, 0x01] => optional + 96,
            _ => return None,
        };
        let (offset, size) = (le32(directories + 32)?, le32(directories + 36)?);
        (size > 0 && offset < data.len()).then_some(offset)
    };
    cut().map_or(data, |at| &data[..at])
}

/// Every offset where `needle` starts in `haystack`.
pub fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// A cache key for a file: its name, size and mtime.
pub fn cache_key(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(format!(
        "{}-{}-{mtime}",
        path.file_name()?.to_string_lossy(),
        m.len()
    ))
}

/// What `extract` takes out of `image`, cached under `cache_dir` by the
/// image's name, size and mtime, with `suffix` naming what it is.
pub fn cached<E>(
    image: &Path,
    cache_dir: &Path,
    suffix: &str,
    extract: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let cached = cache_key(image).map(|k| cache_dir.join(format!("{k}.{suffix}")));
    let bound = limit::KERNEL_IMAGE;
    if let Some(bytes) = cached
        .as_ref()
        .and_then(|p| input::read_bounded(p, bound, "cache file").ok())
    {
        return Ok(bytes);
    }
    let bytes = extract()?;
    if let Some(path) = cached {
        // A cache that cannot be written only costs time.
        let _ = std::fs::create_dir_all(cache_dir).and_then(|()| std::fs::write(&path, &bytes));
    }
    Ok(bytes)
}

/// `$XDG_CACHE_HOME/modscope/btf` (or `~/.cache/…`, else `/tmp/…`).
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("modscope/btf")
}
