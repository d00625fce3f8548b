//! The server: listener, accept loop, connection permits, and each connection's lifecycle.
//!
//! ```text
//! listener ─▶ worker: permit, accept ─▶ connect backend ─▶ protocol (stream pumps)
//!                 ▲                           │
//!   --max-connections permits           Link registered in the tracker, so stop() can
//!   (a bounded channel)                 shut every live socket down
//! ```
//!
//! Worker threads take turns at `accept()` and serve the connection they accept, so a new
//! connection wakes one thread, not an accept thread and then a worker.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::behavior::Direction;
use crate::error::Error;
use crate::hub::{Hub, Live};
use crate::protocol::stream::{self, Link};
use crate::protocol::Protocol;
use crate::settings::{Config, Settings};
use crate::stats::{OpenConnection, Stats};
use crate::workers::Workers;

/// How long an idle worker thread waits for work before it leaves.
const WORKER_IDLE: Duration = Duration::from_secs(10);

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

    fn close_all(&self) {
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
pub(crate) struct Permit(Receiver<()>);

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
    pub buffers: Arc<crate::buffers::Buffers>,
    /// Empty pipes for the chunks of a transparent mix, held only while data flows.
    #[cfg(target_os = "linux")]
    pub(crate) pipes: crate::splice::Pipes,
    /// The read timeout accepted sockets inherit from the listener (Linux), set to what
    /// this proxy's protocol wants on a client socket, so that no connection has to set it.
    pub(crate) accepted_read_timeout: Option<Duration>,
    /// Idle backend connections kept for reuse.
    pub pool: crate::backend_pool::BackendPool,
    pub(crate) tracker: Arc<Tracker>,
    /// Hung clients that half-closed, held open without a thread.
    pub(crate) parking: Arc<crate::parking::Parking>,
    /// When running out of a resource (descriptors, memory) was last logged.
    exhausted: OncePerSecond,
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

/// Threads in the accept loop at most: more go back to the worker pool when their
/// connection ends. Two or more keep a churning client from ever waiting on a hand-off.
const MAX_ACCEPTORS: usize = 4;

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    accept: Arc<Acceptor>,
}

/// What the threads taking turns at `accept()` share. The thread that accepts a connection
/// serves it itself, so a new connection costs no hand-off between threads; before it
/// does, it makes sure another thread is waiting to accept.
struct Acceptor {
    ctx: Arc<Context>,
    listener: Arc<TcpListener>,
    control: Arc<StopState>,
    permits: (Sender<()>, Receiver<()>),
    next_id: AtomicU64,
    /// Threads in the accept loop and not serving a connection.
    acceptors: AtomicUsize,
}

struct StopState {
    stopping: AtomicBool,
    /// Dropped on stop, which wakes an accept loop waiting for a permit.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
}

/// Stops a running proxy from another thread.
#[derive(Clone)]
pub struct StopHandle {
    control: Arc<StopState>,
    listener: Arc<TcpListener>,
    tracker: Arc<Tracker>,
    parking: Arc<crate::parking::Parking>,
}

impl StopHandle {
    /// Stops accepting and shuts every live connection down; `run` then returns.
    pub fn stop(&self) {
        if self.control.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.control
            .wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // On Linux, shutting a listening socket down wakes a blocked accept().
        let _ = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Both);
        self.tracker.close_all();
        self.parking.close_all();
    }
}

