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
        source: std::io::Error,
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
    let data = std::fs::read(image).map_err(|source| KernelBtfError::Read {
        path: shown.clone(),
        source,
    })?;
    if data.starts_with(b"\x7fELF")
        && let Some(btf) = btf_section(&data)
    {
        return Ok(btf);
    }
    for (magic, _) in MAGICS {
        for offset in find_all(&data, magic) {
            let Ok(elf) = ko_file::decompress(data[offset..].to_vec()) else {
                continue;
            };
            if let Some(btf) = btf_section(&elf) {
                return Ok(btf);
            }
        }
    }
    Err(KernelBtfError::NotFound { path: shown })
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
