//! `vaurien` processes started on port 0, their logs, and raw exchanges with their API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{connect, within, Backend};

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
pub struct ProxyProcess {
    pub child: Child,
    /// The proxy's listen address, read from its `listening` line.
    pub addr: SocketAddr,
    /// The whole stdout line it printed when ready.
    pub ready_line: String,
    pub log_path: std::path::PathBuf,
}

static LOG_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl ProxyProcess {
    /// Starts `vaurien --proxy 127.0.0.1:0 ARGS` and waits (at most 10 s) for its ready line.
    pub fn start(args: &[&str]) -> ProxyProcess {
        ProxyProcess::start_with(args, None)
    }

    /// Like `start`, with the open-files limit (soft and hard) set to `open_files` when
    /// given; `--proxy` in `args` replaces the default 127.0.0.1:0.
    pub fn start_with(args: &[&str], open_files: Option<u64>) -> ProxyProcess {
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
        ProxyProcess {
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

    /// Connects a client to the proxy (20 s read timeout).
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
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

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A raw HTTP exchange with the API (no Content-Type, as the original's client sends).
pub fn api(
    http: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra_headers: &str,
) -> (u16, serde_json::Value) {
    let (status, _, body) = api_text(http, method, path, body, extra_headers);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A raw HTTP exchange with the API: its status, head and body as text.
pub fn api_text(
    http: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra_headers: &str,
) -> (u16, String, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    within(Duration::from_secs(10), "control API answer", move || {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (status, head.to_string(), body.to_string())
    })
}

/// Runs `vaurienctl ARGS` with the environment variables `env` (10 s at most): its exit
/// status, and its stdout and stderr, trimmed.
pub fn vaurienctl(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = within(Duration::from_secs(10), "vaurienctl", move || {
        Command::new(env!("CARGO_BIN_EXE_vaurienctl"))
            .args(&args)
            .envs(env)
            .output()
            .unwrap()
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// A proxy to `backend` with the control API on 127.0.0.1, any port; and the API's address.
pub fn proxy_with_api(backend: &Backend) -> (ProxyProcess, SocketAddr) {
    let p = ProxyProcess::start(&[
        "--backend",
        &backend.arg(),
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ]);
    let http = p.http_addr();
    (p, http)
}

/// `POST /proxies/PROXY/toxics` with `body`, which must be taken (200): the toxic.
pub fn add_toxic(http: SocketAddr, proxy: &str, body: &str) -> serde_json::Value {
    let (status, answer) = api(http, "POST", &format!("/proxies/{proxy}/toxics"), body, "");
    assert_eq!(status, 200, "a toxic on {proxy}: {body}: {answer}");
    answer
}

/// `vaurienctl --host http://HTTP ARGS`, as [`vaurienctl`] answers.
pub fn vaurienctl_at(http: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let host = format!("http://{http}");
    vaurienctl(&[&["--host", host.as_str()][..], args].concat(), &[])
}

/// `PUT /behavior` with `body` (a JSON object), which must be taken (200).
pub fn set_behavior(http: SocketAddr, body: &str) {
    let (status, answer) = api(http, "PUT", "/behavior", body, "");
    assert_eq!(status, 200, "PUT /behavior {body}: {answer}");
}

/// `vaurien --protocol PROTOCOL --backend BACKEND EXTRA...`.
pub fn protocol_proxy(protocol: &str, backend: &str, extra: &[&str]) -> ProxyProcess {
    let mut args = vec!["--protocol", protocol, "--backend", backend];
    args.extend_from_slice(extra);
    ProxyProcess::start(&args)
}

/// The proxy is still up, accepts a new connection, and logged no panic.
pub fn assert_proxy_survived(proxy: &mut ProxyProcess, after: &str) {
    assert!(
        proxy.is_running(),
        "vaurien exited after {after}; its log:\n{}",
        proxy.log()
    );
    let conn = TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(5));
    assert!(
        conn.is_ok(),
        "vaurien refuses new connections after {after}: {conn:?}; its log:\n{}",
        proxy.log()
    );
    drop(conn);
    let log = proxy.log();
    assert!(
        !log.contains("panicked") && !log.contains("ended on a bug"),
        "vaurien logged a panic after {after}:\n{log}"
    );
}

/// Polls the log at `path` (every 5 ms) until `done` holds for it, and returns it; callers
/// bound the wait with `within`.
pub fn poll_log(path: &Path, done: impl Fn(&str) -> bool) -> String {
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if done(&log) {
            return log;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a line of `log` contains every one of `words`.
pub fn has_line_with(log: &str, words: &[&str]) -> bool {
    log.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

/// A server process, killed (by its pid) when dropped, a failed test included.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary in drop-in mode with Toxiproxy's `flags`; returns it and the control
/// API's address from its ready line.
pub fn toxiproxy_server(
    program: &std::path::Path,
    flags: &[&str],
) -> (Killed, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(program)
        .args(flags)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the drop-in server");
    let stdout = child.stdout.take().expect("stdout");
    let child = Killed(child);
    let line = within(Duration::from_secs(10), "the ready line", move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .expect("a ready line");
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no http= in {line:?}"));
    (child, http)
}
