//! The proxy's listener and the workers that take turns accepting: bind, run, stop.
//!
//! ```text
//! listener ─▶ worker: permit, accept ─▶ connection::handle (on the same thread)
//!                 ▲
//!   --max-connections permits (a bounded channel); stop() shuts the listener and every
//!   tracked connection down; a Switch takes the proxy down (the same, but it can come
//!   back: up binds a new listener on the same address and starts accepting again)
//! ```
//!
//! Worker threads take turns at `accept()` and serve the connection they accept, so a new
//! connection wakes one thread, not an accept thread and then a worker.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::config::Config;
use crate::error::Error;
use crate::hub::{Hub, Live};
use crate::proxy::connection::handle;
use crate::proxy::context::{idle_timeout, stream_poll, Context, OncePerSecond};
use crate::proxy::guards::{Permit, Tracker};
use crate::stats::Stats;
use crate::sys::workers::Workers;

/// How long an idle worker thread waits for work before it leaves.
const WORKER_IDLE: Duration = Duration::from_secs(10);

/// Threads in the accept loop at most: more go back to the worker pool when their
/// connection ends. Two or more keep a churning client from ever waiting on a hand-off.
const MAX_ACCEPTORS: usize = 4;

/// A bound proxy, ready to [start accepting](Proxy::start_accepting).
pub struct Proxy {
    accept: Arc<Acceptor>,
}

/// What the threads taking turns at `accept()` share. The thread that accepts a connection
/// serves it itself, so a new connection costs no hand-off between threads; before it
/// does, it makes sure another thread is waiting to accept.
struct Acceptor {
    ctx: Arc<Context>,
    /// The listening socket; replaced by a new one on the same address when the proxy comes
    /// back up.
    listener: Mutex<Arc<TcpListener>>,
    /// The address it listens on (the real port when port 0 was asked); changed by
    /// [`Switch::move_to`].
    addr: Mutex<SocketAddr>,
    /// Off while the proxy is down (`PUT /proxy {"enabled": false}`).
    enabled: AtomicBool,
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
    accept: Arc<Acceptor>,
}

impl StopHandle {
    /// Stops accepting and shuts every live connection down.
    pub fn stop(&self) {
        let control = &self.accept.control;
        if control.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        control
            .wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.accept.close();
        log::info!("stopped accepting connections on {}", self.accept.addr());
    }
}

/// Takes a running proxy down and brings it back up (`PUT /proxy`, `vaurienctl down`/`up`).
#[derive(Clone)]
pub struct Switch {
    accept: Arc<Acceptor>,
}

impl Switch {
    /// Whether the proxy accepts connections.
    pub fn enabled(&self) -> bool {
        self.accept.enabled.load(Ordering::SeqCst)
    }

    /// The address the proxy listens on, up or down.
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// Down: the listener closes (new clients are refused) and so do the open connections.
    /// Up: a new listener on the same address, and accepting starts again. Switching to
    /// the state it is in does nothing; a proxy being stopped stays down.
    pub fn set_enabled(&self, on: bool) -> io::Result<()> {
        let a = &self.accept;
        let mut listener = a.listener.lock().unwrap_or_else(|p| p.into_inner());
        if a.enabled.load(Ordering::SeqCst) == on {
            return Ok(());
        }
        if !on {
            a.enabled.store(false, Ordering::SeqCst);
            a.close_listener(&listener);
            a.ctx.tracker.close_all();
            a.ctx.parking.close_all();
            log::info!("proxy down: {} refuses connections", a.addr());
            return Ok(());
        }
        if a.stopping() {
            return Err(io::Error::other("the proxy is stopping"));
        }
        let (fresh, bound) = a.bind(a.addr())?;
        // A move to port 0 records the port it got.
        *a.addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        *listener = Arc::new(fresh);
        a.enabled.store(true, Ordering::SeqCst);
        drop(listener);
        // Always one more: a thread leaving as the proxy went down may not have left yet,
        // and idle extra acceptors leave by themselves.
        a.start_acceptor()?;
        log::info!("proxy up: listening on {bound}");
        Ok(())
    }

    /// Moves the proxy to listen on `to` (port 0: any). Up, the new address is bound first
    /// (a failure changes nothing), then the listening threads turn to it, the old listener
    /// closes and so do the open connections; there is no moment with no listener. Down,
    /// `to` is only checked to be bindable and recorded: the proxy listens there when it
    /// comes up. One lock with [`Switch::set_enabled`]: a move and a switch never interleave.
    pub fn move_to(&self, to: SocketAddr) -> io::Result<()> {
        let a = &self.accept;
        let mut listener = a.listener.lock().unwrap_or_else(|p| p.into_inner());
        if !a.enabled.load(Ordering::SeqCst) {
            drop(a.bind(to)?);
            *a.addr.lock().unwrap_or_else(|p| p.into_inner()) = to;
            return Ok(());
        }
        if a.stopping() {
            return Err(io::Error::other("the proxy is stopping"));
        }
        let (fresh, bound) = a.bind(to)?;
        let old = std::mem::replace(&mut *listener, Arc::new(fresh));
        *a.addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        drop(listener);
        // Threads waiting in accept() on the old listener wake up and take the new one.
        a.close_listener(&old);
        a.ctx.tracker.close_all();
        a.ctx.parking.close_all();
        log::info!("proxy moved: listening on {bound}");
        Ok(())
    }

