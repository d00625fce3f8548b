//! The driver of framed protocols (http, redis, memcache, smtp): one thread per connection,
//! in lock-step.
//!
//! ```text
//! client ─▶ read_request ─▶ mix.pick ─▶ before ─▶ [sleep] ─▶ head ─▶ backend   (Fail: error_reply ─▶ client)
//!                                                   copy_body ─▶ backend
//! client ◀─ copy_body ◀─ head ◀─ [sleep] ◀─ after ◀─ read_response ◀─ backend
//! ```
//! Pipelined requests wait in the client's buffered reader and are answered in order. While
//! the mix is transparent (`100:dummy`) and the protocol allows it, the requests already
//! buffered are forwarded in one batch, one write, before their replies are read, and the
//! replies go back in one write: a pipelining client costs a few syscalls per batch, not per
//! call. Any other mix works call by call, so a behavior always sees one call at a time. The
//! backend connection is opened at the first request (at once for a server-first protocol)
//! and, with `reuse_socket`, returned to the pool when the client leaves between calls. An
//! upgrade (HTTP 101, redis SUBSCRIBE or MONITOR, SMTP STARTTLS) turns the connection into a
//! stream connection, whose chunks are calls (see [`crate::proxy::stream`]).
//!
//! A proxy must not be stricter than the server behind it. What a parser cannot frame (a
//! request the module does not know how to read, a line past its limits, a reply it cannot
//! parse, a request cut by the client's end of input) is forwarded as it was read, and the
//! rest of the connection goes through a tunnel: the backend answers the request as it would
//! without the proxy (often with its own protocol error), and the client gets every byte the
//! backend sent. Behaviors no longer apply to that connection; the log says so once.
//!
//! The files: this one runs the call loop; [`batch`] forwards a transparent pipeline;
//! [`backend`] opens, reuses and gives back backend connections and writes requests to them;
//! [`wait`] is how a call waits for its reply; [`tunnel`] is what a connection becomes after an
//! upgrade or what a parser could not frame, and [`endings`] how a behavior ends a call.

mod backend;
mod batch;
mod endings;
mod tunnel;
mod wait;

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::behavior::{Call, Delivery, Direction, Verdict};
use crate::hub::Subscription;
use crate::mix::Entry;
use crate::net::HostPort;
use crate::protocol::{Framing, Request};
use crate::proxy::context::Context;
use crate::proxy::delivery::{self, Delivering, StreamState};
use crate::proxy::guards::{Closable, ConnectionGuards};
use crate::stats::Stats;
use crate::toxic::Drawn;

use backend::Backend;
use tunnel::{Tunnel, Unframed};
use wait::let_backend_answer;

/// The client socket of a framed connection, registered so that stopping the proxy can close it.
struct ClientLink {
    client: TcpStream,
    /// Set by `close_all`: a delay or a hang in progress ends.
    closed: AtomicBool,
    _guards: ConnectionGuards,
}

impl Closable for ClientLink {
    fn close_all(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.client.shutdown(Shutdown::Both);
    }
}

/// Counts the bytes written through it.
struct Counted<'a> {
    inner: &'a TcpStream,
    dir: Direction,
    stats: &'a Stats,
}

impl<'a> Counted<'a> {
    fn new(inner: &'a TcpStream, dir: Direction, stats: &'a Stats) -> Counted<'a> {
        Counted { inner, dir, stats }
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.stats.add_bytes(self.dir, n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes read through it as received from its peer (Toxiproxy's
/// `received_bytes_total`); everything else reaches the socket through `Deref`.
pub(super) struct Received<R> {
    inner: R,
    dir: Direction,
    stats: Arc<Stats>,
}

impl<R> Received<R> {
    /// `inner`'s bytes, travelling in direction `dir`.
    pub(super) fn new(inner: R, dir: Direction, stats: Arc<Stats>) -> Received<R> {
        Received { inner, dir, stats }
    }
    pub(super) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: io::Read> io::Read for Received<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stats.add_received(self.dir, n);
        Ok(n)
    }
}

impl<R> std::ops::Deref for Received<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.inner
    }
}

/// How a connection ends.
enum End {
    /// Close the client (normally, or after a behavior).
    Close,
    /// The client left between calls: keep the backend for reuse if it is clean, then close
    /// the client.
    KeepBackend,
    /// The client is parked (a hung client that half-closed): leave its socket open.
    Parked,
}

