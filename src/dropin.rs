//! Drop-in mode: invoked as `toxiproxy-server` (a symlink) or `vaurien --toxiproxy`, the
//! binary takes Toxiproxy's flags (Go's syntax: `-flag value`, `-flag=value`, one dash or
//! two) and its JSON config file, and starts with only the proxies of that file, so that
//! compose files, CI services and testcontainers that run Toxiproxy run vaurien unchanged.

use std::io::Write;
use std::sync::Arc;

use crate::config::cli;
use crate::control::toxiproxy::TOXIPROXY_VERSION;
use crate::control::{route, Control, ControlState, ProxyDirectory};
use crate::error::Error;
use crate::hub::{Hub, Live};
use crate::net::HostPort;
use crate::proxies::Proxies;
use crate::registry::Registry;
use crate::stats::Stats;

/// Toxiproxy's server flags, as given.
#[derive(Debug, PartialEq)]
struct Flags {
    host: String,
    port: u16,
    config: Option<String>,
    seed: Option<u64>,
    version: bool,
}

/// Reads Toxiproxy's flags with Go's rules; an unknown one is refused as Go's flag package
/// words it.
fn parse(args: &[String]) -> Result<Flags, Error> {
    let mut f = Flags {
        host: "localhost".to_string(),
        port: 8474,
        config: None,
        seed: None,
        version: false,
    };
    let usage = |m: String| Error::Usage(m);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(usage(format!("unexpected argument '{arg}'")));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let value = |it: &mut std::slice::Iter<'_, String>| -> Result<String, Error> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("flag needs an argument: -{name}"))),
            }
        };
        let boolean = |inline: &Option<String>| -> Result<bool, Error> {
            match inline.as_deref() {
                None => Ok(true),
                Some(v) => crate::opts::parse_bool(v)
                    .ok_or_else(|| usage(format!("invalid boolean value \"{v}\" for -{name}"))),
            }
        };
        match name {
            "host" => f.host = value(&mut it)?,
            "port" => {
                let v = value(&mut it)?;
                f.port = v
                    .parse()
                    .map_err(|_| usage(format!("invalid value \"{v}\" for flag -port")))?;
            }
            "config" => f.config = Some(value(&mut it)?),
            "seed" => {
                let v = value(&mut it)?;
                let seed: i64 = v
                    .parse()
                    .map_err(|_| usage(format!("invalid value \"{v}\" for flag -seed")))?;
                f.seed = Some(seed as u64);
            }
            "version" => f.version = boolean(&inline)?,
            // Accepted for compatibility: vaurien's counters are always on (`/stats`).
            "proxy-metrics" | "runtime-metrics" => {
                boolean(&inline)?;
            }
            "h" | "help" => {
                return Err(usage(
                    "Toxiproxy's flags: -host, -port, -config, -seed, -proxy-metrics, \
                     -runtime-metrics, -version"
                        .to_string(),
                ))
            }
            _ => return Err(usage(format!("flag provided but not defined: -{name}"))),
        }
    }
    Ok(f)
}

/// Runs drop-in mode with Toxiproxy's `args` until SIGINT or SIGTERM.
pub(crate) fn run(registry: Registry, args: &[String]) -> Result<(), Error> {
    let flags = parse(args)?;
    if flags.version {
        println!("toxiproxy-server version {TOXIPROXY_VERSION}");
        println!("(vaurien {} in drop-in mode)", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
    let level = match level.to_ascii_lowercase().as_str() {
        "warn" => "warning".to_string(),
        "fatal" | "panic" => "critical".to_string(),
        other => other.to_string(),
    };
    let seed = flags.seed.map(|s| s.to_string());
    let mut base_args = vec!["--log-level", level.as_str()];
    if let Some(s) = &seed {
        base_args.extend(["--seed", s.as_str()]);
    }
    let base = cli::config_from_args(&base_args, registry.clone())?;
    crate::logging::init(base.settings().log_level, &base.settings().log_output)?;
    crate::sys::malloc::give_large_frees_back_to_the_system();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| Error::Start(format!("cannot handle signals: {e}")))?;
    let proxies = Arc::new(Proxies::new(base.clone()));
    // The original routes have no proxy of their own here: Toxiproxy's routes drive them all.
    let placeholder = Hub::new(Live {
        mix: base.mix().clone(),
        backend: base.settings().backend.clone(),
        toxics: Default::default(),
    });
    let state = ControlState {
        hub: placeholder,
        registry,
        base_options: base.behavior_options().clone(),
        stats: Arc::new(Stats::default()),
        token: None,
        proxy: None,
        proxies: Some(proxies.clone() as Arc<dyn ProxyDirectory>),
    };
    if let Some(file) = &flags.config {
        let text = std::fs::read(file)
            .map_err(|e| Error::Config(format!("cannot read config file {file}: {e}")))?;
        let answer = route(&state, &tiny_http::Method::Post, "/populate", &text);
        if answer.status != 201 {
            proxies.stop_all();
            let why = answer.body["error"]
                .as_str()
                .unwrap_or("refused")
                .to_string();
            return Err(Error::Config(format!("{file}: {why}")));
        }
        log::info!(
            "populated {} proxies from {file}",
            answer.body["proxies"].as_array().map_or(0, Vec::len)
        );
    }
    let at = HostPort {
        host: flags.host.clone(),
        port: flags.port,
    };
    let mut control = match Control::start(&at, state) {
        Ok(c) => c,
        Err(e) => {
            proxies.stop_all();
            return Err(e);
        }
    };
    log::info!(
        "toxiproxy drop-in: API on {}, Toxiproxy {TOXIPROXY_VERSION}",
        control.addr()
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "vaurien listening http={}", control.addr());
    let _ = out.flush();
    drop(out);
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig} received, stopping");
    }
    control.stop();
    proxies.stop_all();
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_flag_syntax_in_every_form() {
        let f = parse(&args(&[
            "-host=0.0.0.0",
            "--port",
            "18474",
            "-config",
            "/tmp/t.json",
            "--seed=7",
            "-proxy-metrics",
            "-runtime-metrics=false",
        ]))
        .unwrap();
        assert_eq!(
            f,
            Flags {
                host: "0.0.0.0".into(),
                port: 18474,
                config: Some("/tmp/t.json".into()),
                seed: Some(7),
                version: false,
            }
        );
        assert!(parse(&args(&["-version"])).unwrap().version);
        let e = parse(&args(&["-nope"])).unwrap_err().to_string();
        assert!(e.contains("flag provided but not defined: -nope"), "{e}");
        let e = parse(&args(&["-port"])).unwrap_err().to_string();
        assert!(e.contains("flag needs an argument: -port"), "{e}");
        let e = parse(&args(&["-port=x"])).unwrap_err().to_string();
        assert!(e.contains("invalid value \"x\" for flag -port"), "{e}");
    }
}
