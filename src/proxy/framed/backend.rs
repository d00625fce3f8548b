//! A framed connection's backend: opened at the first request (from the pool when allowed),
//! replaced when it closed an idle connection, written to, and given back to the pool.

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wait::{Waiting, WAIT_POLL};
use super::{Conn, Counted, End, Received, FRAMED_BUFFER};
use crate::behavior::{Delivery, Direction};
use crate::protocol::Request;
use crate::proxy::delivery::Delivering;

use super::tunnel::Unframed;

/// An open backend connection.
pub(super) struct Backend {
    pub(super) reader: BufReader<Received<TcpStream>>,
    pub(super) born: Instant,
    /// Nothing is half-read: it may go back to the pool.
    pub(super) clean: bool,
    /// The client's end of input was passed on while a call waited: it may not be reused.
    pub(super) half_closed: bool,
}

/// A request body on its way to the backend, stopped as soon as the backend has answered
/// (when `backend` is given: a protocol whose servers answer early).
pub(super) struct UnlessAnswered<'a> {
    pub(super) to: Delivering<'a, Counted<'a>>,
    pub(super) backend: Option<&'a TcpStream>,
    pub(super) answered: bool,
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

impl Backend {
    /// The reader through which a call waits for this backend's reply to `client`.
    pub(super) fn waiting<'r>(
        &'r mut self,
        client: &'r TcpStream,
        client_buffered: bool,
        after_client_end: Option<Duration>,
    ) -> Waiting<'r> {
        Waiting {
            reader: &mut self.reader,
            half_closed: &mut self.half_closed,
            client,
            client_buffered,
            after_client_end,
            client_ended: None,
        }
    }
}

impl Conn<'_> {
    /// Connects to the backend (from the pool when allowed) unless the one held is usable; a
    /// failure closes the client.
    pub(super) fn connect(&mut self) -> io::Result<()> {
        if self.backend.is_some() && self.keep_backend()? {
            return Ok(());
        }
        let opts = self.ctx.protocol.tcp_options();
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
            reader: BufReader::with_capacity(
                self.ctx.bufsize.min(FRAMED_BUFFER),
                Received::new(stream, Direction::ToClient, self.ctx.stats.clone()),
            ),
            born,
            clean: true,
            half_closed: false,
        });
        Ok(())
    }

    /// Whether the backend held may take the next request: `false` (it is dropped) when it
    /// closed an idle keep-alive connection, an error where the server speaks first (a new
    /// greeting would shift every reply after it). Only a connection with nothing outstanding
    /// is checked: a quiet memcache command or a redis pipeline may have its answer waiting.
    pub(super) fn keep_backend(&mut self) -> io::Result<bool> {
        let Some(b) = &self.backend else {
            return Ok(false);
        };
        let idle = b.clean && self.framing.reusable();
        if !idle
            || (b.reader.buffer().is_empty()
                && crate::proxy::backend_pool::still_open(b.reader.get_ref()))
        {
            return Ok(true);
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
        Ok(false)
    }

    /// Forwards a request (`head`, then its body from the client) as `delivery` says;
    /// `Ok(true)` when the backend answered before its body was all sent (an early HTTP 413):
    /// the rest is not forwarded, and the connection closes after the answer, as the client's
    /// stream is no longer framed.
    pub(super) fn forward_request(
        &mut self,
        req: &Request,
        head: &[u8],
        delivery: Delivery,
    ) -> io::Result<bool> {
        self.connect()?;
        let Some(backend) = self.backend.as_mut() else {
            return Ok(false);
        };
        backend.clean = false;
        let socket = backend.reader.get_ref();
        let mut to_backend = UnlessAnswered {
            to: Delivering::new(
                Counted::new(socket, Direction::ToBackend, &self.ctx.stats),
                delivery,
                &mut self.requests,
                &mut self.rng,
                self.closed,
            ),
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

    /// The backend closes after a response: the client is closed too, unless
    /// `--stay-connected` lets the next call open a new backend connection (not where the
    /// server speaks first: a new greeting would shift every reply).
    pub(super) fn backend_ended(&mut self) -> Option<End> {
        self.backend = None;
        let reconnectable = self.ctx.settings.stay_connected && !self.framing.server_speaks_first();
        (!reconnectable).then_some(End::Close)
    }

    /// Returns a clean backend connection to the pool when reuse is on.
    pub(super) fn release_backend(&mut self) {
        if !self.ctx.protocol.tcp_options().reuse_socket {
            return;
        }
        if let Some(b) = self.backend.take() {
            if b.clean && !b.half_closed && b.reader.buffer().is_empty() && self.framing.reusable()
            {
                log::debug!("#{} returns its backend connection to the pool", self.id);
                self.ctx.pool.put(
                    &self.backend_addr,
                    b.reader.into_inner().into_inner(),
                    b.born,
                );
            }
        }
    }
}
