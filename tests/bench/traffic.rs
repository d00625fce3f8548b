//! The traffic the bench makes itself: the bulk source and verifying sink, echo servers, the
//! ping-pong client and connections held open.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Size of every bulk write.
pub const CHUNK: usize = 64 * 1024;

/// Period of the bulk pattern: a prime near 1 MiB, so a lost, repeated or reordered piece of
/// any power-of-two size shifts the stream against the pattern and shows as a mismatch.
const PERIOD: usize = 1_048_573;

/// Longest slice of the pattern handed out at once (the sink's read buffer).
const SPAN: usize = 256 * 1024;

/// Opens every bulk stream: magic, stream index, length, offset of its first byte.
const MAGIC: u32 = 0x5642_4e43;
const HEADER_LEN: usize = 24;

/// How long any single socket operation of the bench may block.
pub const IO_LIMIT: Duration = Duration::from_secs(30);

/// Deterministic pseudo-random bytes: byte `p` of the stream is `table[p % PERIOD]`, stored
/// with the first `SPAN` bytes repeated at the end so any window is one contiguous slice
/// (writes and checks are then plain slice operations, several GB/s).
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed | 1;
        let mut bytes: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        bytes.extend_from_within(..SPAN);
        Pattern { bytes }
    }

    /// The `len` pattern bytes starting at stream offset `offset`; `len` is at most `SPAN`.
    fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.bytes[start..start + len.min(SPAN)]
    }
}

/// A listener on 127.0.0.1:0 handing each connection to `handle` in its accept loop; stopped
/// and joined when dropped.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(mut handle: impl FnMut(TcpStream) + Send + 'static) -> Result<Server, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot listen on 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                match conn {
                    Ok(stream) => handle(stream),
                    // Out of fds or the like: back off instead of spinning.
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Server {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// A server running `handle` on a thread of its own for every connection.
    pub fn threaded(handle: fn(TcpStream)) -> Result<Server, String> {
        Server::start(move |stream| spawn_small(move || handle(stream)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept loop only sees the flag once a connection wakes it up; if that fails the
        // thread is left behind rather than joined forever.
        let wake = TcpStream::connect_timeout(&loopback(self.port), Duration::from_secs(1));
        if let (Ok(_), Some(thread)) = (wake, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// Connection threads need little stack; thousands of them must fit.
pub fn spawn_small(f: impl FnOnce() + Send + 'static) {
    let _ = thread::Builder::new().stack_size(256 * 1024).spawn(f);
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects to 127.0.0.1:`port` with every later read and write bounded by `limit`.
pub fn connect(port: u16, limit: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&loopback(port), limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    Ok(stream)
}

/// What the sink says about one accepted connection.
pub enum SinkReport {
    /// A readiness probe (a proxy connecting through before any data): no header, ignored.
    Probe,
    /// Every byte of the stream arrived and matched; when the last one was checked.
    Verified(Instant),
    Failed(String),
}

/// The sink's per-connection handler: checks the header, then every byte against the pattern.
pub fn sink(mut stream: TcpStream, pattern: &Pattern, report: &Sender<SinkReport>) {
    let _ = stream.set_read_timeout(Some(IO_LIMIT));
    let _ = report.send(match verify_stream(&mut stream, pattern) {
        Ok(Some(())) => SinkReport::Verified(Instant::now()),
        Ok(None) => SinkReport::Probe,
        Err(e) => SinkReport::Failed(e),
    });
}

/// Ok(None) for a connection closed before any byte (a probe).
fn verify_stream(stream: &mut TcpStream, pattern: &Pattern) -> Result<Option<()>, String> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(stream, &mut header).map_err(|e| format!("sink: header: {e}"))?;
    if got == 0 {
        return Ok(None);
    }
    let (index, len, start) = parse_header(&header[..got])?;
    let mut buf = vec![0u8; SPAN];
    let mut seen: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "stream {index}: read error after {seen} of {len} bytes: {e}"
                ))
            }
        };
        if seen + n as u64 > len {
            return Err(format!(
                "stream {index}: received more than the {len} bytes sent"
            ));
        }
        let expected = pattern.at(start + seen, n);
        if buf[..n] != *expected {
            let i = (0..n).find(|&i| buf[i] != expected[i]).unwrap_or(0);
            return Err(format!(
                "stream {index}: byte mismatch at offset {}: got {:#04x}, expected {:#04x}",
                seen + i as u64,
                buf[i],
                expected[i]
            ));
        }
        seen += n as u64;
    }
    if seen != len {
        return Err(format!(
            "stream {index}: connection closed after {seen} of {len} bytes"
        ));
    }
    Ok(Some(()))
}

