//! The session's kprobes, held so that they are detached together. Each
//! detach waits in the kernel for an RCU grace period (`unregister_kprobe`
//! calls `synchronize_rcu` after taking the probe out): one after another,
//! 75 probes waited 75 grace periods, about 6 s in a TCG guest. Detached
//! from several threads at once, the waits overlap.

use aya::programs::kprobe::KProbeLink;

use super::kprobe_pmu::PmuKprobe;

/// At most this many threads detach at once.
const DETACHING_THREADS: usize = 16;

/// An attached kprobe: aya's, or one of a loader copy's (`kprobe_pmu`).
/// Held for its drop, which detaches it; never read.
#[expect(dead_code, reason = "held for its drop, which detaches")]
enum HeldKprobe {
    Aya(KProbeLink),
    Pmu(PmuKprobe),
}

/// Attached kprobes, detached when this is dropped.
#[derive(Default)]
pub struct KProbeLinks(Vec<HeldKprobe>);

impl KProbeLinks {
    pub fn keep(&mut self, links: impl IntoIterator<Item = KProbeLink>) {
        self.0.extend(links.into_iter().map(HeldKprobe::Aya));
    }

    pub fn keep_pmu(&mut self, links: impl IntoIterator<Item = PmuKprobe>) {
        self.0.extend(links.into_iter().map(HeldKprobe::Pmu));
    }
}

impl Drop for KProbeLinks {
    fn drop(&mut self) {
        drop_concurrently(std::mem::take(&mut self.0), DETACHING_THREADS);
    }
}

/// Drops `items` from up to `threads` threads at once, dealt round-robin;
/// where a thread cannot be started, its share is dropped here.
fn drop_concurrently<T: Send>(items: Vec<T>, threads: usize) {
    let threads = threads.clamp(1, items.len().max(1));
    let mut shares: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push(item);
    }
    std::thread::scope(|scope| {
        for share in shares {
            let spawned = std::thread::Builder::new()
                .name("modscope-detach".into())
                .spawn_scoped(scope, move || drop(share));
            // A thread that could not start returned its closure's
            // captures already dropped: its share is detached either way.
            drop(spawned);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::drop_concurrently;
    use std::{
        collections::{BTreeSet, HashSet},
        sync::{Arc, Mutex},
        thread::ThreadId,
    };

    /// Which item was dropped on which thread.
    type Drops = Arc<Mutex<Vec<(usize, ThreadId)>>>;

    /// Records the thread it was dropped on.
    struct Tracked {
        id: usize,
        dropped: Drops,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            let on = std::thread::current().id();
            self.dropped.lock().unwrap().push((self.id, on));
        }
    }

    fn tracked(n: usize) -> (Vec<Tracked>, Drops) {
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let items = (0..n)
            .map(|id| Tracked {
                id,
                dropped: dropped.clone(),
            })
            .collect();
        (items, dropped)
    }

    #[test]
    fn every_item_is_dropped_once_spread_over_the_threads_before_it_returns() {
        let (items, dropped) = tracked(75);
        drop_concurrently(items, 16);
        let dropped = dropped.lock().unwrap();
        let ids: BTreeSet<usize> = dropped.iter().map(|(id, _)| *id).collect();
        assert_eq!(dropped.len(), 75, "each dropped once");
        assert_eq!(ids, (0..75).collect());
        let threads: HashSet<ThreadId> = dropped.iter().map(|(_, t)| *t).collect();
        assert_eq!(threads.len(), 16);
        assert!(!threads.contains(&std::thread::current().id()));
    }

    #[test]
    fn fewer_items_than_threads_take_one_thread_each_and_none_is_fine() {
        let (items, dropped) = tracked(3);
        drop_concurrently(items, 16);
        let threads: HashSet<ThreadId> = dropped.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(threads.len(), 3);
        drop_concurrently(Vec::<Tracked>::new(), 16);
    }
}
