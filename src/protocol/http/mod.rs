//! `http`: HTTP/1.0 and HTTP/1.1 framing for the framed driver.
//!
//! A call is one request and its response. The parser reads message heads (start line and
//! header fields, with limits: a line at most 8 KiB, at most 2,000 fields, a head at most
//! 64 KiB; past them, or for what it cannot read, the driver forwards the rest untouched) and
//! decides how the body that follows is delimited (`Content-Length`,
//! `Transfer-Encoding: chunked` with its trailers, or until the backend closes). Heads are
//! forwarded byte for byte, except for three edits a proxy must make:
//!
//! - `Expect: 100-continue` on an HTTP/1.1 request with a body is answered by the proxy
//!   (`100 Continue`, see [`Request::early_reply`]) and removed from the forwarded head, so
//!   that a slow or failing call never leaves the client waiting for permission;
//! - a message with both `Transfer-Encoding` and `Content-Length` loses the latter (RFC 9112
//!   §6.1: an intermediary forwards only the encoding it used) and its connection closes
//!   after the call;
//! - with `overwrite_host_header`, `Host` carries the backend's `HOST:PORT`.
//!
//! Interim `1xx` responses (except `101`) are forwarded with the final response's head.
//! `101 Switching Protocols` (and a `2xx` answer to `CONNECT`) turns the connection into a
//! byte tunnel. Chunked bodies are copied as they arrive, size lines, extensions and trailers
//! included, with memory bounded by the chunk-size line limit.
//!
//! The files: this one is the protocol and its session; `head.rs` reads and edits message
//! heads; `body.rs` frames and copies bodies; `tests.rs` holds the unit tests.

use super::wire::{copy_exact, cut_short, decimal, invalid, read_line, size_text, trim_eol};
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use crate::net::HostPort;
use crate::opts::{BadOption, OptSpec, Values};
use crate::protocol::{
    BackendReuse, Body, ErrorReply, Framing, KeepAlive, Name, Protocol, ProtocolSpec, Request,
    Response, TcpOptions, TCP_OPTIONS,
};

mod body;
mod head;
use body::*;
use head::*;

/// A request line or a header line, terminator included, is at most this long.
pub const MAX_LINE: usize = 8 * 1024;
/// A message head has at most this many header fields (Apache takes 100, nginx has no count
/// of its own: the head's size bounds it).
pub const MAX_HEADERS: usize = 2000;
/// A message head (interim responses included) is at most this long.
pub const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size line (with its extensions) is at most this long.
pub const MAX_CHUNK_LINE: usize = 1024;

/// What the method of a request means for its response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Method {
    /// The response has a body as its head says.
    #[default]
    Other,
    /// `HEAD`: the response has no body.
    Head,
    /// `CONNECT`: a `2xx` answer opens a tunnel.
    Connect,
}

/// The interim response the proxy gives to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The options of `http`: tcp's plus `overwrite_host_header`.
pub const HTTP_OPTIONS: &[OptSpec] = &[
    TCP_OPTIONS[0],
    TCP_OPTIONS[1],
    TCP_OPTIONS[2],
    OptSpec::bool(
        "overwrite_host_header",
        "false",
        "rewrite the Host header to the backend address",
    ),
];

/// The declaration of `http`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "http",
        summary: "HTTP/1.0 and 1.1: a call is one request and its response; keep-alive, \
                  pipelining, chunked bodies, 100-continue, upgrades",
        options: HTTP_OPTIONS,
        build: |v| Http::from_values(v).map(|p| Arc::new(p) as Arc<dyn Protocol>),
    }
}

/// The `http` protocol.
#[derive(Debug)]
pub struct Http {
    options: TcpOptions,
    overwrite_host: bool,
}

impl Http {
    /// Builds it from its option values.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        Ok(Http {
            options: TcpOptions::from_values("http", v, KeepAlive::Optional, BackendReuse::Safe)?,
            overwrite_host: v.bool("overwrite_host_header"),
        })
    }
}

