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
//! tunnel that forwards bytes untouched.
//!
//! A proxy must not be stricter than the server behind it. What a parser cannot frame (a
//! request the module does not know how to read, a line past its limits, a reply it cannot
//! parse, a request cut by the client's end of input) is forwarded as it was read, and the
//! rest of the connection goes through a tunnel: the backend answers the request as it would
//! without the proxy (often with its own protocol error), and the client gets every byte the
//! backend sent. Behaviors no longer apply to that connection; the log says so once.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::behavior::{Call, Direction, Verdict};
use crate::hub::{Live, Subscription};
use crate::mix::Entry;
use crate::net::HostPort;
use crate::protocol::{Body, Framing, Request, Response};
use crate::proxy::context::Context;
use crate::proxy::guards::{Closable, ConnectionGuards};
use crate::stats::Stats;

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

/// A request body on its way to the backend, stopped as soon as the backend has answered
/// (when `backend` is given: a protocol whose servers answer early).
struct UnlessAnswered<'a> {
    to: Counted<'a>,
    backend: Option<&'a TcpStream>,
    answered: bool,
}

impl Write for UnlessAnswered<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One peek per piece of body: the answer is there, or the backend closed.
        if let Some(backend) = self.backend {
            if matches!(crate::net::peek_now(backend), Ok(Some(_)) | Err(_)) {
                self.answered = true;
            }
        }
        if self.answered {
            return Err(io::Error::other(
                "the backend answered before the body was sent",
            ));
        }
        self.to.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An open backend connection.
struct Backend {
    reader: BufReader<TcpStream>,
    born: Instant,
    /// Nothing is half-read: it may go back to the pool.
    clean: bool,
    /// The client's end of input was passed on while a call waited: it may not be reused.
    half_closed: bool,
}

/// How often a call waiting for its reply checks that its client is still there.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// The backend's reader as a call waiting for its reply reads it. A reply may take as long
/// as it takes (a redis `BLPOP q 0`, an HTTP long poll, gaps between server-sent events):
/// the call is not idle, so `--timeout` does not cut it. Instead the wait wakes up every
/// [`WAIT_POLL`] to look at the client without reading it: a client that reset the connection
/// ends the call; a client that ended its sending side (and has no request waiting in the
/// proxy) has that end passed on to the backend, as it would reach the server without the
/// proxy (redis then drops the blocked command and closes), and from then on the wait is
/// bounded by `--timeout`, as an idle connection would be.
struct Waiting<'r> {
    reader: &'r mut BufReader<TcpStream>,
    half_closed: &'r mut bool,
    client: &'r TcpStream,
    /// Requests of the client wait in the proxy's buffer: its end of input comes after them.
    client_buffered: bool,
    /// How long to wait once the client ended its side (`None`: as long as it takes).
    after_client_end: Option<Duration>,
    client_ended: Option<Instant>,
}

impl Waiting<'_> {
    /// After a read timed out: `Ok` to wait on, or why the call ends.
    fn client_still_there(&mut self) -> io::Result<()> {
        if let Some(at) = self.client_ended {
            return match self.after_client_end {
                Some(limit) if at.elapsed() >= limit => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer since the client ended its side",
                )),
                _ => Ok(()),
            };
        }
        match crate::net::peek_now(self.client)? {
            Some(0) if !self.client_buffered => {
                self.client_ended = Some(Instant::now());
                *self.half_closed = true;
                let _ = self.reader.get_ref().shutdown(Shutdown::Write);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Read for Waiting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Waiting<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.reader.buffer().is_empty() {
            match self.reader.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::net::is_timeout(&e) => self.client_still_there()?,
                Err(e) => return Err(e),
            }
        }
        self.reader.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
    }
}

/// The reader through which a call waits for `backend`'s reply to the client `client`.
fn waiting<'r>(
    backend: &'r mut Backend,
    client: &'r TcpStream,
    client_buffered: bool,
    after_client_end: Option<Duration>,
) -> Waiting<'r> {
    Waiting {
        reader: &mut backend.reader,
        half_closed: &mut backend.half_closed,
        client,
        client_buffered,
        after_client_end,
        client_ended: None,
    }
}

