//! `redis`: RESP framing (RESP2 and RESP3) for the framed driver.
//!
//! A call is one command and its reply. A command is a RESP array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or an inline command (one line of words, at most
//! 64 KiB, the form `redis-cli` users type by hand); empty commands (`*0`, a blank line),
//! which the server ignores without a reply, are skipped. A reply is one complete value of any
//! RESP2 or RESP3 type, nested aggregates included: simple strings `+`, errors `-`, integers
//! `:`, bulk strings `$` (`$-1` is the RESP2 null), arrays `*` (`*-1`), and RESP3's null `_`,
//! double `,`, boolean `#`, big number `(`, bulk error `!`, verbatim string `=`, map `%`, set
//! `~`, push `>`, attribute `|` and the streamed forms (`$?` with `;` chunks, `*?`... ending
//! with `.`). An attribute precedes the value it describes and belongs to the same reply; so
//! does an out-of-band push that arrives before a reply.
//!
//! Messages are forwarded byte for byte. Commands are read as the server reads them: a
//! multibulk count or a bulk length is a decimal as `string2ll` takes it (no `+`, no leading
//! zero), a count of zero or less is an empty command the server skips without a reply, a
//! line (type line or inline command) is at most 64 KiB, a command's bulk string at most
//! 512 MiB (the server's default `proto-max-bulk-len`), a command has at most `i32::MAX`
//! arguments, and the two bytes after a bulk string are not checked (the server skips them).
//! Replies may nest 65,536 aggregates deep that are not the last element of their parent (a
//! last element does not count: Lua's replies nest some 8,000 deep, each the only element of
//! the one above), with bulk strings of any length. Memory stays bounded: a bulk string longer
//! than 64 KiB, and whatever follows once a head reaches 1 MiB, is copied as it arrives
//! ([`Framing::copy_body`], with [`Body::Length`] of the bulk string's remaining bytes; the
//! session keeps the parse state). What the module cannot read that way (an unknown type byte,
//! a bad length, a line too long, unbalanced quotes in an inline command) is `InvalidData`,
//! with every byte it consumed kept in the head: the driver forwards it, and the rest of the
//! connection, untouched, so the server answers it as it would directly (usually
//! `-ERR Protocol error: ...` before it closes).
//!
//! `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their `UNSUBSCRIBE` forms (whose replies come
//! one per channel, and later as messages), `MONITOR`, `SYNC`/`PSYNC`, `CLIENT REPLY` (which
//! can suppress replies) and `CLIENT TRACKING` (whose invalidations arrive at any time) turn
//! the connection into a byte tunnel. `QUIT` closes the connection after its `+OK`. The `error`
//! behavior answers `-ERR vaurien: ...` and the connection stays usable.
//!
//! The files: this one is the session; `resp.rs` the wire format and its parser; `inline.rs`
//! inline commands; `commands.rs` what a command means to the driver; `tests.rs`.

use super::wire::{
    copy_exact, cut_short, decimal, expect_line, invalid, peek, read_exactly, show, signed_decimal,
    trim_eol,
};
use super::{BackendReuse, FramedProtocol, KeepAlive};
use std::io::{self, BufRead, Write};

use crate::protocol::{
    Body, ErrorReply, Framing, Name, ProtocolSpec, Request, Response, TCP_OPTIONS,
};

mod commands;
mod inline;
mod resp;
use commands::*;
use inline::*;
use resp::*;

/// A type line or an inline command, terminator included, is at most this long.
pub const MAX_LINE: usize = 64 * 1024;
/// A command's bulk string is at most this long (the server's default `proto-max-bulk-len`).
pub const MAX_BULK: u64 = 512 << 20;
/// Aggregates of a reply nest at most this deep, not counting those that are the last
/// element of their parent (which the parser forgets as soon as it enters them).
pub const MAX_DEPTH: usize = 1 << 16;
/// A command has at most this many arguments (the server's limit).
pub const MAX_ARGS: u64 = i32::MAX as u64;
/// An aggregate has at most this many elements (a map or an attribute, twice as many).
pub const MAX_ELEMENTS: u64 = 1 << 40;
/// A bulk string longer than this is copied as it arrives rather than held in the head.
pub const STREAM_BULK: u64 = 64 * 1024;
/// Past this many bytes of head, the rest of a message is copied as it arrives.
pub const MAX_HEAD: usize = 1 << 20;

/// The declaration of `redis`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "redis",
        summary: "Redis RESP2/RESP3: a call is one command and its reply; pipelining, inline \
                  commands; SUBSCRIBE and MONITOR turn the connection into a stream",
        options: TCP_OPTIONS,
        build: |v| {
            FramedProtocol::<RedisSession>::build(
                "redis",
                v,
                KeepAlive::Optional,
                BackendReuse::Safe,
            )
        },
    }
}

/// The RESP framing of one connection.
#[derive(Debug, Default)]
pub struct RedisSession {
    /// The rest of the message whose head was read last, copied by `copy_body`.
    pending: Option<Resume>,
    /// A command changed the connection's state (database, protocol, name...).
    stateful: bool,
    /// Inside `MULTI` ... `EXEC`/`DISCARD`.
    in_transaction: bool,
    /// Keys are `WATCH`ed.
    watching: bool,
    /// The parse stack, kept between messages so that parsing one allocates nothing.
    stack: Vec<Frame>,
}

