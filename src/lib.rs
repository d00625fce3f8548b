//! Vaurien: a chaos TCP proxy.
//!
//! Vaurien sits between an application and a backend and makes the calls between them fail on
//! demand: delays, errors, hangs, closed connections, in a percentage mix, per protocol,
//! driven live over HTTP.
//!
//! The crate is also a library, so a Rust test can start a proxy in-process on port 0, drive
//! it through its control API, and stop it (also on drop):
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! // A backend that answers "pong" to every connection.
//! let backend = TcpListener::bind("127.0.0.1:0").unwrap();
//! let backend_addr = backend.local_addr().unwrap().to_string();
//! std::thread::spawn(move || {
//!     for mut conn in backend.incoming().flatten() {
//!         let mut buf = [0u8; 4];
//!         if conn.read_exact(&mut buf).is_ok() {
//!             let _ = conn.write_all(b"pong");
//!         }
//!     }
//! });
//!
//! let config = vaurien::cli::config_from_args(
//!     &["--proxy", "127.0.0.1:0", "--backend", &backend_addr, "--http", "--http-host", "127.0.0.1", "--http-port", "0"],
//!     vaurien::Registry::builtin(),
//! )
//! .unwrap();
//! let proxy = vaurien::Vaurien::start(&config).unwrap();
//! let client = proxy.client().unwrap();
//!
//! let ping = |addr| -> std::io::Result<Vec<u8>> {
//!     let mut s = TcpStream::connect(addr)?;
//!     s.write_all(b"ping")?;
//!     let mut answer = Vec::new();
//!     s.read_to_end(&mut answer)?;
//!     Ok(answer)
//! };
//! {
//!     let _blackout = client.with_behavior("blackout", &Default::default()).unwrap();
//!     assert!(ping(proxy.proxy_addr()).map_or(true, |a| a.is_empty()), "blackout closes at once");
//! } // the guard puts the previous behavior back
//! let mut s = TcpStream::connect(proxy.proxy_addr()).unwrap();
//! s.write_all(b"ping").unwrap();
//! let mut pong = [0u8; 4];
//! s.read_exact(&mut pong).unwrap();
//! assert_eq!(&pong, b"pong");
//! proxy.stop();
//! ```
//!
//! [`cli::parse`] reads a command line into a [`config::Config`]; [`Vaurien`] runs it;
//! [`Registry`] takes custom behaviors and protocols, and [`main_with`] runs the stock command
//! line with them.

#![warn(missing_docs)]

pub mod behavior;
pub mod client;
pub mod config;
pub mod control;
mod error;
pub mod hub;
mod instance;
mod logging;
pub mod mix;
pub mod net;
pub mod opts;
pub mod protocol;
pub(crate) mod proxy;
mod registry;
pub mod stats;
pub(crate) mod sys;

use std::io::Write;

pub use client::Client;
pub use config::cli;
pub use error::Error;
pub use instance::Vaurien;
pub use registry::Registry;

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
    give_large_frees_back_to_the_system();
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

/// Makes glibc serve every allocation of 128 KiB or more with its own mapping, returned to
/// the system when freed.
///
/// By default glibc raises that threshold each time such a block is freed, so later large
/// blocks come from the heap of the thread's arena and stay in the process once freed; with a
/// thread per connection there are many arenas. A session that read one large message (an
/// MSET of 60,000 keys) then gave its buffer back still cost its arena that memory: 20 idle
/// redis sessions kept 30 MB. Nothing on the data path allocates that much (stream buffers
/// are 64 KiB and come from a stock), so only large messages pay for a mapping.
fn give_large_frees_back_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any connection.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn log_settings(config: &config::Config, proxy: &Vaurien) {
    let s = &config.settings;
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
