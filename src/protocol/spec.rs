//! What a protocol is to the proxy: a [`Protocol`] instance built from its option values by
//! its [`ProtocolSpec`], with the options every protocol has; the byte-stream protocols and
//! the framed ones built from a session type.

use std::fmt;
use std::sync::Arc;

use super::framing::Framing;
use crate::net::HostPort;
use crate::opts::{BadOption, OptSpec, Values};

/// Whether a protocol's sockets have TCP keep-alive probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// As its `keep_alive` option says.
    Optional,
    /// Always: the protocol holds a session open for long (mysql, smtp).
    Always,
}

/// Whether a protocol's backend connections may be handed to the next client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendReuse {
    /// The framing knows when a connection is between calls (http, redis, memcache):
    /// `reuse_socket` is honored.
    Safe,
    /// Never: `reuse_socket` is refused with a warning.
    Unsafe,
}

/// The options of `tcp`, which every protocol has, read from their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// Read buffer size when set with the protocol's `buffer` option; `None`: `--bufsize`.
    pub buffer: Option<usize>,
    /// TCP keep-alive probes on both sockets.
    pub keep_alive: bool,
    /// Return idle backend connections to the pool (only where framing makes it safe).
    pub reuse_socket: bool,
}

/// A protocol instance, built from its option values at start.
pub trait Protocol: Send + Sync + fmt::Debug {
    /// The name `--protocol` gives it, for logs and statsd keys.
    fn name(&self) -> &str;
    /// The options shared by every protocol.
    fn tcp_options(&self) -> &TcpOptions;
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
    /// The options it declares: its flags, INI keys and their documentation come from them.
    pub options: &'static [OptSpec],
    /// Builds an instance from its option values, or names the option it refuses.
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
pub struct FramedProtocol<S> {
    name: &'static str,
    options: TcpOptions,
    session: std::marker::PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for FramedProtocol<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedProtocol")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl<S: Framing + Default + 'static> FramedProtocol<S> {
    /// Builds protocol `name` from its values (see [`TcpOptions::from_values`]).
    pub fn build(
        name: &'static str,
        v: &Values,
        keep_alive: KeepAlive,
        reuse: BackendReuse,
    ) -> Result<Arc<dyn Protocol>, BadOption> {
        let options = TcpOptions::from_values(name, v, keep_alive, reuse)?;
        Ok(Arc::new(FramedProtocol::<S> {
            name,
            options,
            session: std::marker::PhantomData,
        }))
    }
}

impl<S: Framing + Default + 'static> Protocol for FramedProtocol<S> {
    fn name(&self) -> &str {
        self.name
    }
    fn tcp_options(&self) -> &TcpOptions {
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
pub struct ByteStream {
    name: &'static str,
    options: TcpOptions,
}

impl TcpOptions {
    /// Reads the options every protocol has, for a protocol that uses its sockets as
    /// `keep_alive` and `reuse` say.
    pub fn from_values(
        name: &str,
        v: &Values,
        keep_alive: KeepAlive,
        reuse: BackendReuse,
    ) -> Result<Self, BadOption> {
        let reusable = reuse == BackendReuse::Safe;
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
        Ok(TcpOptions {
            buffer,
            keep_alive: keep_alive == KeepAlive::Always || v.bool("keep_alive"),
            reuse_socket: reuse_socket && reusable,
        })
    }
}

impl ByteStream {
    /// Builds the byte-stream protocol `name` from its values.
    pub fn from_values(
        name: &'static str,
        v: &Values,
        keep_alive: KeepAlive,
    ) -> Result<Self, BadOption> {
        Ok(ByteStream {
            name,
            options: TcpOptions::from_values(name, v, keep_alive, BackendReuse::Unsafe)?,
        })
    }
}

impl Protocol for ByteStream {
    fn name(&self) -> &str {
        self.name
    }
    fn tcp_options(&self) -> &TcpOptions {
        &self.options
    }
}
