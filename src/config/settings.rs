//! The proxy's own options (the `[vaurien]` keys, which are also the long flags), and the
//! typed [`Settings`] read from them.

use std::time::Duration;

use crate::net::HostPort;
use crate::opts::{OptSpec, Value, Values};

/// The proxy's options, in `--help` order. The INI `[vaurien]` section takes the same names.
pub const GLOBAL_OPTIONS: &[OptSpec] = &[
    OptSpec::str("proxy", "localhost:8000", "", "address to listen on, HOST:PORT; port 0 picks a free port")
        .aliased(&["local"]),
    OptSpec::str("backend", "localhost:80", "", "the real server, HOST:PORT; resolved at each new connection")
        .aliased(&["distant"]),
    OptSpec::str("protocol", "tcp", "", "protocol of the traffic"),
    OptSpec::str("behavior", "100:dummy", "", "behavior mix PCT:NAME[,PCT:NAME...]; the rest goes to dummy"),
    OptSpec::str("config", "", "", "read options from this INI file; the command line wins over it"),
    OptSpec::bool("http", "false", "start the HTTP control API"),
    OptSpec::str("http_host", "localhost", "", "control API address"),
    OptSpec::int("http_port", "8080", "", "control API port; 0 picks a free port"),
    OptSpec::str("http_token", "", "", "require 'Authorization: Bearer TOKEN' on the control API"),
    OptSpec::bool(
        "stay_connected",
        "false",
        "keep the client connection open when a behavior would close it, and never close it for being idle",
    ),
    OptSpec::float(
        "timeout",
        "30",
        "seconds",
        "backend connect timeout; a connection idle both ways this long is closed",
    ),
    OptSpec::int(
        "bufsize",
        "65536",
        "bytes",
        "read size of a byte stream; a connection holds its buffers only while data flows (framed protocols read at most 16 KiB at a time)",
    ),
    OptSpec::int("pool_max_size", "100", "connections", "idle backend connections kept for reuse"),
    OptSpec::float("pool_timeout", "30", "seconds", "a pooled backend connection older than this is not reused"),
    OptSpec::int("backlog", "8192", "connections", "listen backlog"),
    OptSpec::bool("sync", "false", "accepted for compatibility with the original; has no effect"),
    OptSpec::str("log_level", "info", "", "critical, error, warning, info or debug"),
    OptSpec::str("log_output", "-", "", "log file, appended to; '-' is standard error"),
    OptSpec::str("pid_file", "", "", "write the process id to this file at start; removed at exit"),
    OptSpec::bool("statsd", "false", "send counters to statsd over UDP"),
    OptSpec::str("statsd_host", "localhost", "", "statsd host"),
    OptSpec::int("statsd_port", "8125", "", "statsd port"),
    OptSpec::str("statsd_prefix", "vaurien", "", "prefix of the statsd counter names"),
    OptSpec::float("statsd_sample_rate", "1.0", "", "fraction of counter updates sent to statsd"),
    OptSpec::int("seed", "", "", "seed every random draw, so the same calls get the same faults"),
    OptSpec::int("max_connections", "1024", "connections", "client connections served at once; more wait in the backlog"),
];

/// The proxy's settings, typed and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub proxy: HostPort,
    /// Backend address.
    pub backend: HostPort,
    /// Protocol name.
    pub protocol: String,
    /// Behavior mix spec.
    pub behavior: String,
    /// Start the control API.
    pub http: bool,
    /// Control API host.
    pub http_host: String,
    /// Control API port.
    pub http_port: u16,
    /// Bearer token of the control API.
    pub http_token: Option<String>,
    /// Keep client connections open when a behavior would close them; no idle timeout.
    pub stay_connected: bool,
    /// Connect timeout and idle timeout.
    pub timeout: Duration,
    /// Read buffer size in bytes.
    pub bufsize: usize,
    /// Idle backend connections kept for reuse.
    pub pool_max_size: usize,
    /// Age past which a pooled backend connection is not reused.
    pub pool_timeout: Duration,
    /// Listen backlog.
    pub backlog: i32,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Log file, `-` for standard error.
    pub log_output: String,
    /// File to write the process id to.
    pub pid_file: Option<String>,
    /// Send statsd counters.
    pub statsd: bool,
    /// Statsd host.
    pub statsd_host: String,
    /// Statsd port.
    pub statsd_port: u16,
    /// Statsd name prefix.
    pub statsd_prefix: String,
    /// Statsd sample rate, 0..=1.
    pub statsd_sample_rate: f64,
    /// Seed of every random draw.
    pub seed: Option<u64>,
    /// Client connections served at once.
    pub max_connections: usize,
}

/// A setting that failed its check: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The option's name (underscores).
    pub key: &'static str,
    /// What is wrong with it.
    pub why: String,
}

pub(crate) fn invalid(key: &'static str, why: impl Into<String>) -> Invalid {
    Invalid {
        key,
        why: why.into(),
    }
}

/// The names `--log-level` takes (`warn` and `trace` are accepted too).
pub const LOG_LEVELS: [&str; 5] = ["critical", "error", "warning", "info", "debug"];