impl Protocol for Http {
    fn name(&self) -> &str {
        "http"
    }
    fn tcp_options(&self) -> &TcpOptions {
        &self.options
    }
    fn framing(&self, backend: &HostPort) -> Option<Box<dyn Framing>> {
        Some(Box::new(HttpSession::new(
            self.overwrite_host.then(|| backend.to_string()),
        )))
    }
}

/// The HTTP framing of one connection.
#[derive(Debug, Default)]
pub struct HttpSession {
    /// `Some(b"Host: HOST:PORT\r\n")`: the line `Host` is rewritten to.
    host_line: Option<Vec<u8>>,
    /// The head being parsed (a request's, then its response's): scratch whose buffers are
    /// reused from call to call.
    head: Head,
    /// The method of the request read last, which the response read next answers.
    method: Method,
}

impl HttpSession {
    /// A session; `host`: rewrite `Host` to this value.
    pub fn new(host: Option<String>) -> Self {
        HttpSession {
            host_line: host.map(|h| format!("Host: {h}\r\n").into_bytes()),
            head: Head::default(),
            method: Method::Other,
        }
    }
}

impl HttpSession {
    /// Reads the request in `self.head`, appends the head to forward to `out`.
    fn parse_request(&self, out: &mut Vec<u8>) -> io::Result<Request> {
        let head = &self.head;
        let line = head.start_line();
        let bad = || {
            invalid(format!(
                "bad request line {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ))
        };
        let sp1 = line.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let sp2 = line.iter().rposition(|&b| b == b' ').ok_or_else(bad)?;
        let (method, target, version) = (
            &line[..sp1],
            &line[sp1 + 1..sp2.max(sp1 + 1)],
            &line[sp2 + 1..],
        );
        if sp2 <= sp1
            || !is_token(method)
            || target.is_empty()
            || target
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad());
        }
        let minor = parse_version(version)?;
        // A token is ASCII.
        let method = std::str::from_utf8(method).map_err(|_| bad())?;

        let mut close = closes(head, minor);
        let framing = body_framing(head, "request")?;
        let both = head.has("transfer-encoding") && head.has("content-length");
        let body = match framing {
            Framed::None => Body::None,
            Framed::Length(0) => Body::None,
            Framed::Length(n) => Body::Length(n),
            Framed::Chunked => Body::Chunked,
            Framed::OtherEncoding => {
                return Err(invalid(
                    "request Transfer-Encoding does not end with chunked",
                ))
            }
        };
        if both || (minor == 0 && body == Body::Chunked) {
            close = true;
        }
        let expect_continue = minor >= 1
            && body != Body::None
            && head
                .values("expect")
                .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
        let host_line = self.host_line.as_deref();
        let extra = match host_line {
            Some(line) if !head.has("host") => line,
            _ => b"",
        };
        head.emit(
            out,
            |name| {
                let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
                if (both && is("content-length")) || (expect_continue && is("expect")) {
                    Edit::Drop
                } else if is("host") {
                    host_line.map_or(Edit::Keep, Edit::Replace)
                } else {
                    Edit::Keep
                }
            },
            extra,
        );
        Ok(Request {
            name: Name::new(method),
            expects_response: true,
            body,
            early_reply: if expect_continue {
                CONTINUE.to_vec()
            } else {
                Vec::new()
            },
            tunnel: false,
            close,
        })
    }
}

impl HttpSession {
    /// The target of the request read last (`/behavior?x`), for a server that answers
    /// requests itself (the control API).
    pub(crate) fn target(&self) -> &[u8] {
        let line = self.head.start_line();
        let first = line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
        let last = line.iter().rposition(|&b| b == b' ').unwrap_or(line.len());
        line.get(first..last.max(first)).unwrap_or_default()
    }

    /// The values of the header fields `name` (lower case) of the head read last.
    pub(crate) fn header_values<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.head.values(name)
    }
}

