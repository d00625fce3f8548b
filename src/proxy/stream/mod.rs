//! The stream pump: a full-duplex byte stream where every chunk read from one side is a call.
//!
//! ```text
//!            ┌──────────── pump ToBackend (the connection's worker) ───────────┐
//! client ──▶ │ read chunk ─▶ mix.pick ─▶ behavior.before ─▶ [delay line] ─▶ write │ ──▶ backend
//! client ◀── │ write ◀─ [delay line] ◀─ behavior.after ◀─ mix.pick ◀─ read chunk │ ◀── backend
//!            └──────────── pump ToClient (a second worker) ─────────────────────┘
//! ```
//! Both pumps share one [`Link`] holding the two sockets (no fd is duplicated). A 0-byte read
//! shuts the peer's write side and ends that pump only, so half-close reaches the other side
//! while the rest of the response still flows back. A socket error shuts both sockets so the
//! other pump wakes up.
//!
//! A pump holds a read buffer only while data flows: it waits for the next byte with a
//! one-byte peek and no buffer, takes one from the shared stock when data is there, and gives
//! it back once a read drained the socket. While the mix is transparent, a chunk goes socket
//! → pipe → socket with `splice(2)` instead (Linux), and is never copied into the proxy.
//!
//! Latency is applied by a delay line: a chunk read at t is written at t + delay by a writer
//! fed through a bounded channel, so a burst is delayed once, order is kept, and memory per
//! direction is bounded (the reader blocks when the line is full). Once a direction had a
//! delay its later chunks go through the same line, behind the delayed ones, and so does
//! the end a behavior gives the connection (close, abort, hang): it takes effect once the
//! data ahead of it is written, as it would on a slow network.

//!
//! The files: this one holds the [`Link`] both pumps share and how a behavior ends it;
//! [`pump`] moves one direction (read, decide, deliver); [`delay_line`] writes delayed chunks
//! at their due time.

mod delay_line;
mod pump;

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::behavior::Direction;
use crate::proxy::context::Context;
use crate::proxy::guards::{Closable, ConnectionGuards};

use pump::{Draws, Pump};

/// The two sockets of a stream connection and what both pumps share.
pub(crate) struct Link {
    /// Connection number, for logs (and seeds).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    pub client: TcpStream,
    pub backend: TcpStream,
    /// Set by `hang`: the client's data is dropped and nothing is answered.
    hanging: AtomicBool,
    /// Set by `close_all`: delay lines drop what they hold instead of waiting for it.
    closed: AtomicBool,
    /// Chunks (and ends) waiting in delay lines: data in flight, so the link is not idle.
    delayed_chunks: AtomicUsize,
    /// Milliseconds since `born` of the last data either way.
    last_activity: AtomicU64,
    born: Instant,
    idle_timeout: Option<Duration>,
    stay_connected: bool,
    /// Permit, counters and shutdown registration, released when both pumps are done (none
    /// for a framed connection's tunnel: its framed side holds them).
    _guards: Option<ConnectionGuards>,
}