/// Reads a log level name (any case; `warn` and `critical` accepted).
pub fn parse_log_level(text: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter as L;
    Some(match text.to_ascii_lowercase().as_str() {
        "critical" | "error" => L::Error,
        "warning" | "warn" => L::Warn,
        "info" => L::Info,
        "debug" => L::Debug,
        "trace" => L::Trace,
        _ => return None,
    })
}

fn seconds(v: &Values, key: &'static str) -> Result<Duration, Invalid> {
    let s = v.float(key);
    if !(0.0..=crate::opts::MAX_SECONDS).contains(&s) {
        return Err(invalid(key, format!("{s} is not a duration in seconds")));
    }
    Ok(Duration::from_secs_f64(s))
}

fn port(v: &Values, key: &'static str) -> Result<u16, Invalid> {
    u16::try_from(v.int(key))
        .map_err(|_| invalid(key, format!("{} is not a port number", v.int(key))))
}

fn ranged(v: &Values, key: &'static str, min: i64, max: i64) -> Result<i64, Invalid> {
    let n = v.int(key);
    if n < min || n > max {
        return Err(invalid(key, format!("{n} is out of range {min}..{max}")));
    }
    Ok(n)
}

impl Settings {
    /// Types and checks the global values (everything but the mix and protocol names, which
    /// need the registry).
    pub fn from_values(v: &Values) -> Result<Settings, Invalid> {
        let sample = v.float("statsd_sample_rate");
        if !(0.0..=1.0).contains(&sample) {
            return Err(invalid(
                "statsd_sample_rate",
                format!("{sample} is not between 0 and 1"),
            ));
        }
        Ok(Settings {
            proxy: HostPort::parse(v.str("proxy")).map_err(|e| invalid("proxy", e))?,
            backend: HostPort::parse(v.str("backend")).map_err(|e| invalid("backend", e))?,
            protocol: v.str("protocol").to_string(),
            behavior: v.str("behavior").to_string(),
            http: v.bool("http"),
            http_host: v.str("http_host").to_string(),
            http_port: port(v, "http_port")?,
            http_token: v
                .str_opt("http_token")
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            stay_connected: v.bool("stay_connected"),
            timeout: seconds(v, "timeout")?,
            bufsize: ranged(v, "bufsize", 1, 16 << 20)? as usize,
            pool_max_size: ranged(v, "pool_max_size", 0, 1 << 20)? as usize,
            pool_timeout: seconds(v, "pool_timeout")?,
            backlog: ranged(v, "backlog", 1, i32::MAX as i64)? as i32,
            log_level: parse_log_level(v.str("log_level")).ok_or_else(|| {
                invalid(
                    "log_level",
                    format!(
                        "'{}' is not one of {}",
                        v.str("log_level"),
                        LOG_LEVELS.join(", ")
                    ),
                )
            })?,
            log_output: v.str("log_output").to_string(),
            pid_file: v
                .str_opt("pid_file")
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            statsd: v.bool("statsd"),
            statsd_host: v.str("statsd_host").to_string(),
            statsd_port: port(v, "statsd_port")?,
            statsd_prefix: v.str("statsd_prefix").to_string(),
            statsd_sample_rate: sample,
            seed: v.int_opt("seed").map(|s| s as u64),
            max_connections: ranged(v, "max_connections", 1, 1 << 20)? as usize,
        })
    }
}

/// What one source (the command line or a file) sets, before it is merged.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Proxy options by name.
    pub globals: Vec<(&'static str, Value)>,
    /// Behavior options: (behavior, option, value).
    pub behaviors: Vec<(String, String, Value)>,
    /// Protocol options: (protocol, option, value).
    pub protocols: Vec<(String, String, Value)>,
    /// New named behaviors: (name, base).
    pub derived: Vec<(String, String)>,
    /// Toxics, in the order given.
    pub toxics: Vec<ToxicDecl>,
    /// More proxies (`[proxy:NAME]`), by name.
    pub proxies: Vec<ProxyDecl>,
}

/// A proxy besides the command line's, as a configuration file declares it
/// (`[proxy:NAME]`).
#[derive(Debug, Clone, Default)]
pub struct ProxyDecl {
    /// Its name.
    pub name: String,
    /// Where it listens (`listen`; default 127.0.0.1:0).
    pub listen: String,
    /// Where it forwards (`backend`, alias `upstream`).
    pub backend: String,
    /// Its protocol, when given (default tcp).
    pub protocol: Option<String>,
    /// Its mix, when given (default dummy).
    pub behavior: Option<String>,
    /// Whether it starts up (`enabled`, default true).
    pub enabled: bool,
}

/// A toxic as a configuration file declares it (`[toxic:PROXY:NAME]`), built once the
/// behaviors are known.
#[derive(Debug, Clone, Default)]
pub struct ToxicDecl {
    /// The proxy it belongs to.
    pub proxy: String,
    /// Its name.
    pub name: String,
    /// Its type: a behavior name.
    pub kind: String,
    /// `upstream`, `downstream` or `both`, when given.
    pub stream: Option<String>,
    /// The share of connections it acts on, when given.
    pub toxicity: Option<f64>,
    /// Its attributes, as text.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}
