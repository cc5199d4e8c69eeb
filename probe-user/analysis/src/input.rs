//! Opening files modscope does not trust: regular files only (a FIFO would
//! block the open, `/dev/zero` would never end), and never more than a
//! bound suited to what real files of that kind reach.

use std::{io::Read as _, path::Path};

/// The bounds, each well past the largest real file of its kind.
pub mod limit {
    /// Debian's largest modules are tens of MiB, on disk or decompressed.
    pub const MODULE: u64 = 256 << 20;
    /// A kernel `.config` is a few hundred KiB.
    pub const CONFIG: u64 = 16 << 20;
    /// `Module.symvers` of an all-modules build is about 10 MiB.
    pub const SYMVERS: u64 = 64 << 20;
    /// A raw vmlinux BTF is about 6 MiB; a kernel image tens of MiB
    /// (uncompressed arm64 `Image`s included).
    pub const KERNEL_IMAGE: u64 = 512 << 20;
    /// A keyring file of PEM or DER certificates.
    pub const KEYRING: u64 = 16 << 20;
    /// A modscope trace is read whole: hours of capture are a few MiB;
    /// past this, capture in shorter sessions.
    pub const TRACE: u64 = 1 << 30;
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, device or directory: reading it could block or never end.
    #[error("not a regular file (a {0})")]
    NotRegularFile(&'static str),
    #[error("{what} larger than {} MiB, which no {kind} is", limit >> 20)]
    TooLarge {
        what: &'static str,
        kind: &'static str,
        limit: u64,
    },
}

/// What kind of non-regular file `path` is, if it is one.
fn special_kind(kind: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("device")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

/// Opens `path` if it is a regular file no larger than `limit` (`kind`
/// names what it should be, for the error).
pub fn open_regular(
    path: &Path,
    limit: u64,
    kind: &'static str,
) -> Result<std::fs::File, InputError> {
    let meta = std::fs::metadata(path)?;
    if let Some(special) = special_kind(meta.file_type()) {
        return Err(InputError::NotRegularFile(special));
    }
    // Files in /proc and /sys say 0 or 4096 whatever they hold: the read
    // below is bounded as well.
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            what: "the file is",
            kind,
            limit,
        });
    }
    Ok(std::fs::File::open(path)?)
}

/// The whole of `path`, if it is a regular file no larger than `limit`.
pub fn read_bounded(path: &Path, limit: u64, kind: &'static str) -> Result<Vec<u8>, InputError> {
    let file = open_regular(path, limit, kind)?;
    // Sized from the file's length where it has one (not /proc's), so a
    // large file is not held twice while its buffer doubles.
    let size = file.metadata().map_or(0, |m| m.len().min(limit));
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            what: "the file is",
            kind,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_by_kind_without_being_read() {
        let fifo = std::env::temp_dir().join(format!("modscope-input-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_bounded(&fifo, limit::CONFIG, "kernel config").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a FIFO)");
        std::fs::remove_file(&fifo).unwrap();
        let err = read_bounded(Path::new("/dev/zero"), limit::CONFIG, "kernel config").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a device)");
        let err = read_bounded(Path::new("/tmp"), limit::CONFIG, "kernel config").unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a directory)");
    }

    #[test]
    fn a_file_past_its_bound_is_refused_and_one_at_it_is_read() {
        let path = std::env::temp_dir().join(format!("modscope-input-big-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        let err = read_bounded(&path, 1024, "keyring").unwrap_err();
        assert!(
            matches!(err, InputError::TooLarge { limit: 1024, .. }),
            "{err}"
        );
        assert_eq!(read_bounded(&path, 2048, "keyring").unwrap().len(), 2048);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn proc_files_that_claim_no_size_are_read_whole() {
        let text = read_bounded(Path::new("/proc/self/status"), 1 << 20, "proc file").unwrap();
        assert!(String::from_utf8_lossy(&text).contains("Name:"));
    }
}
