//! A kernel's BTF when that kernel is not running: taken out of its
//! compressed image (`/boot/vmlinuz-RELEASE`). The bzImage carries the
//! whole vmlinux ELF, compressed; its `.BTF` section is what we want.
//! Extraction takes seconds, so the result is cached per image.

use std::path::{Path, PathBuf};

use object::{Object as _, ObjectSection as _};

use super::ko_file;

#[derive(Debug, thiserror::Error)]
pub enum KernelBtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: crate::input::InputError,
    },
    #[error(
        "{path}: no compressed vmlinux with a .BTF section found in the image (kernel built without CONFIG_DEBUG_INFO_BTF?)"
    )]
    NotFound { path: String },
}

/// Compression magics bzImage payloads start with, and their names.
const MAGICS: [(&[u8], &str); 3] = [
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0x1f, 0x8b, 0x08], "gzip"),
];

/// The raw `.BTF` bytes of the vmlinux inside `image`.
pub fn extract_from_image(image: &Path) -> Result<Vec<u8>, KernelBtfError> {
    let shown = image.display().to_string();
    let limit = crate::input::limit::KERNEL_IMAGE;
    let data = crate::input::read_bounded(image, limit, "kernel image").map_err(|source| {
        KernelBtfError::Read {
            path: shown.clone(),
            source,
        }
    })?;
    if data.starts_with(b"\x7fELF")
        && let Some(btf) = btf_section(&data)
    {
        return Ok(btf);
    }
    // arm64's Image is the kernel uncompressed: its .BTF lies in it as is.
    if let Some(btf) = raw_btf_in(&data) {
        return Ok(btf);
    }
    for (magic, _) in MAGICS {
        for offset in find_all(&data, magic) {
            let Ok(elf) = ko_file::decompress_bounded(data[offset..].to_vec(), limit, true) else {
                continue;
            };
            if let Some(btf) = btf_section(&elf) {
                return Ok(btf);
            }
        }
    }
    Err(KernelBtfError::NotFound { path: shown })
}

/// BTF's header: magic 0xeb9f (little-endian), version 1, flags 0, and a
/// 24-byte header length.
const RAW_BTF_HEADER: [u8; 8] = [0x9f, 0xeb, 1, 0, 24, 0, 0, 0];

/// The largest well-formed BTF blob in `data` (vmlinux BTF is megabytes;
/// a stray match of the header bytes parses to nothing).
fn raw_btf_in(data: &[u8]) -> Option<Vec<u8>> {
    let word = |at: usize| -> Option<usize> {
        let b = data.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    find_all(data, &RAW_BTF_HEADER)
        .filter_map(|at| {
            let (type_off, type_len) = (word(at + 8)?, word(at + 12)?);
            let (str_off, str_len) = (word(at + 16)?, word(at + 20)?);
            let body = (type_off + type_len).max(str_off + str_len);
            let blob = data.get(at..at + 24 + body)?;
            btf_rs::Btf::from_bytes(blob).ok()?;
            Some(blob)
        })
        .max_by_key(|b| b.len())
        .map(<[u8]>::to_vec)
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

/// `extract_from_image`, cached under `cache_dir` by image name, size and mtime.
pub fn extract_cached(image: &Path, cache_dir: &Path) -> Result<Vec<u8>, KernelBtfError> {
    let cached: Option<PathBuf> = cache_key(image).map(|k| cache_dir.join(format!("{k}.btf")));
    if let Some(bytes) = cached.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return Ok(bytes);
    }
    let btf = extract_from_image(image)?;
    if let Some(path) = cached {
        // A cache that cannot be written only costs time.
        let _ = std::fs::create_dir_all(cache_dir).and_then(|()| std::fs::write(&path, &btf));
    }
    Ok(btf)
}

pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("modscope/btf")
}

fn btf_section(elf: &[u8]) -> Option<Vec<u8>> {
    let file = object::File::parse(elf).ok()?;
    let section = file.section_by_name(".BTF")?;
    section.data().ok().map(<[u8]>::to_vec)
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_lying_raw_in_an_uncompressed_image_is_found() {
        let btf = crate::btf::tests::one_int_btf();
        let mut image = b"MZ\x40\xfa ARM64 Image header".to_vec();
        // A stray header match that is no BTF, then the real blob.
        image.extend_from_slice(&RAW_BTF_HEADER);
        image.extend_from_slice(&[0xff; 64]);
        image.extend_from_slice(&btf);
        image.extend_from_slice(&[0u8; 128]);
        assert_eq!(raw_btf_in(&image), Some(btf));
        assert_eq!(raw_btf_in(b"no btf here at all"), None);
    }
}
