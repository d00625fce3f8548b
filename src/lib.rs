//! Vaurien: a chaos TCP proxy.
//!
//! Vaurien sits between an application and a backend and makes the calls between them fail on
//! demand: delays, errors, hangs, closed connections, in a percentage mix, per protocol.
//!
//! The crate is also a library: [`cli::parse`] reads a command line into a
//! [`settings::Config`], [`server::Proxy`] binds and runs it, and [`registry::Registry`] takes
//! custom behaviors and protocols before [`main_with`] runs the stock command line.

#![warn(missing_docs)]

pub mod behavior;
pub mod cli;
pub mod config;
pub mod doc;
pub mod error;
pub mod hub;
pub mod logging;
pub mod mix;
pub mod net;
pub mod opts;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod settings;
pub mod stats;
pub mod workers;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use error::Error;
pub use registry::Registry;

/// How long a stopping proxy waits for its connections to finish.
const DRAIN: Duration = Duration::from_millis(500);

/// Runs the `vaurien` command line `args` (without the program name) with `registry`, until
/// SIGINT or SIGTERM; returns the exit status.
pub fn main_with(registry: Registry, args: &[String]) -> i32 {
    match run(registry, args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vaurien: {e}");
            e.exit_code()
        }
    }
}

fn run(registry: Registry, args: &[String]) -> Result<(), Error> {
    let config = match cli::parse(args, registry)? {
        cli::Command::Help(text) => {
            print!("{text}");
            return Ok(());
        }
        cli::Command::Version => {
            println!("vaurien {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        cli::Command::Run(config) => config,
    };
    let s = &config.settings;
    logging::init(s.log_level, &s.log_output)?;
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| Error::Start(format!("cannot handle signals: {e}")))?;
    let proxy = server::Proxy::bind(&config)?;
    let addr = proxy
        .local_addr()
        .map_err(|e| Error::Start(e.to_string()))?;
    log_settings(&config, addr);
    if s.http {
        log::warn!(
            "the control API (--http) is not available in this build yet; the option is ignored"
        );
    }
    if s.statsd {
        log::warn!("statsd (--statsd) is not available in this build yet; the option is ignored");
    }
    // The machine-readable line a script waits for (the port is known only now when it was 0).
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "vaurien listening proxy={addr}");
    let _ = out.flush();
    drop(out);
    let stopper = proxy.stop_handle();
    let signals_handle = signals.handle();
    let watcher = std::thread::Builder::new()
        .name("vaurien-signals".into())
        .spawn(move || {
            let mut signals = signals;
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig} received, stopping");
                stopper.stop();
            }
        })
        .map_err(|e| Error::Start(format!("cannot start the signal thread: {e}")))?;
    proxy.run();
    let stats = proxy.stats();
    let deadline = Instant::now() + DRAIN;
    while stats.connections_open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    signals_handle.close();
    let _ = watcher.join();
    log::info!("stopped");
    Ok(())
}

fn log_settings(config: &settings::Config, addr: std::net::SocketAddr) {
    let s = &config.settings;
    log::info!(
        "vaurien {} listening on {addr}, backend {}, protocol {}",
        env!("CARGO_PKG_VERSION"),
        s.backend,
        s.protocol
    );
    if let Ok(mix) = config.mix() {
        log::info!("behavior {mix}");
    }
    let seed = s.seed.map_or("none".to_string(), |x| x.to_string());
    log::info!(
        "timeout {:?}, bufsize {}, max connections {}, stay connected {}, seed {seed}",
        s.timeout,
        s.bufsize,
        s.max_connections,
        s.stay_connected
    );
    for (name, values) in &config.behavior_options {
        let set: Vec<String> = values
            .iter()
            .filter(|(k, _)| values.is_explicit(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !set.is_empty() {
            log::info!("behavior {name}: {}", set.join(", "));
        }
    }
    for (name, values) in &config.protocol_options {
        let set: Vec<String> = values
            .iter()
            .filter(|(k, _)| values.is_explicit(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !set.is_empty() {
            log::info!("protocol {name}: {}", set.join(", "));
        }
    }
}
