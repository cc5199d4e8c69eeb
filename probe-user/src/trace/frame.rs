//! The file around the records: a 16-byte file header (magic and format
//! version), then frames `[b"MS"][u32 length][u32 CRC-32][payload]`, all
//! little-endian. The CRC covers the length and the payload. A frame is
//! self-contained, so a file is appended to by writing more frames, and a
//! reader that meets damage finds the next intact frame by its marker,
//! length and checksum.

use bytes::{Buf, BufMut};
use thiserror::Error;

use super::{codec::DecodeError, records::TraceRecord};

pub const FILE_MAGIC: &[u8; 15] = b"MODSCOPE TRACE\n";
pub const FORMAT_VERSION: u8 = 1;
pub const FILE_HEADER_LEN: usize = 16;
const FRAME_MARKER: [u8; 2] = *b"MS";
pub const FRAME_HEADER_LEN: usize = 10;
/// No record comes near this; a larger length is damage.
pub const MAX_PAYLOAD: usize = 16 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("not a modscope trace (no \"MODSCOPE TRACE\" header)")]
    NotATrace,
    #[error(
        "trace format version {0} is newer than this modscope reads (version {FORMAT_VERSION}); \
         use a newer modscope"
    )]
    NewerVersion(u8),
}

pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0; FILE_HEADER_LEN];
    h[..15].copy_from_slice(FILE_MAGIC);
    h[15] = FORMAT_VERSION;
    h
}

/// Checks the file header; returns the frames that follow it.
pub fn frames_of(file: &[u8]) -> Result<&[u8], TraceError> {
    if file.len() < FILE_HEADER_LEN || &file[..15] != FILE_MAGIC {
        return Err(TraceError::NotATrace);
    }
    match file[15] {
        0 => Err(TraceError::NotATrace),
        v if v > FORMAT_VERSION => Err(TraceError::NewerVersion(v)),
        _ => Ok(&file[FILE_HEADER_LEN..]),
    }
}

/// Appends one framed record to `out`.
pub fn encode_frame(record: &TraceRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.put_slice(&FRAME_MARKER);
    // Length and CRC, filled in once the payload is there.
    out.put_bytes(0, 8);
    record.encode(&mut super::codec::Encoder { buf: &mut *out });
    let len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start + 2..start + 6].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[start + 2..start + 6], &out[start + FRAME_HEADER_LEN..]);
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// A stretch of the file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset in the file.
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

/// The frame at the start of `data`, if it is intact: its payload.
fn intact_frame(data: &[u8]) -> Option<&[u8]> {
    if data.len() < FRAME_HEADER_LEN || data[..2] != FRAME_MARKER {
        return None;
    }
    let mut header = &data[2..FRAME_HEADER_LEN];
    let len = header.get_u32_le() as usize;
    let crc = header.get_u32_le();
    if len > MAX_PAYLOAD || data.len() - FRAME_HEADER_LEN < len {
        return None;
    }
    let payload = &data[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    (checksum(&data[2..6], payload) == crc).then_some(payload)
}

/// Why the bytes at the start of `data` are not an intact frame.
fn diagnose(data: &[u8]) -> String {
    if data.len() < FRAME_HEADER_LEN {
        return "truncated frame header at the end of the file (capture cut short)".into();
    }
    if data[..2] != FRAME_MARKER {
        return "no frame marker".into();
    }
    let len = (&data[2..6]).get_u32_le() as usize;
    if len > MAX_PAYLOAD {
        format!("frame length {len} is impossible")
    } else if data.len() - FRAME_HEADER_LEN < len {
        format!(
            "last frame is cut short: {} of {len} bytes present (capture cut short)",
            data.len() - FRAME_HEADER_LEN
        )
    } else {
        "checksum mismatch".into()
    }
}

/// One step of reading a trace.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Record { offset: u64, record: TraceRecord },
    Damaged(Damage),
}

