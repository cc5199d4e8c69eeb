//! The kernel's BTF for a handful of lookups (`struct module`'s offsets,
//! the lock structs' layouts, the guard's file identity): read where it
//! lies, through btf-rs's memory-mapped backend, instead of indexing every
//! type and name as `check` does. That index was a live session's peak: for
//! Debian's vmlinux, 21 MB of name tables and 6 MB of types on top of the
//! 5 MB of bytes (massif). The bytes are copied into an anonymous memory
//! file first: sysfs' BTF cannot be mapped before Linux 6.16, and a copy
//! nobody else can truncate never faults under the reader. Where that
//! fails, the BTF is indexed after all.

use std::{
    collections::{HashMap, HashSet},
    io::Write as _,
    os::fd::FromRawFd as _,
    path::Path,
};

use btf_rs::{Backend, Btf};
use fallible_iterator::FallibleIterator as _;
use modscope_analysis::btf::{self, BtfError};

/// The BTF at `path` (raw, or an ELF file's `.BTF`), for a few lookups.
pub fn open(path: &Path) -> Result<Btf, BtfError> {
    let bytes = btf::read_bytes(path)?;
    match mapped_copy(&bytes) {
        Some(btf) => Ok(btf),
        None => Btf::from_bytes(&bytes).map_err(|source| BtfError::Open {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// `bytes` in a memory file, parsed where they lie.
fn mapped_copy(bytes: &[u8]) -> Option<Btf> {
    // SAFETY: a NUL-terminated name and valid flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"modscope-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor the kernel just returned, owned from here.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes).ok()?;
    // The mapping outlives the descriptor, which closes with `file`.
    Btf::from_file_with_backend(format!("/proc/self/fd/{fd}"), Backend::Mmap).ok()
}

/// The BTF ids of the functions of `functions` that vmlinux' BTF has, in one
/// walk over its types.
pub fn function_ids(
    btf: &Btf,
    functions: &[String],
) -> Result<HashMap<String, u32>, btf_rs::Error> {
    let wanted: HashSet<&str> = functions.iter().map(String::as_str).collect();
    let mut ids = HashMap::new();
    let mut types = btf.type_iter();
    // A base BTF's types start at id 0, the void type.
    let mut id = 0u32;
    while let Some(r#type) = types.next()? {
        if let btf_rs::Type::Func(func) = &r#type {
            let name = btf.resolve_name(func)?;
            if wanted.contains(name.as_str()) {
                ids.entry(name).or_insert(id);
            }
        }
        id += 1;
    }
    Ok(ids)
}

/// The BTF ids a program needs to read kernel words through a view: the
/// kfunc `bpf_rdonly_cast` (Linux 6.2 on) and the struct it views them as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewIds {
    pub kfunc: u32,
    pub view_struct: u32,
}

/// The kfunc's and `view_struct`'s ids in `btf`; none when either is
/// missing (a kernel before 6.2 has no such kfunc).
pub fn view_ids(btf: &Btf, view_struct: &str) -> Result<Option<ViewIds>, btf_rs::Error> {
    let kfunc = first_id_of(btf, "bpf_rdonly_cast", |t| {
        matches!(t, btf_rs::Type::Func(_))
    })?;
    let view = first_id_of(btf, view_struct, |t| matches!(t, btf_rs::Type::Struct(_)))?;
    Ok(kfunc
        .zip(view)
        .map(|(kfunc, view_struct)| ViewIds { kfunc, view_struct }))
}

/// The lowest id named `name` whose type `is_wanted`.
fn first_id_of(
    btf: &Btf,
    name: &str,
    is_wanted: impl Fn(&btf_rs::Type) -> bool,
) -> Result<Option<u32>, btf_rs::Error> {
    let mut ids = btf.resolve_ids_by_name(name)?;
    ids.sort_unstable();
    for id in ids {
        if is_wanted(&btf.resolve_type_by_id(id)?) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use modscope_analysis::{btf, struct_layout};

    /// The host kernel's own BTF.
    const HOST_BTF: &str = "/sys/kernel/btf/vmlinux";

    /// The host's BTF, mapped, when it has one.
    fn host_btf() -> Option<btf_rs::Btf> {
        let path = std::path::Path::new(HOST_BTF);
        path.exists().then(|| super::open(path).expect("BTF"))
    }

    /// The host kernel's own BTF, when it has one: the mapped reader finds
    /// what the indexed one finds.
    #[test]
    fn the_mapped_btf_answers_as_the_indexed_one() {
        let Some(lean) = host_btf() else {
            return;
        };
        let indexed = btf::open(std::path::Path::new(HOST_BTF)).expect("indexed BTF");
        for name in ["mutex", "raw_spinlock", "file", "inode", "task_struct"] {
            let layout = struct_layout::layout(&lean, name);
            assert!(layout.is_some(), "struct {name}");
            assert_eq!(layout, struct_layout::layout(&indexed, name), "{name}");
        }
        assert_eq!(struct_layout::layout(&lean, "no_such_struct_here"), None);
        assert_eq!(
            btf::enum_value(&lean, "kernel_read_file_id", "READING_MODULE").ok(),
            btf::enum_value(&indexed, "kernel_read_file_id", "READING_MODULE").ok()
        );
    }

    /// On the host's own BTF, when it has one: the walk's ids are those
    /// the name lookup finds, and a name that is not a function has none.
    #[test]
    fn one_walk_finds_the_ids_the_name_lookup_finds() {
        let Some(btf) = host_btf() else {
            return;
        };
        let names: Vec<String> = ["kfree", "kstrdup", "task_struct", "no_such_function_here"]
            .into_iter()
            .map(String::from)
            .collect();
        let ids = super::function_ids(&btf, &names).expect("walk");
        for name in ["kfree", "kstrdup"] {
            let looked_up = btf.resolve_ids_by_name(name).expect("lookup");
            assert!(
                looked_up.contains(&ids[name]),
                "{name}: {} not in {looked_up:?}",
                ids[name]
            );
            let btf_rs::Type::Func(_) = btf.resolve_type_by_id(ids[name]).expect("type") else {
                panic!("{name}'s id is not a function's");
            };
        }
        assert!(
            !ids.contains_key("task_struct"),
            "a struct is not a function"
        );
        assert!(!ids.contains_key("no_such_function_here"));
    }

    /// On the host's own BTF, when it has one: the view's ids name a
    /// function and a struct; a struct that is not there gives none.
    #[test]
    fn the_view_ids_are_the_kfunc_and_the_struct() {
        let Some(btf) = host_btf() else {
            return;
        };
        let Some(ids) = super::view_ids(&btf, "pt_regs").expect("lookup") else {
            return; // a kernel before 6.2
        };
        let btf_rs::Type::Func(func) = btf.resolve_type_by_id(ids.kfunc).expect("type") else {
            panic!("the kfunc's id is not a function's");
        };
        assert_eq!(btf.resolve_name(&func).expect("name"), "bpf_rdonly_cast");
        let btf_rs::Type::Struct(view) = btf.resolve_type_by_id(ids.view_struct).expect("type")
        else {
            panic!("the view's id is not a struct's");
        };
        assert_eq!(btf.resolve_name(&view).expect("name"), "pt_regs");
        assert_eq!(
            super::view_ids(&btf, "no_such_struct_here").expect("lookup"),
            None
        );
    }
}