/// Read buffer size of framed connections at most: their readers stay allocated for the
/// connection's life, and messages are parsed from them, not copied in bulk.
const FRAMED_BUFFER: usize = 16 * 1024;

/// A head or batch buffer that grew past this for one large message is given back once the
/// call is done, so an idle session does not keep its largest message's memory.
const KEEP_BUFFER: usize = 64 * 1024;

/// How often a stalled call drains the client and checks that the proxy is not stopping.
const STOP_POLL: Duration = Duration::from_millis(50);

struct Conn<'a> {
    ctx: &'a Arc<Context>,
    id: u64,
    peer: SocketAddr,
    client: &'a TcpStream,
    /// Set when the proxy stops: a delay or a hang in progress ends.
    closed: &'a AtomicBool,
    client_r: BufReader<Received<&'a TcpStream>>,
    framing: Box<dyn Framing>,
    sub: Subscription,
    rng: fastrand::Rng,
    backend_addr: HostPort,
    backend: Option<Backend>,
    head: Vec<u8>,
    /// Bytes gathered for one write in a batch.
    out: Vec<u8>,
    /// The requests of a batch whose replies are still to be read, in order.
    in_flight: Vec<Request>,
    /// The toxics this connection drew.
    drawn: Drawn,
    /// What the faults keep for the requests' stream (bytes delivered, pace, a late end).
    requests: StreamState,
    /// The same for the responses' stream.
    responses: StreamState,
}

/// Serves one client connection of a framed protocol.
pub(crate) fn serve(
    ctx: &Arc<Context>,
    id: u64,
    peer: SocketAddr,
    client: TcpStream,
    mut guards: ConnectionGuards,
    framing: Box<dyn Framing>,
    backend_addr: HostPort,
) {
    let link = Arc::new_cyclic(|weak: &std::sync::Weak<ClientLink>| {
        guards.track = Some(
            ctx.tracker
                .register(id, weak.clone() as std::sync::Weak<dyn Closable>),
        );
        ClientLink {
            client,
            closed: AtomicBool::new(false),
            _guards: guards,
        }
    });
    let idle = crate::proxy::context::idle_timeout(&ctx.settings);
    let _ = ctx.set_client_read_timeout(&link.client, idle);
    let mut conn = Conn {
        ctx,
        id,
        peer,
        client: &link.client,
        closed: &link.closed,
        client_r: BufReader::with_capacity(
            ctx.bufsize.min(FRAMED_BUFFER),
            Received::new(&link.client, Direction::ToBackend, ctx.stats.clone()),
        ),
        framing,
        sub: ctx.hub.subscribe(),
        rng: ctx.rng(id, Direction::ToBackend),
        backend_addr,
        backend: None,
        head: Vec::new(),
        out: Vec::new(),
        in_flight: Vec::new(),
        drawn: Drawn::default(),
        requests: StreamState::default(),
        responses: StreamState::default(),
    };
    let protocol = ctx.protocol.name().to_string();
    let result = match conn.run() {
        Err(e) => match Unframed::take(e) {
            Ok(unframed) => conn.unframed(unframed, &protocol),
            Err(e) => Err(e),
        },
        done => done,
    };
    match result {
        Ok(End::KeepBackend) => conn.release_backend(),
        Ok(End::Close) => {}
        Ok(End::Parked) => {
            log::debug!("#{id} {peer} done");
            return;
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            log::warn!("#{id} {peer}: malformed {protocol} data: {e}; closing this connection");
        }
        Err(e) if crate::net::is_timeout(&e) => log::info!(
            "#{id} {peer}: idle for {:?} ({e}), closing",
            ctx.settings.timeout
        ),
        Err(e) => log::debug!("#{id} {peer}: {e}"),
    }
    // `slow_close`: the end goes on late (sooner when the proxy stops).
    let close_delay = conn.requests.close_delay.max(conn.responses.close_delay);
    let _ = delivery::pause(close_delay, &link.closed);
    let _ = link.client.shutdown(Shutdown::Both);
    log::debug!("#{id} {peer} done");
}

/// The hook of a call that runs now.
#[derive(Clone, Copy)]
enum Hook {
    /// The request, before it is forwarded.
    Before,
    /// The request reached the backend.
    Between,
    /// The response, before it is forwarded.
    After,
}

