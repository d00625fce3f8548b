//! Carrying out a call's [`Delivery`] on the bytes written for it: one writer, [`Delivering`],
//! used alike by the stream pumps (a chunk), their delay lines, and the framed driver (a
//! request's or a response's head and body), so that every fault works on every protocol.
//!
//! ```text
//! call's bytes ─▶ limit (cut at the stream's total) ─▶ slices (size ± variation, gap apart)
//!              ─▶ pace (at most rate/10 bytes a write, each at its due time) ─▶ socket
//! ```
//! What a fault needs to remember about a stream of one connection (the bytes it carried, when
//! a paced write is next due, how late its end goes on) is its [`StreamState`], kept by the
//! connection's driver, never by the shared behavior.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::behavior::Delivery;

/// How often a paced or sliced write waiting for its turn checks that the connection is open.
const CLOSED_POLL: Duration = Duration::from_millis(50);

/// A paced stream writes at most this fraction of a second of data at a time (a tenth, as
/// Toxiproxy cuts big chunks), so that data arrives smoothly, never a burst then a pause.
const PACE_STEPS_PER_SECOND: u64 = 10;

/// What a connection keeps for one of its streams across calls.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Bytes delivered to the stream's destination so far (`limit_data` counts them).
    pub passed: u64,
    /// When a paced write may go next (`bandwidth`).
    next_due: Option<Instant>,
    /// How late the end of the stream goes on: the longest a call asked for (`slow_close`).
    pub close_delay: Duration,
}

impl StreamState {
    /// Takes note of what `delivery` asks of the stream's end.
    pub fn note(&mut self, delivery: &Delivery) {
        if let Some(d) = delivery.close_delay {
            self.close_delay = self.close_delay.max(d);
        }
    }
}

/// The error a [`Delivering`] writer returns once its stream reached `limit_data`'s limit:
/// what was allowed went through, the rest is cut, and both connections are to close.
#[derive(Debug)]
struct LimitReached;

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("limit_data: the stream's limit was reached")
    }
}

impl std::error::Error for LimitReached {}

/// Whether `e` says the stream was cut at its limit (see [`Delivering`]).
pub(crate) fn is_cut(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LimitReached>())
}

/// Waits until `due`, or less when `closed` is set meanwhile (then `Err`).
pub(crate) fn pause_until(due: Instant, closed: &AtomicBool) -> io::Result<()> {
    loop {
        if closed.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the connection closed",
            ));
        }
        let now = Instant::now();
        if due <= now {
            return Ok(());
        }
        std::thread::sleep((due - now).min(CLOSED_POLL));
    }
}

/// Waits `delay`, or less when `closed` is set meanwhile (then `Err`).
pub(crate) fn pause(delay: Duration, closed: &AtomicBool) -> io::Result<()> {
    match Instant::now().checked_add(delay) {
        Some(due) => pause_until(due, closed),
        None => Ok(()),
    }
}

/// Writes to `inner` as a call's [`Delivery`] says: cut at the stream's limit, in slices, at
/// a pace. A write may take less than it was given; `write_all` delivers the whole.
pub(crate) struct Delivering<'a, W: Write> {
    inner: W,
    delivery: Delivery,
    state: &'a mut StreamState,
    rng: &'a mut fastrand::Rng,
    closed: &'a AtomicBool,
    /// Whether a slice of this call was written already (the next one waits the gap).
    sliced: bool,
}

impl<'a, W: Write> Delivering<'a, W> {
    /// A writer to `inner` carrying out `delivery`, with the stream's `state`; waits end early
    /// when `closed` is set.
    pub fn new(
        inner: W,
        delivery: Delivery,
        state: &'a mut StreamState,
        rng: &'a mut fastrand::Rng,
        closed: &'a AtomicBool,
    ) -> Self {
        state.note(&delivery);
        Delivering {
            inner,
            delivery,
            state,
            rng,
            closed,
            sliced: false,
        }
    }
}

