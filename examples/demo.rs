//! `make demo`: Vaurien at work in half a minute, on this machine alone.
//!
//! The demo starts a tiny HTTP server (the backend) on a free loopback port, puts the real
//! `vaurien` binary in front of it with a mix of faults
//! (`20:delay,10:error,10:blackout,10:abort`, seed 42), and sends 30 requests through the
//! proxy, one connection each. Every request is then classified the way an application would
//! see it:
//!
//! - ok: a normal `200` response, in time;
//! - delayed: a normal response that came more than 0.25 s late (`delay`);
//! - garbled: bytes came back but they are not an HTTP response (`error` replaced them);
//! - closed: the connection closed without a response (`blackout` or `abort`).
//!
//! It ends with a table of the outcomes next to what the mix makes you expect, then stops the
//! proxy with SIGTERM (exit status 0). A second part shows four of the faults Toxiproxy users
//! know (`latency`, `slicer`, `limit_data`, `reset_peer`), one proxy each in front of the same
//! backend, and what one request through each sees; then the backend stops. With the same seed the same requests
//! meet the same faults on every run. Nothing leaves 127.0.0.1 and the whole run is bounded
//! by timeouts (well under 30 s).
//!
//! Run it with `make demo`, or `cargo build --release && cargo run --release --example demo`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The faults the proxy is asked for; what is left (50%) goes to `dummy`.
const MIX: &str = "20:delay,10:error,10:blackout,10:abort";
/// The latency `delay` adds, in seconds.
const SLEEP: &str = "0.3";
/// A response slower than this counts as delayed.
const SLOW: Duration = Duration::from_millis(250);
/// Requests sent through the proxy.
const REQUESTS: usize = 30;
/// The longest one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// No new request starts after this much time (keeps the demo bounded whatever happens).
const REQUESTS_DEADLINE: Duration = Duration::from_secs(20);

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

/// What one request through the proxy came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Delayed,
    Garbled,
    Closed,
    NoAnswer,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Delayed,
        Outcome::Garbled,
        Outcome::Closed,
        Outcome::NoAnswer,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Delayed => "delayed",
            Outcome::Garbled => "garbled",
            Outcome::Closed => "closed",
            Outcome::NoAnswer => "no answer",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Outcome::Ok => "a normal 200 response, in time",
            Outcome::Delayed => "a normal response, but more than 0.25 s late",
            Outcome::Garbled => "random bytes instead of an HTTP response",
            Outcome::Closed => "the connection closed without a response",
            Outcome::NoAnswer => "nothing within 2 s (not expected with this mix)",
        }
    }

    /// The share of requests the mix makes you expect (see `print_summary`).
    fn expected(self) -> f64 {
        match self {
            Outcome::Ok => 0.42,
            Outcome::Delayed => 0.14,
            Outcome::Garbled => 0.08,
            Outcome::Closed => 0.36,
            Outcome::NoAnswer => 0.0,
        }
    }
}

