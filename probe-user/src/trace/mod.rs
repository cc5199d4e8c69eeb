//! Trace files: what `modscope record -o` writes and `modscope report`
//! (and replay) read. Layers, bottom up: `codec` (varints, strings),
//! `records` (the record kinds), `frame` (file header, checksummed frames,
//! resynchronisation), `writer` (buffered append with flush and sync),
//! `replay` (records folded into per-session state), `report` (the per-module
//! report built from that state).

pub mod call_report;
pub mod codec;
pub mod display;
pub mod files;
pub mod frame;
mod guard_codec;
pub mod guard_display;
mod reason_codec;
pub mod record_codec;
pub mod records;
pub mod replay;
pub mod report;
#[doc(hidden)]
pub mod samples;
pub mod writer;

pub use frame::{Damage, TraceError};
pub use records::TraceRecord;
pub use writer::TraceWriter;

/// Everything readable in a trace file, in order.
#[derive(Debug, Default)]
pub struct Trace {
    /// Each record with its offset in the file.
    pub records: Vec<(u64, TraceRecord)>,
    pub damage: Vec<Damage>,
}

/// Reads a whole trace. Errors only when the file is not a trace at all;
/// damaged and cut-short stretches are listed in `damage`.
pub fn read_trace(file: &[u8]) -> Result<Trace, TraceError> {
    let mut t = Trace::default();
    for item in frame::Frames::new(frame::frames_of(file)?) {
        match item {
            frame::Item::Record { offset, record } => t.records.push((offset, record)),
            frame::Item::Damaged(d) => t.damage.push(d),
        }
    }
    Ok(t)
}
