//! Where a session's events go: one line each on standard output, as JSON
//! or text, or nowhere while a trace file or the TUI takes them.

use super::error::{Result, SessionError};
use std::io::{self, Write as _};

use super::event::Event;

pub struct Output {
    pub json: bool,
    /// Recording to a file without --json, or the TUI: no per-event lines.
    pub quiet: bool,
}

impl Output {
    pub fn emit(&mut self, event: &Event) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        let line = if self.json {
            event.to_json()
        } else {
            event.to_text()
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(SessionError::io("writing to standard output"))
    }
}
