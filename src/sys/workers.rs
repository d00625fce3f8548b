//! The worker pool: threads that grow on demand and leave when idle.
//!
//! Idle workers wait on a stack, each on its own slot; a job goes to the worker that became
//! idle last (its stack and caches are warm), or to a new thread when none is idle. A
//! handoff is one mutex and one condition-variable wake-up, with no spinning or yielding,
//! which matters when a proxy with two cores opens thousands of connections a second. A
//! worker with nothing to do for `idle` leaves, so the pool shrinks back after a burst.
//!
//! On Linux the threads come from `pthread_create`, not `std::thread`: a std thread costs 4
//! memory mappings (stack, guard page, and the signal stack std adds, with its own guard),
//! a bare pthread 2, and `vm.max_map_count` (65530 by default) caps a process's mappings. At
//! two workers per stream connection, std threads stop the proxy near 8,000 connections.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A unit of work: usually one connection, or one direction of it.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of every worker thread: the data path keeps its buffers on the heap.
pub const STACK_SIZE: usize = 128 * 1024;

/// Where an idle worker waits for its next job.
#[derive(Default)]
struct Slot {
    job: Mutex<Option<Job>>,
    ready: Condvar,
}

/// What the pool and its threads share.
#[derive(Default)]
struct Shared {
    /// Idle workers, the most recently idle last.
    idle_workers: Mutex<Vec<Arc<Slot>>>,
    /// Set when the pool is dropped: idle workers leave at once.
    closed: AtomicBool,
}

