//! Test backends on 127.0.0.1:0, and the socket helpers a test client uses.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A backend on 127.0.0.1:0 serving each connection with `serve` on its own thread.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let serve = serve.clone();
                thread::spawn(move || serve(conn));
            }
        });
        Backend { addr, stop }
    }

    /// Echoes every byte back; on end of input, half-closes after the last byte.
    pub fn echo() -> Backend {
        Backend::start(|s| {
            if echo_until_eof(&mut &s, &mut &s) {
                let _ = s.shutdown(Shutdown::Write);
            }
        })
    }

    /// `host:port` for `--backend`.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// Connects to `addr`, with a 20 s read timeout.
pub fn connect(addr: impl ToSocketAddrs) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Copies `r` to `w` until `r` ends (or fails); false if a write failed.
pub fn echo_until_eof(r: &mut impl Read, w: &mut impl Write) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if w.write_all(&buf[..n]).is_err() {
                    return false;
                }
            }
        }
    }
}

/// Reads until end of stream (or an error, which is returned).
pub fn read_to_end(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// What one read from a socket gave.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Some bytes.
    Data(Vec<u8>),
    /// End of stream (the peer closed).
    Eof,
    /// The peer reset the connection (or it was aborted).
    Reset,
    /// Nothing within the socket's read timeout.
    TimedOut,
}

impl ReadOutcome {
    /// True when the connection was closed, by a FIN or a reset.
    pub fn is_closed(&self) -> bool {
        matches!(self, ReadOutcome::Eof | ReadOutcome::Reset)
    }
}

/// One read of up to 64 KiB, classified.
pub fn read_once(s: &mut TcpStream) -> ReadOutcome {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        return match s.read(&mut buf) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => ReadOutcome::Data(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                ReadOutcome::TimedOut
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                ReadOutcome::Reset
            }
            Err(e) => panic!("read failed: {e}"),
        };
    }
}

/// Reads exactly `n` bytes.
pub fn read_exactly(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out)?;
    Ok(out)
}

/// Writes `msg` and reads back exactly as many bytes (one round trip through an echo).
pub fn exchange(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write to the proxy");
    read_exactly(s, msg.len()).expect("read the echo")
}

/// `n` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fastrand::Rng::with_seed(seed).fill(&mut out);
    out
}

impl Backend {
    /// Speaks first: sends `greeting` on every connection, then echoes.
    pub fn greeting(greeting: &'static [u8]) -> Backend {
        Backend::start(move |mut s| {
            if s.write_all(greeting).is_ok() {
                echo_until_eof(&mut &s, &mut &s);
            }
        })
    }

    /// Reports every accepted connection's input (read to end of stream) on `tx`; with
    /// `answer`, writes it back as soon as the first bytes arrive.
    pub fn recording(
        tx: std::sync::mpsc::Sender<Vec<u8>>,
        answer: Option<&'static [u8]>,
    ) -> Backend {
        let tx = std::sync::Mutex::new(tx);
        Backend::start(move |mut s| {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut answered = false;
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        if let (Some(a), false) = (answer, answered) {
                            answered = true;
                            let _ = s.write_all(a);
                        }
                    }
                }
            }
            let tx = tx.lock().unwrap().clone();
            let _ = tx.send(got);
        })
    }
}
