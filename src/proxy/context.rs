//! What every connection of a proxy shares ([`Context`]), and the timeouts and random sources
//! derived from the settings.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::behavior::Direction;
use crate::config::Settings;
use crate::hub::Hub;
use crate::protocol::Protocol;
use crate::proxy::guards::Tracker;
use crate::stats::Stats;
use crate::sys::workers::Workers;

/// What every connection of a proxy shares.
pub(crate) struct Context {
    pub settings: Settings,
    pub protocol: Arc<dyn Protocol>,
    pub hub: Arc<Hub>,
    pub workers: Arc<Workers>,
    pub stats: Arc<Stats>,
    /// Read buffer size: the protocol's `buffer` when given, else `--bufsize`.
    pub bufsize: usize,
    /// Read buffers of `bufsize` bytes, held by stream pumps only while data flows.
    pub buffers: Arc<crate::sys::buffers::Buffers>,
    /// Empty pipes for the chunks of a transparent mix, held only while data flows.
    #[cfg(target_os = "linux")]
    pub(crate) pipes: crate::sys::splice::Pipes,
    /// The read timeout accepted sockets inherit from the listener (Linux), set to what
    /// this proxy's protocol wants on a client socket, so that no connection has to set it.
    pub(crate) accepted_read_timeout: Option<Duration>,
    /// Idle backend connections kept for reuse.
    pub pool: crate::proxy::backend_pool::BackendPool,
    pub(crate) tracker: Arc<Tracker>,
    /// Hung clients that half-closed, held open without a thread.
    pub(crate) parking: Arc<crate::proxy::parking::Parking>,
    /// When running out of a resource (descriptors, memory) was last logged.
    pub(crate) exhausted: OncePerSecond,
}

/// Lets a warning through at most once a second: running out of descriptors fails every
/// accept and every backend connection, and one line per failure would flood the log.
#[derive(Default)]
pub(crate) struct OncePerSecond(Mutex<Option<Instant>>);

impl OncePerSecond {
    /// Whether a warning may be logged now (then not again for a second).
    pub(crate) fn allow(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Mixes bits (splitmix64), so nearby seeds give unrelated streams.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How long a connection may stay idle both ways: `--timeout`, unless zero or
/// `--stay-connected`.
pub(crate) fn idle_timeout(settings: &Settings) -> Option<Duration> {
    (!settings.stay_connected && !settings.timeout.is_zero()).then_some(settings.timeout)
}

/// The read timeout of a stream pump: half the idle timeout, so that it checks activity in
/// the other direction in time.
pub(crate) fn stream_poll(idle: Option<Duration>) -> Option<Duration> {
    idle.map(|t| (t / 2).max(Duration::from_millis(10)))
}

impl Context {
    /// Logs that the backend at `backend` could not be reached for client `peer` of
    /// connection `id`, whose socket is then closed; out of resources, at most once a second.
    pub(crate) fn warn_backend_failed(
        &self,
        id: u64,
        peer: SocketAddr,
        backend: &str,
        e: &io::Error,
    ) {
        self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
        if !crate::net::is_resource_exhaustion(e) {
            log::warn!("#{id} {peer}: backend {backend}: {e}; closing the client connection");
        } else if self.exhausted.allow() {
            log::warn!(
                "#{id} {peer}: backend {backend}: {e}; closing the client connection (and \
                 others that fail alike, logged at most once a second)"
            );
        }
    }

    /// Gives an accepted client socket the read timeout `want`, unless it inherited it.
    pub(crate) fn set_client_read_timeout(
        &self,
        client: &TcpStream,
        want: Option<Duration>,
    ) -> io::Result<()> {
        if cfg!(target_os = "linux") && want == self.accepted_read_timeout {
            return Ok(());
        }
        client.set_read_timeout(want)
    }

    /// The random source of one direction of connection `id`: derived from `--seed` when
    /// given, so the same seed and traffic replay the same draws.
    pub fn rng(&self, id: u64, dir: Direction) -> fastrand::Rng {
        match self.settings.seed {
            Some(seed) => fastrand::Rng::with_seed(mix64(seed ^ mix64(id * 2 + dir as u64))),
            None => fastrand::Rng::new(),
        }
    }
}
