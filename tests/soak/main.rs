//! `make soak`: tcp, http, redis and memcache traffic through four vaurien proxies in front
//! of real servers, all at once, for `--secs` seconds (`SOAK_SECS`, default 600), while the
//! mix of every proxy changes every 100 ms, idle connections stay open, and one backend
//! restarts every 10 s. Every answer is checked end to end against what was sent; the
//! proxies' descriptors, threads and resident memory are sampled every second. The run fails
//! on a lost or changed byte, or on growth past the bounds printed with the table.
//!
//! What counts as what: an answer equal to the expected one is checked; an injected fault
//! (`error`'s own reply: `-ERR vaurien`, `SERVER_ERROR vaurien`, an HTTP 50x "Injected by
//! vaurien") is counted as injected; a call cut while its backend restarted is counted as
//! cut. Anything else is lost or changed, and fails the run. The mixes hold only faults whose
//! effect a client can tell apart from a defect: `delay` (tcp, where `error` garbles bytes),
//! `delay` and `error` (the framed protocols), and the faults that reshape data without losing
//! any: `latency`, `slicer` and `bandwidth`, which must deliver every byte in order.

#[path = "../bench/procs.rs"]
#[allow(dead_code)]
mod procs;

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use procs::{find_tool, start_server, start_with_ready_line, Proc, TempDir};

/// How often every proxy's mix changes.
const CHANGE_EVERY: Duration = Duration::from_millis(100);
/// How often a backend restarts (each in turn).
const RESTART_EVERY: Duration = Duration::from_secs(10);
/// Idle connections held open through each proxy.
const IDLE_PER_PROXY: usize = 50;
/// Client threads per protocol.
const WORKERS: usize = 3;
/// How long a client waits for an answer (a delay is at most 50 ms).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory growth allowed from the first sampled window to the last: this much plus a fifth.
const RSS_SLACK_KIB: u64 = 16 * 1024;
/// Descriptors and threads allowed past the first window's highest.
const COUNT_SLACK: u64 = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-echo") {
        std::process::exit(serve_echo(args.get(1).and_then(|p| p.parse().ok())));
    }
    let mut secs = 600u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => match it.next().and_then(|s| s.parse().ok()) {
                Some(s) => secs = s,
                None => usage(),
            },
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            _ => usage(),
        }
    }
    std::process::exit(match run(Duration::from_secs(secs)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("soak: {e}");
            1
        }
    });
}

fn usage() -> ! {
    eprintln!("usage: cargo bench --bench soak -- [--secs N]");
    std::process::exit(2)
}

/// An echo server on `port` (another process, so that it can be restarted): every byte
/// read goes back; end of input is passed back as end of output.
fn serve_echo(port: Option<u16>) -> i32 {
    let Some(port) = port else { return 2 };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on {port}: {e}");
            return 1;
        }
    };
    for conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match (&conn).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if (&conn).write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = conn.shutdown(Shutdown::Write);
        });
    }
    0
}

/// A backend the soak restarts: its process, its port (kept across restarts), and a
/// generation that changes whenever it goes down (becoming odd) or comes back (even).
struct Backend {
    name: &'static str,
    port: u16,
    start: Box<dyn Fn(u16) -> Result<Proc, String> + Send + Sync>,
    proc: Mutex<Option<Proc>>,
    generation: AtomicU64,
}

