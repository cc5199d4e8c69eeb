//! Lookups in a kernel's BTF shared by the static analysis and the live
//! probe's layout reading: structs by name, members through anonymous
//! structs and unions, typedef chains, enum values. Bounded, so a corrupt
//! BTF cannot hang a lookup.

use btf_rs::{Btf, BtfType, Type};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading BTF from {path}: {source}")]
    Open { path: String, source: btf_rs::Error },
    #[error("reading BTF from {path}: {error}")]
    Elf { path: String, error: String },
    #[error("reading BTF from {path}: {source}")]
    Input {
        path: String,
        source: crate::input::InputError,
    },
    #[error("BTF lookup failed: {0}")]
    Lookup(#[from] btf_rs::Error),
    #[error("the kernel's BTF has no {0}")]
    Missing(String),
    #[error("{what} in the kernel's BTF is a {found}, expected {expected}")]
    Unexpected {
        what: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "struct module has neither core_layout/init_layout (before 6.4) nor mem[] (6.4 and later)"
    )]
    UnknownModuleLayout,
}

/// Reads a BTF file: a raw blob (`/sys/kernel/btf/vmlinux`, `pahole
/// --btf_encode_detached`) or an ELF file with a `.BTF` section (a vmlinux
/// after `pahole -J`; only its section headers and that section are read).
/// Every type and name is indexed: for many lookups (`check`, `diff`).
pub fn open(path: &std::path::Path) -> Result<Btf, BtfError> {
    let bytes = read_bytes(path)?;
    Btf::from_bytes(&bytes).map_err(|source| BtfError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// The BTF bytes of a raw BTF file, or of an ELF file's `.BTF` section.
pub fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>, BtfError> {
    use crate::input::{self, InputError};
    let name = path.display().to_string();
    let input = |source: InputError| BtfError::Input {
        path: name.clone(),
        source,
    };
    // An ELF vmlinux with its debug info can be a GiB: only its .BTF is read.
    let mut file = input::open_regular(path, u64::MAX, "BTF file").map_err(input)?;
    let mut magic = [0u8; 4];
    let is_elf = std::io::Read::read_exact(&mut file, &mut magic).is_ok() && magic == *b"\x7fELF";
    if !is_elf {
        return input::read_bounded(path, input::limit::KERNEL_IMAGE, "BTF file").map_err(input);
    }
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(|e| BtfError::Elf {
        path: name.clone(),
        error: e.to_string(),
    })?;
    let section = object::Object::section_by_name(&elf, ".BTF").ok_or_else(|| BtfError::Elf {
        path: name.clone(),
        error: "no .BTF section (run `pahole -J` on it, or give a raw BTF file)".into(),
    })?;
    if object::ObjectSection::size(&section) > crate::input::limit::KERNEL_IMAGE {
        return Err(BtfError::Elf {
            path: name,
            error: "a .BTF section larger than any kernel's".into(),
        });
    }
    object::ObjectSection::data(&section)
        .map(<[u8]>::to_vec)
        .map_err(|e| BtfError::Elf {
            path: name,
            error: e.to_string(),
        })
}

/// `sizeof(struct name)`, when BTF has the struct.
pub fn struct_size(btf: &Btf, name: &str) -> Option<u64> {
    find_struct(btf, name).ok().map(|s| s.size() as u64)
}

pub fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, BtfError> {
    btf.resolve_types_by_name(name)
        .ok()
        .into_iter()
        .flatten()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
}

/// Follows typedefs and qualifiers to the underlying type.
pub fn resolve(btf: &Btf, ty: &dyn BtfType) -> Result<Type, BtfError> {
    Ok(strip_qualifiers(btf, btf.resolve_chained_type(ty)?)?)
}

/// Follows typedefs, qualifiers and type tags from `t` to the type they
/// name. Bounded, so a cyclic chain in a corrupt BTF cannot hang us.
pub fn strip_qualifiers(btf: &Btf, mut t: Type) -> Result<Type, btf_rs::Error> {
    for _ in 0..16 {
        t = match &t {
            Type::Typedef(x) => btf.resolve_chained_type(x)?,
            Type::Const(x) | Type::Volatile(x) | Type::Restrict(x) => {
                btf.resolve_chained_type(x)?
            }
            Type::TypeTag(x) => btf.resolve_chained_type(x)?,
            _ => return Ok(t),
        };
    }
    Ok(t)
}

/// Byte offset and resolved type of `name` in `s`, looking through
/// anonymous struct and union members as C does.
pub fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    name: &str,
) -> Result<Option<(u32, Type)>, BtfError> {
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        let ty = resolve(btf, m)?;
        if member_name == name {
            return Ok(Some((m.bit_offset() / 8, ty)));
        }
        if member_name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = &ty
            && let Some((off, t)) = find_member(btf, inner, name)?
        {
            return Ok(Some((m.bit_offset() / 8 + off, t)));
        }
    }
    Ok(None)
}

