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
//! [`cli::parse`] reads a command line into a [`Config`]; [`Vaurien`] runs it;
//! [`Registry`] takes custom behaviors and protocols, and [`main_with`] runs the stock command
//! line with them.

#![warn(missing_docs)]

mod app;
pub mod behavior;
pub mod client;
pub mod config;
pub mod control;
mod dropin;
mod error;
pub mod hub;
mod instance;
mod logging;
pub mod mix;
pub mod net;
pub mod opts;
pub mod protocol;
pub(crate) mod proxies;
pub(crate) mod proxy;
mod registry;
pub mod stats;
pub(crate) mod sys;
pub(crate) mod toxic;

pub use app::main_with;
pub use client::Client;
pub use config::cli;
pub use config::Config;
pub use error::Error;
pub use instance::Vaurien;
pub use registry::Registry;