impl Backend {
    fn new(
        name: &'static str,
        start: impl Fn(u16) -> Result<Proc, String> + Send + Sync + 'static,
    ) -> Result<Arc<Backend>, String> {
        let port = procs::free_port()?;
        let proc = start(port)?;
        Ok(Arc::new(Backend {
            name,
            port,
            start: Box::new(start),
            proc: Mutex::new(Some(proc)),
            generation: AtomicU64::new(0),
        }))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the backend was up at `generation` and has not gone down since.
    fn steady(&self, generation: u64) -> bool {
        generation % 2 == 0 && self.generation() == generation
    }

    /// Stops the process (by its pid) and starts it again on the same port.
    fn restart(&self) -> Result<(), String> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut proc = self.proc.lock().unwrap_or_else(|p| p.into_inner());
        drop(proc.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        let started = loop {
            match (self.start)(self.port) {
                Ok(p) => break p,
                // The port may linger a moment after the old process.
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("{} did not come back: {e}", self.name)),
            }
        };
        *proc = Some(started);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What every client of one proxy counted.
#[derive(Default)]
struct Tally {
    checked: AtomicU64,
    bytes: AtomicU64,
    injected: AtomicU64,
    cut: AtomicU64,
    /// Reads of a value that an injected fault left unknown (a failed write before it).
    unknown: AtomicU64,
    failed: AtomicU64,
    /// The first few failures, for the report.
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn ok(&self, bytes: usize) {
        self.checked.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() < 5 {
            eprintln!("soak: FAILURE: {why}");
            failures.push(why);
        }
    }

    /// A call that broke off: cut if its backend was down or restarted meanwhile, a failure
    /// otherwise.
    fn broke(&self, backend: &Backend, generation: u64, why: String) {
        if !backend.steady(generation) {
            self.cut.fetch_add(1, Ordering::Relaxed);
        } else {
            self.fail(why);
        }
    }
}

/// One proxy under soak.
struct Proxy {
    protocol: &'static str,
    addr: SocketAddr,
    api: SocketAddr,
    proc: Proc,
    backend: Arc<Backend>,
    tally: Tally,
    /// The mix it switches to every other change, and the options of that mix (JSON members).
    mix: (&'static str, &'static str),
}

fn start_proxy(
    protocol: &'static str,
    backend: Arc<Backend>,
    mix: (&'static str, &'static str),
    dir: &Path,
) -> Result<Proxy, String> {
    let log = dir.join(format!("vaurien-{protocol}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaurien"));
    cmd.args(["--proxy", "127.0.0.1:0", "--protocol", protocol])
        .args(["--backend", &format!("127.0.0.1:{}", backend.port)])
        .args(["--http", "--http-host", "127.0.0.1", "--http-port", "0"])
        .args(["--timeout", "3600", "--log-level", "warning"])
        .arg("--log-output")
        .arg(&log);
    let (proc, line, _) = start_with_ready_line(
        "vaurien",
        &mut cmd,
        &dir.join("stdout.log"),
        "vaurien listening ",
        false,
    )?;
    let field = |key: &str| -> Result<SocketAddr, String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("no {key} in {line:?}"))
    };
    Ok(Proxy {
        protocol,
        addr: field("proxy=")?,
        api: field("http=")?,
        proc,
        backend,
        tally: Tally::default(),
        mix,
    })
}

fn put_behavior(api: SocketAddr, body: &str) -> io::Result<()> {
    let mut s = TcpStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT /behavior HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(io::Error::other(answer))
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(s)
}