pub fn has_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<bool, BtfError> {
    Ok(find_member(btf, s, name)?.is_some())
}

/// `owner.name`'s offset and type; missing is an error that names it.
pub fn member(
    btf: &Btf,
    s: &btf_rs::Struct,
    owner: &str,
    name: &str,
) -> Result<(u32, Type), BtfError> {
    find_member(btf, s, name)?.ok_or_else(|| BtfError::Missing(format!("{owner}.{name}")))
}

pub fn as_struct(ty: Type, what: &str) -> Result<btf_rs::Struct, BtfError> {
    match ty {
        Type::Struct(s) => Ok(s),
        other => Err(unexpected(what, &other, "struct")),
    }
}

/// The width of a 4- or 8-byte integer member.
pub fn scalar_width(ty: &Type, what: &str) -> Result<u32, BtfError> {
    match ty {
        Type::Int(i) if i.size() == 4 || i.size() == 8 => Ok(i.size() as u32),
        other => Err(unexpected(what, other, "4- or 8-byte integer")),
    }
}

pub fn enum_value(btf: &Btf, enum_name: &str, value: &str) -> Result<u32, BtfError> {
    for t in btf.resolve_types_by_name(enum_name).unwrap_or_default() {
        if let Type::Enum(e) = t {
            for m in &e.members {
                if btf.resolve_name(m)? == value {
                    return Ok(m.val());
                }
            }
        }
    }
    Err(BtfError::Missing(format!("enum {enum_name} value {value}")))
}

pub fn unexpected(what: &str, found: &Type, expected: &'static str) -> BtfError {
    BtfError::Unexpected {
        what: what.to_owned(),
        found: found.name(),
        expected,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BTF blob with one type, `int` (BTF_KIND_INT, 4 bytes, 32 bits).
    pub fn one_int_btf() -> Vec<u8> {
        let strings = b"\0int\0";
        let mut types = Vec::new();
        for word in [1u32, 1 << 24, 4, 32] {
            types.extend_from_slice(&word.to_le_bytes());
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    fn has_int(btf: &Btf) -> bool {
        btf.resolve_types_by_name("int")
            .is_ok_and(|t| !t.is_empty())
    }

    #[test]
    fn btf_is_read_raw_or_from_an_elf_files_btf_section() {
        use object::write::{Object, StandardSection};
        let dir = std::env::temp_dir().join(format!("modscope-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("vmlinux.btf");
        std::fs::write(&raw, one_int_btf()).unwrap();
        assert!(has_int(&open(&raw).unwrap()));

        let mut elf = Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::Aarch64,
            object::Endianness::Little,
        );
        let section = elf.add_section(
            Vec::new(),
            b".BTF".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        elf.append_section_data(section, &one_int_btf(), 1);
        let _ = elf.section_id(StandardSection::Text);
        let vmlinux = dir.join("vmlinux");
        std::fs::write(&vmlinux, elf.write().unwrap()).unwrap();
        assert!(has_int(&open(&vmlinux).unwrap()));

        let mut bare = Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let _ = bare.section_id(StandardSection::Text);
        let stripped = dir.join("stripped");
        std::fs::write(&stripped, bare.write().unwrap()).unwrap();
        let Err(err) = open(&stripped) else {
            panic!("an ELF without .BTF is an error");
        };
        let err = err.to_string();
        assert!(
            err.contains("no .BTF section") && err.contains("pahole -J"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
