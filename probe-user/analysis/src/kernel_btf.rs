//! A kernel's BTF when that kernel is not running: taken out of its
//! compressed image (`/boot/vmlinuz-RELEASE`). The bzImage carries the
//! whole vmlinux ELF, compressed; its `.BTF` section is what we want.
//! Extraction takes seconds, so the result is cached per image.

use std::path::Path;

use object::{Object as _, ObjectSection as _};

use super::kernel_image;

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

/// The raw `.BTF` bytes of the vmlinux inside `image`.
pub fn extract_from_image(image: &Path) -> Result<Vec<u8>, KernelBtfError> {
    let shown = image.display().to_string();
    let data = kernel_image::read(image).map_err(|source| KernelBtfError::Read {
        path: shown.clone(),
        source,
    })?;
    // An ELF vmlinux has a .BTF section; arm64's Image is the kernel
    // uncompressed, its .BTF lying in it as is.
    kernel_image::find_in(&data, |bytes| {
        btf_section(bytes).or_else(|| raw_btf_in(bytes))
    })
    .ok_or(KernelBtfError::NotFound { path: shown })
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
    kernel_image::find_all(data, &RAW_BTF_HEADER)
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

/// `extract_from_image`, cached under `cache_dir` by image name, size and mtime.
pub fn extract_cached(image: &Path, cache_dir: &Path) -> Result<Vec<u8>, KernelBtfError> {
    kernel_image::cached(image, cache_dir, "btf", || extract_from_image(image))
}

fn btf_section(elf: &[u8]) -> Option<Vec<u8>> {
    let file = object::File::parse(elf).ok()?;
    let section = file.section_by_name(".BTF")?;
    section.data().ok().map(<[u8]>::to_vec)
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
