//! Hung clients that half-closed, held open without a thread.
//!
//! A client that ends its sending side while a `hang` holds it may still wait for the answer
//! (an HTTP/1.0 tool, `nc -N`): closing it would turn the hang into a blackout. But a FIN is
//! also how a client leaves for good, and TCP cannot tell the two apart without sending data,
//! which a hang never does. So such a client is parked: its socket stays open, without a
//! thread or a `--max-connections` permit, and keep-alive probes find out when it is gone
//! (once its side of the connection no longer exists, a probe is answered by a reset, or by
//! nothing, which leaves an error on the socket; about a minute after a client closed, the
//! time its kernel keeps a half-closed connection). One reaper thread checks the parked
//! sockets each second while there are any, and stopping the proxy closes them.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use crate::stats::Stats;
use crate::sys::workers::Workers;

/// Parked clients at most: past it the one parked longest is closed (bounds descriptors).
pub(crate) const MAX_PARKED: usize = 4096;

/// How often the reaper looks for parked clients that are gone.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Parked {
    clients: VecDeque<TcpStream>,
    reaping: bool,
}

/// The parked clients of one proxy.
pub(crate) struct Parking {
    parked: Mutex<Parked>,
    stats: Arc<Stats>,
}

impl Parking {
    /// No client parked yet; `stats` counts them.
    pub(crate) fn new(stats: Arc<Stats>) -> Parking {
        Parking {
            parked: Mutex::default(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, parked: &Parked) {
        self.stats
            .connections_parked
            .store(parked.clients.len() as u64, Ordering::Relaxed);
    }

    /// Holds `client` open until it is gone or the proxy stops.
    pub(crate) fn park(self: &Arc<Self>, client: TcpStream, workers: &Workers) {
        let probes = TcpKeepalive::new()
            .with_time(Duration::from_secs(5))
            .with_interval(Duration::from_secs(5));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let probes = probes.with_retries(3);
        let _ = SockRef::from(&client).set_tcp_keepalive(&probes);
        let mut parked = self.lock();
        parked.clients.push_back(client);
        if parked.clients.len() > MAX_PARKED {
            parked.clients.pop_front();
        }
        self.count(&parked);
        if parked.reaping {
            return;
        }
        parked.reaping = true;
        let me = self.clone();
        if let Err(e) = workers.execute(Box::new(move || me.reap())) {
            // The parked clients wait for the next park, or the stop, to be looked at.
            log::debug!("cannot start the reaper of parked clients: {e}");
            parked.reaping = false;
        }
    }

    /// Closes parked clients that are gone, each second, until none is left.
    fn reap(&self) {
        loop {
            std::thread::sleep(CHECK_EVERY);
            let mut parked = self.lock();
            parked
                .clients
                .retain(|c| matches!(c.take_error(), Ok(None)));
            self.count(&parked);
            if parked.clients.is_empty() {
                parked.reaping = false;
                return;
            }
        }
    }

    /// How many clients are parked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().clients.len()
    }

    /// Closes every parked client (the proxy stops).
    pub(crate) fn close_all(&self) {
        let mut parked = self.lock();
        parked.clients.clear();
        self.count(&parked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Instant;

    #[test]
    fn a_parked_client_stays_open_until_it_resets_or_the_proxy_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let workers = Workers::new(Duration::from_secs(5));
        let parking = Arc::new(Parking::new(Arc::default()));
        let mut clients = Vec::new();
        for _ in 0..2 {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            parking.park(accepted, &workers);
            clients.push(client);
        }
        assert_eq!(parking.len(), 2);
        // The first client leaves with a reset: the reaper closes its socket.
        SockRef::from(&clients[0])
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(clients.remove(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while parking.len() > 1 {
            assert!(Instant::now() < deadline, "the gone client is still parked");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The other one is still open: no end of stream until the proxy stops.
        let mut open = clients.remove(0);
        open.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(open.read(&mut byte).is_err(), "a parked client was closed");
        parking.close_all();
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(open.read(&mut byte).unwrap(), 0);
    }
}
