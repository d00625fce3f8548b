//! The bench's environment (tools found, scratch directory) and how each target and backend
//! is started; the same functions print the commands, so what is shown is what runs.

use std::cell::{Cell, RefCell};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use crate::procs::{self, free_port, start_server, start_with_ready_line, Proc, TempDir};
use crate::report::Target;
use crate::traffic::Pattern;

/// haproxy's maxconn asked for; it needs two fds per connection and refuses to start when the
/// open-files hard limit cannot hold them, so it is lowered to fit.
const HAPROXY_MAXCONN: u64 = 20_000;

/// Tools, paths and settings shared by every measurement.
pub struct Env {
    pub tmp: TempDir,
    pub vaurien: PathBuf,
    pub haproxy: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub redis_server: Option<PathBuf>,
    pub redis_benchmark: Option<PathBuf>,
    nginx_has_e: bool,
    pub haproxy_maxconn: u64,
    pub quick: bool,
    /// Arguments added to every vaurien command line (`--vaurien-arg`).
    pub vaurien_args: Vec<String>,
    pub pattern: Arc<Pattern>,
    seq: Cell<u32>,
    notes: RefCell<Vec<(String, String)>>,
}

impl Env {
    pub fn new(quick: bool, fd_hard_limit: u64) -> Result<Env, String> {
        let tmp = TempDir::new().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let nginx = procs::find_tool("nginx");
        let nginx_has_e = nginx.as_ref().is_some_and(|n| {
            let mut cmd = Command::new(n);
            cmd.arg("-h");
            procs::run_tool("nginx -h", &mut cmd, procs::READY_LIMIT)
                .is_ok_and(|out| out.all().contains("-e filename"))
        });
        let env = Env {
            tmp,
            vaurien: PathBuf::from(env!("CARGO_BIN_EXE_vaurien")),
            haproxy: procs::find_tool("haproxy"),
            wrk: procs::find_tool("wrk"),
            nginx,
            redis_server: procs::find_tool("redis-server"),
            redis_benchmark: procs::find_tool("redis-benchmark"),
            nginx_has_e,
            haproxy_maxconn: HAPROXY_MAXCONN.min(fd_hard_limit.saturating_sub(1000) / 2),
            quick,
            vaurien_args: Vec::new(),
            pattern: Arc::new(Pattern::new(0x5eed_1234_abcd_0001)),
            seq: Cell::new(0),
            notes: RefCell::new(Vec::new()),
        };
        fs::create_dir_all(env.tmp.path.join("www"))
            .and_then(|()| fs::write(env.tmp.path.join("www/1k.bin"), one_kib()))
            .map_err(|e| format!("cannot write the nginx document: {e}"))?;
        Ok(env)
    }

    /// A new file name in the scratch directory.
    pub fn file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        self.tmp.path.join(format!("{stem}-{n}.{ext}"))
    }

    /// A remark printed under the table; `key` keeps a remark repeated by every
    /// repetition to one line.
    pub fn note(&self, key: String, text: String) {
        eprintln!("  note: {text}");
        let mut notes = self.notes.borrow_mut();
        if !notes.iter().any(|(k, _)| *k == key) {
            notes.push((key, text));
        }
    }

    pub fn notes(&self) -> Vec<String> {
        self.notes.borrow().iter().map(|(_, n)| n.clone()).collect()
    }

    /// The targets this machine can run, out of `wanted`.
    pub fn available(&self, wanted: &[Target]) -> Vec<Target> {
        wanted
            .iter()
            .copied()
            .filter(|&t| t != Target::Haproxy || self.haproxy.is_some())
            .collect()
    }
}

