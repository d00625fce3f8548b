//! Shared test harness: `vaurien` processes on port 0, test backends, and a timeout wrapper
//! around every blocking step.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what}: failed (see the panic above)")
        }
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

/// Asserts `actual` is within `tolerance` of `expected`.
pub fn assert_delta(actual: Duration, expected: Duration, tolerance: Duration, what: &str) {
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= tolerance,
        "{what}: {actual:?} is not within {tolerance:?} of {expected:?}"
    );
}

/// Path of the `vaurien` binary under test.
pub fn vaurien_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vaurien")
}

/// Runs `vaurien ARGS` to completion (bad-input checks), within 10 s.
pub fn run_vaurien(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    within(Duration::from_secs(10), "vaurien to exit", move || {
        Command::new(vaurien_bin())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run vaurien")
    })
}

/// A running `vaurien` process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Vaurien {
    pub child: Child,
    /// The proxy's listen address, read from its `listening` line.
    pub addr: SocketAddr,
    /// The whole stdout line it printed when ready.
    pub ready_line: String,
    pub log_path: std::path::PathBuf,
}

static LOG_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Vaurien {
    /// Starts `vaurien --proxy 127.0.0.1:0 ARGS` and waits (at most 10 s) for its ready line.
    pub fn start(args: &[&str]) -> Vaurien {
        Vaurien::start_with(args, None)
    }

    /// Like `start`, with the open-files limit (soft and hard) set to `open_files` when
    /// given; `--proxy` in `args` replaces the default 127.0.0.1:0.
    pub fn start_with(args: &[&str], open_files: Option<u64>) -> Vaurien {
        let log_path = std::env::temp_dir().join(format!(
            "vaurien-test-{}-{}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&log_path);
        let mut command = Command::new(vaurien_bin());
        if !args.contains(&"--proxy") {
            command.args(["--proxy", "127.0.0.1:0"]);
        }
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args(["--log-output", log_path.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vaurien");
        let stdout = child.stdout.take().expect("stdout");
        let line = within(
            Duration::from_secs(10),
            "vaurien to start listening",
            move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            },
        )
        .expect("read vaurien's ready line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("proxy="))
            .unwrap_or_else(|| panic!("no proxy= in ready line {line:?}"))
            .parse()
            .expect("proxy address");
        Vaurien {
            child,
            addr,
            ready_line: line,
            log_path,
        }
    }

    /// The control API's address, from the ready line of a proxy started with `--http`.
    pub fn http_addr(&self) -> SocketAddr {
        self.ready_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no http= address in {:?}", self.ready_line))
    }

    /// Connects a client to the proxy.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to vaurien");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Sends SIGTERM and waits (at most 5 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vaurien did not exit within 5 s of SIGTERM"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Vaurien {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

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
        Backend::start(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
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
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
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

/// A raw HTTP exchange with the API (no Content-Type, as the original's client sends).
pub fn api(
    http: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra_headers: &str,
) -> (u16, serde_json::Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    within(Duration::from_secs(10), "control API answer", move || {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    })
}

impl Backend {
    /// Speaks first: sends `greeting` on every connection, then echoes.
    pub fn greeting(greeting: &'static [u8]) -> Backend {
        Backend::start(move |mut s| {
            if s.write_all(greeting).is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
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

/// Stops a server the test started: SIGTERM to its pid, then SIGKILL if it has not exited
/// within `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) on the pid of our own child, not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
        }
    }
}
