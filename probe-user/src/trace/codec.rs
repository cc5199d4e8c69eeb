//! The byte encoding inside trace records: LEB128 varints and
//! length-prefixed UTF-8 strings. Decoding checks every length against
//! what is left, so a damaged record is an error, never a panic.

use bytes::{Buf, BufMut};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record ends early: needed {needed} more bytes at byte {at}")]
    Short { at: usize, needed: usize },
    #[error("varint longer than 10 bytes at byte {at}")]
    VarintTooLong { at: usize },
    #[error("string at byte {at} is not UTF-8")]
    NotUtf8 { at: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("{what} has the invalid value {value}")]
    Invalid { what: &'static str, value: u64 },
    #[error("{extra} bytes left after the record's fields")]
    Trailing { extra: usize },
}

/// Appends encoded values to a buffer (`Vec<u8>`, or the frame being
/// written through `&mut Vec<u8>`).
#[derive(Default)]
pub struct Encoder<B: BufMut = Vec<u8>> {
    pub buf: B,
}

impl<B: BufMut> Encoder<B> {
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    pub fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.put_slice(s.as_bytes());
    }

    pub fn strs<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a String>) {
        self.varint(items.len() as u64);
        for s in items {
            self.str(s);
        }
    }
}

/// Reads encoded values from one record's payload: a `Buf` over the
/// bytes, every read checked against what remains first.
pub struct Decoder<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            len: buf.len(),
        }
    }

    /// Where the next read starts, from the payload's start.
    fn pos(&self) -> usize {
        self.len - self.rest.remaining()
    }

    /// Fails unless `n` more bytes remain.
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        let left = self.rest.remaining();
        if n > left {
            return Err(DecodeError::Short {
                at: self.pos(),
                needed: n - left,
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.rest.get_u8())
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos();
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintTooLong { at: start })
    }

    /// A count of following items, each at least one byte long: bounded by
    /// what is left, so a corrupt count cannot make the reader allocate.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos();
        let n = self.varint()?;
        let left = self.rest.remaining() as u64;
        if n > left {
            return Err(DecodeError::Short {
                at,
                needed: (n - left) as usize,
            });
        }
        Ok(n as usize)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| DecodeError::Invalid { what, value: v })
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::Invalid {
                what,
                value: u64::from(v),
            }),
        }
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        let at = self.pos();
        let n = self.count()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::NotUtf8 { at })
    }

    pub fn strs(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.count()?;
        (0..n).map(|_| self.str()).collect()
    }

    /// Whether the record has bytes left: an optional field added later
    /// (a record written without it ends before it).
    pub fn has_more(&self) -> bool {
        self.rest.has_remaining()
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        match self.rest.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let values = [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX];
        let mut e: Encoder = Encoder::default();
        for v in values {
            e.varint(v);
        }
        let mut d = Decoder::new(&e.buf);
        for v in values {
            assert_eq!(d.varint().unwrap(), v);
        }
        d.finish().unwrap();
    }

    #[test]
    fn damaged_input_is_an_error() {
        assert_eq!(
            Decoder::new(&[0x80; 11]).varint(),
            Err(DecodeError::VarintTooLong { at: 0 })
        );
        // A string claiming 200 bytes with 2 present.
        assert!(matches!(
            Decoder::new(&[200, 1, b'a', b'b']).str(),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(
            Decoder::new(&[2, 0xff, 0xfe]).str(),
            Err(DecodeError::NotUtf8 { at: 0 })
        );
        assert_eq!(
            Decoder::new(&[7]).bool("flag"),
            Err(DecodeError::Invalid {
                what: "flag",
                value: 7
            })
        );
        // A huge count is refused before anything is allocated.
        let mut e: Encoder = Encoder::default();
        e.varint(u64::MAX);
        assert!(matches!(
            Decoder::new(&e.buf).strs(),
            Err(DecodeError::Short { .. })
        ));
    }
}
