//! `memcache`: the memcached text protocol for the framed driver.
//!
//! A call is one command and its reply. A command is one line (words separated by spaces,
//! ended by LF or CRLF, at most 2 KiB; a multi-key `get/gets/gat/gats` line may be up to
//! 1 MiB, as memcached accepts long multi-gets) and, for the storage commands `set`, `add`,
//! `replace`, `append`, `prepend`, `cas` and the meta `ms`, its data block: exactly `<bytes>`
//! bytes and CRLF (at most 64 MiB). Replies, by command:
//!
//! - `get`, `gets`, `gat`, `gats`: `VALUE <key> <flags> <bytes> [<cas>]` lines, each with its
//!   data block, until `END`;
//! - `stats [ARGS]`: `STAT`, `ITEM` or `PREFIX` lines until `END` (or one `RESET`/`OK` line);
//! - `lru_crawler metadump` to `END`, `lru_crawler mgdump` to `EN`;
//! - the meta commands `mg`, `ms`, `md`, `ma`, `me`: one line (`HD`, `NF`, `NS`, `EX`, `EN`,
//!   `ME ...`), or `VA <size> <flags>*` and its data block;
//! - everything else (storage, `delete`, `incr`, `decr`, `touch`, `flush_all`, `version`,
//!   `verbosity`, `cache_memlimit`, `slabs`, `lru`...): one line.
//!
//! `ERROR`, `CLIENT_ERROR ...` and `SERVER_ERROR ...` end the reply to any command. Messages
//! are forwarded byte for byte; a data block longer than 64 KiB, and whatever follows once a
//! head reaches 1 MiB, is copied as it arrives ([`Framing::copy_body`] with [`Body::Length`]
//! of the block; the session keeps the parse state), so memory stays bounded.
//!
//! A command the module cannot frame with certainty is `InvalidData`, with every byte it
//! consumed kept in the head: an unknown command, a wrong number of words, a key longer than
//! 250 bytes, a bad number, a data length past `i32::MAX - 2`, a data block not ended by CRLF,
//! a control character in a line, and the binary protocol (a connection whose first byte is
//! 0x80). The driver then forwards it and the rest of the connection untouched, and memcached
//! answers as it would directly (`ERROR`, `CLIENT_ERROR ...`, and for a storage line it cannot
//! parse, its data block read as the next command: memcached swallows no block then, so only
//! it can say what follows). An unexpected reply line is `InvalidData` too, and is forwarded
//! the same way.
//!
//! `noreply` as the last word makes a command expect no reply; `quit` expects none and closes.
//! `watch` (a log stream) turns the connection into a byte tunnel.
//!
//! Quiet meta commands (the `q` flag) answer only on a hit or an error, so their reply cannot
//! be framed alone. They are forwarded without waiting, and the `mn` that clients send after a
//! batch of them takes every reply up to `MN` as its own reply: the batch and its `mn` form one
//! call for `delay`, `error`... Any other command after quiet ones (a batch ended by a
//! non-quiet command rather than `mn`), or a batch of more than [`MAX_QUIET`] quiet commands
//! (whose replies wait unread in the backend socket meanwhile), turns the connection into a
//! byte tunnel: correct, with no more behaviors on that connection.
//!
//! The `error` behavior answers `SERVER_ERROR vaurien: injected error on CMD` and the
//! connection stays usable; the command does not reach the backend. A `noreply` command (or
//! `quit`) that fails is dropped silently, as its client reads no reply; a quiet meta command
//! that fails gets the error line at once (quiet mode always reports errors), ahead of the
//! replies of its batch that the backend still holds.

//!
//! The files: this one is the session; `command.rs` reads command lines; `reply.rs` reads
//! replies by their shape; `tests.rs`.
use super::wire::{
    copy_exact, cut_short, decimal, fill_line, invalid, more_input, peek, read_exactly, show,
    signed_decimal, too_long, trim_eol, LineRead,
};
use super::{BackendReuse, FramedProtocol, KeepAlive};
use std::collections::VecDeque;
use std::io::{self, BufRead, Write};

use crate::protocol::{
    Body, ErrorReply, Framing, Name, ProtocolSpec, Request, Response, TCP_OPTIONS,
};

mod command;
mod reply;
use command::*;
use reply::*;

/// A command line, terminator included, is at most this long (memcached's limit).
pub const MAX_LINE: usize = 2048;
/// A `get/gets/gat/gats` line is at most this long (memcached has no limit for them).
pub const MAX_GET_LINE: usize = 1 << 20;
/// A reply line, terminator included, is at most this long.
pub const MAX_REPLY_LINE: usize = 8192;
/// A key is at most this long (memcached's `KEY_MAX_LENGTH`).
pub const MAX_KEY: usize = 250;
/// A base64 key (meta flag `b`) is at most this long.
pub const MAX_KEY_BASE64: usize = 344;
/// A data block is at most this long (memcached reads a length into an `int` and refuses
/// more than this; past it, what it does with the bytes is its own: they go through as a
/// tunnel).
pub const MAX_DATA: u64 = i32::MAX as u64 - 2;
/// A data block longer than this is copied as it arrives rather than held in the head.
pub const STREAM_BLOCK: u64 = 64 * 1024;
/// Past this many bytes of head, the rest of a reply is copied as it arrives.
pub const MAX_HEAD: usize = 1 << 20;
/// Quiet meta commands waiting for their `mn`; one more turns the connection into a tunnel.
pub const MAX_QUIET: usize = 64;

