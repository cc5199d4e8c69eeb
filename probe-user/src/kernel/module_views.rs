//! The kernel's own views of which modules are loaded, each read
//! independently: `/proc/modules` (the module list as its seq_file shows
//! it), `/sys/module/*/initstate` (the module's kobject: only loadable
//! modules have `initstate`), and the module list itself, walked through
//! `/proc/kcore` from the `modules` list head. A module that takes itself
//! off one of them (a rootkit's `list_del(&THIS_MODULE->list)`) stays in the
//! others. Every read is bounded; a view that cannot be read is `None`,
//! never an empty set.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use super::{kcore::Kcore, proc_modules};

/// More modules than any kernel holds: a walk that goes on longer is
/// following a list that changed under it.
const MAX_LISTED: usize = 65_536;

/// How the kernel's module list links its entries: the offsets of
/// `struct module`'s `list` and `name`, from BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLink {
    pub list_offset: u64,
    pub name_offset: u64,
}

/// Where the kernel's module list is, the `modules` list head (from
/// `/proc/kallsyms`), and how to read its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleList {
    pub head: u64,
    pub link: ListLink,
}

/// The `modules` list head in a kallsyms text: a data symbol of that exact
/// name. `None` when kallsyms lists no data (no KALLSYMS_ALL) or names more
/// than one.
pub fn module_list_head(kallsyms: &str) -> Option<u64> {
    let mut found = kallsyms.lines().filter_map(|line| {
        let mut f = line.split_whitespace();
        let addr = f.next()?;
        let kind = f.next()?;
        let name = f.next()?;
        let data = matches!(kind, "d" | "D" | "b" | "B");
        (data && name == "modules" && f.next().is_none())
            .then(|| u64::from_str_radix(addr, 16).ok())
            .flatten()
            .filter(|&a| a != 0)
    });
    let head = found.next()?;
    found.next().is_none().then_some(head)
}

impl ModuleList {
    /// The names on the list, walked from the head through `next` pointers.
    /// `None` when a read fails or the walk does not come back to the head
    /// within bounds (the list changed under it: read it again later).
    pub fn names(&self, kcore: &Kcore) -> Option<BTreeSet<String>> {
        let kcore = kcore.open()?;
        let mut names = BTreeSet::new();
        let mut link = kcore.word(self.head)?;
        for _ in 0..MAX_LISTED {
            if link == self.head {
                return Some(names);
            }
            let module = link.checked_sub(self.link.list_offset)?;
            let name = kcore.read(
                module.checked_add(self.link.name_offset)?,
                MODULE_NAME_BYTES,
            )?;
            names.insert(c_string(&name)?);
            link = kcore.word(link)?;
        }
        None
    }
}

/// `MODULE_NAME_LEN` on 64-bit kernels.
const MODULE_NAME_BYTES: usize = 56;

