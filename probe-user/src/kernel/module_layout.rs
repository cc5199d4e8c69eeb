//! Offsets of the `struct module` fields the probes read, taken from a
//! kernel's BTF. Two layouts exist in the kernels we support:
//! - before 6.4: `core_layout` / `init_layout`, each a `struct module_layout`
//!   with `base` and `text_size`;
//! - since 6.4: `mem[MOD_MEM_NUM_TYPES]` of `struct module_memory` with
//!   `base` and `size`, indexed by `enum mod_mem_type` (MOD_TEXT,
//!   MOD_INIT_TEXT), whose values are read from BTF too.

use std::path::Path;

use btf_rs::{Btf, Type};
use modscope_analysis::btf::{
    BtfError, as_struct, enum_value, find_struct, has_member, member, resolve, scalar_width,
    struct_size, unexpected,
};
use probe_common::{LoadCheckConfig, ModuleLayout};

use super::module_views::ListLink;

pub fn module_layout_from_file(path: &Path) -> Result<ModuleLayout, BtfError> {
    Ok(layouts_from_file(path)?.module)
}

/// What a session reads from BTF about `struct module`, in one read.
pub struct Layouts {
    pub module: ModuleLayout,
    pub load_check: LoadCheckConfig,
    /// How the kernel's module list links its entries (`None` when BTF
    /// lacks `list`).
    pub list_link: Option<ListLink>,
}

/// `struct module`'s layout, the load check's settings and the list's link.
pub fn layouts_from_file(path: &Path) -> Result<Layouts, BtfError> {
    let btf = super::lean_btf::open(path)?;
    let module = module_layout(&btf)?;
    let list_link = find_struct(&btf, "module")
        .and_then(|m| member(&btf, &m, "module", "list"))
        .ok()
        .map(|(list, _)| ListLink {
            list_offset: u64::from(list),
            name_offset: u64::from(module.name),
        });
    Ok(Layouts {
        module,
        load_check: load_check(&btf),
        list_link,
    })
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

pub fn module_layout(btf: &Btf) -> Result<ModuleLayout, BtfError> {
    let module = find_struct(btf, "module")?;
    let (name, _) = member(btf, &module, "module", "name")?;
    let (taints, _) = member(btf, &module, "module", "taints")?;
    let (core_base, core_size, init_base, init_size, width) =
        if has_member(btf, &module, "core_layout")? {
            legacy_layout(btf, &module)?
        } else if has_member(btf, &module, "mem")? {
            mem_layout(btf, &module)?
        } else {
            return Err(BtfError::UnknownModuleLayout);
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

fn legacy_layout(btf: &Btf, module: &btf_rs::Struct) -> Result<Ranges, BtfError> {
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

fn mem_layout(btf: &Btf, module: &btf_rs::Struct) -> Result<Ranges, BtfError> {
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

#[cfg(test)]
#[path = "module_layout_tests.rs"]
mod tests;
