//! What a protocol is to the proxy: a [`Protocol`] instance built from its option values by
//! its [`ProtocolSpec`], with the options every protocol has; the byte-stream protocols and
//! the framed ones built from a session type.

use std::fmt;
use std::sync::Arc;

use super::framing::Framing;
use crate::net::HostPort;
use crate::opts::{BadOption, OptSpec, Values};

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
    /// A framing session for one connection to `backend`; `None` for a byte stream, where
    /// every chunk is a call.
    fn framing(&self, _backend: &HostPort) -> Option<Box<dyn Framing>> {
        None
    }
}

/// Builds a protocol instance from its option values.
pub type BuildProtocol = fn(&Values) -> Result<Arc<dyn Protocol>, BadOption>;

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

/// A framed protocol whose sessions start from `S::default()` and need nothing from the
/// protocol's options beyond the shared ones (redis, memcache, smtp).
pub struct Sessions<S> {
    name: &'static str,
    options: StreamOptions,
    session: std::marker::PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for Sessions<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl<S: Framing + Default + 'static> Sessions<S> {
    /// Builds protocol `name` from its values (see [`StreamOptions::from_values`]).
    pub fn build(
        name: &'static str,
        v: &Values,
        force_keep_alive: bool,
        reusable: bool,
    ) -> Result<Arc<dyn Protocol>, BadOption> {
        let options = StreamOptions::from_values(name, v, force_keep_alive, reusable)?;
        Ok(Arc::new(Sessions::<S> {
            name,
            options,
            session: std::marker::PhantomData,
        }))
    }
}

impl<S: Framing + Default + 'static> Protocol for Sessions<S> {
    fn name(&self) -> &str {
        self.name
    }
    fn stream_options(&self) -> &StreamOptions {
        &self.options
    }
    fn framing(&self, _backend: &HostPort) -> Option<Box<dyn Framing>> {
        Some(Box::new(S::default()))
    }
}

/// The options of `tcp`, shared by every protocol.
pub const TCP_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "buffer",
        "65536",
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

impl StreamOptions {
    /// Reads the options every protocol has; `reusable`: the framing makes backend
    /// connection reuse safe (http, redis, memcache), else `reuse_socket` is refused with a
    /// warning.
    pub fn from_values(
        name: &str,
        v: &Values,
        force_keep_alive: bool,
        reusable: bool,
    ) -> Result<Self, BadOption> {
        let buffer = if v.is_explicit("buffer") {
            let b = v.int("buffer");
            if !(1..=16 << 20).contains(&b) {
                return Err(BadOption::new(
                    "buffer",
                    format!("must be between 1 and {} bytes (got {b})", 16 << 20),
                ));
            }
            Some(b as usize)
        } else {
            None
        };
        let reuse_socket = v.bool("reuse_socket");
        if reuse_socket && !reusable {
            log::warn!("{name}: reuse_socket has no effect; backend connections of a stream protocol are never reused");
        }
        Ok(StreamOptions {
            buffer,
            keep_alive: force_keep_alive || v.bool("keep_alive"),
            reuse_socket: reuse_socket && reusable,
        })
    }
}

impl Stream {
    /// Builds the stream protocol `name` from its values; `force_keep_alive` for session
    /// protocols that stay up for a whole session.
    pub fn from_values(
        name: &'static str,
        v: &Values,
        force_keep_alive: bool,
    ) -> Result<Self, BadOption> {
        Ok(Stream {
            name,
            options: StreamOptions::from_values(name, v, force_keep_alive, false)?,
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
