//! The byte tunnel a framed connection becomes: after an upgrade (HTTP 101, redis SUBSCRIBE,
//! SMTP STARTTLS) a stream connection whose chunks are calls, so the mix still acts on a
//! websocket or a subscription; after what a parser could not frame (forwarded first, so that
//! nothing is lost) a plain copy both ways, untouched.

use std::io::{self, BufRead, Write};
use std::net::Shutdown;
use std::sync::Arc;

use super::{Conn, Counted, End, Received};
use crate::behavior::Direction;
use crate::proxy::stream::{serve_tunnel, Link};

/// What a tunnel does with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tunnel {
    /// After an upgrade: a stream connection, each chunk a call of the mix.
    Calls,
    /// After what a parser could not frame: copied untouched.
    Untouched,
}

/// What a parser could not frame, carried up to [`serve`] inside an `io::Error`, so that the
/// connection goes on as a tunnel with nothing lost.
#[derive(Debug)]
pub(super) struct Unframed {
    /// The client sent it; otherwise the backend.
    pub(super) from_client: bool,
    /// What was read from that side for the message and not forwarded yet.
    pub(super) pending: Vec<u8>,
    /// The backend ended in the middle of a reply: after `pending`, the client is closed.
    pub(super) ended: bool,
    pub(super) why: String,
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
    pub(super) fn wrap(e: io::Error, from_client: bool, pending: Vec<u8>) -> io::Error {
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

    pub(super) fn is_in(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Unframed>())
    }

    /// The `Unframed` inside `e`, or `e` itself.
    pub(super) fn take(e: io::Error) -> Result<Unframed, io::Error> {
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

impl Conn<'_> {
    /// `e` from reading a request, carrying the bytes read for it when it is a framing error.
    pub(super) fn client_unframed(&mut self, e: io::Error) -> io::Error {
        let mut pending = std::mem::take(&mut self.head);
        self.framing.unframed(&mut pending);
        Unframed::wrap(e, true, pending)
    }

    /// Goes on after what a parser could not frame: forwards what was read of it, then the
    /// rest of the connection untouched (or closes, when the backend ended mid-reply).
    pub(super) fn unframed(&mut self, u: Unframed, protocol: &str) -> io::Result<End> {
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
        self.tunnel(Tunnel::Untouched)
    }

    /// Forwards bytes both ways until both sides are done: as a stream whose chunks are
    /// calls after an upgrade, untouched after what could not be framed.
    pub(super) fn tunnel(&mut self, kind: Tunnel) -> io::Result<End> {
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
        let backend = Arc::new(backend.reader.into_inner().into_inner());
        Counted::new(&backend, Direction::ToBackend, &self.ctx.stats).write_all(&early_up)?;
        self.to_client().write_all(&early_down)?;
        let client = self.client.try_clone()?;
        if kind == Tunnel::Calls {
            let backend = Arc::try_unwrap(backend)
                .map_err(|_| io::Error::other("the backend socket is shared"))?;
            log::debug!("#{} {}: upgraded; a stream from now on", self.id, self.peer);
            let link = Link::tunnel(self.id, self.peer, client, backend, self.ctx)?;
            serve_tunnel(link, self.ctx);
            return Ok(End::Close);
        }
        let down = backend.clone();
        let stats = self.ctx.stats.clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        self.ctx.workers.execute(Box::new(move || {
            let _ = io::copy(
                &mut Received::new(&*down, Direction::ToClient, stats.clone()),
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
}
