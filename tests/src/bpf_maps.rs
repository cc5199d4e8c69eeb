//! A loaded BPF map's entries, read through bpf(2) by the map's name, so a
//! test can see what modscope's maps hold (no bpftool on the arm64 guests).

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries per `BPF_MAP_LOOKUP_BATCH` call.
const BATCH: u32 = 4096;
/// Map types whose values are one per possible CPU.
const PER_CPU_TYPES: [u32; 3] = [5, 6, 10];

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> libc::c_long {
    // SAFETY: attr is a writable buffer of the length passed, and every
    // pointer in it points at a live buffer of the size the command needs.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
}

fn put(attr: &mut [u8], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// One map, open.
pub struct BpfMap {
    fd: OwnedFd,
    key_size: usize,
    /// Bytes per CPU, rounded to 8 for per-CPU maps.
    value_size: usize,
    cpus: usize,
    pub max_entries: u32,
}

impl BpfMap {
    /// The newest loaded map called `name` (the kernel keeps 15 bytes).
    pub fn named(name: &str) -> Option<Self> {
        let mut found = None;
        let mut id = 0u32;
        loop {
            let mut attr = [0u8; 16];
            put(&mut attr, 0, &id.to_ne_bytes());
            if bpf(BPF_MAP_GET_NEXT_ID, &mut attr) != 0 {
                return found;
            }
            id = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
            if let Some(map) = Self::open(id).filter(|(n, _)| n == name) {
                found = Some(map.1);
            }
        }
    }

    fn open(id: u32) -> Option<(String, Self)> {
        let mut attr = [0u8; 16];
        put(&mut attr, 0, &id.to_ne_bytes());
        let fd = bpf(BPF_MAP_GET_FD_BY_ID, &mut attr);
        if fd < 0 {
            return None;
        }
        // SAFETY: a descriptor the kernel just returned, owned from here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // struct bpf_map_info: type, id, key_size, value_size, max_entries,
        // map_flags, then name[16].
        let mut info = [0u8; 80];
        let mut attr = [0u8; 16];
        put(&mut attr, 0, &(fd.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 4, &(info.len() as u32).to_ne_bytes());
        put(&mut attr, 8, &(info.as_mut_ptr() as u64).to_ne_bytes());
        if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) != 0 {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().expect("4 bytes"));
        let name = &info[24..40];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let per_cpu = PER_CPU_TYPES.contains(&word(0));
        let value_size = word(12) as usize;
        Some((
            String::from_utf8_lossy(&name[..end]).into_owned(),
            Self {
                fd,
                key_size: word(8) as usize,
                value_size: if per_cpu {
                    value_size.div_ceil(8) * 8
                } else {
                    value_size
                },
                cpus: if per_cpu { possible_cpus() } else { 1 },
                max_entries: word(16),
            },
        ))
    }

    /// Every key, in the kernel's order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_size];
            let mut attr = [0u8; 24];
            put(&mut attr, 0, &(self.fd.as_raw_fd() as u32).to_ne_bytes());
            if let Some(last) = out.last() {
                put(&mut attr, 8, &(last.as_ptr() as u64).to_ne_bytes());
            }
            put(&mut attr, 16, &(next.as_mut_ptr() as u64).to_ne_bytes());
            if bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) != 0 {
                return out;
            }
            out.push(next);
        }
    }

    /// An array's u64 values summed over CPUs, index by index. Read
    /// `BATCH` entries per bpf(2) call: one call per entry was 250,000
    /// calls for the page map of x86-64's module area, half a minute in a
    /// TCG guest.
    pub fn array_u64s(&self) -> Vec<u64> {
        assert_eq!(self.key_size, 4, "an array's keys are u32 indexes");
        let mut out = vec![0u64; self.max_entries as usize];
        let mut read = 0usize;
        let mut after: Option<u32> = None;
        loop {
            let (indexes, sums, end) = self.lookup_batch(after);
            for (&i, &sum) in indexes.iter().zip(&sums) {
                out[i as usize] = sum;
            }
            read += indexes.len();
            after = indexes.last().copied().or(after);
            if end {
                break;
            }
        }
        assert_eq!(read, out.len(), "every index of the array read once");
        out
    }

    /// Up to `BATCH` entries after index `after` (from the first without
    /// one): their indexes, their u64 values summed over CPUs, and whether
    /// the array ended.
    fn lookup_batch(&self, after: Option<u32>) -> (Vec<u32>, Vec<u64>, bool) {
        let entry_bytes = self.value_size * self.cpus;
        let mut keys = vec![0u8; 4 * BATCH as usize];
        let mut values = vec![0u8; entry_bytes * BATCH as usize];
        let (start, mut next) = (after.unwrap_or(0), 0u32);
        // union bpf_attr's batch: in_batch, out_batch, keys, values (all
        // pointers), count, map_fd, elem_flags, flags.
        let mut attr = [0u8; 56];
        if after.is_some() {
            put(&mut attr, 0, &(&start as *const u32 as u64).to_ne_bytes());
        }
        put(&mut attr, 8, &(&mut next as *mut u32 as u64).to_ne_bytes());
        put(&mut attr, 16, &(keys.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut attr, 24, &(values.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut attr, 32, &BATCH.to_ne_bytes());
        put(&mut attr, 36, &(self.fd.as_raw_fd() as u32).to_ne_bytes());
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let errno = std::io::Error::last_os_error();
        let end = match result {
            0 => false,
            _ if errno.raw_os_error() == Some(libc::ENOENT) => true,
            _ => panic!("BPF_MAP_LOOKUP_BATCH: {errno}"),
        };
        let count = u32::from_ne_bytes(attr[32..36].try_into().expect("4 bytes")) as usize;
        let indexes = keys
            .chunks(4)
            .take(count)
            .map(|k| u32::from_ne_bytes(k.try_into().expect("4 bytes")))
            .collect();
        let sums = values
            .chunks(entry_bytes)
            .take(count)
            .map(|entry| entry.chunks(self.value_size).map(first_u64).sum())
            .collect();
        (indexes, sums, end)
    }
}

/// The leading u64 of a key or value.
pub fn first_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible CPUs");
    text.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().expect("cpu") - a.parse::<usize>().expect("cpu") + 1,
            None => 1,
        })
        .sum()
}