fn one_kib() -> Vec<u8> {
    (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// How vaurien runs for a workload: `vaurien` uses `protocol`, `vaurien-tcp` always tcp.
#[derive(Clone)]
pub struct ProxySpec {
    pub protocol: &'static str,
    pub behavior: &'static str,
    pub extra: Vec<String>,
}

impl ProxySpec {
    pub fn new(protocol: &'static str) -> ProxySpec {
        ProxySpec {
            protocol,
            behavior: "100:dummy",
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, args: &[&str]) -> ProxySpec {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn args(&self, target: Target, backend: &str, more: &[String]) -> Vec<String> {
        let protocol = if target == Target::VaurienTcp {
            "tcp"
        } else {
            self.protocol
        };
        let mut args: Vec<String> = [
            "--proxy",
            "127.0.0.1:0",
            "--backend",
            backend,
            "--protocol",
            protocol,
            "--behavior",
            self.behavior,
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.extra.iter().cloned());
        args.extend(more.iter().cloned());
        args.extend(["--log-level", "error"].map(String::from));
        args
    }
}

/// A started target: where clients connect and the proxy process, if there is one.
pub struct Running {
    pub port: u16,
    proc: Option<Proc>,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The last line the proxy logged, as ": ..." (empty if none).
    pub fn last_log_line(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.last_log_lines(1))
            .unwrap_or_default()
    }

    /// The proxy's CPU seconds so far; None for `direct`.
    pub fn cpu(&self) -> Result<Option<f64>, String> {
        self.pid().map(procs::cpu_seconds).transpose()
    }
}

/// Starts `target` in front of the backend on `backend_port` and waits until it listens.
pub fn start_target(
    env: &Env,
    target: Target,
    backend_port: u16,
    spec: &ProxySpec,
) -> Result<Running, String> {
    match target {
        Target::Direct => Ok(Running {
            port: backend_port,
            proc: None,
        }),
        Target::Vaurien | Target::VaurienTcp => {
            let backend = format!("127.0.0.1:{backend_port}");
            let (proc, port, _) =
                start_vaurien(env, &spec.args(target, &backend, &env.vaurien_args))?;
            Ok(Running {
                port,
                proc: Some(proc),
            })
        }
        Target::Haproxy => start_haproxy(env, backend_port),
    }
}

/// Starts vaurien with `args`; returns it, its proxy port and the time to its ready line.
pub fn start_vaurien(
    env: &Env,
    args: &[String],
) -> Result<(Proc, u16, std::time::Duration), String> {
    let mut cmd = Command::new(&env.vaurien);
    cmd.args(args);
    let log = env.file("vaurien", "log");
    let (proc, line, took) =
        start_with_ready_line("vaurien", &mut cmd, &log, "vaurien listening ", false)?;
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("proxy="))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .ok_or_else(|| format!("vaurien: no proxy address in its ready line {line:?}"))?;
    Ok((proc, port, took))
}

fn start_haproxy(env: &Env, backend_port: u16) -> Result<Running, String> {
    let haproxy = env.haproxy.as_ref().ok_or("haproxy is not installed")?;
    let port = free_port()?;
    let cfg = env.file("haproxy", "cfg");
    fs::write(
        &cfg,
        haproxy_config(env.haproxy_maxconn, port, backend_port),
    )
    .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let proc = start_server("haproxy", &mut cmd, &env.file("haproxy", "log"), port)?;
    Ok(Running {
        port,
        proc: Some(proc),
    })
}

fn haproxy_config(maxconn: u64, port: u16, backend_port: u16) -> String {
    format!(
        "global\n    maxconn {maxconn}\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         listen bench\n    bind 127.0.0.1:{port}\n    server s1 127.0.0.1:{backend_port}\n"
    )
}

/// Starts nginx serving `1k.bin` from the scratch directory; returns it and its port.
pub fn start_nginx(env: &Env) -> Result<(Proc, u16), String> {
    let nginx = env.nginx.as_ref().ok_or("nginx is not installed")?;
    let port = free_port()?;
    let conf = env.file("nginx", "conf");
    fs::write(&conf, nginx_config(env, port, &env.seq.get().to_string()))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let mut cmd = Command::new(nginx);
    cmd.args(nginx_args(env, &conf.display().to_string()));
    let proc = start_server("nginx", &mut cmd, &env.file("nginx", "log"), port)?;
    Ok((proc, port))
}

/// The config of nginx number `n` (its pid and error log files are its own).
fn nginx_config(env: &Env, port: u16, n: &str) -> String {
    let dir = env.tmp.path.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {dir}/nginx-{n}.pid;\nerror_log {dir}/nginx-{n}-error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 1000000; \
         server {{ listen 127.0.0.1:{port}; root {dir}/www; }} }}\n"
    )
}

