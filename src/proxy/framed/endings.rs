//! How a behavior ends a call: `hang` (the client is held, and parked once it half-closes),
//! `blackout` (closed, or hung with `--stay-connected`), `abort` (the backend dropped after
//! the request), a stall (`timeout`, `reset_peer`: dropped, then closed or reset) and a cut
//! (`limit_data`).

use std::io::{self, BufRead, Read};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Conn, End, STOP_POLL};
use crate::behavior::{Stall, Verdict};

impl Conn<'_> {
    /// Ends the call as `verdict` says (`Hang`, `Close`, `Abort`).
    pub(super) fn end_by(&mut self, verdict: Verdict) -> io::Result<End> {
        match verdict {
            Verdict::Hang => self.hang(),
            Verdict::Abort => self.abort(),
            _ => self.close_by_behavior(),
        }
    }

    /// `hang`: drop the backend, read and drop what the client sends until it leaves.
    pub(super) fn hang(&mut self) -> io::Result<End> {
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
    pub(super) fn close_by_behavior(&mut self) -> io::Result<End> {
        if self.ctx.settings.stay_connected {
            return self.hang();
        }
        self.backend = None;
        Ok(End::Close)
    }

    pub(super) fn abort(&mut self) -> io::Result<End> {
        if let Some(b) = self.backend.take() {
            let _ = b.reader.get_ref().shutdown(Shutdown::Both);
        }
        self.close_by_behavior()
    }

    /// `timeout` or `reset_peer`: the call's data is dropped, and so is what the client sends
    /// after it; both connections end when `stall` says (reset or closed), or when the client
    /// leaves.
    pub(super) fn stall(&mut self, stall: Stall) -> io::Result<End> {
        let deadline = stall
            .after
            .and_then(|after| Instant::now().checked_add(after));
        let mut sink = [0u8; 4096];
        while !self.closed.load(Ordering::Relaxed) {
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(STOP_POLL),
                    _ => break,
                },
                None => STOP_POLL,
            };
            let _ = self.client.set_read_timeout(Some(wait));
            let buffered = self.client_r.buffer().len();
            self.client_r.consume(buffered);
            match self.client_r.get_mut().read(&mut sink) {
                Ok(0) => {
                    log::debug!("#{} {}: left while stalled", self.id, self.peer);
                    self.backend = None;
                    return Ok(End::Close);
                }
                Ok(_) => {}
                Err(e) if crate::net::is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if stall.reset {
            log::debug!("#{} {}: reset", self.id, self.peer);
            crate::net::reset_now(self.client);
            if let Some(b) = self.backend.take() {
                crate::net::reset_now(b.reader.get_ref());
            }
        }
        self.backend = None;
        Ok(End::Close)
    }

    /// `limit_data`: the stream reached its limit in the `what` of a call; both connections
    /// close.
    pub(super) fn cut(&mut self, what: &str) -> End {
        log::debug!(
            "#{} {}: limit_data reached in a {what}, closing",
            self.id,
            self.peer
        );
        self.backend = None;
        End::Close
    }
}
