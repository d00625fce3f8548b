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

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use crate::behavior::{Call, Direction, Verdict};
use crate::hub::Subscription;
use crate::proxy::context::Context;
use crate::proxy::guards::{Closable, ConnectionGuards};

/// Bytes a delay line holds before the reader waits: bounds memory per direction. It is also
/// the most a delayed direction carries per `sleep` (its bandwidth-delay product): data left
/// waiting in the kernel while the line is full is read, and so delayed, only later.
const DELAY_LINE_BYTES: usize = 8 << 20;

/// How often a delay line waiting for a chunk's due time checks that the link is not closed.
const CLOSED_POLL: Duration = Duration::from_millis(50);

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
    /// Permit, counters and shutdown registration, released when both pumps are done.
    _guards: ConnectionGuards,
}

impl Link {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        client: TcpStream,
        backend: TcpStream,
        ctx: &Context,
        mut guards: ConnectionGuards,
    ) -> io::Result<Arc<Link>> {
        let idle_timeout = crate::proxy::context::idle_timeout(&ctx.settings);
        let poll = crate::proxy::context::stream_poll(idle_timeout);
        ctx.set_client_read_timeout(&client, poll)?;
        backend.set_read_timeout(poll)?;
        Ok(Arc::new_cyclic(|weak: &std::sync::Weak<Link>| {
            guards.track = Some(
                ctx.tracker
                    .register(id, weak.clone() as std::sync::Weak<dyn Closable>),
            );
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
        }))
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
    let other = link.clone();
    let other_ctx = ctx.clone();
    let sub = ctx.hub.subscribe();
    let rng = ctx.rng(link.id, Direction::ToClient);
    if let Err(e) = ctx.workers.execute(Box::new(move || {
        pump(&other, Direction::ToClient, sub, rng, &other_ctx)
    })) {
        log::error!(
            "#{} cannot start a worker thread: {e}; closing {}",
            link.id,
            link.peer
        );
        link.close_all();
        return;
    }
    let sub = ctx.hub.subscribe();
    let rng = ctx.rng(link.id, Direction::ToBackend);
    pump(&link, Direction::ToBackend, sub, rng, ctx);
}

/// What a delay line holds.
enum Held {
    /// Data to write.
    Chunk(Vec<u8>),
    /// The end a behavior chose for the link, behind the data read before it.
    End(Ending),
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

/// Writes chunks at their due time, in order, on a worker of its own.
struct DelayLine {
    tx: Sender<(Instant, Held)>,
}

impl DelayLine {
    fn start(link: &Arc<Link>, dir: Direction, ctx: &Context) -> io::Result<DelayLine> {
        // Every chunk owns a buffer of `bufsize` bytes.
        let chunks = (DELAY_LINE_BYTES / ctx.buffers.size()).max(2);
        let (tx, rx) = bounded::<(Instant, Held)>(chunks);
        let link = link.clone();
        let stats = ctx.stats.clone();
        let buffers = ctx.buffers.clone();
        ctx.workers.execute(Box::new(move || {
            let (_, dst) = link.sides(dir);
            let mut dst = dst;
            for (due, held) in rx {
                // Wait for the due time, unless the link closes meanwhile: a closed link
                // must not be kept alive (its permit held) by the data it can no longer send.
                loop {
                    if link.closed.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if due <= now {
                        break;
                    }
                    std::thread::sleep((due - now).min(CLOSED_POLL));
                }
                let data = match held {
                    Held::Chunk(data) => data,
                    Held::End(ending) => {
                        link.delayed_chunks.fetch_sub(1, Ordering::Relaxed);
                        log::debug!("#{} {}: {ending:?}, delayed", link.id, dir.as_str());
                        ending.apply(&link);
                        match ending {
                            // The reader drops what follows and ends when the client leaves.
                            Ending::Hang => continue,
                            Ending::Close | Ending::Abort => return,
                        }
                    }
                };
                let written = dst.write_all(&data);
                link.delayed_chunks.fetch_sub(1, Ordering::Relaxed);
                link.touch();
                if let Err(e) = written {
                    log::debug!("#{} {}: write failed: {e}", link.id, dir.as_str());
                    link.close_all();
                    return;
                }
                stats.add_bytes(dir, data.len());
                buffers.give(data);
            }
            // The reader saw end of stream (or gave up): pass the half-close on, unless the
            // link hangs: then a client that left ends it.
            if !link.hanging.load(Ordering::Relaxed) {
                let _ = dst.shutdown(Shutdown::Write);
            } else if dir == Direction::ToBackend && !link.closed.load(Ordering::Relaxed) {
                link.close_all();
            }
        }))?;
        Ok(DelayLine { tx })
    }
}

/// After a behavior ended the link or hung it: `true` when this pump goes on reading, to drop
/// what the client sends while the link hangs (`hang`, or `--stay-connected` where a behavior
/// would close); its buffer goes back meanwhile.
fn keep_draining(link: &Link, dir: Direction, held: &mut Option<Vec<u8>>, ctx: &Context) -> bool {
    if dir != Direction::ToBackend || !link.hanging.load(Ordering::Relaxed) {
        return false;
    }
    if let Some(buf) = held.take() {
        ctx.buffers.give(buf);
    }
    true
}

/// What waiting for a chunk gave.
enum Chunk {
    /// This many bytes are in the buffer.
    Data(usize),
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
            Ok(n) => return Chunk::Data(n),
            Err(e) if retry_after(link, &e, dir) => {}
            Err(_) => return Chunk::Closed,
        }
    }
}