impl Link {
    /// The link of stream connection `id` from `peer`, holding its `guards`.
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        client: TcpStream,
        backend: TcpStream,
        ctx: &Context,
        guards: ConnectionGuards,
    ) -> io::Result<Arc<Link>> {
        let idle_timeout = crate::proxy::context::idle_timeout(&ctx.settings);
        let poll = crate::proxy::context::stream_poll(idle_timeout);
        ctx.set_client_read_timeout(&client, poll)?;
        backend.set_read_timeout(poll)?;
        Ok(Link::build(
            id,
            peer,
            client,
            backend,
            ctx,
            Some(guards),
            idle_timeout,
        ))
    }

    /// The link a framed connection becomes after an upgrade (HTTP 101, redis SUBSCRIBE or
    /// MONITOR, SMTP STARTTLS): its chunks are calls, and it is never idle (a subscriber
    /// may wait for hours); the framed side keeps the guards and closes it on stop.
    pub(crate) fn tunnel(
        id: u64,
        peer: SocketAddr,
        client: TcpStream,
        backend: TcpStream,
        ctx: &Context,
    ) -> io::Result<Arc<Link>> {
        client.set_read_timeout(None)?;
        backend.set_read_timeout(None)?;
        Ok(Link::build(id, peer, client, backend, ctx, None, None))
    }

    fn build(
        id: u64,
        peer: SocketAddr,
        client: TcpStream,
        backend: TcpStream,
        ctx: &Context,
        mut guards: Option<ConnectionGuards>,
        idle_timeout: Option<Duration>,
    ) -> Arc<Link> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Link>| {
            if let Some(g) = guards.as_mut() {
                g.track = Some(
                    ctx.tracker
                        .register(id, weak.clone() as std::sync::Weak<dyn Closable>),
                );
            }
            Link {
                id,
                peer,
                client,
                backend,
                hanging: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                delayed_chunks: AtomicUsize::new(0),
                last_activity: AtomicU64::new(0),
                born: Instant::now(),
                idle_timeout,
                stay_connected: ctx.settings.stay_connected,
                _guards: guards,
            }
        })
    }

    fn sides(&self, dir: Direction) -> (&TcpStream, &TcpStream) {
        match dir {
            Direction::ToBackend => (&self.client, &self.backend),
            Direction::ToClient => (&self.backend, &self.client),
        }
    }

    fn touch(&self) {
        self.last_activity
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_expired(&self) -> bool {
        match self.idle_timeout {
            Some(t)
                if !self.hanging.load(Ordering::Relaxed)
                    && self.delayed_chunks.load(Ordering::Relaxed) == 0 =>
            {
                let idle = self.born.elapsed().as_millis() as u64
                    - self.last_activity.load(Ordering::Relaxed);
                idle >= t.as_millis() as u64
            }
            _ => false,
        }
    }

    /// `hang`: drop the backend, keep the client open and drain it until it leaves.
    fn hang(&self) {
        self.hanging.store(true, Ordering::Relaxed);
        let _ = self.backend.shutdown(Shutdown::Both);
    }

    /// The hung client half-closed and is parked: the link ends without closing the client
    /// socket (the parked copy keeps it open), and its delay lines stop.
    fn leave_parked(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.backend.shutdown(Shutdown::Both);
    }

    /// A delivery's write failed: the stream was cut at its limit (`limit_data`: both
    /// connections close), or the socket failed; either way the link closes.
    fn cut_or_failed(&self, dir: Direction, e: &io::Error) {
        if crate::proxy::delivery::is_cut(e) {
            log::debug!("#{} {}: limit_data reached, closing", self.id, dir.as_str());
        } else {
            log::debug!("#{} {}: write failed: {e}", self.id, dir.as_str());
        }
        self.close_all();
    }

    /// A stall (`timeout`, `reset_peer`) ends: both connections are reset or closed.
    fn end_stalled(&self, reset: bool) {
        if reset {
            self.closed.store(true, Ordering::Relaxed);
            crate::net::reset_now(&self.client);
            crate::net::reset_now(&self.backend);
        } else {
            self.close_all();
        }
    }

    /// A behavior closes the connection; with `--stay-connected` the client stays open.
    fn close_by_behavior(&self) {
        if self.stay_connected {
            self.hang();
        } else {
            self.close_all();
        }
    }
}

impl Closable for Link {
    fn close_all(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.backend.shutdown(Shutdown::Both);
    }
}

/// Runs a stream connection: the `ToClient` pump on a second worker, `ToBackend` here.
pub(crate) fn serve(link: Arc<Link>, ctx: &Arc<Context>) {
    serve_then(link, ctx, None);
}

/// Runs a framed connection's tunnel as a stream connection, and returns once both
/// directions are done (the framed side then closes the client).
pub(crate) fn serve_tunnel(link: Arc<Link>, ctx: &Arc<Context>) {
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    serve_then(link, ctx, Some(done_tx));
    let _ = done_rx.recv();
}

