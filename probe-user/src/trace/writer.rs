//! Writing a trace: records are framed into a buffer, handed to the kernel
//! on `flush` (one write), and forced to the disk on `sync`. The caller
//! decides when (the flush policy lives in the record command); whatever
//! was flushed survives the process being killed, whatever was synced
//! survives the machine stopping.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::FileExt as _,
    path::Path,
};

use thiserror::Error;

use super::{
    frame::{self, Frames, Item, TraceError},
    records::TraceRecord,
};

#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("cannot append: {0}")]
    NotATrace(#[from] TraceError),
}

pub struct TraceWriter {
    file: File,
    pending: Vec<u8>,
    /// Bytes in the file, flushed.
    written: u64,
    records: u64,
}

/// What opening for append found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppendInfo {
    /// Bytes of a torn last record that were cut off (unreadable anyway).
    pub dropped_tail: u64,
    pub existing_records: u64,
}

impl TraceWriter {
    /// A new trace at `path`, replacing any file there.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        let mut file = File::create(path)?;
        file.write_all(&frame::file_header())?;
        Ok(Self {
            file,
            pending: Vec::with_capacity(64 << 10),
            written: frame::FILE_HEADER_LEN as u64,
            records: 0,
        })
    }

    /// Continues the trace at `path` (created if missing). A torn record at
    /// its end, left by a capture that was killed, is cut off so the new
    /// frames follow the last intact one.
    pub fn append(path: &Path) -> Result<(Self, AppendInfo), WriteError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        if data.is_empty() {
            file.write_all(&frame::file_header())?;
            let w = Self {
                file,
                pending: Vec::with_capacity(64 << 10),
                written: frame::FILE_HEADER_LEN as u64,
                records: 0,
            };
            return Ok((w, AppendInfo::default()));
        }
        let frames = frame::frames_of(&data)?;
        let mut end = frame::FILE_HEADER_LEN as u64;
        let mut records = 0;
        let mut iter = Frames::new(frames);
        while let Some(item) = iter.next() {
            if let Item::Record { .. } = item {
                records += 1;
                end = iter.offset();
            }
        }
        let len = data.len() as u64;
        // Only a tail that holds no intact frame is cut; damage in the
        // middle stays for the reader to report.
        if end < len {
            file.set_len(end)?;
        }
        file.seek(SeekFrom::Start(end))?;
        let w = Self {
            file,
            pending: Vec::with_capacity(64 << 10),
            written: end,
            records,
        };
        Ok((
            w,
            AppendInfo {
                dropped_tail: len - end,
                existing_records: records,
            },
        ))
    }

    pub fn write(&mut self, record: &TraceRecord) {
        frame::encode_frame(record, &mut self.pending);
        self.records += 1;
    }

    /// Hands buffered frames to the kernel in one write.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.written)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Flushes, then waits until the data is on the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    pub fn bytes(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    pub fn records(&self) -> u64 {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{read_trace, samples};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("modscope-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn only_flushed_records_reach_the_file() {
        let path = temp("flush.trace");
        let mut w = TraceWriter::create(&path).unwrap();
        let all = samples::all();
        w.write(&all[0]);
        w.write(&all[1]);
        w.flush().unwrap();
        w.write(&all[2]);
        // Not flushed: a reader (or a crash) sees the first two.
        let t = read_trace(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(t.records.len(), 2);
        w.sync().unwrap();
        let t = read_trace(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(t.records.len(), 3);
        assert_eq!(w.bytes(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn append_continues_after_a_torn_tail() {
        let path = temp("append.trace");
        let all = samples::all();
        {
            let mut w = TraceWriter::create(&path).unwrap();
            for r in &all[..3] {
                w.write(r);
            }
            w.flush().unwrap();
        }
        // A capture killed in the middle of a write.
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = bytes.len() - 5;
        bytes.truncate(torn);
        std::fs::write(&path, &bytes).unwrap();

        let (mut w, info) = TraceWriter::append(&path).unwrap();
        assert_eq!(info.existing_records, 2);
        assert!(info.dropped_tail > 0);
        for r in &all[3..] {
            w.write(r);
        }
        w.flush().unwrap();
        let t = read_trace(&std::fs::read(&path).unwrap()).unwrap();
        assert!(t.damage.is_empty(), "{:?}", t.damage);
        let mut expected = all[..2].to_vec();
        expected.extend_from_slice(&all[3..]);
        assert_eq!(
            t.records.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn append_refuses_a_file_that_is_not_a_trace() {
        let path = temp("notes.txt");
        std::fs::write(&path, "my notes, not a trace").unwrap();
        match TraceWriter::append(&path) {
            Err(WriteError::NotATrace(TraceError::NotATrace)) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("appended to a text file"),
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "my notes, not a trace"
        );
    }
}