fn run() -> Result<(), String> {
    let binary = vaurien_binary()?;
    let backend = Backend::start()?;
    let log_path = std::env::temp_dir().join(format!("vaurien-demo-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let backend_arg = backend.addr.to_string();
    let args = [
        "--proxy",
        "127.0.0.1:0",
        "--backend",
        &backend_arg,
        "--protocol",
        "tcp",
        "--behavior",
        MIX,
        "--behavior-delay-sleep",
        SLEEP,
        "--seed",
        "42",
    ];
    println!("Vaurien demo: a chaos proxy between an HTTP client and a tiny HTTP server.\n");
    println!("backend  a tiny HTTP/1.1 server on {backend_arg} (answers 200, then closes)");
    println!("proxy    vaurien {}", args.join(" "));
    println!(
        "         (log in {}; its own lines are shown at the end)\n",
        log_path.display()
    );
    let mut proxy = Proxy::start(&binary, &args, &log_path)?;
    println!("vaurien is ready: {}\n", proxy.ready_line);
    println!("Sending {REQUESTS} requests, one connection each:\n");

    let started = Instant::now();
    let mut outcomes = Vec::new();
    for n in 1..=REQUESTS {
        if started.elapsed() > REQUESTS_DEADLINE {
            println!("  (stopping early: the requests took longer than {REQUESTS_DEADLINE:?})");
            break;
        }
        let (outcome, took, detail) = request(proxy.addr, n);
        println!(
            "  #{n:02}  {:<9} {:>6.1} ms  {detail}",
            outcome.name(),
            took.as_secs_f64() * 1000.0
        );
        outcomes.push(outcome);
    }
    print_summary(&outcomes, backend.served.load(Ordering::Relaxed));

    let status = proxy.terminate()?;
    println!("\nStopped vaurien with SIGTERM: {}", describe(status));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !log.is_empty() {
        println!("What vaurien logged:");
        for line in log.lines() {
            println!("  | {line}");
        }
    }
    let _ = std::fs::remove_file(&log_path);
    toxiproxy_faults(&binary, &backend_arg, &log_path)?;
    backend.stop();
    println!(
        "Stopped the backend. Done in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Part two: one request through a proxy with each of four Toxiproxy faults.
fn toxiproxy_faults(binary: &PathBuf, backend: &str, log: &std::path::Path) -> Result<(), String> {
    const FAULTS: [(&str, &[&str], &str); 4] = [
        (
            "latency",
            &["--behavior-latency-latency", "300"],
            "the response 0.3 s late",
        ),
        (
            "slicer",
            &[
                "--behavior-slicer-average-size",
                "16",
                "--behavior-slicer-delay",
                "20000",
            ],
            "16-byte slices, 20 ms apart",
        ),
        (
            "limit_data",
            &["--behavior-limit-data-bytes", "60"],
            "60 bytes of the response, then closed",
        ),
        (
            "reset_peer",
            &["--behavior-reset-peer-timeout", "200"],
            "nothing, then a reset after 0.2 s",
        ),
    ];
    println!(
        "\nToxiproxy's faults, one proxy each in front of the same backend, one request each:\n"
    );
    println!("  fault        expect                                  the client saw");
    for (fault, options, expect) in FAULTS {
        let mut args = vec![
            "--proxy",
            "127.0.0.1:0",
            "--backend",
            backend,
            "--behavior",
            fault,
        ];
        args.extend_from_slice(options);
        let mut proxy = Proxy::start(binary, &args, log)?;
        let seen = one_request(proxy.addr);
        println!("  {fault:<12} {expect:<39} {seen}");
        proxy.terminate()?;
    }
    let _ = std::fs::remove_file(log);
    println!("\n  (each with its defaults otherwise: stream downstream, as in Toxiproxy; see `man vaurien`)");
    Ok(())
}

/// Sends one request and says how the answer came: its reads, bytes, end and time.
fn one_request(proxy: SocketAddr) -> String {
    let start = Instant::now();
    let Ok(mut conn) = TcpStream::connect_timeout(&proxy, REQUEST_TIMEOUT) else {
        return "cannot connect".to_string();
    };
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let req = "GET /fault HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n";
    if conn.write_all(req.as_bytes()).is_err() {
        return "closed before the request was sent".to_string();
    }
    let (mut reads, mut bytes) = (0, 0);
    let mut buf = [0u8; 4096];
    let end = loop {
        match conn.read(&mut buf) {
            Ok(0) => break "end of stream",
            Ok(n) => {
                reads += 1;
                bytes += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "connection reset",
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break "no more within 2 s"
            }
            Err(_) => break "an error",
        }
    };
    format!(
        "{bytes} bytes in {reads} reads, {end}, {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    )
}

/// `target/release/vaurien`, next to the directory holding this example's binary.
fn vaurien_binary() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the demo's own path: {e}"))?;
    let path = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("vaurien"))
        .ok_or("cannot find the target directory")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the vaurien binary is not at {}; build it first with `cargo build --release` \
             (or run `make demo`, which does both)",
            path.display()
        ))
    }
}

/// Sends request `n` on a new connection and classifies what comes back.
fn request(proxy: SocketAddr, n: usize) -> (Outcome, Duration, String) {
    let start = Instant::now();
    let mut conn = match TcpStream::connect_timeout(&proxy, REQUEST_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            return (
                Outcome::Closed,
                start.elapsed(),
                format!("cannot connect: {e}"),
            )
        }
    };
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = conn.set_write_timeout(Some(REQUEST_TIMEOUT));
    let req = format!("GET /hello/{n} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
    if let Err(e) = conn.write_all(req.as_bytes()) {
        return (
            Outcome::Closed,
            start.elapsed(),
            format!("the proxy closed the connection before the request was sent ({e})"),
        );
    }
    let (data, timed_out) = read_all(&mut conn, start);
    let took = start.elapsed();
    if data.is_empty() {
        return if timed_out {
            (
                Outcome::NoAnswer,
                took,
                "no response within 2 s".to_string(),
            )
        } else {
            (
                Outcome::Closed,
                took,
                "connection closed, no response".to_string(),
            )
        };
    }
    match parse_response(&data) {
        Some(status_line) if took > SLOW => (
            Outcome::Delayed,
            took,
            format!("{status_line}, {:.2} s late", took.as_secs_f64()),
        ),
        Some(status_line) => (Outcome::Ok, took, status_line),
        None => (
            Outcome::Garbled,
            took,
            format!(
                "{} bytes of noise: {}...",
                data.len(),
                hex(&data[..8.min(data.len())])
            ),
        ),
    }
}

