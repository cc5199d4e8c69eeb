//! Struct layouts from BTF (size and member offsets), and their comparison
//! between two kernels: the struct-level truth behind CRC changes and the
//! first seed article's concern, debug options that grow kernel structs.

use std::collections::BTreeMap;

use btf_rs::{Btf, Type};
use serde::Serialize;

/// One struct's layout: size and (member name, bit offset), anonymous
/// members flattened into their parent like C does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub members: Vec<(String, u32)>,
}

/// Every named struct in `btf` (the first definition of each name).
pub fn all_layouts(btf: &Btf) -> BTreeMap<String, Layout> {
    let mut out = BTreeMap::new();
    for t in types(btf, btf.base()) {
        if let Type::Struct(s) = &t
            && let Ok(name) = btf.resolve_name(s)
            && !name.is_empty()
            && !out.contains_key(&name)
        {
            out.insert(name, layout_of(btf, s));
        }
    }
    out
}

/// Every type defined in `section` of `btf` (the base, or a split part),
/// skipping ids btf-rs cannot decode rather than stopping at them.
pub fn types<'a>(btf: &'a Btf, section: &btf_rs::BtfSection) -> impl Iterator<Item = Type> + 'a {
    let (start, end) = section.type_id_range();
    (start..=end).filter_map(move |id| btf.resolve_type_by_id(id).ok())
}

/// The layout of `struct name` in `btf`.
pub fn layout(btf: &Btf, name: &str) -> Option<Layout> {
    crate::btf::find_struct(btf, name)
        .ok()
        .map(|s| layout_of(btf, &s))
}

fn layout_of(btf: &Btf, s: &btf_rs::Struct) -> Layout {
    let mut members = Vec::new();
    flatten(btf, s, 0, &mut members, 0);
    Layout {
        size: s.size() as u64,
        members,
    }
}

fn flatten(btf: &Btf, s: &btf_rs::Struct, base: u32, out: &mut Vec<(String, u32)>, depth: u32) {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let offset = base + m.bit_offset();
        if name.is_empty() && depth < 8 {
            if let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m) {
                flatten(btf, &inner, offset, out, depth + 1);
            }
            continue;
        }
        out.push((name, offset));
    }
}

/// How one struct differs between two kernels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StructChange {
    pub name: String,
    pub size_a: u64,
    pub size_b: u64,
    /// Members whose offset moved: (member, bit offset in A, in B).
    pub moved: Vec<(String, u32, u32)>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

pub fn compare(name: &str, a: &Layout, b: &Layout) -> Option<StructChange> {
    if a == b {
        return None;
    }
    let find = |l: &Layout, n: &str| l.members.iter().find(|(m, _)| m == n).map(|(_, o)| *o);
    let moved = a
        .members
        .iter()
        .filter_map(|(n, oa)| {
            find(b, n)
                .filter(|ob| ob != oa)
                .map(|ob| (n.clone(), *oa, ob))
        })
        .collect();
    let only_in_a = a
        .members
        .iter()
        .filter(|(n, _)| find(b, n).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let only_in_b = b
        .members
        .iter()
        .filter(|(n, _)| find(a, n).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    Some(StructChange {
        name: name.to_owned(),
        size_a: a.size,
        size_b: b.size,
        moved,
        only_in_a,
        only_in_b,
    })
}

/// Structs present in both whose layout differs.
pub fn diff(a: &BTreeMap<String, Layout>, b: &BTreeMap<String, Layout>) -> Vec<StructChange> {
    a.iter()
        .filter_map(|(name, la)| b.get(name).and_then(|lb| compare(name, la, lb)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(size: u64, members: &[(&str, u32)]) -> Layout {
        Layout {
            size,
            members: members.iter().map(|(n, o)| (n.to_string(), *o)).collect(),
        }
    }

    #[test]
    fn debug_fields_move_members_and_grow_the_struct() {
        // spinlock_t without and with DEBUG_SPINLOCK.
        let plain = l(4, &[("raw_lock", 0)]);
        let debug = l(
            24,
            &[
                ("raw_lock", 0),
                ("magic", 32),
                ("owner_cpu", 64),
                ("owner", 128),
            ],
        );
        let c = compare("raw_spinlock", &plain, &debug).unwrap();
        assert_eq!((c.size_a, c.size_b), (4, 24));
        assert!(c.moved.is_empty());
        assert_eq!(c.only_in_b, ["magic", "owner_cpu", "owner"]);
        let mutex_a = l(32, &[("owner", 0), ("wait_lock", 64), ("wait_list", 128)]);
        let mutex_b = l(
            40,
            &[
                ("owner", 0),
                ("wait_lock", 64),
                ("osq", 96),
                ("wait_list", 192),
            ],
        );
        let c = compare("mutex", &mutex_a, &mutex_b).unwrap();
        assert_eq!(c.moved, vec![("wait_list".to_owned(), 128, 192)]);
        assert_eq!(c.only_in_b, ["osq"]);
    }

    #[test]
    fn identical_layouts_are_not_changes() {
        let a = l(8, &[("x", 0)]);
        assert_eq!(compare("s", &a, &a.clone()), None);
        let mut ma = BTreeMap::new();
        ma.insert("s".to_owned(), a.clone());
        ma.insert("only_a".to_owned(), a.clone());
        let mut mb = BTreeMap::new();
        mb.insert("s".to_owned(), a);
        assert!(diff(&ma, &mb).is_empty());
    }
}