/// How a connection ends.
enum End {
    /// Close the client (normally, or after a behavior).
    Close,
    /// Keep the backend for reuse if it is clean, then close the client.
    Done,
    /// The client is parked (a hung client that half-closed): leave its socket open.
    Parked,
}

/// Read buffer size of framed connections at most: their readers stay allocated for the
/// connection's life, and messages are parsed from them, not copied in bulk.
const FRAMED_BUFFER: usize = 16 * 1024;

/// A head or batch buffer that grew past this for one large message is given back once the
/// call is done, so an idle session does not keep its largest message's memory.
const KEEP_BUFFER: usize = 64 * 1024;

/// What a parser could not frame, carried up to [`serve`] inside an `io::Error`, so that the
/// connection goes on as a tunnel with nothing lost.
#[derive(Debug)]
struct Unframed {
    /// The client sent it; otherwise the backend.
    from_client: bool,
    /// What was read from that side for the message and not forwarded yet.
    pending: Vec<u8>,
    /// The backend ended in the middle of a reply: after `pending`, the client is closed.
    ended: bool,
    why: String,
}

impl std::fmt::Display for Unframed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Unframed {}

impl Unframed {
    /// `e` carrying what `from_client` sent and the proxy could not frame, when it is a
    /// framing error (malformed data, or the client's input cut mid-message); other errors
    /// (a timeout, a socket error) are returned as they are.
    fn wrap(e: io::Error, from_client: bool, pending: Vec<u8>) -> io::Error {
        let kind = e.kind();
        let framing = kind == io::ErrorKind::InvalidData
            || (kind == io::ErrorKind::UnexpectedEof && (from_client || !pending.is_empty()));
        if !framing || Unframed::is_in(&e) {
            return e;
        }
        io::Error::new(
            kind,
            Unframed {
                from_client,
                pending,
                ended: !from_client && kind == io::ErrorKind::UnexpectedEof,
                why: e.to_string(),
            },
        )
    }

    fn is_in(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Unframed>())
    }

    /// The `Unframed` inside `e`, or `e` itself.
    fn take(e: io::Error) -> Result<Unframed, io::Error> {
        if !Unframed::is_in(&e) {
            return Err(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Unframed>()) {
            Some(Ok(u)) => Ok(*u),
            _ => Err(io::Error::from(kind)),
        }
    }
}

/// Calls forwarded in one batch at most: bounds what one client's pipeline holds.
const MAX_BATCH: usize = 128;

/// Bytes gathered for one write at most, either way, before they are written.
const MAX_BATCH_BYTES: usize = 64 * 1024;

