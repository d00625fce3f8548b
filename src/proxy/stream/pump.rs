//! One direction of a stream link, as a [`Pump`]: read a chunk (spliced while the mix is
//! transparent), decide what its behavior does with it, deliver it (written, delayed, or the
//! link ended).

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::delay_line::{DelayLine, Held};
use super::{read_chunk, Chunk, Ending, Link};
#[cfg(target_os = "linux")]
use super::{retry_after, wait_for_data};
use crate::behavior::{Call, Delivery, Direction, Stall, Verdict};
use crate::hub::Subscription;
use crate::proxy::context::Context;
use crate::proxy::delivery::{self, Delivering, StreamState};
use crate::proxy::guards::Closable;
use crate::toxic::{stream_hook, Drawn};

/// What a chunk's behavior makes of it, decided once.
enum Action {
    /// Write it as read, with no hook (a transparent behavior, no delay line).
    AsRead,
    /// Write it (edited by its hook) as `Delivery` says, this long after it was read.
    Forward(Duration, Delivery),
    /// End the link so, this long after the chunk was read.
    End(Ending, Duration),
    /// Drop it and what follows in this direction; the link ends as `Stall` says.
    Stall(Stall),
}

/// One direction of a link.
pub(super) struct Pump<'a> {
    link: &'a Arc<Link>,
    dir: Direction,
    ctx: &'a Context,
    sub: Subscription,
    rng: fastrand::Rng,
    /// The buffer of the chunk at hand, held only while data flows.
    held: Option<Vec<u8>>,
    /// Once a chunk of this direction was delayed, the later ones follow it through here.
    line: Option<DelayLine>,
    /// A hang waits in the delay line behind earlier chunks: what the client sends is dropped
    /// from now on, while the link itself hangs only once the line reaches it.
    dropping: bool,
    /// A `timeout` or `reset_peer` stalled this direction: what it reads is dropped until
    /// the link ends.
    stalled: bool,
    /// The toxics this connection drew.
    drawn: Drawn,
    /// What the faults keep for this direction (bytes delivered, pace, a late end); moved
    /// into the delay line once there is one, which then does all the writing.
    state: StreamState,
    /// The pipe of a transparent mix's chunks, held only while data flows.
    #[cfg(target_os = "linux")]
    pipe: Option<crate::sys::splice::Pipe>,
}

/// What a pump draws behaviors with: its subscription to the live settings and its random
/// source.
pub(super) struct Draws {
    sub: Subscription,
    rng: fastrand::Rng,
}

impl Draws {
    /// The draws of direction `dir` of `link`, made by the thread that accepted it for both
    /// pumps: subscribing allocates, and so does an unseeded random source (the thread's
    /// handle), and a worker thread that never allocates keeps no malloc cache of its own,
    /// 0.6 KiB per idle connection (`make bench`, memory).
    pub(super) fn new(link: &Link, dir: Direction, ctx: &Context) -> Draws {
        Draws {
            sub: ctx.hub.subscribe(),
            rng: ctx.rng(link.id, dir),
        }
    }
}

