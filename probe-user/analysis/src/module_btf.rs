//! A module's own BTF, held against the target kernel. Module BTF is split
//! BTF on top of the vmlinux BTF of the kernel the module was built for, so
//! that kernel's BTF is the base; the kernel structs the module's own types
//! embed or point to are then compared between the build kernel and the
//! target. A struct embedded by value whose layout moved is memory
//! corruption waiting to happen; one reached through a pointer is a risk
//! only if the module dereferences it.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, Mutex, OnceLock},
};

use btf_rs::{Btf, Type};

use super::{
    kernel_btf, kernel_image,
    struct_layout::{self, StructChange},
    target::TargetKernel,
    verdict::{Code, Reason, Severity},
};

/// How the module's types reach a kernel struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Pointer,
    ByValue,
}

/// Follows typedefs and qualifiers; what cannot be resolved reaches nothing.
fn strip(btf: &Btf, t: Type) -> Type {
    crate::btf::strip_qualifiers(btf, t).unwrap_or(Type::Void)
}

/// The named struct a type is or points to, and how.
fn struct_of(btf: &Btf, t: Type) -> Option<(String, Reach)> {
    match strip(btf, t) {
        Type::Struct(s) => btf
            .resolve_name(&s)
            .ok()
            .filter(|n| !n.is_empty())
            .map(|n| (n, Reach::ByValue)),
        Type::Array(a) => struct_of(btf, btf.resolve_chained_type(&a).ok()?),
        Type::Ptr(p) => match strip(btf, btf.resolve_chained_type(&p).ok()?) {
            Type::Struct(s) => btf
                .resolve_name(&s)
                .ok()
                .filter(|n| !n.is_empty())
                .map(|n| (n, Reach::Pointer)),
            _ => None,
        },
        _ => None,
    }
}

/// Kernel structs referenced from the module's own struct members,
/// function parameters and variables, with the strongest reach seen.
pub fn referenced_structs(split: &Btf) -> BTreeMap<String, Reach> {
    let mut out: BTreeMap<String, Reach> = BTreeMap::new();
    let mut note = |found: Option<(String, Reach)>| {
        if let Some((name, reach)) = found {
            let e = out.entry(name).or_insert(reach);
            *e = (*e).max(reach);
        }
    };
    let mut own = Vec::new();
    let Some(section) = split.split() else {
        return out;
    };
    for t in struct_layout::types(split, section) {
        match &t {
            Type::Struct(s) | Type::Union(s) => {
                if let Ok(name) = split.resolve_name(s) {
                    own.push(name);
                }
                for m in &s.members {
                    note(
                        split
                            .resolve_chained_type(m)
                            .ok()
                            .and_then(|t| struct_of(split, t)),
                    );
                }
            }
            Type::FuncProto(f) => {
                for p in &f.parameters {
                    note(
                        split
                            .resolve_chained_type(p)
                            .ok()
                            .and_then(|t| struct_of(split, t)),
                    );
                }
            }
            Type::Var(v) => note(
                split
                    .resolve_chained_type(v)
                    .ok()
                    .and_then(|t| struct_of(split, t)),
            ),
            _ => {}
        }
    }
    // The module's own structs are not the kernel's to compare.
    for name in own {
        out.remove(&name);
    }
    out
}

/// Base BTFs of build kernels, loaded once per process.
fn base_btf(release: &str) -> Result<Arc<Btf>, String> {
    type Loaded = Result<Arc<Btf>, String>;
    static CACHE: OnceLock<Mutex<HashMap<String, Loaded>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().expect("BTF cache lock");
    map.entry(release.to_owned())
        .or_insert_with(|| {
            let image = format!("/boot/vmlinuz-{release}");
            let bytes =
                kernel_btf::extract_cached(Path::new(&image), &kernel_image::default_cache_dir())
                    .map_err(|e| e.to_string())?;
            Btf::from_bytes(&bytes)
                .map(Arc::new)
                .map_err(|e| format!("{image}: {e}"))
        })
        .clone()
}

/// Reasons from the module's BTF, or nothing when there is nothing to
/// compare (no BTF, or built for the target itself).
pub fn reasons(module_btf: &[u8], build_release: &str, target: &TargetKernel) -> Vec<Reason> {
    if build_release == target.release {
        return Vec::new();
    }
    let (base, target_btf) = match (base_btf(build_release), target.btf().map_err(str::to_owned)) {
        (Ok(b), Ok(t)) => (b, t),
        (Err(e), _) | (_, Err(e)) => {
            return vec![Reason::new(
                Code::BtfBaseUnavailable,
                Severity::Info,
                format!("the module carries BTF, but it cannot be compared: {e}"),
            )];
        }
    };
    let split = match Btf::from_split_bytes(module_btf, &base) {
        Ok(s) => s,
        Err(e) => {
            return vec![Reason::new(
                Code::BtfBaseUnavailable,
                Severity::Info,
                format!("the module's BTF does not parse over {build_release}'s vmlinux BTF: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    let refs = referenced_structs(&split);
    for (name, reach) in refs {
        let (Some(a), Some(b)) = (
            struct_layout::layout(&base, &name),
            struct_layout::layout(target_btf, &name),
        ) else {
            continue;
        };
        if let Some(change) = struct_layout::compare(&name, &a, &b) {
            out.push(reason(&change, reach, build_release));
        }
    }
    out
}

fn reason(c: &StructChange, reach: Reach, build_release: &str) -> Reason {
    let mut what = Vec::new();
    if c.size_a != c.size_b {
        what.push(format!("{} -> {} bytes", c.size_a, c.size_b));
    }
    if !c.moved.is_empty() {
        what.push(format!("{} members moved", c.moved.len()));
    }
    if !c.only_in_a.is_empty() || !c.only_in_b.is_empty() {
        what.push(format!(
            "members differ ({} gone, {} new)",
            c.only_in_a.len(),
            c.only_in_b.len()
        ));
    }
    let (severity, how) = match reach {
        Reach::ByValue => (Severity::Incompatible, "embeds"),
        Reach::Pointer => (Severity::Warning, "points to"),
    };
    let mut r = Reason::new(Code::BtfStructLayout, severity, format!(
        "the module {how} struct {}, whose layout differs between {build_release} (built for) and the target: {}",
        c.name, what.join(", "))).struct_name(&c.name);
    if let Some(rank) = super::feature_symbols::watched_rank(&c.name) {
        let options = super::feature_symbols::WATCHED_STRUCTS[rank].1;
        r.message.push_str(&format!(
            " (its layout depends on CONFIG_{})",
            options.join(", CONFIG_")
        ));
    }
    r
}
