//! The framing contract between a framed protocol and the engine's driver: a session's
//! parsers ([`Framing`]) and what they tell the driver about each message ([`Request`],
//! [`Response`], [`Body`], [`Name`], [`ErrorReply`]).

use std::fmt;
use std::io::{self, BufRead, Write};

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
/// without the proxy. What a call needs from its request to read its reply (HTTP's method,
/// memcache's reply shape) the session keeps: `read_response` answers the requests read, in
/// order, and `error_reply` the request read last.
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
        Body::Length(n) => super::wire::copy_exact(from, to, n, "body"),
        Body::UntilClose => io::copy(from, to).map(drop),
        Body::Chunked | Body::Delimited => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a body this protocol does not have",
        )),
    }
}
