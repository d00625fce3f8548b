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
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

/// Asserts `actual` is within `tolerance` of `expected`.
pub fn assert_delta(actual: Duration, expected: Duration, tolerance: Duration, what: &str) {
    let diff = if actual > expected {
        actual - expected
    } else {
        expected - actual
    };
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
        let log_path = std::env::temp_dir().join(format!(
            "vaurien-test-{}-{}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&log_path);
        let mut child = Command::new(vaurien_bin())
            .args([
                "--proxy",
                "127.0.0.1:0",
                "--log-output",
                log_path.to_str().unwrap(),
            ])
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