impl Conn<'_> {
    fn run(&mut self) -> io::Result<End> {
        if self.framing.server_speaks_first() {
            self.connect()?;
            let live = self.sub.live().clone();
            let entry = live.mix.pick(&mut self.rng);
            self.ctx.stats.count_call(&entry.name, &entry.calls);
            if let Some(end) = self.respond(&Request::greeting(), entry)? {
                return Ok(end);
            }
        }
        loop {
            give_back_if_large(&mut self.head);
            give_back_if_large(&mut self.out);
            self.head.clear();
            let req = match self
                .framing
                .read_request(&mut self.client_r, &mut self.head)
            {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(End::KeepBackend),
                Err(e) => return Err(self.client_unframed(e)),
            };
            let live = self.sub.live().clone();
            let entry = live.mix.pick(&mut self.rng);
            self.ctx.stats.count_call(&entry.name, &entry.calls);
            let end = if live.is_transparent() && self.framing.pipelines() {
                match self.batch(req) {
                    Err(e) if self.backend.is_none() && !Unframed::is_in(&e) => Some(End::Close),
                    other => other?,
                }
            } else {
                let mut head = std::mem::take(&mut self.head);
                let end = self.call(&req, entry, &mut head);
                self.head = head;
                end?
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
    }

    /// One call, its request's head in `head`: the hooks, the request forwarded, the
    /// response read and forwarded. `Some(end)` when the connection ends with it.
    fn call(
        &mut self,
        req: &Request,
        entry: &Entry,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<End>> {
        let (verdict, delay, delivery) = self.hook(Hook::Before, entry, req, head);
        match verdict {
            Verdict::Forward => self.sleep(delay),
            Verdict::Fail => {
                let reply = self.framing.error_reply(req, &mut self.rng);
                self.to_client().write_all(&reply.bytes)?;
                if reply.close || req.close {
                    return Ok(Some(End::Close));
                }
                // The request never reached the backend; its body is read and dropped.
                self.framing
                    .copy_body(req.body, &mut self.client_r, &mut io::sink())?;
                return Ok(None);
            }
            Verdict::Abort => {
                self.forward_request(req, head, delivery)?;
                return self.abort().map(Some);
            }
            ending => return self.end_by(ending).map(Some),
        }
        if let Some(stall) = delivery.stall {
            return self.stall(stall).map(Some);
        }
        let answered_early = match self.forward_request(req, head, delivery) {
            Ok(early) => early,
            // The backend is down: logged, client closed.
            Err(_) if self.backend.is_none() => return Ok(Some(End::Close)),
            Err(e) if delivery::is_cut(&e) => return Ok(Some(self.cut("request"))),
            Err(e) => return Err(e),
        };
        match self.hook(Hook::Between, entry, req, head).0 {
            Verdict::Forward => {}
            Verdict::Fail => {
                // The backend will answer a request we fail: that connection is spoiled.
                self.backend = None;
                let reply = self.framing.error_reply(req, &mut self.rng);
                self.to_client().write_all(&reply.bytes)?;
                return Ok((reply.close || req.close).then_some(End::Close));
            }
            ending => return self.end_by(ending).map(Some),
        }
        if req.tunnel && !answered_early {
            return self.tunnel(Tunnel::Calls).map(Some);
        }
        if req.expects_response {
            if let Some(end) = self.respond(req, entry)? {
                return Ok(Some(end));
            }
        }
        Ok((req.close || answered_early).then_some(End::Close))
    }

    /// Runs `hook` of `entry`'s behavior on `data`; its verdict, the latency it added and how
    /// the data is to be delivered.
    fn hook(
        &mut self,
        hook: Hook,
        entry: &Entry,
        req: &Request,
        data: &mut Vec<u8>,
    ) -> (Verdict, Duration, Delivery) {
        let direction = match hook {
            Hook::After => Direction::ToClient,
            Hook::Before | Hook::Between => Direction::ToBackend,
        };
        // The toxics of the snapshot this call started with (its list is shared, not copied;
        // none: nothing is taken).
        let toxics = match hook {
            Hook::Between => None,
            _ => Some(self.sub.current())
                .filter(|live| !live.toxics.is_empty())
                .map(|live| live.toxics.clone()),
        };
        if let Some(toxics) = &toxics {
            self.drawn.update(toxics, &mut self.rng);
        }
        let mut call = Call::new(direction, data, &mut self.rng, true);
        let mut verdict = match hook {
            Hook::Before => entry.behavior.before(&mut call),
            Hook::Between => entry.behavior.between(&mut call),
            Hook::After => entry.behavior.after(&mut call),
        };
        if let (Verdict::Forward, Some(toxics)) = (verdict, &toxics) {
            verdict = self
                .drawn
                .apply(toxics, &mut call, crate::toxic::stream_hook(direction));
        }
        let (delay, delivery) = (call.delay, call.delivery);
        match hook {
            Hook::Before => self.log_decision(entry, req, "request", verdict, delay),
            Hook::After => self.log_decision(entry, req, "response", verdict, delay),
            Hook::Between => {}
        }
        (verdict, delay, delivery)
    }

    /// Reads the response to `req`, runs the `after` hook, and forwards it. `Some(end)` when
    /// the connection ends with this call.
    fn respond(&mut self, req: &Request, entry: &Entry) -> io::Result<Option<End>> {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let result = self.respond_with(req, entry, &mut head);
        self.head = head;
        result
    }

    fn respond_with(
        &mut self,
        req: &Request,
        entry: &Entry,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<End>> {
        let Some(backend) = self.backend.as_mut() else {
            return Ok(Some(End::Close));
        };
        let_backend_answer(&backend.reader);
        let idle = crate::proxy::context::idle_timeout(&self.ctx.settings);
        let client_buffered = !self.client_r.buffer().is_empty();
        let mut from = backend.waiting(self.client, client_buffered, idle);
        let resp = match self.framing.read_response(req, &mut from, head) {
            Ok(resp) => resp,
            Err(e) => {
                self.framing.unframed(head);
                return Err(Unframed::wrap(e, false, std::mem::take(head)));
            }
        };
        let (verdict, delay, delivery) = self.hook(Hook::After, entry, req, head);
        match verdict {
            Verdict::Forward => self.sleep(delay),
            Verdict::Fail => {
                self.backend = None; // its answer is dropped half-read
                let reply = self.framing.error_reply(req, &mut self.rng);
                self.to_client().write_all(&reply.bytes)?;
                return Ok(reply.close.then_some(End::Close));
            }
            ending => return self.end_by(ending).map(Some),
        }
        if let Some(stall) = delivery.stall {
            return self.stall(stall).map(Some);
        }
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| io::Error::other("no backend"))?;
        let mut to_client = Delivering::new(
            Counted::new(self.client, Direction::ToClient, &self.ctx.stats),
            delivery,
            &mut self.responses,
            &mut self.rng,
            self.closed,
        );
        let mut from = backend.waiting(self.client, client_buffered, idle);
        let body = self.framing.inline_body(resp.body, &mut from, head)?;
        let written = to_client.write_all(head).and_then(|()| {
            self.framing
                .copy_body(body, &mut from, &mut to_client)
                .map_err(|e| Unframed::wrap(e, false, Vec::new()))
        });
        match written {
            Err(e) if delivery::is_cut(&e) => return Ok(Some(self.cut("response"))),
            other => other?,
        }
        backend.clean = !resp.close && backend.reader.buffer().is_empty();
        if resp.tunnel {
            return self.tunnel(Tunnel::Calls).map(Some);
        }
        Ok(if resp.close {
            self.backend_ended()
        } else {
            None
        })
    }

    fn log_decision(
        &self,
        entry: &Entry,
        req: &Request,
        what: &str,
        verdict: Verdict,
        delay: Duration,
    ) {
        if entry.name != "dummy" {
            log::debug!(
                "#{} {} {what}: {} -> {verdict:?} delay {delay:?}",
                self.id,
                req.name,
                entry.name
            );
        }
    }

    fn to_client(&self) -> Counted<'_> {
        Counted::new(self.client, Direction::ToClient, &self.ctx.stats)
    }

    /// Waits `delay` (a behavior's latency), or less when the proxy stops meanwhile.
    fn sleep(&self, delay: Duration) {
        let _ = delivery::pause(delay, self.closed);
    }
}

/// Gives back the memory of a buffer that grew past [`KEEP_BUFFER`] for one large message.
fn give_back_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
}
