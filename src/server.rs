//! The server: listener, accept loop, connection permits, and each connection's lifecycle.
//!
//! ```text
//! listener ─▶ accept loop ─permit─▶ worker: connect backend ─▶ protocol (stream pumps)
//!                 ▲                        │
//!   --max-connections permits        Link registered in the tracker, so stop() can
//!   (a bounded channel)              shut every live socket down
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    ctx: Arc<Context>,
    listener: Arc<TcpListener>,
    control: Arc<StopState>,
    permits: (Sender<()>, Receiver<()>),
    next_id: AtomicU64,
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
            let to = crate::settings::HostPort {
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
        Ok(Proxy {
            ctx: Arc::new(Context {
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
            }),
            listener: Arc::new(listener),
            control: Arc::new(StopState {
                stopping: AtomicBool::new(false),
                wake: Mutex::new(Some(wake)),
                woken,
            }),
            permits,
            next_id: AtomicU64::new(0),
        })
    }

    /// The address the proxy listens on (the real port when `--proxy` asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The hub holding the live mix and backend.
    pub fn hub(&self) -> Arc<Hub> {
        self.ctx.hub.clone()
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.ctx.stats.clone()
    }

    /// A handle that stops the proxy.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            control: self.control.clone(),
            listener: self.listener.clone(),
            tracker: self.ctx.tracker.clone(),
        }
    }

    /// Accepts connections until stopped. Out of file descriptors, it waits (5 ms doubling
    /// up to 1 s) and goes on; the loop never ends on an accept error.
    pub fn run(&self) {
        let mut backoff = Duration::from_millis(5);
        let mut last_warning: Option<Instant> = None;
        loop {
            select! {
                send(self.permits.0, ()) -> sent => if sent.is_err() { break },
                recv(self.control.woken) -> _ => break,
            }
            let permit = Permit(self.permits.1.clone());
            if self.control.stopping.load(Ordering::SeqCst) {
                break;
            }
            match self.listener.accept() {
                Ok((client, peer)) => {
                    backoff = Duration::from_millis(5);
                    if self.control.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let ctx = self.ctx.clone();
                    let job = Box::new(move || handle(&ctx, id, client, peer, permit));
                    if let Err(e) = self.ctx.workers.execute(job) {
                        log::error!("#{id} cannot start a worker thread: {e}; closing {peer}");
                    }
                }
                Err(_) if self.control.stopping.load(Ordering::SeqCst) => break,
                Err(e) if crate::net::is_resource_exhaustion(&e) => {
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::warn!("accept: {e}; waiting {backoff:?} before accepting again");
                        last_warning = Some(Instant::now());
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
        log::info!("stopped accepting connections");
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
            ctx.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("#{id} {peer}: backend {backend_addr}: {e}; closing the client connection");
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
