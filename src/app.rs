//! The stock command line run: parse, log, signals, the pid file, the ready line, the
//! start-up log, until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;

use crate::config::{self, cli};
use crate::error::Error;
use crate::instance::Vaurien;
use crate::logging;
use crate::opts::Values;
use crate::registry::Registry;

/// Runs the `vaurien` command line `args` (without the program name) with `registry`, until
/// SIGINT or SIGTERM; returns the exit status.
pub fn main_with(registry: Registry, args: &[String]) -> i32 {
    let result = match args.split_first() {
        // Drop-in mode: Toxiproxy's flags (the binary run as `toxiproxy-server` says so).
        Some((first, rest)) if first == "--toxiproxy" => crate::dropin::run(registry, rest),
        _ => run(registry, args),
    };
    match result {
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
        cli::Command::Completions(text) => {
            print!("{text}");
            return Ok(());
        }
        cli::Command::Run(config) => config,
    };
    let s = &config.settings();
    logging::init(s.log_level, &s.log_output)?;
    crate::sys::malloc::give_large_frees_back_to_the_system();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| Error::Start(format!("cannot handle signals: {e}")))?;
    // The pid file exists before the proxy answers, so whoever waited for it can stop it.
    if let Some(path) = &s.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| Error::Start(format!("cannot write pid file {path}: {e}")))?;
    }
    let proxy = Vaurien::start(&config).inspect_err(|_| {
        if let Some(path) = &s.pid_file {
            let _ = std::fs::remove_file(path);
        }
    })?;
    log_settings(&config, &proxy);
    // The machine-readable line a script waits for (a port 0 is known only now).
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", proxy.ready_line());
    let _ = out.flush();
    drop(out);
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig} received, stopping");
    }
    proxy.stop();
    if let Some(path) = &s.pid_file {
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped");
    Ok(())
}

fn log_settings(config: &config::Config, proxy: &Vaurien) {
    let s = &config.settings();
    let addr = proxy.proxy_addr();
    if let Some(http) = proxy.http_addr() {
        log::info!("control API on http://{http}");
    }
    log::info!(
        "vaurien {} listening on {addr}, backend {}, protocol {}",
        env!("CARGO_PKG_VERSION"),
        s.backend,
        s.protocol
    );
    log::info!("behavior {}", config.mix());
    let seed = s.seed.map_or("none".to_string(), |x| x.to_string());
    log::info!(
        "timeout {:?}, bufsize {}, max connections {}, stay connected {}, seed {seed}",
        s.timeout,
        s.bufsize,
        s.max_connections,
        s.stay_connected
    );
    log_explicit("behavior", config.behavior_options());
    log_explicit("protocol", config.protocol_options());
}

/// Logs the options that were set (not left at their defaults) of each `kind` named.
fn log_explicit(kind: &str, options: &BTreeMap<String, Values>) {
    for (name, values) in options {
        let set: Vec<String> = values
            .iter()
            .filter(|(k, _)| values.is_explicit(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !set.is_empty() {
            log::info!("{kind} {name}: {}", set.join(", "));
        }
    }
}
