//! Reading one kernel module file: decompressing it, checking it is an
//! x86-64 relocatable module, and extracting what the compatibility checks
//! need. Nothing in the file is trusted: every failure is a [`KoError`]
//! naming the problem.

use std::{borrow::Cow, path::Path};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use super::{
    input::{self, InputError},
    modinfo::Modinfo,
};

#[derive(Debug, thiserror::Error)]
pub enum KoError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad {format} compression: {detail}")]
    Compression {
        format: &'static str,
        detail: String,
    },
    #[error("not an ELF file")]
    NotElf,
    /// Not a regular file, or larger than any module.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("corrupt ELF: {0}")]
    Elf(String),
    #[error("not a kernel module: {0}")]
    NotAModule(&'static str),
    #[error("built for {found}, not {expected}")]
    WrongArchitecture {
        found: String,
        expected: &'static str,
    },
}

/// An import with the CRC the module was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedImport<'a> {
    pub name: Cow<'a, str>,
    pub crc: u32,
}

/// Everything `check` reads from a module.
#[derive(Debug, Clone, Default)]
pub struct ModuleFacts<'a> {
    pub modinfo: Modinfo<'a>,
    /// `__versions` (or the extended modversions sections of newer kernels).
    pub versions: Vec<VersionedImport<'a>>,
    /// Whether the module has a symbol-version table at all (`same_magic`'s `has_crcs`).
    pub has_versions: bool,
    /// Undefined symbols: what the loader must resolve.
    pub imports: Vec<&'a str>,
    /// Size of `.gnu.linkonce.this_module`: the module's compiled-in `struct module`.
    pub this_module_size: u64,
    /// Size of the module's own `.BTF` section (0: none).
    pub btf_size: u64,
    /// Entries in `__mcount_loc` / `__patchable_function_entries`: ftrace call sites.
    pub ftrace_sites: u64,
    /// Tracepoints the module defines (`__tracepoint_*` symbols in `__tracepoints`).
    pub defined_tracepoints: Vec<&'a str>,
    /// A module signature is appended (`~Module signature appended~`).
    pub signed: bool,
    /// The machine the object was compiled for (`e_machine`).
    pub machine: Machine,
    /// Damage to the symbol table, one sentence each (names past the
    /// string table, sections that do not exist): the loader would read
    /// past its tables, so it is a reason, never imports silently dropped.
    pub symbol_damage: Vec<String>,
}

/// The architectures modscope reads modules of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Machine {
    #[default]
    X86_64,
    Aarch64,
}

impl Machine {
    /// The name the kernel's `uname -m` uses.
    pub fn uname(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }
}

impl ModuleFacts<'_> {
    pub fn name(&self) -> Option<&str> {
        self.modinfo.get("name")
    }
}

/// Reads and decompresses `path`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, KoError> {
    use std::io::Read as _;
    let mut raw = Vec::new();
    open_module_file(path)?
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut raw)?;
    decompress_module(raw)
}

/// The largest module file, on disk or decompressed, that is read: past it
/// a file is refused, so a compression bomb costs at most this much memory.
pub const MAX_MODULE_BYTES: u64 = input::limit::MODULE;

fn too_large(what: &'static str, limit: u64) -> KoError {
    KoError::Input(InputError::TooLarge {
        what,
        kind: "kernel module",
        limit,
    })
}

/// Opens a module file only if it is a regular file of a plausible size.
fn open_module_file(path: &Path) -> Result<std::fs::File, KoError> {
    Ok(input::open_regular(
        path,
        MAX_MODULE_BYTES,
        "kernel module",
    )?)
}

/// A module image from its file's bytes: decompressed up to
/// `MAX_MODULE_BYTES`, and refused as soon as its first bytes are not ELF.
pub fn decompress_module(raw: Vec<u8>) -> Result<Vec<u8>, KoError> {
    decompress_bounded(raw, MAX_MODULE_BYTES, true)
}

