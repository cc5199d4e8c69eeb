//! Standard output for reports: buffered, and every write error returned,
//! never a panic. A full disk or a closed descriptor is an error (one line,
//! exit 1); a closed pipe ends the program quietly (SIGPIPE's default,
//! restored in `main`).

use std::io::{BufWriter, StdoutLock, Write as _};

use anyhow::Context as _;

pub type Stdout = BufWriter<StdoutLock<'static>>;

pub fn lock() -> Stdout {
    BufWriter::new(std::io::stdout().lock())
}

/// Writes with `write`, then flushes: the error names standard output.
pub fn write_with(write: impl FnOnce(&mut Stdout) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut out = lock();
    write(&mut out)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}