/// Reads frames in order. Never fails: damage is an item, and reading
/// resumes at the next intact frame.
pub struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`.
    base: u64,
}

impl<'a> Frames<'a> {
    /// `frames` as returned by [`frames_of`].
    pub fn new(frames: &'a [u8]) -> Self {
        Self {
            data: frames,
            pos: 0,
            base: FILE_HEADER_LEN as u64,
        }
    }

    /// File offset just past the last intact frame read so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
}

impl Iterator for Frames<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let rest = &self.data[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let offset = self.base + self.pos as u64;
        if let Some(payload) = intact_frame(rest) {
            self.pos += FRAME_HEADER_LEN + payload.len();
            return Some(match TraceRecord::decode(payload) {
                Ok(record) => Item::Record { offset, record },
                Err(e) => Item::Damaged(Damage {
                    offset,
                    bytes: (FRAME_HEADER_LEN + payload.len()) as u64,
                    reason: undecodable(&e),
                }),
            });
        }
        let reason = diagnose(rest);
        // The next intact frame, found by its marker.
        let skip = (1..rest.len())
            .find(|&i| rest[i] == FRAME_MARKER[0] && intact_frame(&rest[i..]).is_some())
            .unwrap_or(rest.len());
        self.pos += skip;
        Some(Item::Damaged(Damage {
            offset,
            bytes: skip as u64,
            reason,
        }))
    }
}

fn undecodable(e: &DecodeError) -> String {
    format!("intact frame with an undecodable record: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::samples;

    fn file(records: &[TraceRecord]) -> Vec<u8> {
        let mut out = file_header().to_vec();
        for r in records {
            encode_frame(r, &mut out);
        }
        out
    }

    fn read(file: &[u8]) -> (Vec<TraceRecord>, Vec<Damage>) {
        let mut records = Vec::new();
        let mut damage = Vec::new();
        for item in Frames::new(frames_of(file).unwrap()) {
            match item {
                Item::Record { record, .. } => records.push(record),
                Item::Damaged(d) => damage.push(d),
            }
        }
        (records, damage)
    }

    #[test]
    fn a_clean_file_reads_back_exactly() {
        let all = samples::all();
        let (records, damage) = read(&file(&all));
        assert_eq!(records, all);
        assert!(damage.is_empty());
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(frames_of(b"ELF...").unwrap_err(), TraceError::NotATrace);
        let mut h = file_header();
        h[15] = FORMAT_VERSION + 1;
        assert_eq!(
            frames_of(&h).unwrap_err(),
            TraceError::NewerVersion(FORMAT_VERSION + 1)
        );
    }

    #[test]
    fn every_cut_keeps_every_whole_record_before_it() {
        let all = samples::all();
        let f = file(&all);
        let mut ends = vec![FILE_HEADER_LEN];
        for r in &all {
            ends.push(ends.last().unwrap() + file(std::slice::from_ref(r)).len() - FILE_HEADER_LEN);
        }
        for cut in FILE_HEADER_LEN..=f.len() {
            let (records, damage) = read(&f[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(records, all[..whole], "cut at {cut}");
            let torn = !ends.contains(&cut);
            assert_eq!(damage.len(), usize::from(torn), "cut at {cut}");
            if torn {
                assert!(damage[0].reason.contains("cut short"), "{:?}", damage[0]);
            }
        }
    }

    #[test]
    fn a_flipped_byte_loses_one_record_only() {
        let all = samples::all();
        let f = file(&all);
        for at in FILE_HEADER_LEN..f.len() {
            let mut g = f.clone();
            g[at] ^= 0x55;
            let (records, damage) = read(&g);
            assert_eq!(records.len(), all.len() - 1, "flip at {at}");
            assert_eq!(damage.len(), 1, "flip at {at}: {damage:?}");
            assert!(records.iter().all(|r| all.contains(r)));
        }
    }

    #[test]
    fn garbage_between_frames_is_skipped_and_measured() {
        let all = samples::all();
        let mut f = file(&all[..2]);
        let garbage_at = f.len() as u64;
        f.extend_from_slice(b"xx garbage MS\0\0");
        f.extend_from_slice(&file(&all[2..])[FILE_HEADER_LEN..]);
        let (records, damage) = read(&f);
        assert_eq!(records, all);
        assert_eq!(
            damage,
            vec![Damage {
                offset: garbage_at,
                bytes: 15,
                reason: "no frame marker".into()
            }]
        );
    }
}
