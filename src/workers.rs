//! The worker pool: threads that grow on demand and leave when idle.
//!
//! A job is handed over a zero-capacity channel, so it goes to a worker that is already
//! waiting; when none is, a new thread starts with the job. A worker with nothing to do for
//! `idle` leaves, so the pool shrinks back after a burst.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// A unit of work: usually one connection, or one direction of it.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of every worker thread: the data path keeps its buffers on the heap.
pub const STACK_SIZE: usize = 128 * 1024;

/// A pool of worker threads.
#[derive(Debug)]
pub struct Workers {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    idle: Duration,
    threads: Arc<AtomicUsize>,
}

impl Workers {
    /// A pool whose threads leave after `idle` without work.
    pub fn new(idle: Duration) -> Arc<Workers> {
        let (tx, rx) = bounded(0);
        Arc::new(Workers {
            tx,
            rx,
            idle,
            threads: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `job` on an idle worker, or on a new one.
    pub fn execute(&self, job: Job) -> io::Result<()> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => self.spawn(job),
        }
    }

    /// Threads alive now.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    fn spawn(&self, first: Job) -> io::Result<()> {
        let rx = self.rx.clone();
        let idle = self.idle;
        let threads = self.threads.clone();
        threads.fetch_add(1, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name("vaurien-worker".into())
            .stack_size(STACK_SIZE)
            .spawn({
                let threads = threads.clone();
                move || {
                    run(first);
                    while let Ok(job) = rx.recv_timeout(idle) {
                        run(job);
                    }
                    threads.fetch_sub(1, Ordering::Relaxed);
                }
            });
        spawned.map(drop).inspect_err(|_| {
            threads.fetch_sub(1, Ordering::Relaxed);
        })
    }
}

/// Runs one job; a panic ends that job only.
fn run(job: Job) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        log::error!("a connection ended on a bug: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_workers_are_reused_and_panics_stay_contained() {
        let pool = Workers::new(Duration::from_secs(5));
        let (done_tx, done_rx) = bounded(0);
        pool.execute(Box::new(|| panic!("boom"))).unwrap();
        for i in 0..20 {
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || done_tx.send(i).unwrap()))
                .unwrap();
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap(), i);
        }
        assert!(
            pool.threads() <= 3,
            "sequential jobs should reuse workers, got {}",
            pool.threads()
        );
    }

    #[test]
    fn workers_leave_when_idle() {
        let pool = Workers::new(Duration::from_millis(20));
        let (tx, rx) = bounded(1);
        pool.execute(Box::new(move || tx.send(()).unwrap()))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.threads() > 0 {
            assert!(std::time::Instant::now() < deadline, "worker did not leave");
            thread::sleep(Duration::from_millis(5));
        }
    }
}
