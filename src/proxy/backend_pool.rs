//! Idle backend connections kept for reuse (`reuse_socket`, only for framed protocols whose
//! framing tells where a call ends): at most `--pool-max-size`, none older than
//! `--pool-timeout`.

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::HostPort;

/// A pooled connection and when it was first connected.
struct Idle {
    backend: HostPort,
    born: Instant,
    stream: TcpStream,
}

/// The pool of idle backend connections.
pub struct BackendPool {
    max_size: usize,
    max_age: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl BackendPool {
    /// A pool of at most `max_size` connections, each reused until `max_age` after it was
    /// connected.
    pub fn new(max_size: usize, max_age: Duration) -> BackendPool {
        BackendPool {
            max_size,
            max_age,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live idle connection to `backend` with the time it was connected, newest first.
    pub fn take(&self, backend: &HostPort) -> Option<(TcpStream, Instant)> {
        loop {
            let idle = {
                let mut idle = self.lock();
                idle.retain(|i| i.born.elapsed() < self.max_age);
                let pos = idle.iter().rposition(|i| &i.backend == backend)?;
                idle.remove(pos)
            };
            if still_open(&idle.stream) {
                return Some((idle.stream, idle.born));
            }
        }
    }

    /// Keeps `stream` (connected at `born`) for reuse; the oldest goes when the pool is full.
    pub fn put(&self, backend: &HostPort, stream: TcpStream, born: Instant) {
        if self.max_size == 0 || born.elapsed() >= self.max_age {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_size {
            idle.remove(0);
        }
        idle.push(Idle {
            backend: backend.clone(),
            born,
            stream,
        });
    }

    /// Connections in the pool.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the pool is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether an idle connection is still open and has nothing unread (a backend that closed it
/// or sent stray bytes makes it unusable).
pub(crate) fn still_open(stream: &TcpStream) -> bool {
    // One non-blocking peek (no mode switch): this runs before every call on a kept backend
    // connection, so it costs one syscall, not three.
    matches!(crate::net::peek_now(stream), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn reuses_live_connections_only_and_respects_size_and_age() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = HostPort::parse(&l.local_addr().unwrap().to_string()).unwrap();
        let pool = BackendPool::new(2, Duration::from_secs(60));
        let (a, _a_server) = pair(&l);
        let (b, b_server) = pair(&l);
        let (c, mut c_server) = pair(&l);
        pool.put(&addr, a, Instant::now());
        pool.put(&addr, b, Instant::now());
        pool.put(&addr, c, Instant::now());
        assert_eq!(pool.len(), 2, "the oldest left when full");
        c_server.write_all(b"stray").unwrap();
        drop(b_server);
        // c has stray bytes, b was closed by its server (loopback delivers both at once):
        // neither is reused.
        assert!(pool.take(&addr).is_none());
        assert!(pool.is_empty());
        let (d, _d_server) = pair(&l);
        pool.put(&addr, d, Instant::now());
        assert!(
            pool.take(&addr).is_some(),
            "a live idle connection is reused"
        );
        let old = BackendPool::new(2, Duration::from_millis(1));
        let (e, _e_server) = pair(&l);
        old.put(&addr, e, Instant::now() - Duration::from_millis(5));
        assert!(old.take(&addr).is_none(), "too old to reuse");
        let other = HostPort::parse("127.0.0.1:1").unwrap();
        let (f, _f_server) = pair(&l);
        pool.put(&addr, f, Instant::now());
        assert!(pool.take(&other).is_none(), "only the same backend");
    }
}