/// Creates a hash map of `entries` u32 → u32 and updates each key once,
/// through bpf(2): work inside the kernel's BPF map syscalls, where kprobe
/// programs on that CPU are skipped. The map is freed when this returns.
pub fn hash_map_updates(entries: u32) {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_MAP_TYPE_HASH: u32 = 1;
    let mut attr = [0u8; 20];
    put(&mut attr, 0, &BPF_MAP_TYPE_HASH.to_ne_bytes());
    put(&mut attr, 4, &4u32.to_ne_bytes());
    put(&mut attr, 8, &4u32.to_ne_bytes());
    put(&mut attr, 12, &entries.to_ne_bytes());
    let fd = bpf(BPF_MAP_CREATE, &mut attr);
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel returned a new descriptor nothing else owns.
    let map = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for key in 0..entries {
        let value = 1u32;
        let mut attr = [0u8; 32];
        put(&mut attr, 0, &(map.as_raw_fd() as u32).to_ne_bytes());
        put(
            &mut attr,
            8,
            &(std::ptr::from_ref(&key) as u64).to_ne_bytes(),
        );
        put(
            &mut attr,
            16,
            &(std::ptr::from_ref(&value) as u64).to_ne_bytes(),
        );
        assert_eq!(
            bpf(BPF_MAP_UPDATE_ELEM, &mut attr),
            0,
            "BPF_MAP_UPDATE_ELEM: {}",
            std::io::Error::last_os_error()
        );
    }
}