/// Decompresses by magic number, not by file name (a `.ko.xz` that is not
/// xz is reported as such), at most `limit` bytes; with `elf`, stops at the
/// first four bytes when they are not ELF's magic.
pub(crate) fn decompress_bounded(raw: Vec<u8>, limit: u64, elf: bool) -> Result<Vec<u8>, KoError> {
    use std::io::Read as _;
    let Some((format, mut reader)) = decoder(&raw)? else {
        if raw.len() as u64 > limit {
            return Err(too_large("the file is", limit));
        }
        return Ok(raw);
    };
    let bad = |e: std::io::Error| KoError::Compression {
        format,
        detail: e.to_string(),
    };
    let mut out = Vec::new();
    if elf {
        reader.by_ref().take(4).read_to_end(&mut out).map_err(bad)?;
        if out != b"\x7fELF" {
            return Err(KoError::NotElf);
        }
    }
    reader
        .take(limit + 1 - out.len() as u64)
        .read_to_end(&mut out)
        .map_err(bad)?;
    if out.len() as u64 > limit {
        return Err(too_large("decompressed, it is", limit));
    }
    Ok(out)
}

/// A compressed ELF file as a stream of its decompressed bytes, at most
/// `limit` of them, so that it is never held whole; `None` when `raw` is
/// not compressed or does not decompress to ELF's magic.
pub(crate) fn elf_stream(raw: &[u8], limit: u64) -> Option<impl std::io::Read + '_> {
    use std::io::Read as _;
    let (_, mut reader) = decoder(raw).ok()??;
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).ok()?;
    (&magic == b"\x7fELF").then(|| std::io::Cursor::new(magic).chain(reader).take(limit))
}

/// The decompressor `raw`'s magic number names, with the format's name;
/// `None` for bytes that are not compressed.
type Decoder<'a> = (&'static str, Box<dyn std::io::Read + 'a>);

fn decoder(raw: &[u8]) -> Result<Option<Decoder<'_>>, KoError> {
    Ok(Some(
        if raw.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            // One stream: a kernel image's payload has other bytes after it
            // (the size, padding), and a module file has one stream only.
            ("xz", Box::new(lzma_rust2::XzReader::new(raw, false)))
        } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let d =
                ruzstd::decoding::StreamingDecoder::new(raw).map_err(|e| KoError::Compression {
                    format: "zstd",
                    detail: e.to_string(),
                })?;
            ("zstd", Box::new(d))
        } else if raw.starts_with(&[0x1f, 0x8b]) {
            ("gzip", Box::new(flate2::read::GzDecoder::new(raw)))
        } else {
            return Ok(None);
        },
    ))
}

/// Decompresses by magic number, whole (tests of the formats).
#[cfg(test)]
pub fn decompress(raw: Vec<u8>) -> Result<Vec<u8>, KoError> {
    decompress_bounded(raw, UNBOUNDED, false)
}

/// No bound for `decompress_bounded` (leaves room for its `limit + 1`).
#[cfg(test)]
const UNBOUNDED: u64 = u64::MAX / 2;

