//! The processes the bench starts: spawning, readiness, bounded runs, /proc readings and
//! clean-up by PID.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const READY_LIMIT: Duration = Duration::from_secs(10);

/// How often a running step checks on a process or a port.
const POLL: Duration = Duration::from_millis(10);

/// A process the bench started; killed (SIGKILL) and reaped when dropped, on every path.
pub struct Proc {
    name: String,
    child: Child,
    /// Where its output goes, quoted in error messages.
    log: Option<PathBuf>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: Option<PathBuf>) -> Result<Proc, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error message if the process has already exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited early ({status}){}",
                self.name,
                self.log_tail()
            )),
            Ok(None) => None,
            Err(e) => Some(format!("cannot check on {}: {e}", self.name)),
        }
    }

    /// The last lines of the process's log, to explain a failure.
    fn log_tail(&self) -> String {
        self.last_log_lines(3)
    }

    /// The last `n` lines of the process's log as ": ..." (empty if none).
    pub fn last_log_lines(&self, n: usize) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        match fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => format!(": {}", tail(&text, n)),
            _ => String::new(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` non-empty lines of `text`, joined on one line.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// A scratch directory for configs and logs, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("vaurien-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A free port on 127.0.0.1 for programs that cannot listen on port 0 and report it. Another
/// process could take it before ours binds; readiness polling then fails with a clear error.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Output files for a child: stdout and stderr both go to `log`.
fn log_stdio(log: &Path) -> Result<(Stdio, Stdio), String> {
    let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot duplicate {}: {e}", log.display()))?;
    Ok((Stdio::from(out), Stdio::from(err)))
}

/// Starts a server whose output goes to `log` and waits until `port` accepts connections.
pub fn start_server(name: &str, cmd: &mut Command, log: &Path, port: u16) -> Result<Proc, String> {
    let (out, err) = log_stdio(log)?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut proc = Proc::spawn(name, cmd, Some(log.to_path_buf()))?;
    wait_port(&mut proc, port)?;
    Ok(proc)
}

/// Polls a TCP connect to `port` until it succeeds, the process exits or the deadline passes.
fn wait_port(proc: &mut Proc, port: u16) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(e) = proc.exited() {
            return Err(e);
        }
        if TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > READY_LIMIT {
            return Err(format!(
                "{} not listening on 127.0.0.1:{port} after {READY_LIMIT:?}{}",
                proc.name,
                proc.log_tail()
            ));
        }
        thread::sleep(POLL);
    }
}

/// Starts a program that prints a ready line on stdout and waits for the first line that
/// starts with `prefix`; returns the process, that line and the time it took. With
/// `stdin_pipe` the program's stdin stays open while the process lives (it may watch for EOF
/// to exit if the bench dies).
pub fn start_with_ready_line(
    name: &str,
    cmd: &mut Command,
    log: &Path,
    prefix: &'static str,
    stdin_pipe: bool,
) -> Result<(Proc, String, Duration), String> {
    let err = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    cmd.stdin(if stdin_pipe {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::from(err));
    let start = Instant::now();
    let mut proc = Proc::spawn(name, cmd, Some(log.to_path_buf()))?;
    let Some(stdout) = proc.child.stdout.take() else {
        return Err(format!("{name}: no stdout pipe"));
    };
    let lines = watch_ready_line(stdout, prefix);
    match lines.recv_timeout(READY_LIMIT) {
        Ok(line) => Ok((proc, line, start.elapsed())),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "{name} printed no ready line within {READY_LIMIT:?}{}",
            proc.log_tail()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(proc
            .exited()
            .unwrap_or_else(|| format!("{name} closed its stdout without a ready line"))),
    }
}

/// Sends the first stdout line starting with `prefix`, then keeps draining stdout so the
/// program never blocks on a full pipe.
fn watch_ready_line(stdout: ChildStdout, prefix: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(prefix) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    rx
}

/// What a bounded tool run produced.
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Both streams, for error messages and version lines.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a load generator or a version query to completion, killing it after `limit`.
pub fn run_tool(name: &str, cmd: &mut Command, limit: Duration) -> Result<ToolOutput, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn(name, cmd, None)?;
    let stdout = drain(proc.child.stdout.take());
    let stderr = drain(proc.child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match proc.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                return Err(format!("{name} did not finish within {limit:?}"));
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    };
    let collect = |rx: mpsc::Receiver<String>| rx.recv_timeout(READY_LIMIT).unwrap_or_default();
    Ok(ToolOutput {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads a pipe to its end on a thread; the text arrives on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

/// Like `run_tool`, and a non-zero exit is an error quoting the tool's last output lines.
pub fn run_tool_ok(name: &str, cmd: &mut Command, limit: Duration) -> Result<ToolOutput, String> {
    let out = run_tool(name, cmd, limit)?;
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            out.status,
            tail(&out.all(), 3)
        ));
    }
    Ok(out)
}

/// The first non-empty output line of `program ARGS`, or why there is none.
pub fn version_line(program: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match run_tool(
        &program.display().to_string(),
        &mut cmd,
        Duration::from_secs(5),
    ) {
        Ok(out) => out
            .all()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("(no version output)")
            .to_string(),
        Err(e) => format!("(unknown: {e})"),
    }
}

/// Finds `name` on PATH or in the sbin directories where haproxy and nginx live.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Seconds of CPU (user + system) the process has used: /proc/PID/stat fields 14 and 15.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' start at field 3.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("{path}: no ')' in {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| -> Result<f64, String> {
        fields
            .get(field - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("{path}: field {field} is not a tick count"))
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Resident memory of the process in KiB: VmRSS in /proc/PID/status.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    status_field(&path, "VmRSS:")
}

/// The soft open-files limit of the process, from /proc/PID/limits.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many memory mappings the process has, and the system's cap (vm.max_map_count):
/// every thread stack takes some, so thread-per-connection proxies can run out.
pub fn mappings(pid: u32) -> Option<(usize, u64)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let max = fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    Some((maps.lines().count(), max.trim().parse().ok()?))
}

/// Threads of the process (the Threads: line of /proc/PID/status).
pub fn threads(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "Threads:").ok()
}

fn status_field(path: &str, key: &str) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path}: no {key} line"))
}

/// Raises the bench's own soft open-files limit to its hard limit (the load needs two fds per
/// connection: the client and the accepted backend side); returns (soft, hard).
pub fn raise_open_files() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            lim = raised;
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}
