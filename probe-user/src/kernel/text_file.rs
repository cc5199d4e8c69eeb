//! The kernel's text files (/proc, /sys, tracefs) read within a bound:
//! they report a size of 0 or 4096 whatever they hold, so the bound is on
//! what is read. /proc/kallsyms of a kernel with thousands of modules is
//! tens of MiB; nothing the session reads comes near the bound.

use std::path::Path;

use modscope_analysis::input;

/// The most read from any one of them.
pub const LIMIT: u64 = 256 << 20;

/// `path`'s text (invalid UTF-8 replaced), or why it cannot be read: not
/// a regular file, past [`LIMIT`], or an I/O error.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    let bytes =
        input::read_bounded(path.as_ref(), LIMIT, "kernel text file").map_err(|e| match e {
            input::InputError::Io(io) => io,
            other => std::io::Error::other(other),
        })?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_read_whole_and_special_files_are_refused() {
        let status = read("/proc/self/status").unwrap();
        assert!(status.contains("Name:"), "{status}");
        let err = read("/dev/zero").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(
            read("/nonexistent/x").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