/// `serve`, telling `done` (dropping it) once the `ToClient` pump ended.
fn serve_then(link: Arc<Link>, ctx: &Arc<Context>, done: Option<crossbeam_channel::Sender<()>>) {
    let other = link.clone();
    let other_ctx = ctx.clone();
    let draws = Draws::new(&link, Direction::ToClient, ctx);
    if let Err(e) = ctx.workers.execute(Box::new(move || {
        Pump::new(&other, Direction::ToClient, &other_ctx, draws).run();
        drop(done);
    })) {
        log::error!(
            "#{} cannot start a worker thread: {e}; closing {}",
            link.id,
            link.peer
        );
        link.close_all();
        return;
    }
    let draws = Draws::new(&link, Direction::ToBackend, ctx);
    Pump::new(&link, Direction::ToBackend, ctx, draws).run();
}

/// How a behavior ends a link.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `close_by_behavior`: close, or hang with `--stay-connected`.
    Close,
    /// Drop the backend and keep the client waiting.
    Hang,
    /// The request went to the backend; drop the backend before it answers and close.
    Abort,
}

impl Ending {
    fn apply(self, link: &Link) {
        match self {
            Ending::Close => link.close_by_behavior(),
            Ending::Hang => link.hang(),
            Ending::Abort => {
                // From here on the `ToClient` pump drops what the backend answers, so no
                // response slips through before the client is closed.
                link.hanging.store(true, Ordering::Relaxed);
                let _ = link.backend.shutdown(Shutdown::Both);
                link.close_by_behavior();
            }
        }
    }
}

/// What waiting for a chunk gave.
enum Chunk {
    /// This many bytes are in the buffer.
    Data(usize),
    /// A chunk went through a pipe: it is forwarded already.
    Forwarded,
    /// The source ended.
    End,
    /// The link is closed (idle, or a socket error).
    Closed,
}

/// After a failed read: `true` to try again (interrupted, or a read timeout with the link
/// still active); `false` once the link is closed (idle too long, or a socket error).
fn retry_after(link: &Link, e: &io::Error, dir: Direction) -> bool {
    let tag = dir.as_str();
    if e.kind() == io::ErrorKind::Interrupted {
        return true;
    }
    if crate::net::is_timeout(e) {
        if !link.idle_expired() {
            return true;
        }
        log::info!(
            "#{} {}: idle for {:?}, closing",
            link.id,
            link.peer,
            link.idle_timeout.unwrap_or_default()
        );
    } else {
        log::debug!("#{} {tag}: read failed: {e}", link.id);
    }
    if dir == Direction::ToClient && link.hanging.load(Ordering::Relaxed) {
        // The backend's side of a hung link failed (it was dropped): the client stays.
        let _ = link.backend.shutdown(Shutdown::Both);
    } else {
        link.close_all();
    }
    false
}

/// Waits until `src` has data (`Data(1)`) or ends, holding no buffer.
fn wait_for_data(link: &Link, src: &TcpStream, dir: Direction) -> Chunk {
    loop {
        match src.peek(&mut [0u8; 1]) {
            Ok(0) => return Chunk::End,
            Ok(_) => return Chunk::Data(1),
            Err(e) if retry_after(link, &e, dir) => {}
            Err(_) => return Chunk::Closed,
        }
    }
}

/// Waits for data on `src` and reads it into `held`, taking a buffer from the stock only
/// once a byte is there: an idle connection holds no buffer.
fn read_chunk(
    link: &Link,
    src: &TcpStream,
    held: &mut Option<Vec<u8>>,
    ctx: &Context,
    dir: Direction,
) -> Chunk {
    loop {
        let Some(buf) = held.as_mut() else {
            match wait_for_data(link, src, dir) {
                Chunk::Data(_) => *held = Some(ctx.buffers.take()),
                other => return other,
            }
            continue;
        };
        match (&*src).read(buf) {
            Ok(0) => return Chunk::End,
            Ok(n) => {
                ctx.stats.add_received(dir, n);
                return Chunk::Data(n);
            }
            Err(e) if retry_after(link, &e, dir) => {}
            Err(_) => return Chunk::Closed,
        }
    }
}
