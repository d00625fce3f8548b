//! Counters shared by every connection (plain atomics, no lock on the data path), and their
//! copy to statsd over UDP.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::behavior::Direction;
use crate::net::HostPort;

/// Proxy-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Client connections accepted since start.
    pub connections_total: AtomicU64,
    /// Hung clients that half-closed, held open without a thread until they are gone.
    pub connections_parked: AtomicU64,
    /// Bytes forwarded toward backends.
    pub bytes_to_backend: AtomicU64,
    /// Bytes forwarded toward clients.
    pub bytes_to_client: AtomicU64,
    /// Bytes read from clients.
    pub bytes_from_client: AtomicU64,
    /// Bytes read from backends.
    pub bytes_from_backend: AtomicU64,
    /// Backend connections that failed (refused, unreachable, timed out).
    pub backend_errors: AtomicU64,
    /// Calls per behavior name; a mix entry holds its counter, so counting takes no lock.
    calls: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    statsd: Option<Statsd>,
}

impl Stats {
    /// Counters that are also sent to `statsd` when given.
    pub fn new(statsd: Option<Statsd>) -> Stats {
        Stats {
            statsd,
            ..Stats::default()
        }
    }

    /// The call counter of behavior `name` (created at first use).
    pub fn call_counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.entry(name.to_string()).or_default().clone()
    }

    /// Calls per behavior since start.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Relaxed)))
            .collect()
    }

    /// Counts one call of a behavior whose counter is `counter`.
    pub fn count_call(&self, name: &str, counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
        if let Some(s) = &self.statsd {
            s.send(&format!("behavior.{name}"), 1);
        }
    }

    /// Counts bytes forwarded in one direction.
    pub fn add_bytes(&self, dir: Direction, n: usize) {
        match dir {
            Direction::ToBackend => self.bytes_to_backend.fetch_add(n as u64, Relaxed),
            Direction::ToClient => self.bytes_to_client.fetch_add(n as u64, Relaxed),
        };
        if let Some(s) = &self.statsd {
            s.send_protocol(dir.as_str(), n as u64);
        }
    }

    /// Counts bytes read from a peer, travelling in direction `dir` (before any behavior).
    pub fn add_received(&self, dir: Direction, n: usize) {
        match dir {
            Direction::ToBackend => self.bytes_from_client.fetch_add(n as u64, Relaxed),
            Direction::ToClient => self.bytes_from_backend.fetch_add(n as u64, Relaxed),
        };
    }

    /// Counts a connection opening; the guard counts it closing.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        if let Some(s) = &self.statsd {
            s.send_protocol("start", 1);
        }
        OpenConnection(self.clone())
    }
}

/// Counts one open connection while alive.
#[derive(Debug)]
pub struct OpenConnection(Arc<Stats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
        if let Some(s) = &self.0.statsd {
            s.send_protocol("end", 1);
        }
    }
}

/// A statsd client: counters as `PREFIX.NAME:VALUE|c` datagrams.
#[derive(Debug)]
pub struct Statsd {
    socket: UdpSocket,
    prefix: String,
    protocol: String,
    sample_rate: f64,
}

impl Statsd {
    /// A client sending to `to`; counter names start with `prefix`, protocol events with
    /// `prefix.protocol`.
    pub fn connect(
        to: &HostPort,
        prefix: &str,
        protocol: &str,
        sample_rate: f64,
    ) -> std::io::Result<Statsd> {
        let target = crate::net::resolve(to)?[0];
        let local = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        Ok(Statsd {
            socket,
            prefix: prefix.to_string(),
            protocol: protocol.to_string(),
            sample_rate,
        })
    }

    fn send_protocol(&self, event: &str, value: u64) {
        self.send(&format!("{}.{event}", self.protocol), value);
    }

    /// Sends `PREFIX.name:value|c` (with `|@rate` when sampling); a lost datagram is fine.
    pub fn send(&self, name: &str, value: u64) {
        let line = if self.sample_rate < 1.0 {
            if fastrand::f64() >= self.sample_rate {
                return;
            }
            format!("{}.{name}:{value}|c|@{}", self.prefix, self.sample_rate)
        } else {
            format!("{}.{name}:{value}|c", self.prefix)
        };
        let _ = self.socket.send(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_reach_a_statsd_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = HostPort::parse(&server.local_addr().unwrap().to_string()).unwrap();
        let stats = Arc::new(Stats::new(Some(
            Statsd::connect(&to, "vaurien", "tcp", 1.0).unwrap(),
        )));
        let open = stats.open_connection();
        stats.add_bytes(Direction::ToBackend, 12);
        let counter = stats.call_counter("delay");
        stats.count_call("delay", &counter);
        drop(open);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..4 {
            let n = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        assert_eq!(
            got,
            [
                "vaurien.tcp.start:1|c",
                "vaurien.tcp.to_backend:12|c",
                "vaurien.behavior.delay:1|c",
                "vaurien.tcp.end:1|c"
            ]
        );
        assert_eq!(stats.calls()["delay"], 1);
        assert_eq!(stats.connections_total.load(Relaxed), 1);
        assert_eq!(stats.connections_open.load(Relaxed), 0);
    }
}
