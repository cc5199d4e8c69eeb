//! The BPF programs and links the kernel holds, through bpf(2) itself, so
//! the check needs no bpftool (the arm64 guests have none).

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
/// `struct bpf_prog_info`: `name[16]` follows 64 bytes of other fields.
const PROG_INFO_NAME: usize = 64;
const PROG_INFO_LEN: usize = 256;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> libc::c_long {
    // SAFETY: attr is a writable buffer of the length passed.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
}

/// The ids after each other `GET_NEXT_ID` gives.
fn ids(next_cmd: libc::c_long) -> Vec<u32> {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 16];
        attr[..4].copy_from_slice(&id.to_ne_bytes());
        if bpf(next_cmd, &mut attr) != 0 {
            return out;
        }
        id = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
        out.push(id);
    }
}

/// The names of every loaded BPF program.
pub fn program_names() -> Vec<String> {
    ids(BPF_PROG_GET_NEXT_ID)
        .into_iter()
        .filter_map(program_name)
        .collect()
}

fn program_name(id: u32) -> Option<String> {
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr);
    if fd < 0 {
        return None;
    }
    let mut info = vec![0u8; PROG_INFO_LEN];
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(PROG_INFO_LEN as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    let rc = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr);
    // SAFETY: fd came from the kernel just now and is closed once.
    unsafe { libc::close(fd as i32) };
    if rc != 0 {
        return None;
    }
    let name = &info[PROG_INFO_NAME..PROG_INFO_NAME + 16];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// How many BPF links exist.
pub fn link_count() -> usize {
    ids(BPF_LINK_GET_NEXT_ID).len()
}
