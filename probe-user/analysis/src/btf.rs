//! Lookups in a kernel's BTF shared by the static analysis and the live
//! probe's layout reading: structs by name, members through anonymous
//! structs and unions, typedef chains, enum values. Bounded, so a corrupt
//! BTF cannot hang a lookup.

use btf_rs::{Btf, BtfType, Type};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading BTF from {path}: {source}")]
    Open { path: String, source: btf_rs::Error },
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

/// Reads a BTF file (`/sys/kernel/btf/vmlinux` or one extracted from an image).
pub fn open(path: &std::path::Path) -> Result<Btf, BtfError> {
    Btf::from_file(path).map_err(|source| BtfError::Open {
        path: path.display().to_string(),
        source,
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
