//! The real servers and tools of `make test-real`: found or skipped with a reason, started
//! on a free port in a fresh directory, tied to this process, and stopped by their PID.

use std::io::{BufRead, BufReader, Read, Write};
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, within};

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

// ---------------------------------------------------------------------------------------
// Real servers and client tools, for the `real_*` modules (`make test-real`).

/// Finds the first of `names` in `PATH`, then in the sbin and bin directories (servers such as
/// `nginx` and `mariadbd` live in `/usr/sbin`, which is not on every user's `PATH`).
pub fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]
            .iter()
            .map(PathBuf::from),
    );
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// [`find_tool`], or an error saying to install `install` (e.g. "the Debian package
/// memcached").
pub fn need_tool(names: &[&str], install: &str) -> Result<PathBuf, String> {
    find_tool(names).ok_or_else(|| {
        format!(
            "{} not found in PATH nor /usr/sbin: install {install} (make test-real needs it, \
             see .ci/run)",
            names[0]
        )
    })
}

/// Whether the tests run as root (servers such as mariadbd and memcached then want
/// `--user=root`).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether process `pid` (a child of ours) has exited: gone, or a zombie not reaped yet.
pub fn exited(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Makes the process `cmd` spawns get SIGTERM when the spawning *thread* ends (Linux's
/// `PR_SET_PDEATHSIG`), so that a server cannot outlive a killed test run.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Spawns `cmd` for a server several tests share: it gets SIGTERM when this process dies, as
/// it is spawned (see [`die_with_parent`]) on a thread that never returns.
pub fn spawn_tied_to_this_process(mut cmd: Command) -> std::io::Result<Child> {
    die_with_parent(&mut cmd);
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("server-parent".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                thread::park();
            }
        })
        .expect("spawn the server-parent thread");
    rx.recv().expect("server-parent thread answers")
}

static AT_EXIT: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());

extern "C" fn run_at_exit() {
    let work = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for f in work {
        f();
    }
}

