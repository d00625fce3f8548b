//! The calls of a transparent mix, forwarded a pipeline at a time: the requests a client
//! already sent go to the backend in one write, and their replies come back in one write.

use std::io::{self, BufRead, Write};

use super::tunnel::{Tunnel, Unframed};
use super::wait::let_backend_answer;
use super::{Conn, Counted, End};
use crate::behavior::Direction;
use crate::hub::Live;
use crate::protocol::{Body, Request};
use crate::stats::Stats;

/// Calls forwarded in one batch at most: bounds what one client's pipeline holds.
pub(super) const MAX_BATCH: usize = 128;

/// Bytes gathered for one write at most, either way, before they are written.
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024;

impl Conn<'_> {
    /// Forwards `first` (its head in `self.head`) and the requests already buffered behind
    /// it in one write, then their replies in one write: the calls of a transparent mix,
    /// whose hooks would all forward. `Some(end)` when the connection ends with the batch.
    pub(super) fn batch(&mut self, first: Request) -> io::Result<Option<End>> {
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
            Some(req) if req.tunnel => self.tunnel(Tunnel::Calls).map(Some),
            Some(_) => Ok(Some(End::Close)),
            None => Ok(None),
        }
    }

    /// The next request when it is already complete in the client's buffer and the mix is
    /// still transparent; its head goes to `self.head`. Never waits for the client.
    pub(super) fn next_buffered_request(&mut self) -> io::Result<Option<Request>> {
        let buffered = self.client_r.buffer();
        if buffered.is_empty() || !self.framing.pipelines() {
            return Ok(None);
        }
        let live = self.sub.live().clone();
        if !live.is_transparent() {
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
    pub(super) fn count(stats: &Stats, live: &Live, rng: &mut fastrand::Rng) {
        let entry = live.mix.pick(rng);
        stats.count_call(&entry.name, &entry.calls);
    }

    /// Writes what a batch gathered for the backend.
    pub(super) fn write_to_backend(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
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
    pub(super) fn copy_request_body(&mut self, req: &Request) -> io::Result<()> {
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
    pub(super) fn answer_batch(
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
            let mut from = backend.waiting(self.client, !self.client_r.buffer().is_empty(), idle);
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
                    return self.tunnel(Tunnel::Calls).map(Some);
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
}