impl Proxy {
    /// Builds the protocol and mix, raises the open-files limit, and binds the listener.
    pub fn bind(config: &Config) -> Result<Proxy, Error> {
        let settings = config.settings.clone();
        let proto_spec = config
            .registry
            .protocol(&settings.protocol)
            .ok_or_else(|| Error::Usage(format!("unknown protocol '{}'", settings.protocol)))?;
        let proto_values = config
            .protocol_options
            .get(proto_spec.name)
            .cloned()
            .unwrap_or_default();
        let protocol = (proto_spec.build)(&proto_values)
            .map_err(|e| Error::Usage(format!("protocol '{}': {e}", proto_spec.name)))?;
        let statsd = if settings.statsd {
            let to = crate::net::HostPort {
                host: settings.statsd_host.clone(),
                port: settings.statsd_port,
            };
            let client = crate::stats::Statsd::connect(
                &to,
                &settings.statsd_prefix,
                proto_spec.name,
                settings.statsd_sample_rate,
            )
            .map_err(|e| Error::Start(format!("statsd at {to}: {e}")))?;
            Some(client)
        } else {
            None
        };
        let stats = Arc::new(Stats::new(statsd));
        let mix = config.mix()?.count_into(&stats);
        let wanted = 2 * settings.max_connections as u64 + settings.pool_max_size as u64 + 128;
        let limit = crate::net::raise_open_files(wanted);
        if limit < wanted {
            log::warn!(
                "the open-files limit is {limit}, below the {wanted} that --max-connections {} may need",
                settings.max_connections
            );
        }
        let listener = crate::net::listen(&settings.proxy, settings.backlog)
            .map_err(|e| Error::Start(format!("cannot listen on {}: {e}", settings.proxy)))?;
        let idle = idle_timeout(&settings);
        let accepted_read_timeout = if protocol.framing(&settings.backend).is_some() {
            idle
        } else {
            stream_poll(idle)
        };
        socket2::SockRef::from(&listener)
            .set_read_timeout(accepted_read_timeout)
            .map_err(|e| Error::Start(format!("cannot set the listener's timeout: {e}")))?;
        let bufsize = protocol.stream_options().buffer.unwrap_or(settings.bufsize);
        let pool =
            crate::backend_pool::BackendPool::new(settings.pool_max_size, settings.pool_timeout);
        let hub = Hub::new(Live {
            mix,
            backend: settings.backend.clone(),
        });
        let (wake, woken) = bounded(0);
        let permits = bounded(settings.max_connections);
        let parking = Arc::new(crate::parking::Parking::new(stats.clone()));
        let ctx = Arc::new(Context {
            settings,
            protocol,
            hub,
            workers: Workers::new(WORKER_IDLE),
            stats,
            bufsize,
            buffers: Arc::new(crate::buffers::Buffers::new(bufsize)),
            #[cfg(target_os = "linux")]
            pipes: crate::splice::Pipes::default(),
            accepted_read_timeout,
            pool,
            tracker: Arc::new(Tracker::default()),
            parking,
            exhausted: OncePerSecond::default(),
        });
        Ok(Proxy {
            accept: Arc::new(Acceptor {
                ctx,
                listener: Arc::new(listener),
                control: Arc::new(StopState {
                    stopping: AtomicBool::new(false),
                    wake: Mutex::new(Some(wake)),
                    woken,
                }),
                permits,
                next_id: AtomicU64::new(0),
                acceptors: AtomicUsize::new(0),
            }),
        })
    }

    /// The address the proxy listens on (the real port when `--proxy` asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.accept.listener.local_addr()
    }

    /// The hub holding the live mix and backend.
    pub fn hub(&self) -> Arc<Hub> {
        self.accept.ctx.hub.clone()
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.accept.ctx.stats.clone()
    }

    /// A handle that stops the proxy.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            control: self.accept.control.clone(),
            listener: self.accept.listener.clone(),
            tracker: self.accept.ctx.tracker.clone(),
            parking: self.accept.ctx.parking.clone(),
        }
    }

    /// Accepts connections until stopped, on worker threads: this thread only starts the
    /// first of them and waits for the stop. Out of file descriptors, an accepting thread
    /// waits (5 ms doubling up to 1 s) and goes on; accepting never ends on an error.
    pub fn run(&self) {
        let mut retry = Duration::from_millis(5);
        while let Err(e) = self.accept.start_acceptor() {
            log::error!("cannot start a worker thread to accept connections: {e}; retrying");
            // Returns at once when the proxy is stopped (the sender is dropped).
            if self.accept.control.woken.recv_timeout(retry).is_err()
                && self.accept.control.stopping.load(Ordering::SeqCst)
            {
                return;
            }
            retry = (retry * 2).min(Duration::from_secs(1));
        }
        while self.accept.control.woken.recv().is_ok() {}
        log::info!("stopped accepting connections");
    }
}