struct Conn<'a> {
    ctx: &'a Arc<Context>,
    id: u64,
    peer: SocketAddr,
    client: &'a TcpStream,
    /// Set when the proxy stops: a delay or a hang in progress ends.
    closed: &'a AtomicBool,
    client_r: BufReader<&'a TcpStream>,
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
        client_r: BufReader::with_capacity(ctx.bufsize.min(FRAMED_BUFFER), &link.client),
        framing,
        sub: ctx.hub.subscribe(),
        rng: ctx.rng(id, Direction::ToBackend),
        backend_addr,
        backend: None,
        head: Vec::new(),
        out: Vec::new(),
        in_flight: Vec::new(),
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
        Ok(End::Done) => conn.release_backend(),
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
    let _ = link.client.shutdown(Shutdown::Both);
    log::debug!("#{id} {peer} done");
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
                Ok(None) => return Ok(End::Done),
                Err(e) => return Err(self.client_unframed(e)),
            };
            let live = self.sub.live().clone();
            let entry = live.mix.pick(&mut self.rng);
            self.ctx.stats.count_call(&entry.name, &entry.calls);
            if live.mix.is_transparent() && self.framing.pipelines() {
                match self.batch(req) {
                    Ok(Some(end)) => return Ok(end),
                    Ok(None) => continue,
                    Err(e) if self.backend.is_none() && !Unframed::is_in(&e) => {
                        return Ok(End::Close)
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut head = std::mem::take(&mut self.head);
            let mut call = Call {
                direction: Direction::ToBackend,
                data: &mut head,
                rng: &mut self.rng,
                framed: true,
                delay: Duration::ZERO,
            };
            let verdict = entry.behavior.before(&mut call);
            let delay = call.delay;
            self.log_decision(entry, &req, "request", verdict, delay);
            match verdict {
                Verdict::Forward => self.sleep(delay),
                Verdict::Fail => {
                    let reply = self.framing.error_reply(&req, &mut self.rng);
                    self.to_client().write_all(&reply.bytes)?;
                    if reply.close || req.close {
                        return Ok(End::Close);
                    }
                    // The request never reached the backend; its body is read and dropped.
                    self.framing
                        .copy_body(req.body, &mut self.client_r, &mut io::sink())?;
                    self.head = head;
                    continue;
                }
                Verdict::Hang => return self.hang(),
                Verdict::Close => return self.close_by_behavior(),
                Verdict::Abort => {
                    self.forward_request(&req, &head)?;
                    return self.abort();
                }
            }
            let answered_early = match self.forward_request(&req, &head) {
                Ok(early) => early,
                Err(_) if self.backend.is_none() => {
                    return Ok(End::Close); // the backend is down: logged, client closed
                }
                Err(e) => return Err(e),
            };
            let mut call = Call {
                direction: Direction::ToBackend,
                data: &mut head,
                rng: &mut self.rng,
                framed: true,
                delay: Duration::ZERO,
            };
            let verdict = entry.behavior.between(&mut call);
            self.head = head;
            match verdict {
                Verdict::Forward => {}
                Verdict::Fail => {
                    // The backend will answer a request we fail: that connection is spoiled.
                    self.backend = None;
                    let reply = self.framing.error_reply(&req, &mut self.rng);
                    self.to_client().write_all(&reply.bytes)?;
                    if reply.close || req.close {
                        return Ok(End::Close);
                    }
                    continue;
                }
                Verdict::Hang => return self.hang(),
                Verdict::Close => return self.close_by_behavior(),
                Verdict::Abort => return self.abort(),
            }
            if req.tunnel && !answered_early {
                return self.tunnel();
            }
            if req.expects_response {
                if let Some(end) = self.respond(&req, entry)? {
                    return Ok(end);
                }
            }
            if req.close || answered_early {
                return Ok(End::Close);
            }
        }
    }

    /// Forwards `first` (its head in `self.head`) and the requests already buffered behind
    /// it in one write, then their replies in one write: the calls of a transparent mix,
    /// whose hooks would all forward. `Some(end)` when the connection ends with the batch.
    fn batch(&mut self, first: Request) -> io::Result<Option<End>> {
        self.connect()?;
        let mut out = std::mem::take(&mut self.out);
        let mut in_flight = std::mem::take(&mut self.in_flight);
        out.clear();
        in_flight.clear();
        let mut next = Some(first);
        let mut last = None;
        while let Some(req) = next.take() {
            out.extend_from_slice(&self.head);
            if req.body != Body::None || !req.early_reply.is_empty() {
                self.write_to_backend(&mut out)?;
                self.copy_request_body(&req)?;
            }
            if req.tunnel || req.close {
                last = Some(req);
                break;
            }
            if req.expects_response {
                in_flight.push(req);
            }
            if in_flight.len() >= MAX_BATCH || out.len() >= MAX_BATCH_BYTES {
                break;
            }
            next = self.next_buffered_request()?;
        }
        if let Some(req) = last.as_ref().filter(|r| r.expects_response && !r.tunnel) {
            in_flight.push(req.clone());
        }
        self.write_to_backend(&mut out)?;
        let end = self.answer_batch(&in_flight, &mut out)?;
        self.out = out;
        self.in_flight = in_flight;
        if end.is_some() {
            return Ok(end);
        }
        match last {
            Some(req) if req.tunnel => self.tunnel().map(Some),
            Some(_) => Ok(Some(End::Close)),
            None => Ok(None),
        }
    }

    /// The next request when it is already complete in the client's buffer and the mix is
    /// still transparent; its head goes to `self.head`. Never waits for the client.
    fn next_buffered_request(&mut self) -> io::Result<Option<Request>> {
        let buffered = self.client_r.buffer();
        if buffered.is_empty() || !self.framing.pipelines() {
            return Ok(None);
        }
        let live = self.sub.live().clone();
        if !live.mix.is_transparent() {
            return Ok(None);
        }
        let mut rest = buffered;
        self.head.clear();
        let req = match self.framing.read_request(&mut rest, &mut self.head) {
            Ok(Some(req)) => req,
            // Blank lines only, a request cut by the end of the buffer, or one that cannot be
            // framed: the call-by-call loop reads it from the socket.
            Ok(None) => return Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let used = buffered.len() - rest.len();
        self.client_r.consume(used);
        Self::count(&self.ctx.stats, &live, &mut self.rng);
        Ok(Some(req))
    }

    /// Draws and counts the behavior of a batched call (always a transparent one), so that
    /// statistics and seeded draws are the same as call by call.
    fn count(stats: &Stats, live: &Live, rng: &mut fastrand::Rng) {
        let entry = live.mix.pick(rng);
        stats.count_call(&entry.name, &entry.calls);
    }

    /// Writes what a batch gathered for the backend.
    fn write_to_backend(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| io::Error::other("no backend"))?;
        backend.clean = false;
        if !out.is_empty() {
            Counted::new(
                backend.reader.get_ref(),
                Direction::ToBackend,
                &self.ctx.stats,
            )
            .write_all(out)?;
            out.clear();
        }
        Ok(())
    }

    /// Sends the early reply and copies the body of a request whose head was just written.
    fn copy_request_body(&mut self, req: &Request) -> io::Result<()> {
        if !req.early_reply.is_empty() {
            self.to_client().write_all(&req.early_reply)?;
        }
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| io::Error::other("no backend"))?;
        self.framing
            .copy_body(
                req.body,
                &mut self.client_r,
                &mut Counted::new(
                    backend.reader.get_ref(),
                    Direction::ToBackend,
                    &self.ctx.stats,
                ),
            )
            .map_err(|e| Unframed::wrap(e, true, Vec::new()))
    }

    /// Reads the replies of a batch in order and forwards them, gathered into as few writes
    /// as what the backend already sent allows.
    fn answer_batch(
        &mut self,
        in_flight: &[Request],
        out: &mut Vec<u8>,
    ) -> io::Result<Option<End>> {
        for (i, req) in in_flight.iter().enumerate() {
            let backend = self
                .backend
                .as_mut()
                .ok_or_else(|| io::Error::other("no backend"))?;
            let mut to_client = Counted::new(self.client, Direction::ToClient, &self.ctx.stats);
            // Before waiting for the backend, what is ready goes to the client.
            if backend.reader.buffer().is_empty() || out.len() >= MAX_BATCH_BYTES {
                to_client.write_all(out)?;
                out.clear();
            }
            self.head.clear();
            let_backend_answer(&backend.reader);
            let idle = crate::proxy::context::idle_timeout(&self.ctx.settings);
            let mut from = waiting(
                backend,
                self.client,
                !self.client_r.buffer().is_empty(),
                idle,
            );
            let resp = match self.framing.read_response(req, &mut from, &mut self.head) {
                Ok(resp) => resp,
                Err(e) => {
                    // The replies before this one go first.
                    to_client.write_all(out)?;
                    out.clear();
                    let mut pending = std::mem::take(&mut self.head);
                    self.framing.unframed(&mut pending);
                    return Err(Unframed::wrap(e, false, pending));
                }
            };
            out.extend_from_slice(&self.head);
            if resp.body != Body::None {
                to_client.write_all(out)?;
                out.clear();
                self.framing
                    .copy_body(resp.body, &mut from, &mut to_client)
                    .map_err(|e| Unframed::wrap(e, false, Vec::new()))?;
            }
            if resp.tunnel || resp.close {
                to_client.write_all(out)?;
                out.clear();
                if i + 1 < in_flight.len() {
                    self.backend = None;
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the backend ended the connection with pipelined requests unanswered",
                    ));
                }
                if resp.tunnel {
                    return self.tunnel().map(Some);
                }
                return Ok(self.backend_ended());
            }
        }
        self.to_client().write_all(out)?;
        out.clear();
        if let Some(backend) = self.backend.as_mut() {
            backend.clean = backend.reader.buffer().is_empty();
        }
        Ok(None)
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

    /// Connects to the backend (from the pool when allowed); a failure closes the client.
    fn connect(&mut self) -> io::Result<()> {
        if let Some(b) = &self.backend {
            // A backend that closed an idle keep-alive connection is replaced, except where
            // the server speaks first: a new greeting would shift every reply after it.
            // Only a connection with nothing outstanding is checked: a quiet memcache command
            // or a redis pipeline may have its answer already waiting.
            let idle = b.clean && self.framing.reusable();
            if !idle
                || (b.reader.buffer().is_empty()
                    && crate::proxy::backend_pool::still_open(b.reader.get_ref()))
            {
                return Ok(());
            }
            self.backend = None;
            if self.framing.server_speaks_first() {
                log::info!(
                    "#{} {}: the backend closed the session; closing the client",
                    self.id,
                    self.peer
                );
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "backend closed the session",
                ));
            }
            log::debug!(
                "#{} the backend closed its idle connection; reconnecting",
                self.id
            );
        }
        let opts = self.ctx.protocol.stream_options();
        let pooled = opts
            .reuse_socket
            .then(|| self.ctx.pool.take(&self.backend_addr))
            .flatten();
        let (stream, born) = match pooled {
            Some(p) => {
                log::debug!(
                    "#{} reuses a pooled connection to {}",
                    self.id,
                    self.backend_addr
                );
                p
            }
            None => match crate::net::connect(&self.backend_addr, self.ctx.settings.timeout) {
                Ok(s) => (s, Instant::now()),
                Err(e) => {
                    let backend = self.backend_addr.to_string();
                    self.ctx
                        .warn_backend_failed(self.id, self.peer, &backend, &e);
                    crate::net::reset_on_close(self.client);
                    return Err(e);
                }
            },
        };
        crate::net::tune(&stream, opts.keep_alive);
        // A call waits for its reply in steps of WAIT_POLL (see `Waiting`).
        stream.set_read_timeout(Some(WAIT_POLL))?;
        self.backend = Some(Backend {
            reader: BufReader::with_capacity(self.ctx.bufsize.min(FRAMED_BUFFER), stream),
            born,
            clean: true,
            half_closed: false,
        });
        Ok(())
    }

    /// Forwards a request; `Ok(true)` when the backend answered before its body was all
    /// sent (an early HTTP 413): the rest is not forwarded, and the connection closes after
    /// the answer, as the client's stream is no longer framed.
    fn forward_request(&mut self, req: &Request, head: &[u8]) -> io::Result<bool> {
        self.connect()?;
        let Some(backend) = self.backend.as_mut() else {
            return Ok(false);
        };
        backend.clean = false;
        let socket = backend.reader.get_ref();
        let mut to_backend = UnlessAnswered {
            to: Counted::new(socket, Direction::ToBackend, &self.ctx.stats),
            backend: self.framing.answers_early().then_some(socket),
            answered: false,
        };
        to_backend.to.write_all(head)?;
        if !req.early_reply.is_empty() {
            Counted::new(self.client, Direction::ToClient, &self.ctx.stats)
                .write_all(&req.early_reply)?;
        }
        let copied = self
            .framing
            .copy_body(req.body, &mut self.client_r, &mut to_backend);
        if to_backend.answered {
            log::debug!(
                "#{} the backend answered before the request's body was sent",
                self.id
            );
            return Ok(true);
        }
        copied.map_err(|e| Unframed::wrap(e, true, Vec::new()))?;
        if !req.expects_response && !req.tunnel {
            backend.clean = true;
        }
        Ok(false)
    }

    /// Reads the response to `req`, runs the `after` hook, and forwards it. `Some(end)` when
    /// the connection ends with this call.
    fn respond(&mut self, req: &Request, entry: &Entry) -> io::Result<Option<End>> {
        let Some(backend) = self.backend.as_mut() else {
            return Ok(Some(End::Close));
        };
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let_backend_answer(&backend.reader);
        let idle = crate::proxy::context::idle_timeout(&self.ctx.settings);
        let client_buffered = !self.client_r.buffer().is_empty();
        let resp: Response = match self.framing.read_response(
            req,
            &mut waiting(backend, self.client, client_buffered, idle),
            &mut head,
        ) {
            Ok(resp) => resp,
            Err(e) => {
                self.framing.unframed(&mut head);
                return Err(Unframed::wrap(e, false, head));
            }
        };
        let mut call = Call {
            direction: Direction::ToClient,
            data: &mut head,
            rng: &mut self.rng,
            framed: true,
            delay: Duration::ZERO,
        };
        let verdict = entry.behavior.after(&mut call);
        let delay = call.delay;
        self.log_decision(entry, req, "response", verdict, delay);
        let result = match verdict {
            Verdict::Forward => {
                self.sleep(delay);
                let backend = self
                    .backend
                    .as_mut()
                    .ok_or_else(|| io::Error::other("no backend"))?;
                let mut to_client = Counted::new(self.client, Direction::ToClient, &self.ctx.stats);
                let mut from = waiting(backend, self.client, client_buffered, idle);
                let body = self.framing.inline_body(resp.body, &mut from, &mut head)?;
                to_client.write_all(&head)?;
                self.framing
                    .copy_body(body, &mut from, &mut to_client)
                    .map_err(|e| Unframed::wrap(e, false, Vec::new()))?;
                backend.clean = !resp.close && backend.reader.buffer().is_empty();
                if resp.tunnel {
                    Some(self.tunnel()?)
                } else if resp.close {
                    self.backend_ended()
                } else {
                    None
                }
            }
            Verdict::Fail => {
                self.backend = None; // its answer is dropped half-read
                let reply = self.framing.error_reply(req, &mut self.rng);
                self.to_client().write_all(&reply.bytes)?;
                reply.close.then_some(End::Close)
            }
            Verdict::Hang => Some(self.hang()?),
            Verdict::Close => Some(self.close_by_behavior()?),
            Verdict::Abort => Some(self.abort()?),
        };
        self.head = head;
        Ok(result)
    }

    /// The backend closes after a response: the client is closed too, unless
    /// `--stay-connected` lets the next call open a new backend connection (not where the
    /// server speaks first: a new greeting would shift every reply).
    fn backend_ended(&mut self) -> Option<End> {
        self.backend = None;
        let reconnectable = self.ctx.settings.stay_connected && !self.framing.server_speaks_first();
        (!reconnectable).then_some(End::Close)
    }

    /// `hang`: drop the backend, read and drop what the client sends until it leaves.
    fn hang(&mut self) -> io::Result<End> {
        self.backend = None;
        let _ = self.client.set_read_timeout(None);
        let mut sink = [0u8; 4096];
        loop {
            let buffered = self.client_r.buffer().len();
            self.client_r.consume(buffered);
            match self.client_r.get_mut().read(&mut sink) {
                Ok(0) => {
                    // A client that half-closed may still wait for the answer: it is held
                    // open, without this thread.
                    return Ok(match self.client.try_clone() {
                        Ok(client) => {
                            self.ctx.parking.park(client, &self.ctx.workers);
                            log::debug!(
                                "#{} {}: half-closed while hung; parked",
                                self.id,
                                self.peer
                            );
                            End::Parked
                        }
                        Err(_) => End::Close,
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(End::Close),
            }
        }
    }

    /// `blackout` (and `abort` after its request): closed, or hanging with `--stay-connected`.
    fn close_by_behavior(&mut self) -> io::Result<End> {
        if self.ctx.settings.stay_connected {
            return self.hang();
        }
        self.backend = None;
        Ok(End::Close)
    }

    fn abort(&mut self) -> io::Result<End> {
        if let Some(b) = self.backend.take() {
            let _ = b.reader.get_ref().shutdown(Shutdown::Both);
        }
        self.close_by_behavior()
    }

    /// `e` from reading a request, carrying the bytes read for it when it is a framing error.
    fn client_unframed(&mut self, e: io::Error) -> io::Error {
        let mut pending = std::mem::take(&mut self.head);
        self.framing.unframed(&mut pending);
        Unframed::wrap(e, true, pending)
    }

    /// Goes on after what a parser could not frame: forwards what was read of it, then the
    /// rest of the connection untouched (or closes, when the backend ended mid-reply).
    fn unframed(&mut self, u: Unframed, protocol: &str) -> io::Result<End> {
        if u.from_client {
            log::info!(
                "#{} {}: a {protocol} request the proxy cannot frame ({}); the rest of this \
                 connection goes through untouched, for the backend to answer",
                self.id,
                self.peer,
                u.why
            );
            if self.backend.is_none() && self.connect().is_err() {
                return Ok(End::Close);
            }
            let backend = self
                .backend
                .as_ref()
                .ok_or_else(|| io::Error::other("no backend"))?;
            Counted::new(
                backend.reader.get_ref(),
                Direction::ToBackend,
                &self.ctx.stats,
            )
            .write_all(&u.pending)?;
        } else {
            self.to_client().write_all(&u.pending)?;
            if u.ended {
                log::debug!("#{} the backend closed in the middle of a reply", self.id);
                return Ok(End::Close);
            }
            log::warn!(
                "#{} {}: a {protocol} reply the proxy cannot frame ({}); the rest of this \
                 connection goes through untouched",
                self.id,
                self.peer,
                u.why
            );
        }
        self.tunnel()
    }

    /// Forwards bytes untouched both ways until both sides are done.
    fn tunnel(&mut self) -> io::Result<End> {
        let backend = self
            .backend
            .take()
            .ok_or_else(|| io::Error::other("tunnel without a backend"))?;
        let _ = self.client.set_read_timeout(None);
        let _ = backend.reader.get_ref().set_read_timeout(None);
        // Bytes already read ahead on either side go first.
        let early_up = self.client_r.buffer().to_vec();
        self.client_r.consume(early_up.len());
        let early_down = backend.reader.buffer().to_vec();
        let backend = Arc::new(backend.reader.into_inner());
        Counted::new(&backend, Direction::ToBackend, &self.ctx.stats).write_all(&early_up)?;
        self.to_client().write_all(&early_down)?;
        let client = self.client.try_clone()?;
        let down = backend.clone();
        let stats = self.ctx.stats.clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        self.ctx.workers.execute(Box::new(move || {
            let _ = io::copy(
                &mut &*down,
                &mut Counted::new(&client, Direction::ToClient, &stats),
            );
            let _ = client.shutdown(Shutdown::Write);
            let _ = done_tx.send(());
        }))?;
        let _ = io::copy(
            &mut self.client_r.get_mut(),
            &mut Counted::new(&backend, Direction::ToBackend, &self.ctx.stats),
        );
        let _ = backend.shutdown(Shutdown::Write);
        let _ = done_rx.recv();
        Ok(End::Close)
    }

    /// Waits `delay` (a behavior's latency), or less when the proxy stops meanwhile.
    fn sleep(&self, delay: Duration) {
        let Some(due) = Instant::now().checked_add(delay) else {
            return;
        };
        while !self.closed.load(Ordering::Relaxed) {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// Returns a clean backend connection to the pool when reuse is on.
    fn release_backend(&mut self) {
        if !self.ctx.protocol.stream_options().reuse_socket {
            return;
        }
        if let Some(b) = self.backend.take() {
            if b.clean && !b.half_closed && b.reader.buffer().is_empty() && self.framing.reusable()
            {
                log::debug!("#{} returns its backend connection to the pool", self.id);
                self.ctx
                    .pool
                    .put(&self.backend_addr, b.reader.into_inner(), b.born);
            }
        }
    }
}

/// Gives back the memory of a buffer that grew past [`KEEP_BUFFER`] for one large message.
fn give_back_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
}

/// Yields the CPU once before this thread waits for a reply that is not buffered yet.
///
/// The request was just written, which woke the backend, on a busy machine often on this
/// CPU: it would run only once this thread sleeps in `read()`, and its reply would then have
/// to wake this thread again. Yielding first lets the backend answer while this thread is
/// still runnable, so the reply is read with no sleep and no wake-up. On 2 busy cores this
/// took HTTP keep-alive from 29k to 35k requests/s and redis GET up 10%; on an idle machine
/// the yield returns at once.
fn let_backend_answer(reader: &BufReader<TcpStream>) {
    if reader.buffer().is_empty() {
        std::thread::yield_now();
    }
}

/// How often a delayed call checks that the proxy is not stopping.
const STOP_POLL: Duration = Duration::from_millis(50);