/// Locks, whatever a panicking holder left: every critical section here is one push, pop
/// or assignment.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pool of worker threads.
pub struct Workers {
    shared: Arc<Shared>,
    idle: Duration,
    threads: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// A pool whose threads leave after `idle` without work.
    pub fn new(idle: Duration) -> Arc<Workers> {
        Arc::new(Workers {
            shared: Arc::default(),
            idle,
            threads: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `job` on an idle worker, or on a new one.
    pub fn execute(&self, job: Job) -> io::Result<()> {
        let slot = lock(&self.shared.idle_workers).pop();
        match slot {
            Some(slot) => {
                *lock(&slot.job) = Some(job);
                slot.ready.notify_one();
                Ok(())
            }
            None => self.spawn(job),
        }
    }

    /// Threads alive now.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    fn spawn(&self, first: Job) -> io::Result<()> {
        let shared = self.shared.clone();
        let idle = self.idle;
        let threads = self.threads.clone();
        threads.fetch_add(1, Ordering::Relaxed);
        let spawned = spawn_detached(Box::new({
            let threads = threads.clone();
            move || {
                run(first);
                let slot = Arc::new(Slot::default());
                while let Some(job) = next_job(&shared, &slot, idle) {
                    run(job);
                }
                threads.fetch_sub(1, Ordering::Relaxed);
            }
        }));
        spawned.inspect_err(|_| {
            threads.fetch_sub(1, Ordering::Relaxed);
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for slot in lock(&self.shared.idle_workers).drain(..) {
            // Under the slot's lock, so a worker between its check and its wait is not missed.
            let _job = lock(&slot.job);
            slot.ready.notify_one();
        }
    }
}

/// Waits, idle, for the next job: `None` after `idle` without one, or once the pool is gone.
fn next_job(shared: &Shared, slot: &Arc<Slot>, idle: Duration) -> Option<Job> {
    if shared.closed.load(Ordering::SeqCst) {
        return None;
    }
    lock(&shared.idle_workers).push(slot.clone());
    let deadline = Instant::now() + idle;
    let mut job = lock(&slot.job);
    loop {
        if let Some(job) = job.take() {
            return Some(job);
        }
        if shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let now = Instant::now();
        if now < deadline {
            job = slot
                .ready
                .wait_timeout(job, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        // Time to leave, unless `execute` took this slot meanwhile: then its job is coming.
        drop(job);
        let mut idle_workers = lock(&shared.idle_workers);
        if let Some(at) = idle_workers.iter().position(|s| Arc::ptr_eq(s, slot)) {
            idle_workers.remove(at);
            return None;
        }
        drop(idle_workers);
        job = lock(&slot.job);
        while job.is_none() {
            job = slot.ready.wait(job).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Starts a detached thread named `vaurien-worker` with a `STACK_SIZE` stack, running `main`.
#[cfg(target_os = "linux")]
fn spawn_detached(main: Job) -> io::Result<()> {
    use std::mem::MaybeUninit;

    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `attr` is storage for one attribute object; once initialised it is destroyed
    // below, exactly once.
    os_result(unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) })?;
    let attr = attr.as_mut_ptr();
    // A thin pointer to the fat `Job`, to travel as the thread's `void *` argument.
    let arg = Box::into_raw(Box::new(main));
    // SAFETY: `attr` is initialised. The default guard page is kept, so an overflow faults.
    // `start` matches the signature pthread_create expects, and takes ownership of `arg`
    // only if the thread is created.
    let rc = unsafe {
        let mut rc = libc::pthread_attr_setstacksize(attr, STACK_SIZE);
        if rc == 0 {
            rc = libc::pthread_attr_setdetachstate(attr, libc::PTHREAD_CREATE_DETACHED);
        }
        if rc == 0 {
            let mut thread = MaybeUninit::<libc::pthread_t>::uninit();
            rc = libc::pthread_create(thread.as_mut_ptr(), attr, start, arg.cast());
        }
        libc::pthread_attr_destroy(attr);
        rc
    };
    if rc != 0 {
        // SAFETY: no thread was started, so nothing else has seen `arg`: it is still the
        // box leaked by `Box::into_raw` above, reclaimed once here.
        drop(unsafe { Box::from_raw(arg) });
    }
    os_result(rc)
}

/// The body of a thread started by `spawn_detached`.
#[cfg(target_os = "linux")]
extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` comes from `Box::into_raw(Box<Job>)` in `spawn_detached`, which gives
    // it up to this thread alone once pthread_create succeeds.
    let main = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // SAFETY: the name is a NUL-terminated string of 14 bytes, within the 16 the kernel
    // takes, and `pthread_self()` is this live thread. Naming is cosmetic: errors are ignored.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"vaurien-worker".as_ptr()) };
    // Unwinding out of an `extern "C"` function aborts the process: stop any panic here.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(*main)) {
        // Forgotten, not dropped: the payload's own `Drop` could panic again.
        std::mem::forget(panic);
    }
    std::ptr::null_mut()
}

/// A pthread function's return code (an errno value, not set in `errno`) as a result.
#[cfg(target_os = "linux")]
fn os_result(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

#[cfg(not(target_os = "linux"))]
fn spawn_detached(main: Job) -> io::Result<()> {
    std::thread::Builder::new()
        .name("vaurien-worker".into())
        .stack_size(STACK_SIZE)
        .spawn(main)
        .map(drop)
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
    use crossbeam_channel::bounded;

    #[test]
    fn idle_workers_are_reused_and_panics_stay_contained() {
        let pool = Workers::new(Duration::from_secs(5));
        // A worker is reusable once it is back on the idle stack, a moment after its job.
        let wait_idle = |pool: &Workers| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while lock(&pool.shared.idle_workers).is_empty() {
                assert!(Instant::now() < deadline, "the worker never became idle");
                std::thread::yield_now();
            }
        };
        let (done_tx, done_rx) = bounded(0);
        pool.execute(Box::new(|| panic!("boom"))).unwrap();
        for i in 0..20 {
            wait_idle(&pool);
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || done_tx.send(i).unwrap()))
                .unwrap();
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap(), i);
        }
        assert_eq!(
            pool.threads(),
            1,
            "one worker ran every job, the panicking one too"
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
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_dropped_pool_lets_its_idle_workers_go_at_once() {
        let pool = Workers::new(Duration::from_secs(600));
        let threads = pool.threads.clone();
        let (tx, rx) = bounded(4);
        for _ in 0..4 {
            let tx = tx.clone();
            pool.execute(Box::new(move || tx.send(()).unwrap()))
                .unwrap();
        }
        for _ in 0..4 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        drop(pool);
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads.load(Ordering::Relaxed) > 0 {
            assert!(
                Instant::now() < deadline,
                "idle workers outlived their pool"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Each worker costs 2 mappings (stack and guard page); a std thread would cost 4.
    #[cfg(target_os = "linux")]
    #[test]
    fn workers_cost_two_mappings_each() {
        const N: usize = 200;
        let maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .count()
        };
        let pool = Workers::new(Duration::from_secs(5));
        let (started_tx, started_rx) = bounded(N);
        let (release_tx, release_rx) = bounded::<()>(0);
        let before = maps();
        for _ in 0..N {
            let started_tx = started_tx.clone();
            let release_rx = release_rx.clone();
            pool.execute(Box::new(move || {
                let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
                started_tx.send(comm).unwrap();
                let _ = release_rx.recv();
            }))
            .unwrap();
        }
        for _ in 0..N {
            let comm = started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(comm.trim_end(), "vaurien-worker");
        }
        let grown = maps().saturating_sub(before);
        assert!(pool.threads() >= N, "{} threads", pool.threads());
        drop(release_tx);
        assert!(
            grown * 2 <= N * 5,
            "{grown} new mappings for {N} threads: more than 2.5 each"
        );
    }
}
