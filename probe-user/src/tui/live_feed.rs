//! The live session as a source: records from its tap (a bounded channel),
//! and the wall clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    time::{Duration, Instant},
};

use super::{
    app::{Action, App, Mode},
    run::{Feed, FeedState},
};
use crate::{kernel::clock, trace::TraceRecord};

pub struct LiveFeed {
    pub records: Receiver<TraceRecord>,
    /// Records the session could not hand over (the view was behind).
    pub dropped: Arc<AtomicU64>,
}

impl Feed for LiveFeed {
    fn pump(&mut self, app: &mut App, _elapsed: Duration, budget: Duration) -> FeedState {
        let started = Instant::now();
        let mut n = 0u32;
        let state = loop {
            match self.records.try_recv() {
                Ok(r) => {
                    app.apply(&r);
                }
                Err(TryRecvError::Empty) => break FeedState::Running,
                Err(TryRecvError::Disconnected) => break FeedState::Ended,
            }
            n += 1;
            if n.is_multiple_of(256) && started.elapsed() >= budget {
                break FeedState::Running;
            }
        };
        app.model.advance(clock::boot_ns());
        app.mode = Mode::Live {
            dropped: self.dropped.load(Ordering::Relaxed),
        };
        state
    }

    fn act(&mut self, _app: &mut App, _action: Action) {}
}