impl Framing for HttpSession {
    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>> {
        self.method = Method::Other;
        if !read_head(client, "request", MAX_HEAD, &mut self.head)? {
            return Ok(None);
        }
        let req = self.parse_request(head)?;
        self.method = match req.name.as_str() {
            "HEAD" => Method::Head,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        };
        Ok(Some(req))
    }

    fn read_response(
        &mut self,
        _req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        let start = head.len();
        loop {
            let budget = MAX_HEAD.saturating_sub(head.len() - start);
            if !read_head(backend, "response", budget, &mut self.head)? {
                return Err(cut_short(if head.len() > start {
                    "the backend closed after an interim response"
                } else {
                    "the backend closed without answering"
                }));
            }
            let parsed = &self.head;
            let line = parsed.start_line();
            let bad = || {
                invalid(format!(
                    "bad status line {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                ))
            };
            let (version, rest) = match line.iter().position(|&b| b == b' ') {
                Some(sp) => (&line[..sp], &line[sp + 1..]),
                None => return Err(bad()),
            };
            let minor = parse_version(version)?;
            let status = match rest {
                [a, b, c] | [a, b, c, b' ', ..]
                    if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
                {
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
                }
                _ => return Err(bad()),
            };
            if status < 100 {
                return Err(bad());
            }
            if (100..200).contains(&status) && status != 101 {
                // Interim: forwarded with the final response.
                head.extend_from_slice(&parsed.raw);
                continue;
            }
            let framing = body_framing(parsed, "response")?;
            let both = parsed.has("transfer-encoding") && parsed.has("content-length");
            let mut close = closes(parsed, minor) || both;
            let mut tunnel = false;
            let body = if status == 101
                || (self.method == Method::Connect && (200..300).contains(&status))
            {
                tunnel = true;
                Body::None
            } else if self.method == Method::Head || status == 204 || status == 304 {
                Body::None
            } else {
                match framing {
                    Framed::Chunked => Body::Chunked,
                    Framed::Length(n) => Body::Length(n),
                    Framed::None | Framed::OtherEncoding => {
                        close = true;
                        Body::UntilClose
                    }
                }
            };
            if body == Body::Chunked && minor == 0 {
                close = true;
            }
            parsed.emit(
                head,
                |name| {
                    if both && name.eq_ignore_ascii_case(b"content-length") {
                        Edit::Drop
                    } else {
                        Edit::Keep
                    }
                },
                b"",
            );
            return Ok(Response {
                body,
                tunnel,
                close,
            });
        }
    }

    fn copy_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        to: &mut dyn Write,
    ) -> io::Result<()> {
        match body {
            Body::Chunked => copy_chunked(from, to),
            other => copy_plain(other, from, to),
        }
    }

    fn inline_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Body> {
        inline_small_body(body, from, head)
    }

    fn error_reply(&mut self, _req: &Request, rng: &mut fastrand::Rng) -> ErrorReply {
        error_response(self.method, rng)
    }

    fn answers_early(&self) -> bool {
        true
    }

    /// The head that failed is read into the session's own buffer.
    fn unframed(&mut self, head: &mut Vec<u8>) {
        head.extend_from_slice(&self.head.raw);
    }
}

/// A complete random `500`..`503` response that closes the connection (without its body
/// for a `HEAD` request).
fn error_response(method: Method, rng: &mut fastrand::Rng) -> ErrorReply {
    const STATUSES: [(u16, &str); 4] = [
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
    ];
    let (code, reason) = STATUSES[rng.usize(..STATUSES.len())];
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\n\
         <body><h1>{code} {reason}</h1><p>Injected by vaurien.</p></body></html>\n"
    );
    let mut bytes = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != Method::Head {
        bytes.extend_from_slice(body.as_bytes());
    }
    ErrorReply { bytes, close: true }
}

#[cfg(test)]
mod tests;