/// What moving one chunk through a pipe gave.
#[cfg(target_os = "linux")]
enum Spliced {
    /// Forwarded.
    Done,
    /// The mix stopped being transparent: the chunk was read out of the pipe into the
    /// buffer, this long, for the hooks.
    Chunk(usize),
    /// No pipe to be had (out of file descriptors): use a buffer instead.
    NoPipe,
    /// The source ended, as [`Chunk::End`].
    End,
    /// The link is closed, as [`Chunk::Closed`].
    Closed,
}

/// Forwards one chunk of a transparent mix through a pipe (see [`crate::splice`]), holding
/// the pipe only while data flows.
#[cfg(target_os = "linux")]
#[allow(clippy::too_many_arguments)]
fn splice_chunk(
    link: &Link,
    (src, dst): (&TcpStream, &TcpStream),
    pipe: &mut Option<crate::sys::splice::Pipe>,
    held: &mut Option<Vec<u8>>,
    sub: &mut Subscription,
    rng: &mut fastrand::Rng,
    ctx: &Context,
    dir: Direction,
) -> Spliced {
    let tag = dir.as_str();
    if pipe.is_none() {
        match wait_for_data(link, src, dir) {
            Chunk::Data(_) => {}
            Chunk::End => return Spliced::End,
            Chunk::Closed => return Spliced::Closed,
        }
        match ctx.pipes.take() {
            Ok(p) => *pipe = Some(p),
            Err(e) => {
                log::debug!("#{} {tag}: no pipe ({e}): copying instead", link.id);
                return Spliced::NoPipe;
            }
        }
    }
    let Some(p) = pipe.as_mut() else {
        return Spliced::NoPipe;
    };
    let max = ctx.buffers.size().min(crate::sys::splice::PIPE_BYTES);
    let n = loop {
        match p.fill(src, max) {
            Ok(n) => break n,
            Err(e) if retry_after(link, &e, dir) => {}
            Err(_) => return Spliced::Closed,
        }
    };
    if n == 0 {
        if let Some(p) = pipe.take() {
            ctx.pipes.give(p);
        }
        return Spliced::End;
    }
    link.touch();
    if link.hanging.load(Ordering::Relaxed) {
        *pipe = None; // closing the pipe drops the chunk, as `hang` wants
        return Spliced::Done;
    }
    let live = sub.live();
    if !live.mix.is_transparent() {
        // The mix changed while this chunk was on its way: the hooks get it after all.
        let mut buf = ctx.buffers.take();
        let read = p.read_into(&mut buf[..n]);
        *held = Some(buf);
        return match read {
            Ok(()) => Spliced::Chunk(n),
            Err(e) => {
                log::debug!("#{} {tag}: pipe read failed: {e}", link.id);
                link.close_all();
                Spliced::Closed
            }
        };
    }
    let entry = live.mix.pick(rng);
    ctx.stats.count_call(&entry.name, &entry.calls);
    if let Err(e) = p.drain(dst, n) {
        log::debug!("#{} {tag}: write failed: {e}", link.id);
        link.close_all();
        return Spliced::Closed;
    }
    ctx.stats.add_bytes(dir, n);
    if n < max {
        // The source is drained: wait for the next chunk without a pipe.
        if let Some(p) = pipe.take() {
            ctx.pipes.give(p);
        }
    }
    Spliced::Done
}