fn nginx_args(env: &Env, conf: &str) -> Vec<String> {
    let dir = env.tmp.path.display().to_string();
    let mut args = vec!["-c".to_string(), conf.to_string(), "-p".to_string(), dir];
    if env.nginx_has_e {
        // Without -e, nginx opens its compiled-in error log before reading the config.
        args.push("-e".to_string());
        args.push(env.tmp.path.join("error.log").display().to_string());
    }
    args
}

/// Starts a fresh redis-server; returns it and its port.
pub fn start_redis(env: &Env) -> Result<(Proc, u16), String> {
    let redis = env
        .redis_server
        .as_ref()
        .ok_or("redis-server is not installed")?;
    let port = free_port()?;
    let mut cmd = Command::new(redis);
    cmd.args(redis_args(port));
    let proc = start_server("redis-server", &mut cmd, &env.file("redis", "log"), port)?;
    Ok((proc, port))
}

fn redis_args(port: u16) -> Vec<String> {
    let port = port.to_string();
    [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts this bench binary again as an echo backend (`--serve-echo`) that holds its
/// connections in a process of its own; returns it and its port.
pub fn start_echo_child(env: &Env) -> Result<(Proc, u16), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--serve-echo");
    let log = env.file("echo", "log");
    let (proc, line, _) =
        start_with_ready_line("echo server", &mut cmd, &log, "echo listening ", true)?;
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("port="))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("echo server: no port in {line:?}"))?;
    Ok((proc, port))
}

/// How a tool is shown in the printed commands: its path, or `name` when it is not installed.
pub fn shown(tool: &Option<PathBuf>, name: &str) -> String {
    tool.as_ref()
        .map_or(name.to_string(), |p| p.display().to_string())
}

/// A command line as a shell would take it.
pub fn shell_join(program: &str, args: &[String]) -> String {
    let quote = |a: &String| {
        if a.is_empty() || a.contains([' ', '\'', '"', '*']) {
            format!("'{}'", a.replace('\'', r"'\''"))
        } else {
            a.clone()
        }
    };
    std::iter::once(program.to_string())
        .chain(args.iter().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How each target is started, for the commands printed before a workload's results;
/// BACKEND and PORT stand for the ports picked at each measurement.
pub fn describe_target(env: &Env, target: Target, spec: &ProxySpec) -> String {
    match target {
        Target::Direct => "direct: the client connects to 127.0.0.1:BACKEND".to_string(),
        Target::Vaurien | Target::VaurienTcp => format!(
            "{}: {}",
            target.name(),
            shell_join(
                &env.vaurien.display().to_string(),
                &spec.args(target, "127.0.0.1:BACKEND", &env.vaurien_args)
            )
        ),
        Target::Haproxy => format!(
            "haproxy: {} -db -f haproxy.cfg  # haproxy.cfg: {}",
            shown(&env.haproxy, "haproxy"),
            one_line_config(&haproxy_config(env.haproxy_maxconn, 0, 0))
                .replace("bind 127.0.0.1:0", "bind 127.0.0.1:PORT")
                .replace("s1 127.0.0.1:0", "s1 127.0.0.1:BACKEND")
        ),
    }
}

/// An haproxy config on one line: "section: item, item; section: ...".
fn one_line_config(cfg: &str) -> String {
    let mut out = String::new();
    for line in cfg.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(char::is_whitespace) {
            if !out.ends_with(": ") {
                out.push_str(", ");
            }
            out.push_str(line.trim());
        } else {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(line.trim());
            out.push_str(": ");
        }
    }
    out
}

pub fn describe_nginx(env: &Env) -> String {
    let nginx = shown(&env.nginx, "nginx");
    format!(
        "backend: {}  # nginx.conf: {}",
        shell_join(&nginx, &nginx_args(env, "TMPDIR/nginx.conf"))
            .replace(&env.tmp.path.display().to_string(), "TMPDIR"),
        nginx_config(env, 0, "N")
            .replace(&env.tmp.path.display().to_string(), "TMPDIR")
            .replace("127.0.0.1:0", "127.0.0.1:BACKEND")
            .replace('\n', " ")
            .trim_end()
    )
}

pub fn describe_redis(env: &Env) -> String {
    let redis = shown(&env.redis_server, "redis-server");
    format!(
        "backend: {} (a fresh one per measurement)",
        shell_join(&redis, &redis_args(0)).replace("--port 0", "--port BACKEND")
    )
}
