//! How a call waits for its reply: as long as it takes while the client is there, without
//! reading the client (see [`Waiting`]), after a yield that lets the backend answer first.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::Received;

/// How often a call waiting for its reply checks that its client is still there.
pub(super) const WAIT_POLL: Duration = Duration::from_secs(1);

/// The backend's reader as a call waiting for its reply reads it. A reply may take as long
/// as it takes (a redis `BLPOP q 0`, an HTTP long poll, gaps between server-sent events):
/// the call is not idle, so `--timeout` does not cut it. Instead the wait wakes up every
/// [`WAIT_POLL`] to look at the client without reading it: a client that reset the connection
/// ends the call; a client that ended its sending side (and has no request waiting in the
/// proxy) has that end passed on to the backend, as it would reach the server without the
/// proxy (redis then drops the blocked command and closes), and from then on the wait is
/// bounded by `--timeout`, as an idle connection would be.
pub(super) struct Waiting<'r> {
    pub(super) reader: &'r mut BufReader<Received<TcpStream>>,
    pub(super) half_closed: &'r mut bool,
    pub(super) client: &'r TcpStream,
    /// Requests of the client wait in the proxy's buffer: its end of input comes after them.
    pub(super) client_buffered: bool,
    /// How long to wait once the client ended its side (`None`: as long as it takes).
    pub(super) after_client_end: Option<Duration>,
    pub(super) client_ended: Option<Instant>,
}

impl Waiting<'_> {
    /// After a read timed out: `Ok` to wait on, or why the call ends.
    pub(super) fn client_still_there(&mut self) -> io::Result<()> {
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

/// Yields the CPU once before this thread waits for a reply that is not buffered yet.
///
/// The request was just written, which woke the backend, on a busy machine often on this
/// CPU: it would run only once this thread sleeps in `read()`, and its reply would then have
/// to wake this thread again. Yielding first lets the backend answer while this thread is
/// still runnable, so the reply is read with no sleep and no wake-up. On 2 busy cores this
/// took HTTP keep-alive from 29k to 35k requests/s and redis GET up 10%; on an idle machine
/// the yield returns at once.
pub(super) fn let_backend_answer<R>(reader: &BufReader<R>) {
    if reader.buffer().is_empty() {
        std::thread::yield_now();
    }
}