/// tcp: echoes of random sizes, written by one thread while this one reads them back.
fn tcp_client(p: &Proxy, seed: u64, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::Relaxed) {
        let generation = p.backend.generation();
        let Ok(mut s) = connect(p.addr) else {
            p.tally
                .broke(&p.backend, generation, "tcp: connect failed".into());
            continue;
        };
        for _ in 0..rng.usize(1..40) {
            let size = if rng.u8(..) < 8 {
                rng.usize(256 << 10..1 << 20)
            } else {
                rng.usize(1..32 << 10)
            };
            let mut msg = vec![0u8; size];
            rng.fill(&mut msg);
            // A byte stream lives as long as its backend connection: the generation is the
            // one it was opened in.
            let Ok(w) = s.try_clone() else { break };
            let sent = msg.clone();
            let writer = thread::spawn(move || (&w).write_all(&sent));
            let mut got = vec![0u8; size];
            let read = s.read_exact(&mut got);
            let wrote = writer.join().map(|r| r.is_ok()).unwrap_or(false);
            match read {
                Ok(()) if got == msg && wrote => p.tally.ok(size),
                Ok(()) => {
                    let at = got
                        .iter()
                        .zip(&msg)
                        .position(|(a, b)| a != b)
                        .unwrap_or(size);
                    p.tally
                        .fail(format!("tcp: {size} bytes echoed changed at byte {at}"));
                    return;
                }
                Err(e) => {
                    p.tally.broke(
                        &p.backend,
                        generation,
                        format!("tcp: echo of {size} bytes: {e}"),
                    );
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// Reads an HTTP response: its status and body (Content-Length framing, as nginx sends it
/// for files and the proxy for its errors).
fn read_http(r: &mut BufReader<TcpStream>) -> io::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed in the head",
            ));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok((status, body, close))
}

/// http: keep-alive GETs of files whose content is known.
fn http_client(p: &Proxy, files: &[Vec<u8>], seed: u64, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::Relaxed) {
        let generation = p.backend.generation();
        let Ok(s) = connect(p.addr) else {
            p.tally
                .broke(&p.backend, generation, "http: connect failed".into());
            continue;
        };
        let Ok(mut w) = s.try_clone() else { continue };
        let mut r = BufReader::new(s);
        for _ in 0..rng.usize(1..50) {
            let n = rng.usize(..files.len());
            let generation = p.backend.generation();
            if write!(w, "GET /f{n}.bin HTTP/1.1\r\nHost: soak\r\n\r\n").is_err() {
                p.tally
                    .broke(&p.backend, generation, "http: request not sent".into());
                break;
            }
            match read_http(&mut r) {
                Ok((200, body, close)) if body == files[n] => {
                    p.tally.ok(body.len());
                    if close {
                        break;
                    }
                }
                Ok((500..=503, body, _))
                    if String::from_utf8_lossy(&body).contains("Injected by vaurien") =>
                {
                    p.tally.injected.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok((status, body, _)) if p.backend.steady(generation) => {
                    p.tally.fail(format!(
                        "http: GET /f{n}.bin answered {status} with {} bytes",
                        body.len()
                    ));
                    return;
                }
                Ok(_) => {
                    p.tally.cut.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    p.tally
                        .broke(&p.backend, generation, format!("http: GET /f{n}.bin: {e}"));
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One RESP reply as bytes (the types this client's commands get).
fn read_resp(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    if line[0] == b'$' {
        let n: i64 = String::from_utf8_lossy(&line[1..])
            .trim()
            .parse()
            .unwrap_or(-1);
        if n >= 0 {
            let mut data = vec![0u8; n as usize + 2];
            r.read_exact(&mut data)?;
            line.extend_from_slice(&data);
        }
    }
    Ok(line)
}

fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

/// redis: SET then GET of values the client knows, and INCR of its counter, in pipelined
/// batches; a value lost to a restart is accepted once the generation changed.
fn redis_client(p: &Proxy, id: usize, seed: u64, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let key = format!("soak:{id}");
    while !stop.load(Ordering::Relaxed) {
        let generation = p.backend.generation();
        let Ok(s) = connect(p.addr) else {
            p.tally
                .broke(&p.backend, generation, "redis: connect failed".into());
            continue;
        };
        let Ok(mut w) = s.try_clone() else { continue };
        let mut r = BufReader::new(s);
        'connection: for _ in 0..rng.usize(1..100) {
            let generation = p.backend.generation();
            let batch = rng.usize(1..8);
            let values: Vec<Vec<u8>> = (0..batch)
                .map(|_| {
                    let mut v = vec![
                        0u8;
                        if rng.u8(..) < 10 {
                            rng.usize(64 << 10..300 << 10)
                        } else {
                            rng.usize(1..2048)
                        }
                    ];
                    rng.fill(&mut v);
                    v
                })
                .collect();
            let mut out = Vec::new();
            for v in &values {
                out.extend(resp(&[b"SET", key.as_bytes(), v]));
                out.extend(resp(&[b"GET", key.as_bytes()]));
            }
            if w.write_all(&out).is_err() {
                p.tally
                    .broke(&p.backend, generation, "redis: batch not sent".into());
                break;
            }
            // A SET that failed (injected) leaves the value before it in place.
            let mut current: Option<&[u8]> = None;
            for v in &values {
                let set = match read_resp(&mut r) {
                    Ok(reply) => reply,
                    Err(e) => {
                        p.tally
                            .broke(&p.backend, generation, format!("redis: SET: {e}"));
                        break 'connection;
                    }
                };
                match &set[..] {
                    b"+OK\r\n" => current = Some(v),
                    reply if reply.starts_with(b"-ERR vaurien") => {
                        p.tally.injected.fetch_add(1, Ordering::Relaxed);
                    }
                    reply => {
                        p.tally.fail(format!(
                            "redis: SET answered {:?}",
                            String::from_utf8_lossy(reply)
                        ));
                        return;
                    }
                }
                let got = match read_resp(&mut r) {
                    Ok(reply) => reply,
                    Err(e) => {
                        p.tally
                            .broke(&p.backend, generation, format!("redis: GET: {e}"));
                        break 'connection;
                    }
                };
                if got.starts_with(b"-ERR vaurien") {
                    p.tally.injected.fetch_add(1, Ordering::Relaxed);
                } else if current.is_some_and(|c| got == bulk(c)) {
                    p.tally.ok(got.len());
                } else if current.is_none() {
                    // Every SET of the batch so far failed: the value is an earlier one.
                    p.tally.unknown.fetch_add(1, Ordering::Relaxed);
                } else if !p.backend.steady(generation) {
                    p.tally.cut.fetch_add(1, Ordering::Relaxed);
                } else {
                    p.tally.fail(format!(
                        "redis: GET after SET of {} bytes answered {} bytes",
                        v.len(),
                        got.len()
                    ));
                    return;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// memcache: set then get of known values, one call at a time.
fn memcache_client(p: &Proxy, id: usize, seed: u64, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let key = format!("soak{id}");
    while !stop.load(Ordering::Relaxed) {
        let generation = p.backend.generation();
        let Ok(s) = connect(p.addr) else {
            p.tally
                .broke(&p.backend, generation, "memcache: connect failed".into());
            continue;
        };
        let Ok(mut w) = s.try_clone() else { continue };
        let mut r = BufReader::new(s);
        for _ in 0..rng.usize(1..100) {
            let generation = p.backend.generation();
            let mut v = vec![
                0u8;
                if rng.u8(..) < 10 {
                    rng.usize(64 << 10..500 << 10)
                } else {
                    rng.usize(1..4096)
                }
            ];
            rng.fill(&mut v);
            let mut out = format!("set {key} 0 0 {}\r\n", v.len()).into_bytes();
            out.extend_from_slice(&v);
            out.extend_from_slice(format!("\r\nget {key}\r\n").as_bytes());
            if w.write_all(&out).is_err() {
                p.tally
                    .broke(&p.backend, generation, "memcache: not sent".into());
                break;
            }
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                p.tally
                    .broke(&p.backend, generation, "memcache: no answer to set".into());
                break;
            }
            let stored = match line.as_str() {
                "STORED\r\n" => true,
                l if l.starts_with("SERVER_ERROR vaurien") => {
                    p.tally.injected.fetch_add(1, Ordering::Relaxed);
                    false
                }
                l => {
                    p.tally.fail(format!("memcache: set answered {l:?}"));
                    return;
                }
            };
            let mut first = String::new();
            if r.read_line(&mut first).unwrap_or(0) == 0 {
                p.tally
                    .broke(&p.backend, generation, "memcache: no answer to get".into());
                break;
            }
            if first.starts_with("SERVER_ERROR vaurien") {
                p.tally.injected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if first == "END\r\n" {
                // Nothing stored: the set failed (injected) on a fresh key, or a restart.
                if stored && p.backend.steady(generation) {
                    p.tally.fail("memcache: a stored value is missing".into());
                    return;
                }
                let counter = if stored {
                    &p.tally.cut
                } else {
                    &p.tally.unknown
                };
                counter.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let len: usize = first
                .split_whitespace()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut data = vec![0u8; len + 2];
            let mut end = String::new();
            if r.read_exact(&mut data).is_err() || r.read_line(&mut end).is_err() {
                p.tally
                    .broke(&p.backend, generation, "memcache: value cut".into());
                break;
            }
            if stored && data[..len] == v[..] && end == "END\r\n" {
                p.tally.ok(len);
            } else if !stored {
                p.tally.unknown.fetch_add(1, Ordering::Relaxed);
            } else if !p.backend.steady(generation) {
                p.tally.cut.fetch_add(1, Ordering::Relaxed);
            } else {
                p.tally.fail(format!(
                    "memcache: get after set of {} bytes gave {len} bytes",
                    v.len()
                ));
                return;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// One second's reading of a proxy.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss: u64,
    fds: u64,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    Sample {
        rss: procs::rss_kib(pid).unwrap_or(0),
        fds: fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        threads: procs::threads(pid).unwrap_or(0),
    }
}

/// Idle connections held open through a proxy for the whole run, then checked to still work:
/// all of them through a framed protocol (the proxy reconnects to a restarted backend at the
/// next call); through tcp, a backend restart closes them, as a byte stream passes the close on.
fn idle_connections(p: &Proxy) -> Vec<TcpStream> {
    (0..IDLE_PER_PROXY)
        .filter_map(|_| connect(p.addr).ok())
        .collect()
}

/// A call on an idle connection: whether it still answers (its whole answer is read).
fn still_works(p: &Proxy, s: &TcpStream, files: &[Vec<u8>]) -> bool {
    let Ok(clone) = s.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(clone);
    let mut w = s;
    match p.protocol {
        "tcp" => {
            let mut got = [0u8; 4];
            w.write_all(b"ping").is_ok() && r.read_exact(&mut got).is_ok() && &got == b"ping"
        }
        "http" => {
            w.write_all(b"GET /f0.bin HTTP/1.1\r\nHost: soak\r\n\r\n")
                .is_ok()
                && matches!(read_http(&mut r), Ok((200, body, _)) if body == files[0])
        }
        "redis" => {
            w.write_all(b"PING\r\n").is_ok()
                && matches!(read_resp(&mut r), Ok(l) if l == b"+PONG\r\n")
        }
        _ => {
            let mut line = String::new();
            w.write_all(b"version\r\n").is_ok()
                && r.read_line(&mut line).is_ok()
                && line.starts_with("VERSION ")
        }
    }
}

fn start_backends(dir: &Path, files: &[Vec<u8>]) -> Result<Vec<Arc<Backend>>, String> {
    let redis = find_tool("redis-server").ok_or("redis-server is not installed")?;
    let memcached = find_tool("memcached").ok_or("memcached is not installed")?;
    let nginx = find_tool("nginx").ok_or("nginx is not installed")?;
    let www = dir.join("www");
    fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    for (i, f) in files.iter().enumerate() {
        fs::write(www.join(format!("f{i}.bin")), f).map_err(|e| e.to_string())?;
    }
    let d = dir.to_path_buf();
    let redis_backend = Backend::new("redis-server", move |port| {
        let mut cmd = Command::new(&redis);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        start_server("redis-server", &mut cmd, &d.join("redis.log"), port)
    })?;
    let d = dir.to_path_buf();
    let memcached_backend = Backend::new("memcached", move |port| {
        let mut cmd = Command::new(&memcached);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-I",
            "2m",
        ]);
        // SAFETY: geteuid only reads the process's user id.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
        }
        start_server("memcached", &mut cmd, &d.join("memcached.log"), port)
    })?;
    let d = dir.to_path_buf();
    let nginx_backend = Backend::new("nginx", move |port| {
        let conf = d.join("nginx.conf");
        let dir = d.display();
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
                 error_log {dir}/nginx-error.log;\nevents {{ worker_connections 4096; }}\n\
                 http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 3600s;\n\
                 client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};\n\
                 uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
                 server {{ listen 127.0.0.1:{port}; root {dir}/www; }} }}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&nginx);
        cmd.arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&d)
            .arg("-e")
            .arg(d.join("nginx-error.log"));
        start_server("nginx", &mut cmd, &d.join("nginx.log"), port)
    })?;
    let d = dir.to_path_buf();
    let echo_backend = Backend::new("echo", move |port| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(["--serve-echo", &port.to_string()]);
        start_server("echo", &mut cmd, &d.join("echo.log"), port)
    })?;
    Ok(vec![
        echo_backend,
        nginx_backend,
        redis_backend,
        memcached_backend,
    ])
}

fn run(duration: Duration) -> Result<bool, String> {
    procs::raise_open_files();
    let tmp = TempDir::new().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let mut rng = fastrand::Rng::with_seed(1);
    let files: Vec<Vec<u8>> = [1usize << 10, 20 << 10, 300 << 10, 2 << 20]
        .iter()
        .map(|&n| {
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            f
        })
        .collect();
    let backends = start_backends(&tmp.path, &files)?;
    // Each mix with its options (the API refuses an option no behavior of the mix has).
    let mixes = [
        (
            "20:delay,10:latency,10:slicer,10:bandwidth",
            r#""sleep": 0.01, "latency": 10, "average_size": 700, "rate": 20000"#,
        ),
        (
            "10:delay,5:error,5:slicer",
            r#""sleep": 0.01, "average_size": 300"#,
        ),
        (
            "10:delay,5:error,5:latency,5:bandwidth",
            r#""sleep": 0.01, "latency": 10, "rate": 20000"#,
        ),
        (
            "10:delay,5:error,5:slicer",
            r#""sleep": 0.01, "average_size": 100, "size_variation": 50"#,
        ),
    ];
    let protocols = ["tcp", "http", "redis", "memcache"];
    let mut proxies = Vec::new();
    for i in 0..4 {
        proxies.push(Arc::new(start_proxy(
            protocols[i],
            backends[i].clone(),
            mixes[i],
            &tmp.path,
        )?));
    }
    eprintln!("soak: {} s; four proxies, a mix change every {CHANGE_EVERY:?}, a backend restart every {RESTART_EVERY:?}", duration.as_secs());
    let stop = Arc::new(AtomicBool::new(false));
    let files = Arc::new(files);
    let mut threads = Vec::new();
    for p in &proxies {
        for w in 0..WORKERS {
            let (p, stop, files) = (p.clone(), stop.clone(), files.clone());
            let seed = (w as u64 + 1) * 1000 + p.addr.port() as u64;
            threads.push(thread::spawn(move || match p.protocol {
                "tcp" => tcp_client(&p, seed, &stop),
                "http" => http_client(&p, &files, seed, &stop),
                "redis" => redis_client(&p, w, seed, &stop),
                _ => memcache_client(&p, w, seed, &stop),
            }));
        }
    }
    let mut idle: HashMap<u16, Vec<TcpStream>> = HashMap::new();
    for p in &proxies {
        let mut conns = idle_connections(p);
        // A first call on each, so that the framed ones hold a backend connection too.
        conns.retain(|c| still_works(p, c, &files));
        idle.insert(p.addr.port(), conns);
    }
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); proxies.len()];
    let (mut changes, mut restarts) = (0u64, 0usize);
    let mut next_change = Instant::now();
    let mut next_sample = Instant::now();
    let mut next_restart = Instant::now() + RESTART_EVERY;
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_change {
            for p in &proxies {
                let body = if changes % 2 == 0 {
                    format!(r#"{{"name": "{}", {}}}"#, p.mix.0, p.mix.1)
                } else {
                    r#"{"name": "dummy"}"#.to_string()
                };
                if let Err(e) = put_behavior(p.api, &body) {
                    p.tally
                        .fail(format!("{}: PUT /behavior failed: {e}", p.protocol));
                }
            }
            changes += 1;
            next_change += CHANGE_EVERY;
        }
        if now >= next_sample {
            for (i, p) in proxies.iter().enumerate() {
                samples[i].push(sample(p.proc.pid()));
            }
            next_sample += Duration::from_secs(1);
        }
        if now >= next_restart {
            let b = &backends[restarts % backends.len()];
            eprintln!(
                "soak: {:>4} s: restarting {}",
                started.elapsed().as_secs(),
                b.name
            );
            b.restart()?;
            restarts += 1;
            next_restart += RESTART_EVERY;
        }
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    for p in &proxies {
        let _ = put_behavior(p.api, r#"{"name": "dummy"}"#);
    }
    // Idle connections: still answering, or (a byte stream whose backend restarted) closed.
    let mut idle_report = Vec::new();
    for p in &proxies {
        let conns = idle
            .get_mut(&p.addr.port())
            .map(std::mem::take)
            .unwrap_or_default();
        let held = conns.len();
        let alive = conns.iter().filter(|c| still_works(p, c, &files)).count();
        if p.protocol != "tcp" && alive < held {
            p.tally.fail(format!(
                "{}: {} of {held} idle connections no longer answer",
                p.protocol,
                held - alive
            ));
        }
        idle_report.push((held, alive));
    }
    let ok = report(
        &proxies,
        &samples,
        &idle_report,
        changes,
        restarts,
        started.elapsed(),
    );
    if !ok {
        for p in &proxies {
            let path = tmp.path.join(format!("vaurien-{}.log", p.protocol));
            let log = fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            println!(
                "\n{} proxy, the last lines of its log:\n{}",
                p.protocol,
                lines[lines.len().saturating_sub(8)..].join("\n")
            );
        }
    }
    Ok(ok)
}

/// Prints the table; `false` when anything was lost or changed, or grew past its bound.
fn report(
    proxies: &[Arc<Proxy>],
    samples: &[Vec<Sample>],
    idle: &[(usize, usize)],
    changes: u64,
    restarts: usize,
    took: Duration,
) -> bool {
    let mut ok = true;
    println!(
        "\nSoak of {} s: {changes} mix changes per proxy, {restarts} backend restarts.\n",
        took.as_secs()
    );
    println!("| proxy | answers checked | bytes checked | injected faults | unknown after a fault | cut by restarts | lost or changed | idle held / answering |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, p) in proxies.iter().enumerate() {
        let t = &p.tally;
        let failed = t.failed.load(Ordering::Relaxed);
        ok &= failed == 0;
        println!(
            "| {} | {} | {:.1} MB | {} | {} | {} | {} | {} / {} |",
            p.protocol,
            t.checked.load(Ordering::Relaxed),
            t.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            t.injected.load(Ordering::Relaxed),
            t.unknown.load(Ordering::Relaxed),
            t.cut.load(Ordering::Relaxed),
            failed,
            idle[i].0,
            idle[i].1
        );
        if t.checked.load(Ordering::Relaxed) == 0 {
            println!(
                "\nsoak: no answer was checked through the {} proxy",
                p.protocol
            );
            ok = false;
        }
    }
    println!("\nSampled every second; the bounds compare the last third of the run with the first third after a warm-up of a sixth: RSS at most {} MiB + 20% more, descriptors and threads at most {COUNT_SLACK} more.\n", RSS_SLACK_KIB / 1024);
    println!("| proxy | RSS MiB first third max / last third max | descriptors | threads | within bounds |");
    println!("|---|---:|---:|---:|---|");
    for (i, p) in proxies.iter().enumerate() {
        let s = &samples[i];
        let n = s.len();
        let (first, last) = (&s[n / 6..(n / 6 + n / 3).min(n)], &s[n - n / 3..]);
        let max = |w: &[Sample], f: fn(&Sample) -> u64| w.iter().map(f).max().unwrap_or(0);
        let (r0, r1) = (max(first, |x| x.rss), max(last, |x| x.rss));
        let (f0, f1) = (max(first, |x| x.fds), max(last, |x| x.fds));
        let (t0, t1) = (max(first, |x| x.threads), max(last, |x| x.threads));
        let within = n >= 6
            && r1 <= r0 + RSS_SLACK_KIB + r0 / 5
            && f1 <= f0 + COUNT_SLACK
            && t1 <= t0 + COUNT_SLACK;
        ok &= within;
        println!(
            "| {} | {:.1} / {:.1} | {f0} / {f1} | {t0} / {t1} | {} |",
            p.protocol,
            r0 as f64 / 1024.0,
            r1 as f64 / 1024.0,
            if within { "yes" } else { "NO" }
        );
    }
    for p in proxies {
        for why in p
            .tally
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            println!("\n{}: failure: {why}", p.protocol);
        }
    }
    println!("\nsoak: {}", if ok { "passed" } else { "FAILED" });
    ok
}
