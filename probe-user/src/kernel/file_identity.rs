//! What the guard's programs read to know which file is being loaded, from
//! the running kernel's BTF: where `struct file` keeps its inode, where the
//! inode keeps its number, super block and change time (three layouts:
//! `i_ctime` before 6.6, `__i_ctime` in 6.6 to 6.10, `i_ctime_sec` and
//! `i_ctime_nsec` since 6.11), the super block's device, and the values of
//! `READING_MODULE` and `LOADING_MODULE`. And the same identity of a file
//! as user space sees it through `stat`.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use btf_rs::{Btf, Type};
use modscope_analysis::btf::{BtfError, as_struct, enum_value, find_struct, member, scalar_width};
use probe_common::{FileKey, GuardConfig, guard::Policy};

/// The guard's settings for `policy` on the kernel whose BTF this is.
pub fn guard_config(btf: &Btf, policy: Policy) -> Result<GuardConfig, BtfError> {
    let file = find_struct(btf, "file")?;
    let (file_inode, _) = member(btf, &file, "file", "f_inode")?;
    let inode = find_struct(btf, "inode")?;
    let (inode_ino, _) = member(btf, &inode, "inode", "i_ino")?;
    let (inode_sb, _) = member(btf, &inode, "inode", "i_sb")?;
    let sb = find_struct(btf, "super_block")?;
    let (sb_dev, _) = member(btf, &sb, "super_block", "s_dev")?;
    let (inode_ctime_sec, inode_ctime_nsec, ctime_nsec_width) = ctime(btf, &inode)?;
    Ok(GuardConfig {
        valid: 1,
        policy: policy as u32,
        reading_module: enum_value(btf, "kernel_read_file_id", "READING_MODULE")?,
        loading_module: enum_value(btf, "kernel_load_data_id", "LOADING_MODULE")?,
        file_inode,
        inode_ino,
        inode_sb,
        sb_dev,
        inode_ctime_sec,
        inode_ctime_nsec,
        ctime_nsec_width,
        _pad: 0,
    })
}

/// (seconds offset, nanoseconds offset, nanoseconds width) of the inode's
/// change time.
fn ctime(btf: &Btf, inode: &btf_rs::Struct) -> Result<(u32, u32, u32), BtfError> {
    if let Ok((sec, _)) = member(btf, inode, "inode", "i_ctime_sec") {
        let (nsec, nsec_ty) = member(btf, inode, "inode", "i_ctime_nsec")?;
        return Ok((sec, nsec, scalar_width(&nsec_ty, "inode.i_ctime_nsec")?));
    }
    let (at, ty) = member(btf, inode, "inode", "i_ctime")
        .or_else(|_| member(btf, inode, "inode", "__i_ctime"))?;
    let spec = as_struct(ty, "inode.i_ctime")?;
    let (sec, _) = member(btf, &spec, "timespec64", "tv_sec")?;
    let (nsec, nsec_ty) = member(btf, &spec, "timespec64", "tv_nsec")?;
    let width = match nsec_ty {
        Type::Int(_) => scalar_width(&nsec_ty, "timespec64.tv_nsec")?,
        _ => 8,
    };
    Ok((at + sec, at + nsec, width))
}

/// The key the programs compute for the file at `path`, as it is now.
///
/// The device is the super block's (`sb->s_dev`), which `stat` does not
/// always give: overlayfs reports a per-layer device for files and btrfs a
/// per-subvolume one. `/proc/self/mountinfo` prints `s_dev` itself, so the
/// file is opened, its mount found through `/proc/self/fdinfo` (`mnt_id`),
/// and the device read off that mount's line; `stat`'s device is the
/// fallback where either file is missing.
pub fn file_key(path: &Path) -> std::io::Result<FileKey> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let dev = mount_device(&file).unwrap_or_else(|| {
        let d = meta.dev();
        kernel_dev(libc::major(d), libc::minor(d))
    });
    Ok(FileKey {
        dev,
        ino: meta.ino(),
        ctime_sec: meta.ctime(),
        ctime_nsec: u64::try_from(meta.ctime_nsec()).unwrap_or(0),
    })
}

/// `MAJOR << 20 | MINOR`, the kernel's `dev_t`.
fn kernel_dev(major: u32, minor: u32) -> u64 {
    (u64::from(major) << 20) | u64::from(minor)
}

fn mount_device(file: &std::fs::File) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let mnt_id = mount_id(&fdinfo)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    device_of_mount(&mountinfo, mnt_id)
}

/// The `mnt_id:` line of an fdinfo text.
fn mount_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The `MAJOR:MINOR` (third field) of mount `id` in a mountinfo text.
fn device_of_mount(mountinfo: &str, id: u64) -> Option<u64> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let this: u64 = fields.next()?.parse().ok()?;
        let _parent = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        (this == id).then(|| Some(kernel_dev(major.parse().ok()?, minor.parse().ok()?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host kernel's own BTF, when it has one: every offset found, the
    /// ids Debian's and upstream's enums give.
    #[test]
    fn the_running_kernels_btf_gives_every_offset() {
        let path = std::path::Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            return;
        }
        let btf = modscope_analysis::btf::open(path).expect("host BTF");
        let cfg = guard_config(&btf, Policy::DenyIncompatible).expect("guard config");
        assert_eq!(cfg.valid, 1);
        assert_eq!(cfg.policy, Policy::DenyIncompatible as u32);
        assert_eq!(cfg.reading_module, 2, "READING_MODULE");
        assert_eq!(cfg.loading_module, 2, "LOADING_MODULE");
        assert!(cfg.inode_ctime_sec != cfg.inode_ctime_nsec);
        assert!(matches!(cfg.ctime_nsec_width, 4 | 8));
        assert!(cfg.inode_sb != 0 && cfg.inode_ino != 0 && cfg.sb_dev != 0);
    }

    #[test]
    fn the_device_is_the_mounts_super_block_device_from_mountinfo() {
        let info = "25 23 0:23 / /run rw,relatime - tmpfs run rw\n\
                    54 23 0:46 / /tmp rw,relatime - overlay virtme_rw_overlay7 rw\n\
                    60 1 259:1 / /data rw - ext4 /dev/nvme0n1p1 rw\n";
        assert_eq!(device_of_mount(info, 54), Some(46));
        assert_eq!(device_of_mount(info, 60), Some((259 << 20) | 1));
        assert_eq!(device_of_mount(info, 99), None);
        assert_eq!(
            mount_id("pos:\t0\nflags:\t02100000\nmnt_id:\t54\nino:\t366\n"),
            Some(54)
        );
        assert_eq!(mount_id("pos: 0\n"), None);
    }

    #[test]
    fn a_files_key_follows_its_change_time() {
        let dir = std::env::temp_dir().join(format!("modscope-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.ko");
        std::fs::write(&path, b"one").unwrap();
        let before = file_key(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        let after = file_key(&path).unwrap();
        assert_eq!(before.ino, after.ino);
        assert_eq!(before.dev, after.dev);
        assert_ne!(before, after, "a write moves the change time");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
