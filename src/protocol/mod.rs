//! Protocols: how the proxy cuts the traffic of a connection into calls.
//!
//! Stream protocols (`tcp`, `mysql`, `smtp` for now) forward a full-duplex byte stream and
//! treat every chunk read from one side as a call; see [`stream`]. Framed protocols plug in
//! beside them with their own read loop.

use std::fmt;
use std::sync::Arc;

use crate::opts::{OptSpec, Values};

pub mod stream;

/// Options every protocol has, read from its declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// Read buffer size when set with the protocol's `buffer` option; `None`: `--bufsize`.
    pub buffer: Option<usize>,
    /// TCP keep-alive probes on both sockets.
    pub keep_alive: bool,
    /// Return idle backend connections to the pool (only where framing makes it safe).
    pub reuse_socket: bool,
}

/// A protocol instance, built from its option values at start.
pub trait Protocol: Send + Sync + fmt::Debug {
    /// Its name.
    fn name(&self) -> &str;
    /// The options shared by every protocol.
    fn stream_options(&self) -> &StreamOptions;
}

/// Builds a protocol instance from its option values.
pub type BuildProtocol = fn(&Values) -> Result<Arc<dyn Protocol>, String>;

/// The declaration of a protocol: its name, options and constructor.
#[derive(Clone)]
pub struct ProtocolSpec {
    /// The name given to `--protocol`.
    pub name: &'static str,
    /// One line saying what it frames.
    pub summary: &'static str,
    /// Its options.
    pub options: &'static [OptSpec],
    /// Its constructor.
    pub build: BuildProtocol,
}

impl fmt::Debug for ProtocolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The options of `tcp`, shared by every protocol.
pub const TCP_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "buffer",
        "8192",
        "bytes",
        "read buffer size; overrides --bufsize when given",
    ),
    OptSpec::bool(
        "keep_alive",
        "false",
        "turn on TCP keep-alive probes on both sockets",
    ),
    OptSpec::bool(
        "reuse_socket",
        "false",
        "return idle backend connections to the pool (http, redis and memcache only)",
    ),
];

/// A byte-stream protocol; `mysql` and `smtp` always keep the sockets alive.
#[derive(Debug)]
pub struct Stream {
    name: &'static str,
    options: StreamOptions,
}

impl Stream {
    /// Builds the stream protocol `name` from its values; `force_keep_alive` for session
    /// protocols that stay up for a whole session.
    pub fn from_values(
        name: &'static str,
        v: &Values,
        force_keep_alive: bool,
    ) -> Result<Self, String> {
        let buffer = if v.is_explicit("buffer") {
            let b = v.int("buffer");
            if !(1..=16 << 20).contains(&b) {
                return Err(format!(
                    "buffer must be between 1 and {} bytes (got {b})",
                    16 << 20
                ));
            }
            Some(b as usize)
        } else {
            None
        };
        if v.bool("reuse_socket") {
            log::warn!("{name}: reuse_socket has no effect on a stream protocol; backend connections are never reused");
        }
        Ok(Stream {
            name,
            options: StreamOptions {
                buffer,
                keep_alive: force_keep_alive || v.bool("keep_alive"),
                reuse_socket: false,
            },
        })
    }
}

impl Protocol for Stream {
    fn name(&self) -> &str {
        self.name
    }
    fn stream_options(&self) -> &StreamOptions {
        &self.options
    }
}

/// The built-in protocols, in documentation order.
pub fn builtins() -> Vec<ProtocolSpec> {
    vec![
        ProtocolSpec {
            name: "tcp",
            summary: "a full-duplex byte stream; every chunk read from one side is a call",
            options: TCP_OPTIONS,
            build: |v| {
                Stream::from_values("tcp", v, false).map(|p| Arc::new(p) as Arc<dyn Protocol>)
            },
        },
        ProtocolSpec {
            name: "mysql",
            summary: "MySQL/MariaDB: a stream where the server speaks first; keep-alive always on",
            options: TCP_OPTIONS,
            build: |v| {
                Stream::from_values("mysql", v, true).map(|p| Arc::new(p) as Arc<dyn Protocol>)
            },
        },
        ProtocolSpec {
            name: "smtp",
            summary: "SMTP: a stream where the server speaks first; keep-alive always on",
            options: TCP_OPTIONS,
            build: |v| {
                Stream::from_values("smtp", v, true).map(|p| Arc::new(p) as Arc<dyn Protocol>)
            },
        },
    ]
}