fn c_string(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&bytes[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Names in `/proc/modules`.
pub fn proc_modules_names(path: &Path) -> Option<BTreeSet<String>> {
    let modules = proc_modules::read(path).ok()?;
    Some(modules.into_iter().map(|m| m.name).collect())
}

/// Loadable modules in `/sys/module`: the directories with `initstate`.
pub fn sys_module_names(dir: &Path) -> Option<BTreeSet<String>> {
    let entries = fs::read_dir(dir).ok()?;
    Some(
        entries
            .take(MAX_LISTED)
            .filter_map(Result::ok)
            .filter(|e| e.path().join("initstate").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
    )
}

/// Where a module's core text is, by its sysfs entry:
/// `sections/.text` (root only) and `coresize`. The evidence that ties
/// calls from unowned memory to a module only sysfs still shows.
pub fn sys_module_text(dir: &Path, name: &str) -> Option<(u64, u64)> {
    let module = dir.join(name);
    let read = |p: PathBuf| super::text_file::read(p).ok();
    let text = read(module.join("sections/.text"))?;
    let base = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()?;
    let size = read(module.join("coresize"))?.trim().parse().ok()?;
    (base != 0).then_some((base, size))
}

/// The text bases of the modules sysfs shows (`sections/.text`, root
/// only), hidden ones included.
pub fn sys_module_text_bases(dir: &Path) -> BTreeSet<u64> {
    sys_module_names(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| sys_module_text(dir, n))
        .map(|(base, _)| base)
        .collect()
}

/// Each listed module's text size, in list order: its /proc/modules size
/// cut at the next text base, the other listed modules' and `other_bases`
/// (hidden modules' sysfs bases) included. 0 where the address is hidden.
pub fn listed_text_sizes(
    listed: &[proc_modules::LoadedModule],
    other_bases: impl IntoIterator<Item = u64>,
) -> Vec<u64> {
    let mut bases: BTreeSet<u64> = other_bases.into_iter().collect();
    bases.extend(listed.iter().map(|m| m.address));
    bases.remove(&0);
    listed
        .iter()
        .map(|m| match m.address {
            0 => 0,
            base => cut_at_next_text(base, m.size, &bases),
        })
        .collect()
}

/// `size` cut at the first of `bases` above `base`. A module's size as
/// /proc/modules gives it is its whole core; where the kernel allocates a
/// module's text and data apart (6.4's `mem[]`), `[base, base + size)`
/// runs past its text, over memory another module's text may hold.
fn cut_at_next_text(base: u64, size: u64, bases: &BTreeSet<u64>) -> u64 {
    let end = base.saturating_add(size);
    bases
        .range(base.saturating_add(1)..end)
        .next()
        .map_or(size, |next| next - base)
}

/// The symbols `/proc/kallsyms` tags with an owner (`[module]`, `[bpf]`,
/// `[__builtin__ftrace]`, ...), by address: what owns an address in module
/// memory. Parsed once per read, so each lookup is a binary search, not
/// another pass over 100,000 lines and more; read a line at a time, so the
/// text (8 MB and more) is never held whole.
#[derive(Default)]
pub struct TaggedSymbols {
    /// (address, owner, name), by address; equal addresses in file order.
    symbols: Vec<(u64, String, String)>,
}

impl TaggedSymbols {
    /// From a kallsyms file (`/proc/kallsyms`), within `text_file`'s bound.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        use std::io::{BufRead as _, Read as _};
        let file = fs::File::open(path)?;
        let mut reader = std::io::BufReader::new(file.take(super::text_file::LIMIT));
        let mut line = Vec::new();
        let mut symbols = Vec::new();
        while reader.read_until(b'\n', &mut line)? != 0 {
            symbols.extend(tagged(String::from_utf8_lossy(&line).trim_end()));
            line.clear();
        }
        Ok(Self::sorted(symbols))
    }

    /// From a kallsyms text.
    pub fn parse(kallsyms: &str) -> Self {
        Self::sorted(kallsyms.lines().filter_map(tagged).collect())
    }

    fn sorted(mut symbols: Vec<(u64, String, String)>) -> Self {
        symbols.sort_by_key(|s| s.0);
        Self { symbols }
    }

    /// The owner and name of the nearest tagged symbol at or below `addr`,
    /// within `reach` bytes (the first listed where several share it).
    pub fn owner_of(&self, addr: u64, reach: u64) -> Option<(&str, &str)> {
        let after = self.symbols.partition_point(|s| s.0 <= addr);
        let nearest = self.symbols.get(after.checked_sub(1)?)?.0;
        if addr - nearest >= reach {
            return None;
        }
        let first = self.symbols.partition_point(|s| s.0 < nearest);
        let (_, owner, name) = &self.symbols[first];
        Some((owner, name))
    }
}

/// A kallsyms line's (address, owner, name), when an owner tags it.
fn tagged(line: &str) -> Option<(u64, String, String)> {
    if !line.ends_with(']') {
        return None;
    }
    let mut f = line.split_whitespace();
    let (a, _, name, tag) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let owner = tag.strip_prefix('[')?.strip_suffix(']')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        owner.to_owned(),
        name.to_owned(),
    ))
}