/// Reads `path` and hands its facts to `f`. Uncompressed modules are read
/// section by section, only the parts parsed (headers, .modinfo, version
/// tables, symbols): a few percent of a typical module. Compressed ones are
/// decompressed whole. With `whole`, every module is read whole and `f`
/// gets the image too (to verify its signature). The facts borrow from
/// what was read, so they live only as long as the call.
pub fn with_module<T>(
    path: &Path,
    whole: bool,
    f: impl FnOnce(&ModuleFacts<'_>, Option<&[u8]>) -> T,
) -> Result<T, KoError> {
    use std::io::Read as _;
    let file = open_module_file(path)?;
    if !whole && let Some(sparse) = super::sparse_elf::SparseFile::open(&file)? {
        return Ok(f(&parse(&sparse)?, None));
    }
    let mut raw = Vec::new();
    file.take(MAX_MODULE_BYTES + 1).read_to_end(&mut raw)?;
    let data = decompress_module(raw)?;
    Ok(f(&parse(&data[..])?, Some(&data)))
}

/// One section's contents, reading (and decompressing) the whole file.
pub fn read_section(path: &Path, name: &str) -> Result<Option<Vec<u8>>, KoError> {
    let data = read_bytes(path)?;
    let file = object::File::parse(&data[..]).map_err(|e| KoError::Elf(e.to_string()))?;
    match file.section_by_name(name) {
        Some(s) => s
            .data()
            .map(|d| Some(d.to_vec()))
            .map_err(|e| KoError::Elf(format!("section {name}: {e}"))),
        None => Ok(None),
    }
}

/// The sections `parse` looks at.
const SECTIONS: [&str; 9] = [
    ".modinfo",
    ".gnu.linkonce.this_module",
    "__versions",
    "__version_ext_names",
    "__version_ext_crcs",
    "__mcount_loc",
    "__patchable_function_entries",
    "__tracepoints",
    ".BTF",
];

const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";

/// Parses an (uncompressed) module image.
pub fn parse<'a, R: object::ReadRef<'a>>(data: R) -> Result<ModuleFacts<'a>, KoError> {
    let (file, signed, machine) = open_object(data)?;
    // One pass over the section headers, remembering the ones we use.
    let mut wanted: [Option<object::Section<'a, '_, R>>; SECTIONS.len()] = Default::default();
    for section in file.sections() {
        if let Ok(name) = section.name()
            && let Some(i) = SECTIONS.iter().position(|s| *s == name)
        {
            wanted[i].get_or_insert(section);
        }
    }
    let get = |name: &str| {
        wanted[SECTIONS
            .iter()
            .position(|s| *s == name)
            .expect("listed in SECTIONS")]
        .as_ref()
    };
    let section_data = |name: &str| -> Result<Option<&'a [u8]>, KoError> {
        match get(name) {
            Some(s) => s
                .data()
                .map(Some)
                .map_err(|e| KoError::Elf(format!("section {name}: {e}"))),
            None => Ok(None),
        }
    };
    let modinfo = Modinfo::parse(
        section_data(".modinfo")?.ok_or(KoError::NotAModule("no .modinfo section"))?,
    );
    let this_module_size = get(".gnu.linkonce.this_module")
        .ok_or(KoError::NotAModule("no .gnu.linkonce.this_module section"))?
        .size();
    let (versions, has_versions) = symbol_versions(
        section_data("__version_ext_names")?,
        section_data("__version_ext_crcs")?,
        || section_data("__versions"),
    )?;
    let imports = file
        .symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().filter(|n| !n.is_empty()))
        .collect();
    let symbol_damage = symbol_damage(&file);
    let ftrace_sites = ["__mcount_loc", "__patchable_function_entries"]
        .iter()
        .filter_map(|n| get(n))
        .map(|s| s.size() / 8)
        .sum();
    let tracepoints_index = get("__tracepoints").map(|s| s.index());
    let defined_tracepoints = file
        .symbols()
        .filter(|s| tracepoints_index.is_some() && s.section_index() == tracepoints_index)
        .filter_map(|s| s.name().ok().and_then(|n| n.strip_prefix("__tracepoint_")))
        .collect();
    Ok(ModuleFacts {
        modinfo,
        versions,
        has_versions,
        imports,
        this_module_size,
        btf_size: get(".BTF").map_or(0, |s| s.size()),
        ftrace_sites,
        defined_tracepoints,
        signed,
        machine,
        symbol_damage,
    })
}

/// What is wrong with the symbol table: symbols whose name does not lie in
/// the string table, and symbols in a section index past the section
/// headers (not one of the reserved indices).
fn symbol_damage<'a, R: object::ReadRef<'a>>(file: &object::File<'a, R>) -> Vec<String> {
    let sections = file.sections().count();
    let (mut unnamed, mut homeless) = (0usize, 0usize);
    for s in file.symbols() {
        unnamed += usize::from(s.name_bytes().is_err());
        homeless += usize::from(s.section_index().is_some_and(|i| i.0 >= sections));
    }
    let mut damage = Vec::new();
    if unnamed > 0 {
        damage.push(format!(
            "{unnamed} symbols have a name outside the string table"
        ));
    }
    if homeless > 0 {
        damage.push(format!(
            "{homeless} symbols are in sections that do not exist (of {sections})"
        ));
    }
    damage
}

fn machine_of(arch: object::Architecture) -> Option<Machine> {
    match arch {
        object::Architecture::X86_64 => Some(Machine::X86_64),
        object::Architecture::Aarch64 => Some(Machine::Aarch64),
        _ => None,
    }
}