/// Runs `f` when the test binary exits (an `atexit` handler): clean-up of what lives in
/// statics, which are never dropped. `f` must not panic.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    static REGISTER: Once = Once::new();
    // SAFETY: atexit(3) with a plain `extern "C" fn` that never unwinds.
    REGISTER.call_once(|| unsafe {
        libc::atexit(run_at_exit);
    });
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(f));
}

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A new, empty directory `PREFIX-PID-N` under the temp dir, for one server's files; first
/// removes the `PREFIX-PID-*` directories of test runs that died without cleaning up.
pub fn fresh_dir(prefix: &str) -> Result<PathBuf, String> {
    let tmp = std::env::temp_dir();
    remove_stale_dirs(&tmp, &format!("{prefix}-"));
    let dir = tmp.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        DIR_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes the `PREFIX-PID...` directories in `tmp` whose process is gone.
fn remove_stale_dirs(tmp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts a server with `start(port)` on a free port, and again on another (three tries in
/// all) while its error says that port was taken meanwhile ("in use"; MariaDB says "Bind on
/// TCP/IP port"). The error is the last try's.
pub fn on_a_free_port<T>(mut start: impl FnMut(u16) -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for _attempt in 0..3 {
        match start(free_port()) {
            Ok(server) => return Ok(server),
            Err(e) => last = e,
        }
        if !last.contains("in use") && !last.contains("Bind on TCP/IP port") {
            break;
        }
    }
    Err(last)
}

/// Polls `ready` (backing off from 1 to 50 ms) until it holds, for at most 20 s (the whole
/// wait bounded by `within`); false if the server `pid` exits first or time runs out.
pub fn wait_ready(what: &str, pid: u32, ready: impl Fn() -> bool + Send + 'static) -> bool {
    within(Duration::from_secs(30), what, move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut pause = Duration::from_millis(1);
        while Instant::now() < deadline {
            if ready() {
                return true;
            }
            if exited(pid) {
                return false;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        false
    })
}

/// The server in `cell`, started by `start` for the first test that needs it; fails the test
/// when it could not start (`name` says which server).
pub fn shared_server<T: Send + Sync>(
    cell: &'static OnceLock<Result<T, String>>,
    name: &str,
    start: fn() -> Result<T, String>,
) -> &'static T {
    let started = cell.get_or_init(|| {
        catch_unwind(start).unwrap_or_else(|_| Err(format!("starting {name} panicked")))
    });
    match started {
        Ok(server) => server,
        Err(e) => panic!("no {name} for these tests: {e}"),
    }
}

/// A server process a test started: stopped by its pid (SIGTERM, then SIGKILL after `grace`)
/// by [`ServerProcess::stop`] or when dropped, its directory (if given) removed then.
pub struct ServerProcess {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    state: Arc<Mutex<(Option<Child>, Option<PathBuf>)>>,
    grace: Duration,
}

impl ServerProcess {
    /// Takes charge of `child`, which listens (or will) on `port`.
    pub fn new(child: Child, port: u16, grace: Duration) -> ServerProcess {
        ServerProcess {
            port,
            state: Arc::new(Mutex::new((Some(child), None))),
            grace,
        }
    }

    /// Removes `dir` too when the server stops.
    pub fn with_dir(self, dir: PathBuf) -> ServerProcess {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(dir);
        self
    }

    /// Stops it when the test binary exits too, for a server kept in a static.
    pub fn stop_at_exit(self) -> ServerProcess {
        let (state, grace) = (self.state.clone(), self.grace);
        at_exit(move || stop_and_clean(&state, grace));
        self
    }

    /// `127.0.0.1:PORT`, for `--backend`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `try_wait` on the process: `Ok(None)` while it runs; `None` once stopped.
    pub fn try_wait(&self) -> Option<std::io::Result<Option<ExitStatus>>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.as_mut().map(|c| c.try_wait())
    }

    /// SIGTERM by pid, wait for the exit (SIGKILL after the grace), remove the directory.
    pub fn stop(&self) {
        stop_and_clean(&self.state, self.grace);
    }
}

fn stop_and_clean(state: &Mutex<(Option<Child>, Option<PathBuf>)>, grace: Duration) {
    let (child, dir) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        (state.0.take(), state.1.take())
    };
    if let Some(mut child) = child {
        stop_child(&mut child, grace);
    }
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server's output: the lines it wrote on the pipes given to [`OutputLog::watch`], read on
/// threads of their own for as long as it runs (so that it never blocks on a full pipe).
#[derive(Clone, Default)]
pub struct OutputLog(Arc<Mutex<String>>);

impl OutputLog {
    /// Starts reading `pipes`. With `ready`, the receiver gets `true` for every line that
    /// contains it; it gets `false` whenever a pipe ends (the server is gone).
    pub fn watch(
        pipes: Vec<Box<dyn Read + Send>>,
        ready: Option<&'static str>,
    ) -> (OutputLog, mpsc::Receiver<bool>) {
        let log = OutputLog::default();
        let (tx, rx) = mpsc::channel();
        for pipe in pipes {
            let (sink, tx) = (log.clone(), tx.clone());
            thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut raw = Vec::new();
                while matches!(r.read_until(b'\n', &mut raw), Ok(1..)) {
                    let line = String::from_utf8_lossy(&raw);
                    let line = line.trim_end_matches('\n').trim_end_matches('\r');
                    {
                        let mut log = sink.0.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(line);
                        log.push('\n');
                    }
                    if ready.is_some_and(|r| line.contains(r)) {
                        let _ = tx.send(true);
                    }
                    raw.clear();
                }
                let _ = tx.send(false);
            });
        }
        (log, rx)
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last `lines` lines.
    pub fn tail(&self, lines: usize) -> String {
        let log = self.text();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Sends each line of `pipe` on the returned channel, from a thread of its own, until the
/// pipe ends or the receiver is gone.
pub fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A child process killed (by its pid) and reaped when dropped, panics included.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What one run of a client tool gave, and how long it took.
pub struct Ran {
    pub out: Output,
    pub took: Duration,
    program: String,
}

impl Ran {
    /// Its standard output, as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Its standard error, as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Fails the test, with the tool's stderr, unless it exited 0.
    pub fn ok(self, what: &str) -> Ran {
        assert!(
            self.out.status.success(),
            "{what}: {} failed ({}):\n{}",
            self.program,
            self.out.status,
            self.stderr()
        );
        self
    }
}

/// Runs `cmd` to completion with `input` on its stdin (none: `/dev/null`) and its output
/// captured; kills it and fails the test if it has not finished within `limit`.
pub fn run_tool(mut cmd: Command, input: Option<&str>, limit: Duration) -> Ran {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // The command line, for failure messages (shortened: an argument may be a whole script).
    let mut what = std::iter::once(program.clone())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    if what.len() > 200 {
        let mut end = 200;
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        what.truncate(end);
        what.push_str("...");
    }
    let started = Instant::now();
    let mut child = KillOnDrop(cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}")));
    if let (Some(input), Some(mut pipe)) = (input, child.0.stdin.take()) {
        let input = input.to_string();
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let collect = |mut out: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut all = Vec::new();
            let _ = out.read_to_end(&mut all);
            all
        })
    };
    let stdout = collect(Box::new(child.0.stdout.take().expect("stdout")));
    let stderr = collect(Box::new(child.0.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not finished within {limit:?} (killed)"
        );
        thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    Ran {
        out: Output {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        },
        took,
        program,
    }
}

/// Debian's python, which has Debian's `python3-*` packages (the `python3` first on `PATH`
/// may lack them).
pub const PYTHON: &str = "/usr/bin/python3";

/// Fails the test unless [`PYTHON`] exists; `package` is the Debian package the test needs.
pub fn need_python(package: &str) {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} not found: install python3 and {package} (see .ci/run)"
    );
}

/// Fails the test, naming the Debian `package` (`python3-MODULE`), if python's `stderr` says
/// the module is missing.
pub fn assert_python_has(package: &str, stderr: &str) {
    let module = package.strip_prefix("python3-").unwrap_or(package);
    assert!(
        !stderr.contains(&format!("No module named '{module}'")),
        "{module} is missing: apt-get install {package} (see .ci/run)"
    );
}

/// Runs `PYTHON -c SCRIPT ARGS` (within 60 s), which needs the Debian `package`; returns its
/// standard output, and fails the test if it exits with an error.
pub fn python(script: &str, args: &[String], package: &str) -> String {
    need_python(package);
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(script).args(args);
    let run = run_tool(cmd, None, Duration::from_secs(60));
    let stderr = run.stderr();
    assert_python_has(package, &stderr);
    assert!(run.out.status.success(), "python client failed: {stderr}");
    String::from_utf8(run.out.stdout).expect("utf-8 output")
}

/// The resident set size of process `pid`, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}