impl RedisSession {
    /// Whether the backend connection may serve another client: no command so far left
    /// state on it (`SELECT`, `HELLO`, `AUTH`, `CLIENT SETNAME`..., an open `MULTI` or
    /// `WATCH`), or `RESET` cleared it.
    pub fn backend_reusable(&self) -> bool {
        !(self.stateful || self.in_transaction || self.watching)
    }

    /// Follows the connection state `args` (a command's first arguments) leave behind.
    fn track(&mut self, args: &[&[u8]]) {
        let (mut first, mut second) = ([0u8; UPPER_MAX], [0u8; UPPER_MAX]);
        match upper(args.first(), &mut first) {
            b"RESET" => {
                self.stateful = false;
                self.in_transaction = false;
                self.watching = false;
            }
            b"MULTI" => self.in_transaction = true,
            b"EXEC" | b"DISCARD" => {
                self.in_transaction = false;
                self.watching = false;
            }
            b"WATCH" => self.watching = true,
            b"UNWATCH" => self.watching = false,
            b"CLIENT" if STATEFUL_CLIENT_SUBCOMMANDS.contains(&upper(args.get(1), &mut second)) => {
                self.stateful = true;
            }
            c if STATEFUL_COMMANDS.contains(&c) => self.stateful = true,
            _ => {}
        }
    }

    fn body_after(&mut self, stop: Stop, stack: Vec<Frame>, request: bool) -> Body {
        match stop {
            Stop::Done => {
                self.stack = stack;
                Body::None
            }
            Stop::Bulk(n) => {
                self.pending = Some(Resume { stack, request });
                Body::Length(n)
            }
        }
    }
}

impl Framing for RedisSession {
    fn reusable(&self) -> bool {
        self.backend_reusable()
    }

    fn pipelines(&self) -> bool {
        true
    }

    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>> {
        self.pending = None;
        let first_start = head.len();
        loop {
            // Empty commands before this one stay in the head: they are forwarded with it
            // (the server skips them), up to a bound past which the rest is a tunnel.
            let start = head.len();
            if start - first_start > MAX_LINE {
                return Err(invalid("more than 64 KiB of empty commands"));
            }
            let Some(first) = peek(client)? else {
                return Ok(None);
            };
            if first != b'*' {
                read_line(client, head, false, "inline command")?;
                let line = trim_eol(&head[start..]);
                if line.contains(&0) {
                    // The server looks for the line end with strchr, which stops at a NUL:
                    // it waits for more, and answers only once 64 KiB piled up.
                    return Err(invalid("a NUL byte in an inline command"));
                }
                let args = split_args(line).ok_or_else(|| {
                    invalid(format!(
                        "unbalanced quotes in inline command {:?}",
                        show(line)
                    ))
                })?;
                if args.is_empty() {
                    continue; // the server ignores blank lines
                }
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                self.track(&args);
                return Ok(Some(request_for(&args, Body::None)));
            }
            read_line(client, head, true, "command header")?;
            let field = &head[start + 1..head.len() - 2];
            let count = match server_ll(field) {
                // An empty command (`*0`, `*-1`, `*-10`): the server skips it, no reply.
                Some(n) if n <= 0 => continue,
                Some(n) if n as u64 <= MAX_ARGS => n as u64,
                _ => {
                    return Err(invalid(format!(
                        "invalid multibulk length {:?}",
                        show(field)
                    )))
                }
            };
            let mut stack = std::mem::take(&mut self.stack);
            stack.clear();
            stack.push(Frame::Count(count));
            let stop = parse(client, head, &mut stack, true)?;
            let (args, found) = first_args(&head[start..]);
            let args = &args[..found];
            self.track(args);
            let req = request_for(args, Body::None);
            let body = self.body_after(stop, stack, true);
            return Ok(Some(Request { body, ..req }));
        }
    }

    fn read_response(
        &mut self,
        _req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        self.pending = None;
        if peek(backend)?.is_none() {
            return Err(cut_short("the backend closed instead of replying"));
        }
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        stack.push(Frame::Count(1));
        let stop = parse(backend, head, &mut stack, false)?;
        Ok(Response {
            body: self.body_after(stop, stack, false),
            ..Response::default()
        })
    }

    fn copy_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        to: &mut dyn Write,
    ) -> io::Result<()> {
        let mut bulk = match body {
            Body::None => return Ok(()),
            Body::Length(n) => n,
            _ => return Err(invalid("a RESP message has no such body")),
        };
        let Some(mut resume) = self.pending.take() else {
            return copy_bulk(from, to, bulk);
        };
        let mut buf = Vec::new();
        loop {
            if bulk > 0 {
                copy_bulk(from, to, bulk)?;
            }
            buf.clear();
            let stop = parse(from, &mut buf, &mut resume.stack, resume.request);
            // What was read goes on even when it cannot be parsed: the driver then forwards
            // the rest untouched.
            to.write_all(&buf)?;
            match stop? {
                Stop::Done => return Ok(()),
                Stop::Bulk(n) => bulk = n,
            }
        }
    }

    fn error_reply(&mut self, req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        ErrorReply {
            bytes: format!("-ERR vaurien: injected error on {}\r\n", req.name).into_bytes(),
            close: false,
        }
    }
}

#[cfg(test)]
mod tests;