impl<'a> Pump<'a> {
    /// The pump of direction `dir` of `link`, drawing with `draws`.
    pub(super) fn new(
        link: &'a Arc<Link>,
        dir: Direction,
        ctx: &'a Context,
        draws: Draws,
    ) -> Pump<'a> {
        let Draws { sub, rng } = draws;
        Pump {
            link,
            dir,
            ctx,
            sub,
            rng,
            held: None,
            line: None,
            dropping: false,
            stalled: false,
            drawn: Drawn::default(),
            state: StreamState::default(),
            #[cfg(target_os = "linux")]
            pipe: None,
        }
    }

    fn sides(&self) -> (&'a TcpStream, &'a TcpStream) {
        self.link.sides(self.dir)
    }

    /// Forwards this direction until its source ends or the link closes.
    pub(super) fn run(mut self) {
        loop {
            let n = match self.read() {
                Chunk::Data(n) => n,
                Chunk::Forwarded => continue,
                Chunk::End => return self.end_of_input(),
                Chunk::Closed => return,
            };
            let read_at = Instant::now();
            self.link.touch();
            if self.dropping || self.stalled || self.link.hanging.load(Ordering::Relaxed) {
                continue; // hang or stall: what arrives is dropped
            }
            let action = self.decide(n);
            if !self.deliver(action, n, read_at) {
                return;
            }
        }
    }

    /// The next chunk: through a pipe while the mix is transparent (Linux; `Forwarded` once
    /// it went through), else read into the held buffer (`Data`).
    fn read(&mut self) -> Chunk {
        #[cfg(target_os = "linux")]
        {
            // A hung link drops what it reads: through a buffer, not a new pipe per chunk.
            if self.held.is_none()
                && self.line.is_none()
                && !self.stalled
                && !self.link.hanging.load(Ordering::Relaxed)
                && self.sub.live().is_transparent()
            {
                match self.splice_chunk() {
                    Spliced::NoPipe => {}
                    Spliced::Through(chunk) => return chunk,
                }
            } else if let Some(p) = self.pipe.take() {
                self.ctx.pipes.give(p);
            }
        }
        let (src, _) = self.sides();
        read_chunk(self.link, src, &mut self.held, self.ctx, self.dir)
    }

    /// Draws the chunk's behavior and runs its hook on the `n` bytes held.
    fn decide(&mut self, n: usize) -> Action {
        let live = self.sub.live();
        let entry = live.mix.pick(&mut self.rng);
        self.ctx.stats.count_call(&entry.name, &entry.calls);
        let toxics = &live.toxics;
        let toxic = !toxics.is_empty() && {
            self.drawn.update(toxics, &mut self.rng);
            self.drawn.any(toxics, self.dir)
        };
        if entry.behavior.transparent() && !toxic && self.line.is_none() {
            return Action::AsRead;
        }
        let Some(buf) = self.held.as_mut() else {
            return Action::AsRead;
        };
        buf.truncate(n);
        let mut call = Call::new(self.dir, buf, &mut self.rng, false);
        let hook = stream_hook(self.dir);
        let mut verdict = hook(entry.behavior.as_ref(), &mut call);
        if verdict == Verdict::Forward && toxic {
            verdict = self.drawn.apply(toxics, &mut call, hook);
        }
        let (delay, delivery) = (call.delay, call.delivery);
        if entry.name != "dummy" {
            log::debug!(
                "#{} {}: {n} bytes, {} -> {verdict:?} delay {delay:?}",
                self.link.id,
                self.dir.as_str(),
                entry.name
            );
        }
        let to_client = self.dir == Direction::ToClient;
        match verdict {
            Verdict::Forward => match delivery.stall {
                Some(stall) => Action::Stall(stall),
                None => Action::Forward(delay, delivery),
            },
            Verdict::Fail if to_client => {
                crate::behavior::garble(buf, false, &mut self.rng);
                Action::Forward(delay, delivery)
            }
            Verdict::Hang => Action::End(Ending::Hang, delay),
            Verdict::Abort if !to_client => Action::End(Ending::Abort, delay),
            Verdict::Fail | Verdict::Close | Verdict::Abort => Action::End(Ending::Close, delay),
        }
    }

    /// Carries `action` out on the chunk of `n` bytes read at `read_at`; `false` once this
    /// pump is done.
    fn deliver(&mut self, action: Action, n: usize, read_at: Instant) -> bool {
        match action {
            Action::AsRead => {
                if !self.write_held(n) {
                    return false;
                }
                if n < self.ctx.buffers.size() {
                    // The source is drained: wait for the next chunk without a buffer.
                    self.give_back();
                }
                true
            }
            Action::Forward(delay, delivery) if delay.is_zero() && self.line.is_none() => {
                let ok = self.write_delivered(delivery);
                self.give_back();
                ok
            }
            Action::Forward(delay, delivery) => self.queue(delivery, read_at + delay),
            Action::End(ending, delay) if self.line.is_some() => {
                self.end_behind_line(ending, read_at + delay)
            }
            Action::End(ending, _) => self.end(ending),
            Action::Stall(stall) => self.stall(stall),
        }
    }

    /// Writes the held chunk as `delivery` says (paced, sliced, cut at the limit); `false`
    /// once the link is closed (a write failed, or the limit cut the stream).
    fn write_delivered(&mut self, delivery: Delivery) -> bool {
        let Some(buf) = self.held.as_ref() else {
            return true;
        };
        let (_, dst) = self.sides();
        let before = self.state.passed;
        let written = Delivering::new(
            dst,
            delivery,
            &mut self.state,
            &mut self.rng,
            &self.link.closed,
        )
        .write_all(buf);
        self.ctx
            .stats
            .add_bytes(self.dir, (self.state.passed - before) as usize);
        match written {
            Ok(()) => true,
            Err(e) => {
                self.link.cut_or_failed(self.dir, &e);
                false
            }
        }
    }

    /// `timeout` or `reset_peer`: this chunk and what follows in this direction are dropped,
    /// and the link ends when `stall` says (a reset at once, or a timer), or when the client
    /// leaves. `true`: the pump goes on, dropping.
    fn stall(&mut self, stall: Stall) -> bool {
        self.stalled = true;
        self.give_back();
        let ending = if stall.reset { "reset" } else { "closed" };
        match stall.after {
            Some(after) => log::debug!(
                "#{} {}: stalled; the link is {ending} in {after:?}",
                self.link.id,
                self.dir.as_str()
            ),
            None => log::debug!(
                "#{} {}: stalled until the client leaves",
                self.link.id,
                self.dir.as_str()
            ),
        }
        match stall.after {
            Some(after) if after.is_zero() => {
                self.link.end_stalled(stall.reset);
                false
            }
            Some(after) => {
                let link = self.link.clone();
                let timer = self.ctx.workers.execute(Box::new(move || {
                    if delivery::pause(after, &link.closed).is_ok() {
                        link.end_stalled(stall.reset);
                    }
                }));
                if let Err(e) = timer {
                    log::error!("#{} cannot start a timer: {e}", self.link.id);
                    self.link.end_stalled(stall.reset);
                    return false;
                }
                true
            }
            None => true,
        }
    }

    /// Writes the held chunk (its first `n` bytes at most) to this direction's destination.
    fn write_held(&mut self, n: usize) -> bool {
        let (_, mut dst) = self.sides();
        let Some(buf) = self.held.as_ref() else {
            return true;
        };
        let data = &buf[..n.min(buf.len())];
        if let Err(e) = dst.write_all(data) {
            log::debug!("#{} {}: write failed: {e}", self.link.id, self.dir.as_str());
            self.link.close_all();
            return false;
        }
        self.ctx.stats.add_bytes(self.dir, data.len());
        self.state.passed += data.len() as u64;
        true
    }

    fn give_back(&mut self) {
        if let Some(buf) = self.held.take() {
            self.ctx.buffers.give(buf);
        }
    }

    /// Hands the held chunk to the delay line, started if need be, to be written at `due` as
    /// `delivery` says.
    fn queue(&mut self, delivery: Delivery, due: Instant) -> bool {
        if self.line.is_none() {
            // The line does all the writing from now on, with what the faults keep, and a
            // random source of its own drawn from this one (so `--seed` still replays it).
            let state = std::mem::take(&mut self.state);
            let rng = fastrand::Rng::with_seed(self.rng.u64(..));
            match DelayLine::start(self.link, self.dir, self.ctx, state, rng) {
                Ok(l) => self.line = Some(l),
                Err(e) => {
                    log::error!("#{} cannot start a delay line: {e}", self.link.id);
                    self.link.close_all();
                    return false;
                }
            }
        }
        let Some(chunk) = self.held.take() else {
            return true;
        };
        self.send(due, Held::Chunk(chunk, delivery))
    }

    /// Sends `held` down the delay line; `false` when its writer failed (it closed the link).
    fn send(&self, due: Instant, held: Held) -> bool {
        self.link.delayed_chunks.fetch_add(1, Ordering::Relaxed);
        self.line
            .as_ref()
            .is_some_and(|l| l.tx.send((due, held)).is_ok())
    }

    /// A behavior ends the link while data read before waits in the delay line: the end goes
    /// behind it (after the chunk itself for an abort, whose request reaches the backend).
    fn end_behind_line(&mut self, ending: Ending, due: Instant) -> bool {
        if let (Ending::Abort, Some(chunk)) = (ending, self.held.take()) {
            if !self.send(due, Held::Chunk(chunk, Delivery::default())) {
                return false;
            }
        }
        if !self.send(due, Held::End(ending)) {
            return false;
        }
        // The writer ends the link once it has written what is ahead; what the client sends
        // meanwhile is dropped when the end is a hang (also a close or an abort with
        // --stay-connected, which hang the client instead).
        let hangs = matches!(ending, Ending::Hang) || self.link.stay_connected;
        if hangs && self.dir == Direction::ToBackend {
            self.dropping = true;
            self.give_back();
            return true;
        }
        false
    }

    /// A behavior ends the link now; `true` when this pump goes on, to drop what the client
    /// sends while the link hangs.
    fn end(&mut self, ending: Ending) -> bool {
        match ending {
            Ending::Hang => {
                self.link.hang();
                if self.dir == Direction::ToClient {
                    return false;
                }
            }
            Ending::Abort => {
                self.write_held(usize::MAX);
                ending.apply(self.link);
            }
            Ending::Close => self.link.close_by_behavior(),
        }
        // `hang`, or `--stay-connected` where a behavior would close: the client's side is
        // drained.
        if self.dir != Direction::ToBackend || !self.link.hanging.load(Ordering::Relaxed) {
            return false;
        }
        self.give_back();
        true
    }

    /// The source ended: the half-close goes on (after what the delay line holds), or, for a
    /// hung client that half-closed and may still wait for an answer, the client is parked.
    fn end_of_input(mut self) {
        if self.stalled {
            // A client that leaves frees a stalled link; a backend that ends is not told.
            if self.dir == Direction::ToBackend {
                self.link.close_all();
            }
            return;
        }
        if self.dropping || self.link.hanging.load(Ordering::Relaxed) {
            if self.dir == Direction::ToBackend {
                self.give_back();
                match self.link.client.try_clone() {
                    Ok(client) => {
                        self.ctx.parking.park(client, &self.ctx.workers);
                        log::debug!(
                            "#{} {}: half-closed while hung; parked",
                            self.link.id,
                            self.link.peer
                        );
                        self.link.leave_parked();
                    }
                    Err(_) => self.link.close_all(),
                }
            }
            return;
        }
        match self.line.take() {
            Some(line) => drop(line), // the writer shuts the destination after the last chunk
            None => {
                // `slow_close`: the end goes on late (sooner when the link closes).
                let _ = delivery::pause(self.state.close_delay, &self.link.closed);
                let (_, dst) = self.sides();
                let _ = dst.shutdown(Shutdown::Write);
            }
        }
    }
}