    /// Closes the open connections and keeps listening (a new backend: clients reconnect to it).
    pub fn drop_connections(&self) {
        self.accept.ctx.tracker.close_all();
        self.accept.ctx.parking.close_all();
    }
}

impl Proxy {
    /// Takes the protocol and mix the configuration built, raises the open-files limit, and
    /// binds the listener.
    pub fn bind(config: &Config) -> Result<Proxy, Error> {
        let settings = config.settings().clone();
        let protocol = config.protocol().clone();
        let statsd = if settings.statsd {
            let to = crate::net::HostPort {
                host: settings.statsd_host.clone(),
                port: settings.statsd_port,
            };
            let client = crate::stats::Statsd::connect(
                &to,
                &settings.statsd_prefix,
                protocol.name(),
                settings.statsd_sample_rate,
            )
            .map_err(|e| Error::Start(format!("statsd at {to}: {e}")))?;
            Some(client)
        } else {
            None
        };
        let stats = Arc::new(Stats::new(statsd));
        let mix = config.mix().clone().count_into(&stats);
        let wanted = 2 * settings.max_connections as u64 + settings.pool_max_size as u64 + 128;
        let limit = crate::net::raise_open_files(wanted);
        if limit < wanted {
            log::warn!(
                "the open-files limit is {limit}, below the {wanted} that --max-connections {} may need",
                settings.max_connections
            );
        }
        let listener = crate::net::listen(&settings.proxy, settings.backlog).map_err(|source| {
            Error::Listen {
                addr: settings.proxy.to_string(),
                source,
            }
        })?;
        let idle = idle_timeout(&settings);
        let accepted_read_timeout = if protocol.framing(&settings.backend).is_some() {
            idle
        } else {
            stream_poll(idle)
        };
        socket2::SockRef::from(&listener)
            .set_read_timeout(accepted_read_timeout)
            .map_err(|e| Error::Start(format!("cannot set the listener's timeout: {e}")))?;
        let bufsize = protocol.tcp_options().buffer.unwrap_or(settings.bufsize);
        let pool = crate::proxy::backend_pool::BackendPool::new(
            settings.pool_max_size,
            settings.pool_timeout,
        );
        let hub = Hub::new(Live {
            mix,
            backend: settings.backend.clone(),
            toxics: config.toxics().clone(),
        });
        let (wake, woken) = bounded(0);
        let permits = bounded(settings.max_connections);
        let parking = Arc::new(crate::proxy::parking::Parking::new(stats.clone()));
        let ctx = Arc::new(Context {
            settings,
            protocol,
            hub,
            workers: Workers::new(WORKER_IDLE),
            stats,
            bufsize,
            buffers: Arc::new(crate::sys::buffers::Buffers::new(bufsize)),
            #[cfg(target_os = "linux")]
            pipes: crate::sys::splice::Pipes::default(),
            accepted_read_timeout,
            pool,
            tracker: Arc::new(Tracker::default()),
            parking,
            exhausted: OncePerSecond::default(),
        });
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Start(format!("cannot read the listener's address: {e}")))?;
        Ok(Proxy {
            accept: Arc::new(Acceptor {
                ctx,
                listener: Mutex::new(Arc::new(listener)),
                addr: Mutex::new(addr),
                enabled: AtomicBool::new(true),
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
            accept: self.accept.clone(),
        }
    }

    /// A handle that takes the proxy down and up.
    pub fn switch(&self) -> Switch {
        Switch {
            accept: self.accept.clone(),
        }
    }

    /// Starts accepting connections, on worker threads, until stopped: no thread waits for
    /// the stop (a process with many proxies would hold one each). Out of file descriptors,
    /// an accepting thread waits (5 ms doubling up to 1 s) and goes on; accepting never ends
    /// on an error.
    pub fn start_accepting(&self) -> io::Result<()> {
        self.accept.start_acceptor()
    }
}

impl Acceptor {
    fn stopping(&self) -> bool {
        self.control.stopping.load(Ordering::SeqCst)
    }

    fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A listener on `addr`, as accepting threads want it; and the address it got.
    fn bind(&self, addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
        let host = crate::net::HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        let fresh = crate::net::listen(&host, self.ctx.settings.backlog)?;
        socket2::SockRef::from(&fresh).set_read_timeout(self.ctx.accepted_read_timeout)?;
        let bound = fresh.local_addr()?;
        Ok((fresh, bound))
    }

    /// Whether accepting threads should leave: the proxy stops or is down.
    fn leaving(&self) -> bool {
        self.stopping() || !self.enabled.load(Ordering::SeqCst)
    }

    /// The listening socket of now.
    fn listener(&self) -> Arc<TcpListener> {
        self.listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shuts `listener` down: on Linux that wakes a blocked accept(), and new clients are
    /// refused from then on.
    fn close_listener(&self, listener: &TcpListener) {
        let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Both);
    }

    /// Stopping: the listener and every live connection are shut down.
    fn close(&self) {
        self.close_listener(&self.listener());
        self.ctx.tracker.close_all();
        self.ctx.parking.close_all();
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
            if self.leaving() {
                return self.leave();
            }
            match self.listener().accept() {
                Ok((client, peer)) => {
                    backoff = Duration::from_millis(5);
                    if self.leaving() {
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
                Err(_) if self.leaving() => return self.leave(),
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