/// Checks the magic, notes the appended signature, and parses the ELF: a
/// relocatable x86-64 or arm64 object, or an error that says what it is instead.
fn open_object<'a, R: object::ReadRef<'a>>(
    data: R,
) -> Result<(object::File<'a, R>, bool, Machine), KoError> {
    let len = data
        .len()
        .map_err(|()| KoError::Elf("cannot read the file's length".into()))?;
    if data.read_bytes_at(0, 4).ok() != Some(b"\x7fELF".as_slice()) {
        return Err(KoError::NotElf);
    }
    let marker = SIGNATURE_MARKER.len() as u64;
    let signed =
        len >= marker && data.read_bytes_at(len - marker, marker).ok() == Some(SIGNATURE_MARKER);
    let file = object::File::parse(data).map_err(|e| KoError::Elf(e.to_string()))?;
    let machine = machine_of(file.architecture()).ok_or_else(|| KoError::WrongArchitecture {
        found: format!("{:?}", file.architecture()),
        expected: "x86-64 or arm64",
    })?;
    if file.kind() != object::ObjectKind::Relocatable {
        return Err(KoError::NotAModule("not a relocatable object (ET_REL)"));
    }
    Ok((file, signed, machine))
}

/// The CRCs of the imports: the extended tables (6.12's
/// `__version_ext_*`), else the classic `__versions` (read only then);
/// with whether the
/// module has symbol versions at all.
fn symbol_versions<'a>(
    ext_names: Option<&'a [u8]>,
    ext_crcs: Option<&'a [u8]>,
    classic: impl FnOnce() -> Result<Option<&'a [u8]>, KoError>,
) -> Result<(Vec<VersionedImport<'a>>, bool), KoError> {
    Ok(match (ext_names, ext_crcs) {
        (Some(names), Some(crcs)) => (extended_versions(names, crcs)?, true),
        _ => match classic()? {
            Some(v) => (classic_versions(v)?, true),
            None => (Vec::new(), false),
        },
    })
}

/// `struct modversion_info { unsigned long crc; char name[56]; }`, 64 bytes.
fn classic_versions(section: &[u8]) -> Result<Vec<VersionedImport<'_>>, KoError> {
    const ENTRY: usize = 64;
    if !section.len().is_multiple_of(ENTRY) {
        return Err(KoError::Elf(format!(
            "__versions is {} bytes, not a multiple of {ENTRY}",
            section.len()
        )));
    }
    Ok(section
        .chunks_exact(ENTRY)
        .map(|e| {
            let crc = u64::from_le_bytes(e[..8].try_into().expect("8 bytes")) as u32;
            VersionedImport {
                name: c_string(&e[8..]),
                crc,
            }
        })
        .collect())
}

/// Extended modversions (6.13+): NUL-separated names, and one u32 CRC each.
fn extended_versions<'a>(
    names: &'a [u8],
    crcs: &[u8],
) -> Result<Vec<VersionedImport<'a>>, KoError> {
    let names: Vec<Cow<'a, str>> = names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    if crcs.len() != names.len() * 4 {
        return Err(KoError::Elf(format!(
            "__version_ext_crcs holds {} bytes for {} names in __version_ext_names",
            crcs.len(),
            names.len()
        )));
    }
    Ok(names
        .into_iter()
        .zip(crcs.chunks_exact(4))
        .map(|(name, crc)| VersionedImport {
            name,
            crc: u32::from_le_bytes(crc.try_into().expect("4 bytes")),
        })
        .collect())
}

fn c_string(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_version_tables_are_errors() {
        let err = classic_versions(&[0u8; 65]).unwrap_err();
        assert!(err.to_string().contains("not a multiple of 64"), "{err}");
        let err = extended_versions(b"a\0b\0", &[0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("4 bytes for 2 names"), "{err}");
    }

    #[test]
    fn classic_entry_reads_crc_and_name() {
        let mut entry = [0u8; 64];
        entry[..8].copy_from_slice(&0x1234_5678u64.to_le_bytes());
        entry[8..13].copy_from_slice(b"kfree");
        assert_eq!(
            classic_versions(&entry).unwrap(),
            vec![VersionedImport {
                name: "kfree".into(),
                crc: 0x1234_5678
            }]
        );
    }
}
