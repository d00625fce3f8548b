//! Counters shared by every connection: plain atomics, no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::behavior::Direction;

/// Proxy-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Client connections accepted since start.
    pub connections_total: AtomicU64,
    /// Bytes forwarded toward backends.
    pub bytes_to_backend: AtomicU64,
    /// Bytes forwarded toward clients.
    pub bytes_to_client: AtomicU64,
    /// Backend connections that failed (refused, unreachable, timed out).
    pub backend_errors: AtomicU64,
}

impl Stats {
    /// Counts bytes forwarded in one direction.
    pub fn add_bytes(&self, dir: Direction, n: usize) {
        match dir {
            Direction::ToBackend => self.bytes_to_backend.fetch_add(n as u64, Relaxed),
            Direction::ToClient => self.bytes_to_client.fetch_add(n as u64, Relaxed),
        };
    }

    /// Counts a connection opening; the guard counts it closing.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(self.clone())
    }
}

/// Counts one open connection while alive.
#[derive(Debug)]
pub struct OpenConnection(Arc<Stats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}