/// Reads until end of stream, an error or the request's time is up; tells whether it timed
/// out.
fn read_all(conn: &mut TcpStream, start: Instant) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if start.elapsed() > REQUEST_TIMEOUT {
            return (data, true);
        }
        match conn.read(&mut buf) {
            Ok(0) => return (data, false),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (data, true)
            }
            Err(_) => return (data, false), // reset by the proxy: as good as closed
        }
    }
}

/// The status line of a complete `200` response with its whole `Content-Length` body.
fn parse_response(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if !status.starts_with("HTTP/1.1 200 ") {
        return None;
    }
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))?
        .1
        .trim()
        .parse()
        .ok()?;
    (body.len() == length)
        .then(|| format!("{status} ({} bytes: {:?})", data.len(), body.trim_end()))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_summary(outcomes: &[Outcome], served: usize) {
    let total = outcomes.len().max(1);
    println!("\nSummary of {} requests:\n", outcomes.len());
    println!("  outcome     count  share  expected  what the client saw");
    for o in Outcome::ALL {
        let count = outcomes.iter().filter(|x| **x == o).count();
        if o == Outcome::NoAnswer && count == 0 {
            continue;
        }
        println!(
            "  {:<10} {count:>6}  {:>4.0}%  {:>7.0}%  {}",
            o.name(),
            100.0 * count as f64 / total as f64,
            100.0 * o.expected(),
            o.meaning()
        );
    }
    let missed = outcomes.len().saturating_sub(served);
    println!(
        "\n  The backend received {served} of the {} requests; {missed} never reached it (a blackout\n  \
         on the way there). The other closed ones reached it: an abort, or a blackout or\n  \
         abort drawn by the response, cut them off.",
        outcomes.len()
    );
    println!(
        "\nWhy these shares: the mix was {MIX}, and the remaining\n\
         50% goes to dummy, which forwards unchanged. With --protocol tcp a call is one chunk\n\
         in one direction, and every call draws its behavior afresh. So each request draws once\n\
         on its way to the backend, where delay ({SLEEP} s), blackout and abort act, and its\n\
         response draws again on the way back, where error (1000 random bytes), blackout and\n\
         abort act; a behavior drawn for the other direction does nothing. Hence:\n  \
         closed  20% + 80% x 20% = 36%     delayed  20% x 70% = 14%\n  \
         garbled 80% x 10%       =  8%     ok       60% x 70% = 42%\n\
         {} requests are a small sample, so the counts wander around these shares; with\n\
         --seed 42 the same requests meet the same faults on every run.",
        outcomes.len()
    );
}

/// The tiny HTTP backend: answers each request with a short 200 response and closes.
struct Backend {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: thread::JoinHandle<()>,
}

impl Backend {
    fn start() -> Result<Backend, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot start the backend on 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (served.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let count = count.clone();
                    thread::spawn(move || serve(conn, &count));
                }
            }
        });
        Ok(Backend {
            addr,
            served,
            stop,
            acceptor,
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop up so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let _ = self.acceptor.join();
    }
}

/// Reads one request head, answers it in a single write, and closes.
fn serve(mut conn: TcpStream, served: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return, // the proxy closed it: nothing to answer
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
    let path = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let body = format!("hello from the backend, {path} (#{n})\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

/// The running `vaurien` process.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    ready_line: String,
}

impl Proxy {
    /// Starts the binary and waits (at most 10 s) for its `vaurien listening proxy=...` line.
    fn start(binary: &PathBuf, args: &[&str], log: &std::path::Path) -> Result<Proxy, String> {
        let mut child = Command::new(binary)
            .args(args)
            .arg("--log-output")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout from vaurien")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if !line.is_empty() => line.trim_end().to_string(),
            _ => {
                let _ = child.kill();
                let status = child.wait().map(describe).unwrap_or_default();
                return Err(format!(
                    "vaurien did not report that it listens ({status}); see its message above"
                ));
            }
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("proxy="))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("unexpected first line from vaurien: {line:?}"))?;
        Ok(Proxy {
            child,
            addr,
            ready_line: line,
        })
    }

    /// Sends SIGTERM and waits (at most 5 s, then kills it) for the exit status.
    fn terminate(&mut self) -> Result<ExitStatus, String> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| e.to_string())?;
        Err(format!(
            "vaurien did not stop within 5 s of SIGTERM; killed it ({})",
            describe(status)
        ))
    }
}

impl Drop for Proxy {
    /// A demo that fails half-way leaves no proxy behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "exit status 0 (a clean shutdown)".to_string(),
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown exit status".to_string(),
    }
}
