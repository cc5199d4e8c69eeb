//! Offsets of the `struct module` fields the probes read, taken from a
//! kernel's BTF. Two layouts exist in the kernels we support:
//! - before 6.4: `core_layout` / `init_layout`, each a `struct module_layout`
//!   with `base` and `text_size`;
//! - since 6.4: `mem[MOD_MEM_NUM_TYPES]` of `struct module_memory` with
//!   `base` and `size`, indexed by `enum mod_mem_type` (MOD_TEXT,
//!   MOD_INIT_TEXT), whose values are read from BTF too.

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use probe_common::{LoadCheckConfig, ModuleLayout};

#[derive(Debug, thiserror::Error)]
pub enum BtfLayoutError {
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

pub fn module_layout_from_file(path: &Path) -> Result<ModuleLayout, BtfLayoutError> {
    Ok(layouts_from_file(path)?.0)
}

/// `struct module`'s layout and the load check's settings, from one read.
pub fn layouts_from_file(path: &Path) -> Result<(ModuleLayout, LoadCheckConfig), BtfLayoutError> {
    let btf = Btf::from_file(path).map_err(|source| BtfLayoutError::Open {
        path: path.display().to_string(),
        source,
    })?;
    Ok((module_layout(&btf)?, load_check(&btf)))
}

/// What the load-time layout check needs (`probe_common::LoadCheckConfig`):
/// `load_info.hdr`/`len` and `sizeof(struct module)`. Off (UNSET) when BTF
/// lacks `struct load_info`.
pub fn load_check(btf: &Btf) -> LoadCheckConfig {
    let offsets = find_struct(btf, "load_info").ok().and_then(|info| {
        let (hdr, _) = member(btf, &info, "load_info", "hdr").ok()?;
        let (len, _) = member(btf, &info, "load_info", "len").ok()?;
        Some((hdr, len))
    });
    match (offsets, struct_size(btf, "module")) {
        (Some((info_hdr, info_len)), Some(size)) => LoadCheckConfig {
            info_hdr,
            info_len,
            struct_module_size: size,
        },
        _ => LoadCheckConfig::UNSET,
    }
}

pub fn module_layout(btf: &Btf) -> Result<ModuleLayout, BtfLayoutError> {
    let module = find_struct(btf, "module")?;
    let (name, _) = member(btf, &module, "module", "name")?;
    let (taints, _) = member(btf, &module, "module", "taints")?;
    let (core_base, core_size, init_base, init_size, width) =
        if has_member(btf, &module, "core_layout")? {
            legacy_layout(btf, &module)?
        } else if has_member(btf, &module, "mem")? {
            mem_layout(btf, &module)?
        } else {
            return Err(BtfLayoutError::UnknownModuleLayout);
        };
    Ok(ModuleLayout {
        valid: 1,
        name,
        taints,
        core_text_base: core_base,
        core_text_size: core_size,
        init_text_base: init_base,
        init_text_size: init_size,
        text_size_width: width,
    })
}

type Ranges = (u32, u32, u32, u32, u32);

fn legacy_layout(btf: &Btf, module: &btf_rs::Struct) -> Result<Ranges, BtfLayoutError> {
    let (core, core_ty) = member(btf, module, "module", "core_layout")?;
    let (init, _) = member(btf, module, "module", "init_layout")?;
    let layout = as_struct(core_ty, "module.core_layout")?;
    let (base, _) = member(btf, &layout, "module_layout", "base")?;
    let (text_size, size_ty) = member(btf, &layout, "module_layout", "text_size")?;
    let width = scalar_width(&size_ty, "module_layout.text_size")?;
    Ok((
        core + base,
        core + text_size,
        init + base,
        init + text_size,
        width,
    ))
}

fn mem_layout(btf: &Btf, module: &btf_rs::Struct) -> Result<Ranges, BtfLayoutError> {
    let (mem, mem_ty) = member(btf, module, "module", "mem")?;
    let Type::Array(array) = mem_ty else {
        return Err(unexpected("module.mem", &mem_ty, "array"));
    };
    let elem = as_struct(resolve(btf, &array)?, "module.mem[]")?;
    let stride = elem.size() as u32;
    let (base, _) = member(btf, &elem, "module_memory", "base")?;
    let (size, size_ty) = member(btf, &elem, "module_memory", "size")?;
    let width = scalar_width(&size_ty, "module_memory.size")?;
    let text = enum_value(btf, "mod_mem_type", "MOD_TEXT")?;
    let init_text = enum_value(btf, "mod_mem_type", "MOD_INIT_TEXT")?;
    let at = |index: u32| mem + index * stride;
    Ok((
        at(text) + base,
        at(text) + size,
        at(init_text) + base,
        at(init_text) + size,
        width,
    ))
}

/// `sizeof(struct name)`, when BTF has the struct.
pub fn struct_size(btf: &Btf, name: &str) -> Option<u64> {
    find_struct(btf, name).ok().map(|s| s.size() as u64)
}

pub(crate) fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, BtfLayoutError> {
    btf.resolve_types_by_name(name)
        .ok()
        .into_iter()
        .flatten()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(|| BtfLayoutError::Missing(format!("struct {name}")))
}

/// Follows typedefs and qualifiers to the underlying type.
fn resolve(btf: &Btf, ty: &dyn BtfType) -> Result<Type, BtfLayoutError> {
    Ok(strip_qualifiers(btf, btf.resolve_chained_type(ty)?)?)
}

/// Follows typedefs, qualifiers and type tags from `t` to the type they
/// name. Bounded, so a cyclic chain in a corrupt BTF cannot hang us.
pub(crate) fn strip_qualifiers(btf: &Btf, mut t: Type) -> Result<Type, btf_rs::Error> {
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
fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    name: &str,
) -> Result<Option<(u32, Type)>, BtfLayoutError> {
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

fn has_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<bool, BtfLayoutError> {
    Ok(find_member(btf, s, name)?.is_some())
}

fn member(
    btf: &Btf,
    s: &btf_rs::Struct,
    owner: &str,
    name: &str,
) -> Result<(u32, Type), BtfLayoutError> {
    find_member(btf, s, name)?.ok_or_else(|| BtfLayoutError::Missing(format!("{owner}.{name}")))
}

fn as_struct(ty: Type, what: &str) -> Result<btf_rs::Struct, BtfLayoutError> {
    match ty {
        Type::Struct(s) => Ok(s),
        other => Err(unexpected(what, &other, "struct")),
    }
}

fn scalar_width(ty: &Type, what: &str) -> Result<u32, BtfLayoutError> {
    match ty {
        Type::Int(i) if i.size() == 4 || i.size() == 8 => Ok(i.size() as u32),
        other => Err(unexpected(what, other, "4- or 8-byte integer")),
    }
}

fn enum_value(btf: &Btf, enum_name: &str, value: &str) -> Result<u32, BtfLayoutError> {
    for t in btf.resolve_types_by_name(enum_name).unwrap_or_default() {
        if let Type::Enum(e) = t {
            for m in &e.members {
                if btf.resolve_name(m)? == value {
                    return Ok(m.val());
                }
            }
        }
    }
    Err(BtfLayoutError::Missing(format!(
        "enum {enum_name} value {value}"
    )))
}

fn unexpected(what: &str, found: &Type, expected: &'static str) -> BtfLayoutError {
    BtfLayoutError::Unexpected {
        what: what.to_owned(),
        found: found.name(),
        expected,
    }
}

#[cfg(test)]
#[path = "btf_layout_tests.rs"]
mod tests;
