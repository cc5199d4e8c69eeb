//! Keeping the verdicts current: the module tree checked in the background
//! at low priority, and every watched file or module file checked again
//! when inotify says it changed (written, moved in, its metadata changed)
//! or forgotten when it goes. Results go to the session as
//! [`CatalogUpdate`]s; the session writes them into the kernel's map.

use std::{
    collections::HashMap,
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use modscope_analysis::target::TargetKernel;
use probe_common::guard::Judgement;
use tokio::sync::mpsc::UnboundedSender;

use super::catalog::{self, CheckedFile};

/// What the guard watches: files named by `--watch`, directories named by
/// `--watch` (their module files), and the module tree of this kernel.
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    pub tree: Option<PathBuf>,
}

impl WatchSet {
    /// Splits `--watch` paths into files and directories.
    pub fn new(watch: &[PathBuf], tree: Option<PathBuf>) -> Self {
        let (dirs, files) = watch.iter().cloned().partition(|p| p.is_dir());
        Self { files, dirs, tree }
    }

    /// The files named, and the module files in the named directories.
    pub fn named_files(&self) -> Vec<PathBuf> {
        let mut all = self.files.clone();
        for d in &self.dirs {
            all.extend(catalog::module_tree(d).0);
        }
        all
    }
}

#[derive(Debug)]
pub enum CatalogUpdate {
    /// A file checked (again); `named`: by `--watch`, or changed since
    /// the guard started, so worth a line of its own.
    Checked { file: CheckedFile, named: bool },
    /// The file is gone: its verdict goes too.
    Gone(PathBuf),
    /// The module tree's first pass is done.
    TreeChecked {
        files: usize,
        incompatible: usize,
        unchecked: usize,
        seconds: f64,
    },
    /// A path that cannot be watched, and why.
    NotWatched { path: PathBuf, error: String },
}

const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM);

/// Starts the watcher and, when there is a tree, its background check.
pub fn spawn(
    set: WatchSet,
    target: Arc<TargetKernel>,
    updates: UnboundedSender<CatalogUpdate>,
) -> std::io::Result<()> {
    let mut watcher = Watcher::new(&set, updates.clone())?;
    let tree_files = set.tree.as_deref().map(|t| watcher.watch_tree(t));
    let for_watcher = Arc::clone(&target);
    std::thread::Builder::new()
        .name("guard-watch".into())
        .spawn(move || watcher.run(&for_watcher))?;
    if let Some(files) = tree_files {
        std::thread::Builder::new()
            .name("guard-tree".into())
            .spawn(move || check_tree(&files, &target, &updates))?;
    }
    Ok(())
}

/// The first pass over the module tree, at the lowest priority: loads the
/// guard sees before it is done are judged by what is checked so far.
fn check_tree(files: &[PathBuf], target: &TargetKernel, updates: &UnboundedSender<CatalogUpdate>) {
    crate::kernel::thread_priority::lowest();
    let start = Instant::now();
    let (mut incompatible, mut unchecked) = (0, 0);
    for path in files {
        let file = catalog::check(path, target);
        match file.judgement {
            Judgement::Incompatible => incompatible += 1,
            Judgement::Unchecked => unchecked += 1,
            _ => {}
        }
        if updates
            .send(CatalogUpdate::Checked { file, named: false })
            .is_err()
        {
            return;
        }
    }
    let _ = updates.send(CatalogUpdate::TreeChecked {
        files: files.len(),
        incompatible,
        unchecked,
        seconds: start.elapsed().as_secs_f64(),
    });
}

struct Watcher {
    inotify: Inotify,
    /// Watch → its directory, and whether every module file in it counts
    /// (a watched directory, the tree) or only the named files.
    dirs: HashMap<WatchDescriptor, (PathBuf, bool)>,
    named: Vec<PathBuf>,
    updates: UnboundedSender<CatalogUpdate>,
}

impl Watcher {
    fn new(set: &WatchSet, updates: UnboundedSender<CatalogUpdate>) -> std::io::Result<Self> {
        let mut w = Self {
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            named: set.files.clone(),
            updates,
        };
        for f in &set.files {
            let parent = f.parent().filter(|p| !p.as_os_str().is_empty());
            w.watch_dir(parent.unwrap_or(Path::new(".")), false);
        }
        for d in &set.dirs {
            for sub in catalog::module_tree(d).1 {
                w.watch_dir(&sub, true);
            }
        }
        Ok(w)
    }

    /// Watches every directory of the tree; returns its module files.
    fn watch_tree(&mut self, tree: &Path) -> Vec<PathBuf> {
        let (files, dirs) = catalog::module_tree(tree);
        for d in dirs {
            self.watch_dir(&d, true);
        }
        files
    }

    fn watch_dir(&mut self, dir: &Path, every_module: bool) {
        match self.inotify.watches().add(dir, MASK) {
            Ok(wd) => {
                let entry = self.dirs.entry(wd).or_insert((dir.to_owned(), false));
                entry.1 |= every_module;
            }
            Err(e) => {
                let _ = self.updates.send(CatalogUpdate::NotWatched {
                    path: dir.to_owned(),
                    error: e.to_string(),
                });
            }
        }
    }

    fn run(mut self, target: &TargetKernel) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let changed: Vec<(PathBuf, EventMask)> =
                match self.inotify.read_events_blocking(&mut buffer) {
                    Ok(events) => events
                        .filter_map(|e| self.path_of(&e.wd, e.name).map(|p| (p, e.mask)))
                        .collect(),
                    Err(_) => return,
                };
            for (path, mask) in changed {
                if !self.changed(&path, mask, target) {
                    return;
                }
            }
        }
    }

    /// The changed path, when it is one the guard judges.
    fn path_of(&self, wd: &WatchDescriptor, name: Option<&OsStr>) -> Option<PathBuf> {
        let (dir, every_module) = self.dirs.get(wd)?;
        let path = dir.join(name?);
        let wanted = self.named.contains(&path)
            || (*every_module && catalog::is_module_file(&path.to_string_lossy()))
            || (*every_module && path.is_dir());
        wanted.then_some(path)
    }

    /// Handles one change; false once the session is gone.
    fn changed(&mut self, path: &Path, mask: EventMask, target: &TargetKernel) -> bool {
        if mask.contains(EventMask::ISDIR) {
            if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                for d in catalog::module_tree(path).1 {
                    self.watch_dir(&d, true);
                }
            }
            return true;
        }
        let update = if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
            CatalogUpdate::Gone(path.to_owned())
        } else {
            CatalogUpdate::Checked {
                file: catalog::check(path, target),
                named: true,
            }
        };
        self.updates.send(update).is_ok()
    }
}