fn parse_header(header: &[u8]) -> Result<(u32, u64, u64), String> {
    if header.len() < HEADER_LEN {
        return Err(format!(
            "sink: stream closed inside its header ({} bytes)",
            header.len()
        ));
    }
    let le = |at: usize, n: usize| {
        header[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    if le(0, 4) != u64::from(MAGIC) {
        return Err("sink: stream does not start with the bench header".to_string());
    }
    Ok((le(4, 4) as u32, le(8, 8), le(16, 8)))
}

/// Reads until `buf` is full or the peer closes; returns the bytes read.
fn read_full(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Sends stream `index`: the header, then `len` pattern bytes from offset `start` in `CHUNK`
/// writes; then half-closes and waits for the sink to close after its check.
pub fn source(
    port: u16,
    index: u32,
    start: u64,
    len: u64,
    pattern: &Pattern,
) -> Result<(), String> {
    let mut stream = connect(port, IO_LIMIT).map_err(|e| format!("connect: {e}"))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC.to_le_bytes());
    header.extend_from_slice(&index.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&start.to_le_bytes());
    stream
        .write_all(&header)
        .map_err(|e| format!("write header: {e}"))?;
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(CHUNK as u64) as usize;
        stream
            .write_all(pattern.at(start + sent, n))
            .map_err(|e| format!("write after {sent} of {len} bytes: {e}"))?;
        sent += n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} unexpected bytes from the sink", rest.len())),
        Err(e) => Err(format!("waiting for the sink to close: {e}")),
    }
}

/// Echoes everything back until the peer closes.
pub fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

/// Echoes the first byte of a connection and hands the connection back to be held open;
/// None for a connection closed without a byte (a probe) or too slow.
pub fn echo_one_byte(mut stream: TcpStream) -> Option<TcpStream> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).ok()?;
    stream.write_all(&byte).ok()?;
    Some(stream)
}

/// A backend holding every connection open after echoing its first byte, one at a time in
/// its accept loop (no thread per connection: thousands are held); counts them.
pub fn holding_echo_server() -> Result<(Server, Arc<AtomicUsize>), String> {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let mut held = Vec::new();
    let server = Server::start(move |stream| {
        if let Some(stream) = echo_one_byte(stream) {
            held.push(stream);
            counted.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok((server, count))
}

/// Opens a connection to `port` and has one byte echoed through it.
pub fn open_echoed(port: u16, limit: Duration) -> Result<TcpStream, String> {
    let mut stream = connect(port, limit).map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(&[0x2a])
        .map_err(|e| format!("write: {e}"))?;
    let mut byte = [0u8; 1];
    match stream.read_exact(&mut byte) {
        Ok(()) if byte[0] == 0x2a => Ok(stream),
        Ok(()) => Err(format!("echoed {:#04x} instead of 0x2a", byte[0])),
        Err(e) => Err(format!("no echo: {e}")),
    }
}

/// `rounds` timed one-byte round trips (after `warmup` untimed ones) over one connection.
pub fn ping_pong(port: u16, warmup: usize, rounds: usize) -> Result<Vec<Duration>, String> {
    let mut stream = connect(port, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let sent = [i as u8];
        let mut got = [0u8; 1];
        let start = Instant::now();
        stream
            .write_all(&sent)
            .and_then(|()| stream.read_exact(&mut got))
            .map_err(|e| format!("round trip {i}: {e}"))?;
        let rtt = start.elapsed();
        if got != sent {
            return Err(format!(
                "round trip {i}: sent {:#04x}, got {:#04x}",
                sent[0], got[0]
            ));
        }
        if i >= warmup {
            times.push(rtt);
        }
    }
    Ok(times)
}

/// The `--serve-echo` child: prints its port, then echoes one byte on each connection and
/// holds it, in a process of its own so its fds do not count against the bench's limit.
/// Exits when its stdin closes, so it never outlives the bench.
pub fn serve_echo_main() -> i32 {
    crate::procs::raise_open_files();
    let listener = match TcpListener::bind("127.0.0.1:0").and_then(|l| {
        let port = l.local_addr()?.port();
        Ok((l, port))
    }) {
        Ok((l, port)) => {
            println!("echo listening port={port}");
            let _ = io::stdout().flush();
            l
        }
        Err(e) => {
            eprintln!("--serve-echo: cannot listen on 127.0.0.1:0: {e}");
            return 1;
        }
    };
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let mut held = Vec::new();
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => held.extend(echo_one_byte(stream)),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    0
}