/// The declaration of `memcache`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "memcache",
        summary: "memcached text protocol: a call is one command (with its data block) and its \
                  reply; noreply, pipelining, meta commands",
        options: TCP_OPTIONS,
        build: |v| {
            FramedProtocol::<MemcacheSession>::build(
                "memcache",
                v,
                KeepAlive::Optional,
                BackendReuse::Safe,
            )
        },
    }
}

/// The memcache framing of one connection.
#[derive(Debug, Default)]
pub struct MemcacheSession {
    /// The rest of the message whose head was read last, copied by `copy_body`.
    pending: Option<Pending>,
    /// Quiet meta commands forwarded since the last `mn`.
    quiet: usize,
    /// A request was read: memcached takes a first byte 0x80 for the binary protocol only
    /// at the start of a connection.
    started: bool,
    /// The shapes of the replies the requests read so far are owed, oldest first: the
    /// requests of a pipeline are read before their replies.
    owed: VecDeque<Shape>,
    /// The client reads no reply to the request read last (`noreply`, `quit`): an injected
    /// error is not sent either.
    silent: bool,
}

/// Appends to `out` the rest of a line (from `start`) of at most `limit` bytes: `Ok(false)`
/// when the limit was reached without a LF, which memcached answers for some commands only.
fn read_until_lf(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> io::Result<bool> {
    match fill_line(r, out, start, limit)? {
        LineRead::Ended => Ok(true),
        LineRead::TooLong => Ok(false),
        LineRead::Absent => Err(cut_short("end of input where a line was expected")),
        LineRead::Cut => Err(cut_short("line cut short by the end of input")),
    }
}

impl Framing for MemcacheSession {
    fn reusable(&self) -> bool {
        self.quiet == 0
    }

    /// Quiet meta commands are answered by the `mn` that follows them; until that answer is
    /// read, how the next command reads depends on it.
    fn pipelines(&self) -> bool {
        self.quiet == 0
    }

    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>> {
        self.pending = None;
        let Some(first) = peek(client)? else {
            return Ok(None);
        };
        if !std::mem::replace(&mut self.started, true) && first == 0x80 {
            return Err(invalid("the binary protocol (the first byte is 0x80)"));
        }
        let start = head.len();
        let complete = read_until_lf(client, head, start, MAX_LINE)?
            || (is_retrieval_line(&head[start..])
                && read_until_lf(client, head, start, MAX_GET_LINE)?);
        if !complete {
            let limit = if is_retrieval_line(&head[start..]) {
                MAX_GET_LINE
            } else {
                MAX_LINE
            };
            return Err(too_long(&"command line", limit, &head[start..]));
        }
        let cmd = parse_command(trim_eol(&head[start..]))?;
        let mut body = Body::None;
        if let Some(len) = cmd.block {
            if len > STREAM_BLOCK {
                self.pending = Some(Pending {
                    block: len + 2,
                    then: None,
                });
                body = Body::Length(len + 2);
            } else {
                read_block(client, head, len)?;
            }
        }
        let mut req = Request {
            name: Name::new(cmd.name),
            expects_response: !cmd.noreply && !cmd.close,
            body,
            close: cmd.close,
            tunnel: cmd.tunnel,
            ..Request::default()
        };
        self.silent = cmd.noreply || cmd.close;
        if cmd.quiet {
            if self.quiet >= MAX_QUIET {
                log::debug!("more than {MAX_QUIET} quiet meta commands without mn: tunnel");
                req.tunnel = true;
            } else {
                self.quiet += 1;
                req.expects_response = false;
            }
        } else if self.quiet > 0 && cmd.shape != Shape::MetaBatch && !cmd.close {
            log::debug!("{} after quiet meta commands without mn: tunnel", cmd.name);
            req.tunnel = true;
        }
        if req.expects_response {
            self.owed.push_back(cmd.shape);
        }
        Ok(Some(req))
    }

    fn read_response(
        &mut self,
        _req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        self.pending = None;
        let shape = self.owed.pop_front().unwrap_or(Shape::Line);
        if shape == Shape::LineOrClose && !more_input(backend)? {
            return Ok(Response {
                close: true,
                ..Response::default()
            });
        }
        let pending = reply_head(shape, backend, head)?;
        if shape == Shape::MetaBatch {
            self.quiet = 0;
        }
        let body = match pending {
            Some(p) => {
                self.pending = Some(p);
                Body::Length(p.block)
            }
            None => Body::None,
        };
        Ok(Response {
            body,
            ..Response::default()
        })
    }

    fn copy_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        to: &mut dyn Write,
    ) -> io::Result<()> {
        let block = match body {
            Body::None => return Ok(()),
            Body::Length(n) => n,
            _ => return Err(invalid("a memcache message has no such body")),
        };
        let pending = self.pending.take().unwrap_or(Pending { block, then: None });
        copy_rest(pending, from, to)
    }

    /// Called call by call, never in a pipeline: the reply this call owed (if not read)
    /// is the only one.
    fn error_reply(&mut self, req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        self.owed.clear();
        let bytes = if self.silent {
            Vec::new()
        } else {
            format!("SERVER_ERROR vaurien: injected error on {}\r\n", req.name).into_bytes()
        };
        ErrorReply {
            bytes,
            close: false,
        }
    }
}

#[cfg(test)]
mod tests;