impl Acceptor {
    fn stopping(&self) -> bool {
        self.control.stopping.load(Ordering::SeqCst)
    }

    /// Puts one more worker thread in the accept loop.
    fn start_acceptor(self: &Arc<Self>) -> io::Result<()> {
        self.acceptors.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        self.ctx
            .workers
            .execute(Box::new(move || me.accept_loop()))
            .inspect_err(|_| {
                self.acceptors.fetch_sub(1, Ordering::SeqCst);
            })
    }

    /// Takes a permit, accepts a connection and serves it, until the proxy stops, the
    /// thread has waited idle for as long as the listener's timeout while another thread
    /// is accepting too, or a connection ends with enough other threads accepting. On
    /// entry the thread is counted in `acceptors`.
    fn accept_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(5);
        loop {
            select! {
                send(self.permits.0, ()) -> sent => if sent.is_err() { return self.leave() },
                recv(self.control.woken) -> _ => return self.leave(),
            }
            let permit = Permit(self.permits.1.clone());
            if self.stopping() {
                return self.leave();
            }
            match self.listener.accept() {
                Ok((client, peer)) => {
                    backoff = Duration::from_millis(5);
                    if self.stopping() {
                        return self.leave();
                    }
                    if self.acceptors.fetch_sub(1, Ordering::SeqCst) == 1 {
                        if let Err(e) = self.start_acceptor() {
                            // This thread comes back to accepting when its connection ends.
                            log::error!("cannot start a worker thread to accept connections: {e}");
                        }
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    handle(&self.ctx, id, client, peer, permit);
                    if self.acceptors.fetch_add(1, Ordering::SeqCst) >= MAX_ACCEPTORS {
                        return self.leave();
                    }
                }
                Err(_) if self.stopping() => return self.leave(),
                Err(e) if crate::net::is_timeout(&e) => {
                    // Idle for as long as the listener's timeout: the pool shrinks back,
                    // down to one thread accepting.
                    drop(permit);
                    if self.acceptors.fetch_sub(1, Ordering::SeqCst) > 1 {
                        return;
                    }
                    self.acceptors.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) if crate::net::is_resource_exhaustion(&e) => {
                    drop(permit);
                    self.warn_exhaustion(&e, backoff);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    fn leave(&self) {
        self.acceptors.fetch_sub(1, Ordering::SeqCst);
    }

    /// Logs an accept failure for lack of resources, at most once a second.
    fn warn_exhaustion(&self, e: &io::Error, backoff: Duration) {
        if self.ctx.exhausted.allow() {
            log::warn!("accept: {e}; waiting {backoff:?} before accepting again");
        }
    }
}

/// One client connection: connect to the backend, then run the protocol.
fn handle(ctx: &Arc<Context>, id: u64, client: TcpStream, peer: SocketAddr, permit: Permit) {
    let open = ctx.stats.open_connection();
    let keep_alive = ctx.protocol.stream_options().keep_alive;
    crate::net::tune_accepted(&client, keep_alive);
    let backend_addr = ctx.hub.current().backend.clone();
    log::debug!("#{id} {peer} connected; backend {backend_addr}");
    if let Some(framing) = ctx.protocol.framing(&backend_addr) {
        let guards = ConnectionGuards {
            track: None,
            _open: open,
            _permit: permit,
        };
        crate::protocol::framed::serve(ctx, id, peer, client, guards, framing, backend_addr);
        return;
    }
    let backend = match crate::net::connect(&backend_addr, ctx.settings.timeout) {
        Ok(b) => b,
        Err(e) => {
            ctx.warn_backend_failed(id, peer, &backend_addr.to_string(), &e);
            crate::net::reset_on_close(&client);
            return;
        }
    };
    crate::net::tune(&backend, keep_alive);
    let guards = ConnectionGuards {
        track: None,
        _open: open,
        _permit: permit,
    };
    let link = match Link::new(id, peer, client, backend, ctx, guards) {
        Ok(link) => link,
        Err(e) => {
            log::warn!("#{id} {peer}: {e}");
            return;
        }
    };
    stream::serve(link, ctx);
    log::debug!("#{id} {peer} done");
}
