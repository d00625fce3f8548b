//! What a connection holds while it lives: its place in the tracker (so that stopping the
//! proxy can shut it down), its `--max-connections` permit, and its count in the statistics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::Receiver;

use crate::stats::OpenConnection;

/// Something `stop` can shut down: a live connection.
pub(crate) trait Closable: Send + Sync {
    /// Shuts every socket of the connection down, waking its threads.
    fn close_all(&self);
}

/// Live connections, so that stopping the proxy can close them.
#[derive(Default)]
pub(crate) struct Tracker {
    live: Mutex<HashMap<u64, Weak<dyn Closable>>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<dyn Closable>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a live connection until the guard drops.
    pub(crate) fn register(self: &Arc<Self>, id: u64, conn: Weak<dyn Closable>) -> TrackGuard {
        self.lock().insert(id, conn);
        TrackGuard {
            tracker: self.clone(),
            id,
        }
    }

    /// Shuts every live connection down.
    pub(crate) fn close_all(&self) {
        // Upgrade under the lock, close outside it: the last `Arc` of a connection may be
        // dropped here, and its `TrackGuard` takes the lock again.
        let live: Vec<Arc<dyn Closable>> = self.lock().values().filter_map(Weak::upgrade).collect();
        for conn in &live {
            conn.close_all();
        }
    }
}

/// Removes a connection from the tracker when it ends.
pub(crate) struct TrackGuard {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.id);
    }
}

/// One of the `--max-connections` permits, given back when dropped.
pub(crate) struct Permit(pub(crate) Receiver<()>);

impl Drop for Permit {
    fn drop(&mut self) {
        let _ = self.0.try_recv();
    }
}

/// What a connection holds until its last thread is done.
pub(crate) struct ConnectionGuards {
    pub(crate) track: Option<TrackGuard>,
    _open: OpenConnection,
    _permit: Permit,
}

impl ConnectionGuards {
    /// The guards of a connection counted by `open` and holding `permit`, not tracked yet.
    pub(crate) fn new(open: OpenConnection, permit: Permit) -> ConnectionGuards {
        ConnectionGuards {
            track: None,
            _open: open,
            _permit: permit,
        }
    }
}
