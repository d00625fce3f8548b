//! A delay line: chunks read at t are written at t + delay by a writer of their own, fed
//! through a bounded channel, so a burst is delayed once, order is kept, and memory per
//! direction is bounded; the end a behavior gave the link follows the data read before it.

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Sender};

use super::{Ending, Link};
use crate::behavior::{Delivery, Direction};
use crate::proxy::context::Context;
use crate::proxy::delivery::{self, Delivering, StreamState};
use crate::proxy::guards::Closable;

/// Bytes a delay line holds before the reader waits: bounds memory per direction. It is also
/// the most a delayed direction carries per `sleep` (its bandwidth-delay product): data left
/// waiting in the kernel while the line is full is read, and so delayed, only later.
const DELAY_LINE_BYTES: usize = 8 << 20;

/// What a delay line holds.
pub(super) enum Held {
    /// Data to write, as its delivery says.
    Chunk(Vec<u8>, Delivery),
    /// The end a behavior chose for the link, behind the data read before it.
    End(Ending),
}

/// Writes chunks at their due time, in order, on a worker of its own.
pub(super) struct DelayLine {
    pub(super) tx: Sender<(Instant, Held)>,
}

impl DelayLine {
    /// Starts the line of direction `dir` of `link`; it writes with what the faults keep for
    /// the direction (`state`) and draws slices from `rng`.
    pub(super) fn start(
        link: &Arc<Link>,
        dir: Direction,
        ctx: &Context,
        mut state: StreamState,
        mut rng: fastrand::Rng,
    ) -> io::Result<DelayLine> {
        // Every chunk owns a buffer of `bufsize` bytes.
        let chunks = (DELAY_LINE_BYTES / ctx.buffers.size()).max(2);
        let (tx, rx) = bounded::<(Instant, Held)>(chunks);
        let link = link.clone();
        let stats = ctx.stats.clone();
        let buffers = ctx.buffers.clone();
        ctx.workers.execute(Box::new(move || {
            let (_, dst) = link.sides(dir);
            for (due, held) in rx {
                // Wait for the due time, unless the link closes meanwhile: a closed link
                // must not be kept alive (its permit held) by the data it can no longer send.
                if delivery::pause_until(due, &link.closed).is_err() {
                    return;
                }
                let (data, how) = match held {
                    Held::Chunk(data, how) => (data, how),
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
                let before = state.passed;
                let written =
                    Delivering::new(dst, how, &mut state, &mut rng, &link.closed).write_all(&data);
                link.delayed_chunks.fetch_sub(1, Ordering::Relaxed);
                link.touch();
                stats.add_bytes(dir, (state.passed - before) as usize);
                if let Err(e) = written {
                    link.cut_or_failed(dir, &e);
                    return;
                }
                buffers.give(data);
            }
            // The reader saw end of stream (or gave up): pass the half-close on, unless the
            // link hangs: then a client that left ends it.
            if !link.hanging.load(Ordering::Relaxed) {
                let _ = delivery::pause(state.close_delay, &link.closed);
                let _ = dst.shutdown(Shutdown::Write);
            } else if dir == Direction::ToBackend && !link.closed.load(Ordering::Relaxed) {
                link.close_all();
            }
        }))?;
        Ok(DelayLine { tx })
    }
}
