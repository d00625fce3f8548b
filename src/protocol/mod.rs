//! Protocols: how the proxy cuts the traffic of a connection into calls.
//!
//! A byte-stream protocol (`tcp`, `mysql`) forwards a full-duplex stream and treats every
//! chunk read from one side as a call. A framed protocol (`http`, `redis`, `memcache`,
//! `smtp`) gives each connection a [`Framing`] session, whose parsers read requests and
//! responses for the engine's framed driver. A protocol declares its options once, in a
//! [`ProtocolSpec`].

use std::fmt;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use crate::net::HostPort;
use crate::opts::{OptSpec, Values};

pub mod http;
pub mod memcache;
mod parse;
pub mod redis;
pub mod smtp;

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

/// How the body that follows a message head is delimited (HTTP); the driver copies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// No body: the head is the whole message.
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, trailers included.
    Chunked,
    /// Everything until the sender closes (a response only).
    UntilClose,
    /// Up to an end the session itself recognizes (the `.` line of an SMTP message); only the
    /// session's own `copy_body` copies it.
    Delimited,
}

/// A call's short name (`GET`, `SET`...), held inline: naming a call allocates nothing.
/// Longer names are cut to [`Name::MAX`] bytes, at a character boundary.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Name {
    len: u8,
    bytes: [u8; Name::MAX],
}

impl Name {
    /// The most bytes a name keeps.
    pub const MAX: usize = 32;

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // `new` only ever stores whole characters of a `str`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// `name`, cut to [`Name::MAX`] bytes.
    pub fn new(name: &str) -> Name {
        let mut len = name.len().min(Name::MAX);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0u8; Name::MAX];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Name {
            len: len as u8,
            bytes,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name::new(name)
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What the driver needs to know about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// A short name for logs: the HTTP method, the redis or memcache command.
    pub name: Name,
    /// Whether the backend answers it (false: memcache `noreply`, `quit`).
    pub expects_response: bool,
    /// The body that follows the head, copied by [`Framing::copy_body`].
    pub body: Body,
    /// Written to the client right after the head is forwarded (HTTP `100 Continue`).
    pub early_reply: Vec<u8>,
    /// After this call the connection becomes a tunnel (redis SUBSCRIBE, MONITOR).
    pub tunnel: bool,
    /// The client closes or asked to close after this call (HTTP/1.0, `Connection: close`,
    /// `quit`).
    pub close: bool,
    /// Protocol-private flags (HTTP: a HEAD request, an upgrade asked for...).
    pub flags: u32,
}

impl Request {
    /// The pseudo-request a server-first protocol's greeting answers.
    pub fn greeting() -> Request {
        Request {
            name: "greeting".into(),
            expects_response: true,
            ..Request::default()
        }
    }
}

/// What the driver needs to know about a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The body that follows the head, copied by [`Framing::copy_body`].
    pub body: Body,
    /// After this response the connection becomes a tunnel (HTTP 101).
    pub tunnel: bool,
    /// The backend closes after this response, or the connection must not be reused.
    pub close: bool,
}

/// A protocol's own error answer, for the `error` behavior.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// Bytes sent to the client instead of the backend's answer.
    pub bytes: Vec<u8>,
    /// Close the client connection after it (HTTP).
    pub close: bool,
}

/// One connection's framing: pure parsers over buffered readers, with the state a session
/// needs (an SMTP `DATA` body follows a `354` reply). What a parser cannot frame is an
/// `io::ErrorKind::InvalidData` error, with every byte it consumed kept in `head` (or, for a
/// body, written to its destination); the driver then forwards those bytes and the rest of
/// the connection untouched, so that the backend (or the client) gets what it would get
/// without the proxy.
pub trait Framing: Send {
    /// Whether the backend speaks first (a greeting read as the response to
    /// [`Request::greeting`]).
    fn server_speaks_first(&self) -> bool {
        false
    }
    /// Reads the next request's head from the client into `head` (for line protocols, the
    /// whole request with its data block). `Ok(None)`: the client closed between requests.
    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>>;
    /// Reads the head of the response to `req` from the backend into `head` (interim HTTP 1xx
    /// responses included; for line protocols the whole reply).
    fn read_response(
        &mut self,
        req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response>;
    /// Copies a body delimited by `body` from `from` to `to`, as it arrives (by default
    /// [`copy_plain_body`]).
    fn copy_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        to: &mut dyn Write,
    ) -> io::Result<()> {
        copy_plain_body(body, from, to)
    }
    /// Moves the start of a response `body` that is already read from `from` after the
    /// response's `head`, so that both go out in one write; returns what is left to copy.
    /// Called once the hooks are done with the head. By default nothing moves.
    fn inline_body(
        &mut self,
        body: Body,
        _from: &mut dyn BufRead,
        _head: &mut Vec<u8>,
    ) -> io::Result<Body> {
        Ok(body)
    }
    /// The protocol's own error answer to `req`.
    fn error_reply(&mut self, req: &Request, rng: &mut fastrand::Rng) -> ErrorReply;
    /// Called when `read_request` or `read_response` failed: appends to `head` the bytes of
    /// the failed message that were consumed but not put in `head`, so that the driver can
    /// forward them, and the rest of the connection, untouched. Parsers keep every byte they
    /// consume in `head`, so by default there is none; HTTP reads a head into a buffer of its
    /// own.
    fn unframed(&mut self, _head: &mut Vec<u8>) {}
    /// Whether the requests a client pipelined may be forwarded before the replies to earlier
    /// ones are read: replies come back in request order, and how the next request reads
    /// does not depend on an earlier reply (redis; memcache outside quiet meta commands).
    /// The driver then batches the calls of a transparent mix: one write each way per batch.
    fn pipelines(&self) -> bool {
        false
    }
    /// Whether a server may answer a request before its body is all sent (HTTP: a 413 to an
    /// upload too large, a 401): the driver then stops forwarding the body, forwards the
    /// answer at once, and closes the connection after it.
    fn answers_early(&self) -> bool {
        false
    }
    /// Whether the backend connection carries no session state (a selected database, an
    /// open transaction, unread quiet replies) and may serve another client.
    fn reusable(&self) -> bool {
        true
    }
}

/// Copies a body that is nothing, a length or everything up to the end, as it arrives; the
/// framings of HTTP (chunked) and SMTP (its messages) are their sessions' own.
pub fn copy_plain_body(body: Body, from: &mut dyn BufRead, to: &mut dyn Write) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => parse::copy_exact(from, to, n, "body"),
        Body::UntilClose => io::copy(from, to).map(drop),
        Body::Chunked | Body::Delimited => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a body this protocol does not have",
        )),
    }
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
    ) -> Result<Arc<dyn Protocol>, String> {
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
    ) -> Result<Self, String> {
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
        smtp::spec(),
        http::spec(),
        redis::spec(),
        memcache::spec(),
    ]
}
