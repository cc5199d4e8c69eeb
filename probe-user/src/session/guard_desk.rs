//! The guard in a session: which file each verdict in the kernel's map
//! belongs to, the verdicts kept current as files change
//! (`guard::watcher`'s updates), and each decision the programs report
//! turned into a trace record with the file and `check`'s reasons.
//! The bookkeeping is pure (`accept`, `record`); the session writes the
//! map.

use std::{collections::HashMap, path::PathBuf};

use probe_common::{FileKey, GuardEvent, guard::Judgement};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    guard::{catalog::CheckedFile, watcher::CatalogUpdate},
    trace::{
        display::sanitize,
        records::{Decision, GuardRecord, Policy, Stage},
    },
};

/// What the kernel's verdicts map must do for one accepted check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapChange {
    /// The file's previous identity, no longer valid.
    pub forget: Option<FileKey>,
    /// The file's identity now and its verdict (none for a file without
    /// one: it stays unchecked).
    pub judge: Option<(FileKey, Judgement)>,
}

pub struct GuardDesk {
    pub policy: Policy,
    files: HashMap<PathBuf, CheckedFile>,
    by_key: HashMap<FileKey, PathBuf>,
    /// (device, inode) → the file last seen there: names a file that
    /// changed after its check.
    by_inode: HashMap<(u64, u64), PathBuf>,
    /// The watcher's results; taken by the stream loop.
    pub updates: Option<UnboundedReceiver<CatalogUpdate>>,
}

impl GuardDesk {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            files: HashMap::new(),
            by_key: HashMap::new(),
            by_inode: HashMap::new(),
            updates: None,
        }
    }

    /// Takes a (new) check of a file; says what changes in the map.
    pub fn accept(&mut self, file: CheckedFile) -> MapChange {
        let mut change = MapChange::default();
        if let Some(old) = self.files.remove(&file.path)
            && let Some(key) = old.key
            && Some(key) != file.key
        {
            self.by_key.remove(&key);
            change.forget = Some(key);
        }
        if let Some(key) = file.key {
            self.by_key.insert(key, file.path.clone());
            self.by_inode.insert((key.dev, key.ino), file.path.clone());
            if file.judgement != Judgement::Unchecked {
                change.judge = Some((key, file.judgement));
            }
        }
        self.files.insert(file.path.clone(), file);
        change
    }

    /// A file that went away: its verdict goes.
    pub fn forget(&mut self, path: &std::path::Path) -> Option<FileKey> {
        let old = self.files.remove(path)?;
        let key = old.key?;
        self.by_key.remove(&key);
        Some(key)
    }

    pub fn checked_files(&self) -> usize {
        self.files.len()
    }

    /// The trace record for one decision of the programs: the file and its
    /// reasons when the guard checked it as it is now; the path alone when
    /// it changed since.
    pub fn record(&self, e: &GuardEvent) -> GuardRecord {
        let stage = Stage::try_from(e.stage).unwrap_or(Stage::File);
        let checked = (stage == Stage::File)
            .then(|| self.by_key.get(&e.key))
            .flatten()
            .and_then(|p| self.files.get(p));
        let file = match checked {
            Some(c) => c.path.display().to_string(),
            None => self
                .by_inode
                .get(&(e.key.dev, e.key.ino))
                .filter(|_| stage == Stage::File)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        let image_name = sanitize(&String::from_utf8_lossy(e.name.as_bytes()));
        GuardRecord {
            ts_ns: e.header.ts_ns,
            stage,
            decision: Decision::try_from(e.decision).unwrap_or(Decision::Allowed),
            judgement: Judgement::try_from(e.judgement).unwrap_or(Judgement::Unchecked),
            policy: Policy::try_from(e.policy).unwrap_or(self.policy),
            pid: (e.pid_tgid >> 32) as u32,
            comm: sanitize(&String::from_utf8_lossy(nul_trimmed(&e.comm))),
            module: checked
                .map(|c| c.module.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or(image_name),
            file,
            dev: e.key.dev,
            ino: e.key.ino,
            module_size: e.module_size,
            kernel_size: e.kernel_size,
            reasons: checked.map(|c| c.reasons.clone()).unwrap_or_default(),
        }
    }
}

fn nul_trimmed(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
#[path = "guard_desk_tests.rs"]
mod tests;