/// Forwards one direction until its source ends.
fn pump(
    link: &Arc<Link>,
    dir: Direction,
    mut sub: Subscription,
    mut rng: fastrand::Rng,
    ctx: &Context,
) {
    let (src, mut dst) = link.sides(dir);
    let bufsize = ctx.buffers.size();
    let mut held: Option<Vec<u8>> = None;
    let mut line: Option<DelayLine> = None;
    // A hang waiting in the delay line behind earlier chunks: what follows is dropped already.
    let mut hung = false;
    let tag = dir.as_str();
    #[cfg(target_os = "linux")]
    let mut pipe: Option<crate::sys::splice::Pipe> = None;
    loop {
        // A hung link drops what it reads: through a buffer, not a new pipe per chunk.
        #[cfg(target_os = "linux")]
        let spliced = if held.is_none()
            && line.is_none()
            && !link.hanging.load(Ordering::Relaxed)
            && sub.live().mix.is_transparent()
        {
            match splice_chunk(
                link,
                (src, dst),
                &mut pipe,
                &mut held,
                &mut sub,
                &mut rng,
                ctx,
                dir,
            ) {
                Spliced::Done => continue,
                Spliced::End => break,
                Spliced::Closed => return,
                Spliced::Chunk(n) => Some(n),
                Spliced::NoPipe => None,
            }
        } else {
            if let Some(p) = pipe.take() {
                ctx.pipes.give(p);
            }
            None
        };
        #[cfg(not(target_os = "linux"))]
        let spliced = None;
        let n = match spliced {
            Some(n) => n,
            None => match read_chunk(link, src, &mut held, ctx, dir) {
                Chunk::Data(n) => n,
                Chunk::End => break,
                Chunk::Closed => return,
            },
        };
        let Some(buf) = held.as_mut() else {
            continue;
        };
        let read_at = Instant::now();
        link.touch();
        if hung || link.hanging.load(Ordering::Relaxed) {
            continue; // hang: what the client sends is dropped
        }
        let live = sub.live();
        let entry = live.mix.pick(&mut rng);
        ctx.stats.count_call(&entry.name, &entry.calls);
        if entry.behavior.transparent() && line.is_none() {
            // The common case: the chunk is written from the buffer as read, no hook.
            if let Err(e) = dst.write_all(&buf[..n]) {
                log::debug!("#{} {tag}: write failed: {e}", link.id);
                link.close_all();
                return;
            }
            ctx.stats.add_bytes(dir, n);
            if n < bufsize {
                // The source is drained: wait for the next chunk without a buffer.
                if let Some(buf) = held.take() {
                    ctx.buffers.give(buf);
                }
            }
            continue;
        }
        buf.truncate(n);
        let mut call = Call {
            direction: dir,
            data: buf,
            rng: &mut rng,
            framed: false,
            delay: Duration::ZERO,
        };
        let verdict = match dir {
            Direction::ToBackend => entry.behavior.before(&mut call),
            Direction::ToClient => entry.behavior.after(&mut call),
        };
        let delay = call.delay;
        if entry.name != "dummy" {
            log::debug!(
                "#{} {tag}: {} bytes, {} -> {verdict:?} delay {delay:?}",
                link.id,
                n,
                entry.name
            );
        }
        let ending = match verdict {
            Verdict::Hang => Some(Ending::Hang),
            Verdict::Abort if dir == Direction::ToBackend => Some(Ending::Abort),
            Verdict::Fail if dir == Direction::ToClient => None,
            Verdict::Fail | Verdict::Close | Verdict::Abort => Some(Ending::Close),
            Verdict::Forward => None,
        };
        if let (Some(ending), Some(l)) = (ending, line.as_ref()) {
            // Data read before this call waits in the delay line: the end goes behind it.
            let due = read_at + delay;
            let mut queued = true;
            if let (Ending::Abort, Some(chunk)) = (ending, held.take()) {
                link.delayed_chunks.fetch_add(1, Ordering::Relaxed);
                queued = l.tx.send((due, Held::Chunk(chunk))).is_ok();
            }
            link.delayed_chunks.fetch_add(1, Ordering::Relaxed);
            if !queued || l.tx.send((due, Held::End(ending))).is_err() {
                return; // the writer failed and closed the link
            }
            // The writer ends the link once it has written what is ahead; what the client
            // sends meanwhile is dropped when the end is a hang (also a close or an abort
            // with --stay-connected, which hang the client instead).
            let hangs = matches!(ending, Ending::Hang) || link.stay_connected;
            if hangs && dir == Direction::ToBackend {
                hung = true;
                if let Some(buf) = held.take() {
                    ctx.buffers.give(buf);
                }
                continue;
            }
            return;
        }
        match verdict {
            Verdict::Forward => {}
            Verdict::Fail if dir == Direction::ToClient => {
                crate::behavior::garble(buf, false, &mut rng);
            }
            Verdict::Hang => {
                link.hang();
                if dir == Direction::ToClient {
                    return;
                }
                if let Some(buf) = held.take() {
                    ctx.buffers.give(buf);
                }
                continue;
            }
            Verdict::Abort if dir == Direction::ToBackend => {
                let _ = dst.write_all(buf);
                Ending::Abort.apply(link);
                if !keep_draining(link, dir, &mut held, ctx) {
                    return;
                }
                continue;
            }
            Verdict::Fail | Verdict::Close | Verdict::Abort => {
                link.close_by_behavior();
                if !keep_draining(link, dir, &mut held, ctx) {
                    return;
                }
                continue;
            }
        }
        if delay.is_zero() && line.is_none() {
            if let Err(e) = dst.write_all(buf) {
                log::debug!("#{} {tag}: write failed: {e}", link.id);
                link.close_all();
                return;
            }
            ctx.stats.add_bytes(dir, buf.len());
            if let Some(buf) = held.take() {
                ctx.buffers.give(buf);
            }
        } else {
            if line.is_none() {
                match DelayLine::start(link, dir, ctx) {
                    Ok(l) => line = Some(l),
                    Err(e) => {
                        log::error!("#{} cannot start a delay line: {e}", link.id);
                        link.close_all();
                        return;
                    }
                }
            }
            let Some(chunk) = held.take() else {
                continue;
            };
            link.delayed_chunks.fetch_add(1, Ordering::Relaxed);
            if line
                .as_ref()
                .is_some_and(|l| l.tx.send((read_at + delay, Held::Chunk(chunk))).is_err())
            {
                return; // the writer failed and closed the link
            }
        }
    }
    // End of stream from `src`.
    if hung || link.hanging.load(Ordering::Relaxed) {
        if dir == Direction::ToBackend {
            // A hung client that half-closed may still wait for an answer: the link is held
            // until the client is gone.
            if let Some(buf) = held.take() {
                ctx.buffers.give(buf);
            }
            match link.client.try_clone() {
                Ok(client) => {
                    ctx.parking.park(client, &ctx.workers);
                    log::debug!("#{} {}: half-closed while hung; parked", link.id, link.peer);
                    link.leave_parked();
                }
                Err(_) => link.close_all(),
            }
        }
        return;
    }
    match line {
        Some(line) => drop(line), // the writer shuts `dst` down after the last chunk
        None => {
            let _ = dst.shutdown(Shutdown::Write);
        }
    }
    let _ = &mut dst;
}
