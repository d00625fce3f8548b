//! How a behavior ends a call: `hang` (the client is held, and parked once it half-closes),
//! `blackout` (closed, or hung with `--stay-connected`) and `abort` (the backend dropped
//! after the request).

use std::io::{self, BufRead, Read};
use std::net::Shutdown;

use super::{Conn, End};
use crate::behavior::Verdict;

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
}