/// What moving one chunk through a pipe gave.
#[cfg(target_os = "linux")]
enum Spliced {
    /// No pipe to be had (out of file descriptors): use a buffer instead.
    NoPipe,
    /// What the pipe gave: `Forwarded`, `End`, `Closed`, or `Data(n)` when the mix stopped
    /// being transparent while the chunk was on its way (it is then in the held buffer, for
    /// the hooks).
    Through(Chunk),
}

#[cfg(target_os = "linux")]
impl Pump<'_> {
    /// Forwards one chunk of a transparent mix through a pipe (see [`crate::sys::splice`]),
    /// holding the pipe only while data flows.
    fn splice_chunk(&mut self) -> Spliced {
        let (link, dir, ctx) = (self.link, self.dir, self.ctx);
        let (src, dst) = self.sides();
        let tag = dir.as_str();
        if self.pipe.is_none() {
            match wait_for_data(link, src, dir) {
                Chunk::Data(_) => {}
                other => return Spliced::Through(other),
            }
            match ctx.pipes.take() {
                Ok(p) => self.pipe = Some(p),
                Err(e) => {
                    log::debug!("#{} {tag}: no pipe ({e}): copying instead", link.id);
                    return Spliced::NoPipe;
                }
            }
        }
        let Some(p) = self.pipe.as_mut() else {
            return Spliced::NoPipe;
        };
        let max = ctx.buffers.size().min(crate::sys::splice::PIPE_BYTES);
        let n = loop {
            match p.fill(src, max) {
                Ok(n) => break n,
                Err(e) if retry_after(link, &e, dir) => {}
                Err(_) => return Spliced::Through(Chunk::Closed),
            }
        };
        if n == 0 {
            if let Some(p) = self.pipe.take() {
                ctx.pipes.give(p);
            }
            return Spliced::Through(Chunk::End);
        }
        ctx.stats.add_received(dir, n);
        link.touch();
        if link.hanging.load(Ordering::Relaxed) {
            self.pipe = None; // closing the pipe drops the chunk, as `hang` wants
            return Spliced::Through(Chunk::Forwarded);
        }
        let live = self.sub.live();
        if !live.is_transparent() {
            // The mix changed while this chunk was on its way: the hooks get it after all.
            let mut buf = ctx.buffers.take();
            let read = p.read_into(&mut buf[..n]);
            self.held = Some(buf);
            return Spliced::Through(match read {
                Ok(()) => Chunk::Data(n),
                Err(e) => {
                    log::debug!("#{} {tag}: pipe read failed: {e}", link.id);
                    link.close_all();
                    Chunk::Closed
                }
            });
        }
        let entry = live.mix.pick(&mut self.rng);
        ctx.stats.count_call(&entry.name, &entry.calls);
        if let Err(e) = p.drain(dst, n) {
            log::debug!("#{} {tag}: write failed: {e}", link.id);
            link.close_all();
            return Spliced::Through(Chunk::Closed);
        }
        ctx.stats.add_bytes(dir, n);
        self.state.passed += n as u64;
        if n < max {
            // The source is drained: wait for the next chunk without a pipe.
            if let Some(p) = self.pipe.take() {
                ctx.pipes.give(p);
            }
        }
        Spliced::Through(Chunk::Forwarded)
    }
}