impl<W: Write> Write for Delivering<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = buf.len();
        if let Some(limit) = self.delivery.limit {
            let left = limit.saturating_sub(self.state.passed);
            if left == 0 {
                return Err(io::Error::other(LimitReached));
            }
            n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if let Some(slices) = self.delivery.slices {
            if self.sliced {
                pause(slices.gap, self.closed)?;
            }
            n = n.min(slices.draw(self.rng));
            self.sliced = true;
        }
        if let Some(rate) = self.delivery.rate {
            n = n.min(
                usize::try_from(rate / PACE_STEPS_PER_SECOND)
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
            let takes = Duration::from_secs_f64(n as f64 / rate as f64);
            let now = Instant::now();
            // A turn missed by less than a step (a sleep that overslept, a slow write) is
            // kept, so the pace makes up for it; after a longer pause the stream starts
            // afresh rather than bursting.
            let due = match self.state.next_due {
                Some(t) if t.checked_add(takes).is_some_and(|late| late >= now) => t,
                _ => now,
            };
            pause_until(due, self.closed)?;
            self.state.next_due = due.checked_add(takes);
        }
        self.inner.write_all(&buf[..n])?;
        self.state.passed += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behavior::Slices;

    /// Records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for &mut Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn deliver(
        data: &[u8],
        delivery: Delivery,
        state: &mut StreamState,
    ) -> (Writes, io::Result<()>) {
        let mut writes = Writes::default();
        let mut rng = fastrand::Rng::with_seed(5);
        let open = AtomicBool::new(false);
        let result = Delivering::new(&mut writes, delivery, state, &mut rng, &open).write_all(data);
        (writes, result)
    }

    #[test]
    fn a_plain_delivery_is_one_write() {
        let (writes, result) = deliver(b"hello", Delivery::default(), &mut StreamState::default());
        assert!(result.is_ok());
        assert_eq!(writes.0, [b"hello".to_vec()]);
    }

    #[test]
    fn the_limit_counts_the_stream_across_calls_and_cuts_the_crossing_call() {
        let limit = Delivery {
            limit: Some(8),
            ..Delivery::default()
        };
        let mut state = StreamState {
            passed: 3, // an earlier call's bytes
            ..StreamState::default()
        };
        let (writes, result) = deliver(b"0123456789", limit, &mut state);
        assert!(is_cut(&result.unwrap_err()));
        assert_eq!(writes.0.concat(), b"01234");
        assert_eq!(state.passed, 8);
        let (writes, result) = deliver(b"x", limit, &mut state);
        assert!(is_cut(&result.unwrap_err()));
        assert!(writes.0.is_empty());
    }

    #[test]
    fn slices_are_separate_writes_a_gap_apart() {
        let sliced = Delivery {
            slices: Some(Slices {
                size: 4,
                variation: 0,
                gap: Duration::from_millis(20),
            }),
            ..Delivery::default()
        };
        let started = Instant::now();
        let (writes, result) = deliver(b"0123456789", sliced, &mut StreamState::default());
        assert!(result.is_ok());
        assert_eq!(
            writes.0,
            [b"0123".to_vec(), b"4567".to_vec(), b"89".to_vec()]
        );
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_pace_cuts_tenths_of_a_second_and_keeps_the_rate() {
        let paced = Delivery {
            rate: Some(10_000),
            ..Delivery::default()
        };
        let started = Instant::now();
        let mut state = StreamState::default();
        let (writes, result) = deliver(&[7u8; 5000], paced, &mut state);
        assert!(result.is_ok());
        assert_eq!(writes.0.len(), 5, "1000-byte writes at 10 kB/s");
        assert!(writes.0.iter().all(|w| w.len() == 1000));
        // Four waits of 0.1 s; the fifth write's turn ends the next one's.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(390), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_close_ends_a_paced_wait() {
        let paced = Delivery {
            rate: Some(1),
            ..Delivery::default()
        };
        let mut writes = Writes::default();
        let mut rng = fastrand::Rng::with_seed(5);
        let closed = AtomicBool::new(true);
        let mut state = StreamState {
            next_due: Instant::now().checked_add(Duration::from_secs(3600)),
            ..StreamState::default()
        };
        let mut w = Delivering::new(&mut writes, paced, &mut state, &mut rng, &closed);
        let started = Instant::now();
        assert!(w.write_all(b"ab").is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