/// Whether a kallsyms owner is code the kernel allocates in module memory
/// for itself: BPF programs and trampolines, ftrace and kprobe slots.
pub fn kernel_owned(owner: &str) -> bool {
    owner == "bpf" || owner.starts_with("__builtin__")
}

/// The sysfs text ranges of the named modules.
pub fn sys_module_texts<'a>(
    dir: &Path,
    names: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, (u64, u64)> {
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), sys_module_text(dir, n)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kcore::samples;

    #[test]
    fn a_core_size_is_cut_at_the_next_modules_text() {
        let bases: BTreeSet<u64> = [0x1000, 0x3000, 0x9000].into();
        // 6.12: kvm_amd's text at 0x1000, its whole core 0x8000 long; a
        // module hidden from /proc/modules has its text at 0x3000.
        assert_eq!(cut_at_next_text(0x1000, 0x8000, &bases), 0x2000);
        assert_eq!(
            cut_at_next_text(0x3000, 0x1000, &bases),
            0x1000,
            "no base inside"
        );
        assert_eq!(
            cut_at_next_text(0x3000, 0x6000, &bases),
            0x6000,
            "the next base at its end"
        );
        assert_eq!(
            cut_at_next_text(0x9000, 0x8000, &bases),
            0x8000,
            "the last one"
        );
        assert_eq!(cut_at_next_text(u64::MAX - 1, 0x8000, &bases), 0x8000);
    }

    #[test]
    fn listed_sizes_stop_at_listed_and_hidden_text_bases() {
        let module = |name: &str, address, size| proc_modules::LoadedModule {
            name: name.into(),
            size,
            state: "Live".into(),
            address,
            taints: 0,
        };
        let listed = [
            module("kvm_amd", 0x1000, 0x8000),
            module("unprivileged", 0, 0x4000),
            module("e1000", 0x5000, 0x2000),
        ];
        // A hidden module's text at 0x3000, only sysfs shows it.
        assert_eq!(
            listed_text_sizes(&listed, [0x3000]),
            [0x2000, 0, 0x2000],
            "cut at the hidden base; a hidden address has no range"
        );
        assert_eq!(
            listed_text_sizes(&listed, []),
            [0x4000, 0, 0x2000],
            "cut at the next listed base"
        );
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("modscope-views-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A list head at `base` and two modules after it, as the kernel lays
    /// them out: `list` at 8, `name` at 24.
    fn two_module_memory(base: u64) -> Vec<u8> {
        let mut mem = vec![0u8; 0x300];
        let (a, b) = (base + 0x100, base + 0x200);
        let mut put = |at: u64, word: u64| {
            let i = (at - base) as usize;
            mem[i..i + 8].copy_from_slice(&word.to_le_bytes());
        };
        put(base, a + 8);
        put(a + 8, b + 8);
        put(b + 8, base);
        let mut name = |at: u64, s: &str| {
            let i = (at - base) as usize;
            mem[i..i + s.len()].copy_from_slice(s.as_bytes());
        };
        name(a + 24, "ext4");
        name(b + 24, "modscope_calls");
        mem
    }

    #[test]
    fn the_list_is_walked_back_to_its_head() {
        let base = 0xffff_ffff_c000_0000;
        let list = ModuleList {
            head: base,
            link: ListLink {
                list_offset: 8,
                name_offset: 24,
            },
        };
        let kcore = samples::with_memory(base, &two_module_memory(base));
        let names = list.names(&kcore).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["ext4", "modscope_calls"]
        );
        // A link that leaves the memory kcore holds: no answer, not a guess.
        let mut broken = two_module_memory(base);
        broken[0x108..0x110].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        let kcore = samples::with_memory(base, &broken);
        assert_eq!(list.names(&kcore), None);
        // A cycle that never returns to the head is bounded.
        let mut cycle = two_module_memory(base);
        cycle[0x208..0x210].copy_from_slice(&(base + 0x108).to_le_bytes());
        let kcore = samples::with_memory(base, &cycle);
        assert_eq!(list.names(&kcore), None);
    }

    #[test]
    fn the_list_head_is_the_one_data_symbol_named_modules() {
        let text = "ffffffff81000000 T _stext\n\
                    ffffffff82a1b2c0 D modules\n\
                    ffffffffc0a00000 t modules\t[x]\n\
                    ffffffff82a1b300 d modules_disabled\n";
        assert_eq!(module_list_head(text), Some(0xffff_ffff_82a1_b2c0));
        assert_eq!(module_list_head("ffffffff81000000 T _stext\n"), None);
        let twice = "ffffffff82a1b2c0 D modules\nffffffff82a1b2e0 b modules\n";
        assert_eq!(module_list_head(twice), None, "ambiguous: no guess");
        let hidden = "0000000000000000 D modules\n";
        assert_eq!(
            module_list_head(hidden),
            None,
            "unprivileged readers see zeros"
        );
    }

    #[test]
    fn owner_is_the_nearest_tagged_symbol_within_reach() {
        let text = "ffffffffc0000000 t bpf_prog_6deef7357e7b4530_x\t[bpf]\n\
                    ffffffffc0002000 t helper\t[modscope_calls]\n\
                    ffffffffc0002000 t helper_alias\t[modscope_calls]\n\
                    ffffffffc0003000 T init_module\t[modscope_calls]\n\
                    ffffffff81000000 T _stext\n";
        let tagged = TaggedSymbols::parse(text);
        let owner = tagged.owner_of(0xffff_ffff_c000_2010, 4096).unwrap();
        assert_eq!(owner, ("modscope_calls", "helper"));
        let owner = tagged.owner_of(0xffff_ffff_c000_0040, 4096).unwrap();
        assert!(kernel_owned(owner.0), "{owner:?}");
        assert_eq!(
            tagged.owner_of(0xffff_ffff_c010_0000, 4096),
            None,
            "too far"
        );
        assert_eq!(
            tagged.owner_of(0xffff_ffff_bfff_ffff, 4096),
            None,
            "below all"
        );
        assert_eq!(
            tagged.owner_of(0xffff_ffff_8100_0010, 4096),
            None,
            "untagged symbols own nothing"
        );
        assert!(kernel_owned("__builtin__ftrace"));
        let dir = scratch("kallsyms");
        fs::write(dir.path().join("kallsyms"), text).unwrap();
        let read = TaggedSymbols::read(&dir.path().join("kallsyms")).unwrap();
        assert_eq!(
            read.symbols, tagged.symbols,
            "read a line at a time: the same table"
        );
        assert_eq!(read.symbols.len(), 4);
        assert!(!kernel_owned("modscope_calls"));
    }

    #[test]
    fn sys_module_lists_loadable_modules_only() {
        let dir = scratch("sys");
        for (name, loadable) in [("ext4", true), ("printk", false), ("modscope_hide", true)] {
            let m = dir.path().join(name);
            fs::create_dir(&m).unwrap();
            if loadable {
                fs::write(m.join("initstate"), "live\n").unwrap();
            }
        }
        let names = sys_module_names(dir.path()).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["ext4", "modscope_hide"]
        );
        assert_eq!(sys_module_names(&dir.path().join("missing")), None);
    }

    #[test]
    fn sys_module_text_reads_the_section_and_the_core_size() {
        let dir = scratch("text");
        let m = dir.path().join("modscope_hide");
        fs::create_dir_all(m.join("sections")).unwrap();
        fs::write(m.join("sections/.text"), "0xffffffffc0a5e000\n").unwrap();
        fs::write(m.join("coresize"), "16384\n").unwrap();
        assert_eq!(
            sys_module_text(dir.path(), "modscope_hide"),
            Some((0xffff_ffff_c0a5_e000, 16384))
        );
        fs::write(m.join("sections/.text"), "0x0000000000000000\n").unwrap();
        assert_eq!(
            sys_module_text(dir.path(), "modscope_hide"),
            None,
            "unprivileged"
        );
    }
}
