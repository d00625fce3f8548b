//! Shared test helpers, one file per subject: [`proxy`] starts `vaurien` processes on port 0
//! and talks to their API; [`backend`] has the test backends and the socket helpers clients
//! use; [`servers`] finds, starts and stops the real servers and tools of `make test-real`.
//! Every blocking step is bounded by [`within`].

#![allow(dead_code)]

use std::thread;
use std::time::Duration;

mod backend;
mod proxy;
mod servers;

pub use backend::*;
pub use proxy::*;
pub use servers::*;

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what}: failed (see the panic above)")
        }
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

/// Asserts `actual` is within `tolerance` of `expected`.
pub fn assert_delta(actual: Duration, expected: Duration, tolerance: Duration, what: &str) {
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= tolerance,
        "{what}: {actual:?} is not within {tolerance:?} of {expected:?}"
    );
}
