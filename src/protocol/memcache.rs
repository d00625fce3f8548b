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

use super::wire::{cut_short, invalid, more_input, peek, read_exactly, show, trim_eol};
use super::Sessions;
use std::io::{self, BufRead, Read, Write};

use crate::protocol::{
    Body, ErrorReply, Framing, Name, ProtocolSpec, Request, Response, TCP_OPTIONS,
};

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
        build: |v| Sessions::<MemcacheSession>::build("memcache", v, false, true),
    }
}

/// The shape of a reply, kept in the low byte of [`Request::flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One line.
    Line = 0,
    /// `VALUE` lines with their data blocks, until `END`.
    Retrieval = 1,
    /// `STAT`/`ITEM`/`PREFIX` lines until `END`, or one `RESET`/`OK` line.
    Stats = 2,
    /// Lines until `END` (`lru_crawler metadump`).
    UntilEnd = 3,
    /// Lines until `EN` (`lru_crawler mgdump`).
    UntilEn = 4,
    /// One meta reply: a code line, or `VA` and its data block.
    Meta = 5,
    /// Meta replies until `MN` (`mn` after quiet commands).
    MetaBatch = 6,
    /// One line, or the backend closes (`shutdown`).
    LineOrClose = 7,
}

impl Shape {
    fn of(req: &Request) -> Shape {
        match req.flags & 0xff {
            1 => Shape::Retrieval,
            2 => Shape::Stats,
            3 => Shape::UntilEnd,
            4 => Shape::UntilEn,
            5 => Shape::Meta,
            6 => Shape::MetaBatch,
            7 => Shape::LineOrClose,
            _ => Shape::Line,
        }
    }
}

/// [`Request::flags`]: a quiet meta command (errors are still answered).
const QUIET: u32 = 1 << 8;
/// [`Request::flags`]: the client reads no reply (`noreply`, `quit`).
const SILENT: u32 = 1 << 9;

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
}

/// Where a message stopped, to go on in `copy_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Bytes of a data block, its CRLF included, still to copy (0: none).
    block: u64,
    /// The reply goes on after the block; `None`: the message ends with it.
    then: Option<Shape>,
}

/// What a reply line means.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The reply goes on with another line.
    More,
    /// This line ends the reply.
    Done,
    /// A data block of `len` bytes (and CRLF) follows; the reply ends after it when `last`.
    Block { len: u64, last: bool },
}

/// Appends to `out` the rest of a line ended by LF, so that the line (from `start`) is at most
/// `limit` bytes. `Ok(false)` when the limit was reached without a LF.
fn read_until_lf(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> io::Result<bool> {
    let room = limit.saturating_sub(out.len() - start);
    let n = r.take(room as u64).read_until(b'\n', out)?;
    if out.len() > start && out.ends_with(b"\n") {
        return Ok(true);
    }
    if n == room {
        return Ok(false);
    }
    Err(cut_short(if out.len() == start {
        "end of input where a line was expected"
    } else {
        "line cut short by the end of input"
    }))
}

/// Reads one reply line into `out`.
fn read_reply_line(r: &mut dyn BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    if !read_until_lf(r, out, start, MAX_REPLY_LINE)? {
        return Err(invalid(format!(
            "reply line longer than {MAX_REPLY_LINE} bytes: {}",
            show(&out[start..])
        )));
    }
    Ok(())
}

/// Reads a data block of `len` bytes and its CRLF into `out` (all that was read stays in
/// `out` on an error).
fn read_block(r: &mut dyn BufRead, out: &mut Vec<u8>, len: u64) -> io::Result<()> {
    read_exactly(r, out, len as usize + 2, "data block")?;
    if !out.ends_with(b"\r\n") {
        return Err(invalid("data block not ended by CRLF"));
    }
    Ok(())
}

/// Copies a data block of `total` bytes, the last two of which must be CRLF.
fn copy_block(from: &mut dyn BufRead, to: &mut dyn Write, total: u64) -> io::Result<()> {
    let data = total.saturating_sub(2);
    let copied = io::copy(&mut from.take(data), to)?;
    if copied < data {
        return Err(cut_short("data block cut short by the end of input"));
    }
    let mut crlf = Vec::with_capacity(2);
    let want = (total - data) as usize;
    let read = read_exactly(from, &mut crlf, want, "data block");
    to.write_all(&crlf)?;
    read?;
    if crlf[..] != b"\r\n"[..want] {
        return Err(invalid("data block not ended by CRLF"));
    }
    Ok(())
}

/// A decimal number of at most 20 digits.
fn unsigned(word: &[u8], what: &str) -> io::Result<u64> {
    std::str::from_utf8(word)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| invalid(format!("bad {what} {:?}", show(word))))
}

/// A signed decimal number.
fn signed(word: &[u8], what: &str) -> io::Result<i64> {
    let digits = word.strip_prefix(b"-").unwrap_or(word);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid(format!("bad {what} {:?}", show(word))));
    }
    std::str::from_utf8(word)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| invalid(format!("bad {what} {:?}", show(word))))
}

/// The length of a data block, at most [`MAX_DATA`].
fn data_len(word: &[u8]) -> io::Result<u64> {
    let n = unsigned(word, "data length")?;
    if n > MAX_DATA {
        return Err(invalid(format!(
            "data block of {n} bytes, more than {} MiB",
            MAX_DATA >> 20
        )));
    }
    Ok(n)
}

fn check_key(key: &[u8], max: usize) -> io::Result<()> {
    if key.len() > max {
        return Err(invalid(format!(
            "key of {} bytes, longer than {max}: {}",
            key.len(),
            show(key)
        )));
    }
    Ok(())
}

/// The command a line starts with, for the long-line rule (`get` lines may be long).
fn is_retrieval_line(line: &[u8]) -> bool {
    let line = &line[line.iter().take_while(|&&b| b == b' ').count()..];
    [&b"get "[..], b"gets ", b"gat ", b"gats "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// What a parsed command line asks for.
struct Command {
    name: &'static str,
    shape: Shape,
    /// Data block length, for storage commands and `ms`.
    block: Option<u64>,
    noreply: bool,
    quiet: bool,
    close: bool,
    tunnel: bool,
}

impl Command {
    fn new(name: &'static str, shape: Shape) -> Command {
        Command {
            name,
            shape,
            block: None,
            noreply: false,
            quiet: false,
            close: false,
            tunnel: false,
        }
    }
}

/// Checks the number of words of a command.
fn arity(name: &str, argc: usize, ok: impl FnOnce(usize) -> bool) -> io::Result<()> {
    if ok(argc) {
        Ok(())
    } else {
        Err(invalid(format!(
            "bad command line format: {name} with {} argument(s)",
            argc - 1
        )))
    }
}

/// Parses a command line (without its terminator).
/// Words of a command line held without allocating.
const INLINE_WORDS: usize = 24;

fn parse_command(line: &[u8]) -> io::Result<Command> {
    if let Some(&b) = line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        return Err(invalid(format!(
            "control character {:?} in a command line: {}",
            show(&[b]),
            show(line)
        )));
    }
    // Words on the stack for the usual command, on the heap only for a long multi-key get.
    let mut inline: [&[u8]; INLINE_WORDS] = [&[]; INLINE_WORDS];
    let mut many: Vec<&[u8]> = Vec::new();
    let mut count = 0;
    for word in line.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if count < INLINE_WORDS {
            inline[count] = word;
        } else {
            if many.is_empty() {
                many.extend_from_slice(&inline);
            }
            many.push(word);
        }
        count += 1;
    }
    let words: &[&[u8]] = if many.is_empty() {
        &inline[..count]
    } else {
        &many
    };
    let Some(&first) = words.first() else {
        // memcached answers an empty line with ERROR.
        return Ok(Command::new("(empty)", Shape::Line));
    };
    let argc = words.len();
    let noreply = argc > 1 && words[argc - 1] == b"noreply";
    let name: &'static str = match first {
        b"get" => "get",
        b"gets" => "gets",
        b"gat" => "gat",
        b"gats" => "gats",
        b"set" => "set",
        b"add" => "add",
        b"replace" => "replace",
        b"append" => "append",
        b"prepend" => "prepend",
        b"cas" => "cas",
        b"delete" => "delete",
        b"incr" => "incr",
        b"decr" => "decr",
        b"touch" => "touch",
        b"stats" => "stats",
        b"flush_all" => "flush_all",
        b"version" => "version",
        b"verbosity" => "verbosity",
        b"quit" => "quit",
        b"shutdown" => "shutdown",
        b"cache_memlimit" => "cache_memlimit",
        b"slabs" => "slabs",
        b"lru" => "lru",
        b"lru_crawler" => "lru_crawler",
        b"extstore" => "extstore",
        b"debugtime" => "debugtime",
        b"misbehave" => "misbehave",
        b"refresh_certs" => "refresh_certs",
        b"watch" => "watch",
        b"mg" => "mg",
        b"ms" => "ms",
        b"md" => "md",
        b"ma" => "ma",
        b"mn" => "mn",
        b"me" => "me",
        _ => {
            return Err(invalid(format!(
                "unknown memcache command {:?}",
                show(first)
            )))
        }
    };
    let mut cmd = Command::new(name, Shape::Line);
    match name {
        "get" | "gets" | "gat" | "gats" => {
            let keys = if name.starts_with("gat") {
                arity(name, argc, |n| n >= 3)?;
                signed(words[1], "exptime")?;
                &words[2..]
            } else {
                arity(name, argc, |n| n >= 2)?;
                &words[1..]
            };
            for key in keys {
                check_key(key, MAX_KEY)?;
            }
            cmd.shape = Shape::Retrieval;
        }
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => {
            let base = if name == "cas" { 6 } else { 5 };
            arity(name, argc, |n| n == base || n == base + 1)?;
            check_key(words[1], MAX_KEY)?;
            let flags = unsigned(words[2], "flags")?;
            if flags > u64::from(u32::MAX) {
                return Err(invalid(format!("bad flags {:?}", show(words[2]))));
            }
            signed(words[3], "exptime")?;
            cmd.block = Some(data_len(words[4])?);
            if name == "cas" {
                unsigned(words[5], "cas unique")?;
            }
            cmd.noreply = argc == base + 1 && noreply;
        }
        "delete" => {
            arity(name, argc, |n| (2..=4).contains(&n))?;
            check_key(words[1], MAX_KEY)?;
            cmd.noreply = noreply;
        }
        "incr" | "decr" | "touch" => {
            arity(name, argc, |n| n == 3 || n == 4)?;
            check_key(words[1], MAX_KEY)?;
            cmd.noreply = noreply;
        }
        "stats" => cmd.shape = Shape::Stats,
        "flush_all" => {
            arity(name, argc, |n| (1..=3).contains(&n))?;
            cmd.noreply = noreply;
        }
        "verbosity" | "cache_memlimit" => {
            arity(name, argc, |n| n == 2 || n == 3)?;
            cmd.noreply = noreply;
        }
        "version" | "mn" | "misbehave" | "refresh_certs" => {
            arity(name, argc, |n| n == 1)?;
            if name == "mn" {
                cmd.shape = Shape::MetaBatch;
            }
        }
        "quit" => {
            arity(name, argc, |n| n == 1)?;
            cmd.close = true;
        }
        "shutdown" => {
            arity(name, argc, |n| n <= 2)?;
            cmd.shape = Shape::LineOrClose;
        }
        "lru_crawler" => {
            arity(name, argc, |n| n >= 2)?;
            cmd.shape = match words[1] {
                b"metadump" => Shape::UntilEnd,
                b"mgdump" => Shape::UntilEn,
                _ => Shape::Line,
            };
        }
        "slabs" | "lru" | "extstore" | "debugtime" => {}
        "watch" => cmd.tunnel = true,
        "me" => {
            arity(name, argc, |n| n == 2)?;
            check_key(words[1], MAX_KEY_BASE64)?;
        }
        _ => {
            // mg, md, ma: KEY FLAGS*; ms: KEY DATALEN FLAGS*.
            let first_flag = if name == "ms" { 3 } else { 2 };
            arity(name, argc, |n| n >= first_flag)?;
            let flags = &words[first_flag..];
            let base64 = flags.iter().any(|f| *f == b"b");
            check_key(words[1], if base64 { MAX_KEY_BASE64 } else { MAX_KEY })?;
            if name == "ms" {
                cmd.block = Some(data_len(words[2])?);
            }
            cmd.quiet = flags.iter().any(|f| *f == b"q");
            cmd.shape = Shape::Meta;
        }
    }
    Ok(cmd)
}

fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// A meta reply code line: two capital letters, alone or followed by a space.
fn is_meta_code(line: &[u8]) -> bool {
    line.len() >= 2
        && line[..2].iter().all(u8::is_ascii_uppercase)
        && (line.len() == 2 || line[2] == b' ')
}

/// The `n`-th word of a line.
fn word(line: &[u8], n: usize) -> Option<&[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty()).nth(n)
}

/// What the reply line `line` (without its terminator) means in a reply of `shape`.
fn reply_step(shape: Shape, line: &[u8]) -> io::Result<Step> {
    let unexpected = || {
        invalid(format!(
            "unexpected reply line {:?} (expected {shape:?})",
            show(line)
        ))
    };
    let block = |n: usize| -> io::Result<u64> { data_len(word(line, n).ok_or_else(unexpected)?) };
    match shape {
        Shape::Line | Shape::LineOrClose => Ok(Step::Done),
        _ if shape != Shape::MetaBatch && is_error(line) => Ok(Step::Done),
        Shape::Retrieval => {
            if line == b"END" {
                Ok(Step::Done)
            } else if line.starts_with(b"VALUE ") {
                Ok(Step::Block {
                    len: block(3)?,
                    last: false,
                })
            } else {
                Err(unexpected())
            }
        }
        Shape::Stats => {
            if matches!(line, b"END" | b"RESET" | b"OK") {
                Ok(Step::Done)
            } else if [&b"STAT "[..], b"ITEM ", b"PREFIX "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                Ok(Step::More)
            } else {
                Err(unexpected())
            }
        }
        Shape::UntilEnd | Shape::UntilEn => {
            let end: &[u8] = if shape == Shape::UntilEnd {
                b"END"
            } else {
                b"EN"
            };
            if line == end || line.starts_with(b"BUSY") {
                Ok(Step::Done)
            } else {
                Ok(Step::More)
            }
        }
        Shape::Meta => {
            if line.starts_with(b"VA ") {
                Ok(Step::Block {
                    len: block(1)?,
                    last: true,
                })
            } else if is_meta_code(line) {
                Ok(Step::Done)
            } else {
                Err(unexpected())
            }
        }
        Shape::MetaBatch => {
            if line == b"MN" {
                Ok(Step::Done)
            } else if line.starts_with(b"VA ") {
                Ok(Step::Block {
                    len: block(1)?,
                    last: false,
                })
            } else if is_meta_code(line) || is_error(line) {
                Ok(Step::More)
            } else {
                Err(unexpected())
            }
        }
    }
}

/// Reads a reply of `shape` into `head`; `Some` when the rest is to be copied as it arrives.
fn reply_head(
    shape: Shape,
    r: &mut dyn BufRead,
    head: &mut Vec<u8>,
) -> io::Result<Option<Pending>> {
    loop {
        if head.len() >= MAX_HEAD {
            return Ok(Some(Pending {
                block: 0,
                then: Some(shape),
            }));
        }
        let start = head.len();
        read_reply_line(r, head)?;
        match reply_step(shape, trim_eol(&head[start..]))? {
            Step::Done => return Ok(None),
            Step::More => {}
            Step::Block { len, last } => {
                let then = (!last).then_some(shape);
                if len > STREAM_BLOCK || head.len() as u64 + len + 2 > MAX_HEAD as u64 {
                    return Ok(Some(Pending {
                        block: len + 2,
                        then,
                    }));
                }
                read_block(r, head, len)?;
                if last {
                    return Ok(None);
                }
            }
        }
    }
}

/// Copies the rest of a message from `pending` on.
fn copy_rest(mut pending: Pending, from: &mut dyn BufRead, to: &mut dyn Write) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        if pending.block > 0 {
            copy_block(from, to, pending.block)?;
        }
        let Some(shape) = pending.then else {
            return Ok(());
        };
        line.clear();
        let read = read_reply_line(from, &mut line);
        // What was read goes on even when it cannot be parsed: the driver then forwards the
        // rest untouched.
        to.write_all(&line)?;
        read?;
        match reply_step(shape, trim_eol(&line))? {
            Step::Done => return Ok(()),
            Step::More => pending.block = 0,
            Step::Block { len, last } => {
                pending.block = len + 2;
                if last {
                    pending.then = None;
                }
            }
        }
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
            return Err(invalid(format!(
                "command line longer than {limit} bytes: {}",
                show(&head[start..])
            )));
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
            flags: cmd.shape as u32,
            ..Request::default()
        };
        if cmd.noreply || cmd.close {
            req.flags |= SILENT;
        }
        if cmd.quiet {
            req.flags |= QUIET;
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
        Ok(Some(req))
    }

    fn read_response(
        &mut self,
        req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        self.pending = None;
        let shape = Shape::of(req);
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

    fn error_reply(&mut self, req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        let bytes = if req.flags & SILENT != 0 {
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
mod tests {
    use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
    use super::*;
    use crate::net::HostPort;
    use crate::opts::Values;

    #[test]
    fn a_call_allocates_nothing_once_the_session_is_warm() {
        let mut session = MemcacheSession::default();
        let mut head = Vec::with_capacity(256);
        let call = |session: &mut MemcacheSession, head: &mut Vec<u8>, cmd: &[u8], reply: &[u8]| {
            head.clear();
            let req = session.read_request(&mut &cmd[..], head).unwrap().unwrap();
            head.clear();
            session.read_response(&req, &mut &reply[..], head).unwrap();
            assert_eq!(&head[..], reply);
        };
        let get = (
            &b"get key\r\n"[..],
            &b"VALUE key 0 5\r\nhello\r\nEND\r\n"[..],
        );
        let set = (&b"set key 0 0 5\r\nhello\r\n"[..], &b"STORED\r\n"[..]);
        let (_, warm) = crate::sys::alloc_count::cold_then_warm(|| {
            call(&mut session, &mut head, get.0, get.1);
            call(&mut session, &mut head, set.0, set.1);
        });
        assert_eq!(warm, 0, "allocations in 100 get and 100 set calls");
        // Past the words held on the stack, a long multi-key get still reads.
        let keys: Vec<String> = (0..INLINE_WORDS * 2).map(|i| format!("k{i}")).collect();
        let line = format!("get {}\r\n", keys.join(" "));
        let req = session
            .read_request(&mut line.as_bytes(), &mut head)
            .unwrap()
            .unwrap();
        assert_eq!(req.name, "get");
        let mut reply = Vec::new();
        for k in &keys {
            reply.extend_from_slice(format!("VALUE {k} 0 1\r\nx\r\n").as_bytes());
        }
        reply.extend_from_slice(b"END\r\n");
        head.clear();
        session
            .read_response(&req, &mut &reply[..], &mut head)
            .unwrap();
        assert_eq!(head, reply);
    }

    /// Reads one request from `input` on a new session.
    fn request(input: &[u8]) -> Parsed {
        request_in(&mut MemcacheSession::default(), input)
    }

    /// The request parsed from a whole input, which it must use up.
    fn whole(input: &[u8]) -> Request {
        let (req, fwd, rest) = request(input).unwrap().unwrap();
        assert_eq!(fwd, input);
        assert!(rest.is_empty(), "left {:?}", show(&rest));
        req
    }

    /// The reply to the command line `cmd` read from `input`: bytes forwarded, input left.
    fn reply(cmd: &[u8], input: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut s = MemcacheSession::default();
        let (req, _, _) = request_in(&mut s, cmd).unwrap().unwrap();
        reply_in(&mut s, &req, input).map(|(_, fwd, rest)| (fwd, rest))
    }

    /// Asserts the reply to `cmd` is exactly `input` (followed by `next`, left unread).
    fn complete_reply(cmd: &[u8], input: &[u8]) {
        let next = b"END\r\n";
        let mut all = input.to_vec();
        all.extend_from_slice(next);
        let (fwd, rest) = reply(cmd, &all).unwrap();
        assert_eq!(show(&fwd), show(input));
        assert_eq!(rest, next);
    }

    #[test]
    fn retrieval_commands() {
        for line in [
            &b"get foo\r\n"[..],
            b"gets foo bar baz\r\n",
            b"gat 100 foo\r\n",
            b"gats -1 foo bar\r\n",
            b"get foo\n",
            b"  get   foo  \r\n",
        ] {
            let req = whole(line);
            assert!(req.expects_response && !req.close && !req.tunnel);
            assert_eq!(Shape::of(&req), Shape::Retrieval);
        }
        assert_eq!(whole(b"gets a b\r\n").name, "gets");
        complete_reply(b"get foo\r\n", b"END\r\n");
        complete_reply(b"get foo\r\n", b"VALUE foo 0 3\r\nbar\r\nEND\r\n");
        complete_reply(
            b"gets a b c\r\n",
            b"VALUE a 5 2 10\r\nxy\r\nVALUE c 0 0 11\r\n\r\nEND\r\n",
        );
        // Data that looks like protocol is data.
        complete_reply(
            b"get k\r\n",
            b"VALUE k 0 13\r\nEND\r\nVALUE \r\n\r\nEND\r\n",
        );
        // An error ends the reply, even after some values.
        complete_reply(
            b"get k\r\n",
            b"VALUE k 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n",
        );
        complete_reply(b"get k\r\n", b"CLIENT_ERROR bad command line format\r\n");
        complete_reply(b"get k\r\n", b"ERROR\r\n");
    }

    #[test]
    fn retrieval_reply_errors() {
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0 3\r\nbarX\r\nEND\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0 3\r\nba")),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0 -3\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0 999999999999\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"STORED\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\n")),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(kind(reply(b"get k\r\n", b"")), io::ErrorKind::UnexpectedEof);
        let long = vec![b'x'; MAX_REPLY_LINE + 1];
        assert_eq!(kind(reply(b"get k\r\n", &long)), io::ErrorKind::InvalidData);
    }

    #[test]
    fn storage_commands() {
        for (input, noreply) in [
            (&b"set foo 0 0 3\r\nbar\r\n"[..], false),
            (b"add foo 4294967295 -1 0\r\n\r\n", false),
            (b"replace foo 1 100 5 noreply\r\nab\r\nc\r\n", true),
            (b"append foo 0 0 1\r\nx\r\n", false),
            (b"prepend foo 0 0 1 noreply\r\nx\r\n", true),
            (b"cas foo 0 0 3 12345\r\nbar\r\n", false),
            (b"cas foo 0 0 3 12345 noreply\r\nbar\r\n", true),
            // An extra last word that is not noreply is ignored, as memcached does.
            (b"set foo 0 0 3 whatever\r\nbar\r\n", false),
        ] {
            let req = whole(input);
            assert_eq!(req.expects_response, !noreply, "{}", show(input));
            assert_eq!(req.body, Body::None);
        }
        complete_reply(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
        complete_reply(b"cas a 0 0 1 1\r\nx\r\n", b"EXISTS\r\n");
        complete_reply(b"add a 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
        complete_reply(
            b"set a 0 0 1\r\nx\r\n",
            b"SERVER_ERROR out of memory storing object\r\n",
        );
    }

    #[test]
    fn storage_errors() {
        for (input, want) in [
            // The data block must end with CRLF.
            (
                &b"set foo 0 0 3\r\nbarX\r\n"[..],
                io::ErrorKind::InvalidData,
            ),
            (b"set foo 0 0 3\r\nbar\nX", io::ErrorKind::InvalidData),
            // Cut short.
            (b"set foo 0 0 3\r\nba", io::ErrorKind::UnexpectedEof),
            (b"set foo 0 0 3\r\n", io::ErrorKind::UnexpectedEof),
            (b"set foo 0 0 3", io::ErrorKind::UnexpectedEof),
            // Bad numbers and word counts, which memcached would not swallow the block for.
            (b"set foo 0 0 -1\r\n\r\n", io::ErrorKind::InvalidData),
            (b"set foo 0 0 x\r\n\r\n", io::ErrorKind::InvalidData),
            (b"set foo x 0 1\r\nx\r\n", io::ErrorKind::InvalidData),
            (
                b"set foo 4294967296 0 1\r\nx\r\n",
                io::ErrorKind::InvalidData,
            ),
            (b"set foo 0 x 1\r\nx\r\n", io::ErrorKind::InvalidData),
            (b"set foo 0 0\r\n", io::ErrorKind::InvalidData),
            (
                b"set foo 0 0 1 noreply extra\r\nx\r\n",
                io::ErrorKind::InvalidData,
            ),
            (b"cas foo 0 0 1\r\nx\r\n", io::ErrorKind::InvalidData),
            (b"cas foo 0 0 1 x\r\nx\r\n", io::ErrorKind::InvalidData),
            // Oversized for memcached's int, and a 64 MiB one, which is streamed.
            (b"set foo 0 0 2147483646\r\n", io::ErrorKind::InvalidData),
            (b"set foo 0 0 67108865\r\n", io::ErrorKind::UnexpectedEof),
            (
                b"set foo 0 0 99999999999999999999999\r\n",
                io::ErrorKind::InvalidData,
            ),
        ] {
            assert_eq!(kind(request(input)), want, "{}", show(input));
        }
        let key = vec![b'k'; MAX_KEY];
        let mut ok = b"set ".to_vec();
        ok.extend_from_slice(&key);
        ok.extend_from_slice(b" 0 0 1\r\nx\r\n");
        whole(&ok);
        let mut long = b"set k".to_vec();
        long.extend_from_slice(&key);
        long.extend_from_slice(b" 0 0 1\r\nx\r\n");
        assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
        let mut get = b"get a ".to_vec();
        get.extend_from_slice(&key);
        get.extend_from_slice(b"k\r\n");
        assert_eq!(kind(request(&get)), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_binary_protocol_is_not_framed_and_only_starts_a_connection() {
        let get = b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00k";
        assert_eq!(kind(request(get)), io::ErrorKind::InvalidData);
        // Later in a text connection, 0x80 is a byte of a text line: an unknown command.
        let mut s = MemcacheSession::default();
        request_in(&mut s, b"version\r\n").unwrap().unwrap();
        let e = request_in(&mut s, b"\x80x\r\n").unwrap_err();
        assert!(e.to_string().contains("unknown memcache command"), "{e}");
    }

    #[test]
    fn a_command_that_cannot_be_framed_keeps_every_byte_it_consumed() {
        for input in [
            &b"foo\r\n"[..],
            b"set k 0 0 blah\r\nhello\r\n",
            b"set k 0 0 3\r\nabcXY",
            b"cas k 0 0 1 notanumber\r\nx\r\n",
        ] {
            let mut s = MemcacheSession::default();
            let mut r = input;
            let mut head = Vec::new();
            let e = s.read_request(&mut r, &mut head).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{}", show(input));
            let consumed = input.len() - r.len();
            assert_eq!(head, &input[..consumed], "{}", show(input));
        }
    }

    #[test]
    fn large_blocks_are_streamed() {
        let data = vec![b'\n'; 200_000];
        let mut input = b"set big 0 0 200000\r\n".to_vec();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\nget big\r\n");
        let mut s = MemcacheSession::default();
        let mut r = &input[..];
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        assert_eq!(head, b"set big 0 0 200000\r\n");
        assert_eq!(req.body, Body::Length(200_002));
        let mut body = Vec::new();
        s.copy_body(req.body, &mut r, &mut body).unwrap();
        assert_eq!(body.len(), 200_002);
        assert_eq!(r, b"get big\r\n");

        // A bad end of a streamed block is caught too.
        let mut bad = b"set big 0 0 200000\r\n".to_vec();
        bad.extend_from_slice(&data);
        bad.extend_from_slice(b"XX");
        assert_eq!(kind(request(&bad)), io::ErrorKind::InvalidData);
        bad.truncate(bad.len() - 10);
        assert_eq!(kind(request(&bad)), io::ErrorKind::UnexpectedEof);

        // A reply with a large value, then small ones: head, then the rest as it arrives.
        let mut rep = b"VALUE a 0 3\r\nabc\r\nVALUE big 0 200000\r\n".to_vec();
        rep.extend_from_slice(&data);
        rep.extend_from_slice(b"\r\nVALUE c 0 1\r\nc\r\nEND\r\nNEXT");
        let mut s = MemcacheSession::default();
        let (req, _, _) = request_in(&mut s, b"get a big c\r\n").unwrap().unwrap();
        let mut r = &rep[..];
        let mut head = Vec::new();
        let resp = s.read_response(&req, &mut r, &mut head).unwrap();
        assert_eq!(head, b"VALUE a 0 3\r\nabc\r\nVALUE big 0 200000\r\n");
        assert_eq!(resp.body, Body::Length(200_002));
        s.copy_body(resp.body, &mut r, &mut head).unwrap();
        assert_eq!(head, &rep[..rep.len() - 4]);
        assert_eq!(r, b"NEXT");

        // Many small values: the head stops at 1 MiB, the rest is copied.
        let mut rep = Vec::new();
        for i in 0..40_000 {
            rep.extend_from_slice(format!("VALUE k{i} 0 20\r\n").as_bytes());
            rep.extend_from_slice(&[b'v'; 20]);
            rep.extend_from_slice(b"\r\n");
        }
        rep.extend_from_slice(b"END\r\n");
        let mut s = MemcacheSession::default();
        let (req, _, _) = request_in(&mut s, b"get k\r\n").unwrap().unwrap();
        let mut r = &rep[..];
        let mut head = Vec::new();
        let resp = s.read_response(&req, &mut r, &mut head).unwrap();
        assert!(head.len() <= MAX_HEAD + MAX_REPLY_LINE, "{}", head.len());
        assert!(matches!(resp.body, Body::Length(_)));
        s.copy_body(resp.body, &mut r, &mut head).unwrap();
        assert_eq!(head, rep);
        assert!(r.is_empty());
    }

    #[test]
    fn other_commands() {
        for (input, expects, name) in [
            (&b"delete foo\r\n"[..], true, "delete"),
            (b"delete foo noreply\r\n", false, "delete"),
            (b"delete foo 0\r\n", true, "delete"),
            (b"incr n 1\r\n", true, "incr"),
            (b"decr n 5 noreply\r\n", false, "decr"),
            (b"touch foo 10\r\n", true, "touch"),
            (b"touch foo 10 noreply\r\n", false, "touch"),
            (b"flush_all\r\n", true, "flush_all"),
            (b"flush_all 10\r\n", true, "flush_all"),
            (b"flush_all noreply\r\n", false, "flush_all"),
            (b"flush_all 0 noreply\r\n", false, "flush_all"),
            (b"version\r\n", true, "version"),
            (b"verbosity 1\r\n", true, "verbosity"),
            (b"verbosity 1 noreply\r\n", false, "verbosity"),
            (b"cache_memlimit 100\r\n", true, "cache_memlimit"),
            (b"slabs automove 1\r\n", true, "slabs"),
            (b"lru_crawler crawl all\r\n", true, "lru_crawler"),
            (b"\r\n", true, "(empty)"),
        ] {
            let req = whole(input);
            assert_eq!(req.expects_response, expects, "{}", show(input));
            assert_eq!(req.name, name);
            assert!(!req.close && !req.tunnel);
        }
        let quit = whole(b"quit\r\n");
        assert!(quit.close && !quit.expects_response);
        assert!(whole(b"watch\r\n").tunnel);
        assert!(whole(b"watch fetchers mutations\r\n").tunnel);
        complete_reply(b"delete foo\r\n", b"DELETED\r\n");
        complete_reply(b"incr n 1\r\n", b"42\r\n");
        complete_reply(b"touch foo 1\r\n", b"TOUCHED\r\n");
        complete_reply(b"version\r\n", b"VERSION 1.6.18\r\n");
        complete_reply(b"flush_all\r\n", b"OK\r\n");
        complete_reply(
            b"lru_crawler metadump all\r\n",
            b"key=a exp=-1 la=1 cas=2 fetch=no cls=1 size=63\r\nEND\r\n",
        );
        complete_reply(
            b"lru_crawler metadump all\r\n",
            b"BUSY currently processing\r\n",
        );
        complete_reply(b"lru_crawler mgdump 1\r\n", b"mg a\r\nmg b\r\nEN\r\n");
        for input in [
            &b"delete\r\n"[..],
            b"delete a 0 noreply x\r\n",
            b"incr n\r\n",
            b"touch k\r\n",
            b"version x\r\n",
            b"quit now\r\n",
            b"flush_all 1 2 3\r\n",
            b"verbosity\r\n",
        ] {
            assert_eq!(
                kind(request(input)),
                io::ErrorKind::InvalidData,
                "{}",
                show(input)
            );
        }
    }

    #[test]
    fn stats() {
        let req = whole(b"stats\r\n");
        assert_eq!(Shape::of(&req), Shape::Stats);
        complete_reply(b"stats\r\n", b"STAT pid 1\r\nSTAT uptime 10\r\nEND\r\n");
        complete_reply(b"stats items\r\n", b"END\r\n");
        complete_reply(b"stats reset\r\n", b"RESET\r\n");
        complete_reply(b"stats detail on\r\n", b"OK\r\n");
        complete_reply(
            b"stats detail dump\r\n",
            b"PREFIX a get 1 hit 1 set 0 del 0\r\nEND\r\n",
        );
        complete_reply(
            b"stats cachedump 1 1\r\n",
            b"ITEM foo [3 b; 0 s]\r\nEND\r\n",
        );
        complete_reply(b"stats nonsense\r\n", b"ERROR\r\n");
        assert_eq!(
            kind(reply(b"stats\r\n", b"STAT pid 1\r\nHELLO\r\nEND\r\n")),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            kind(reply(b"stats\r\n", b"STAT pid 1\r\n")),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn shutdown_may_close() {
        let mut s = MemcacheSession::default();
        let (req, _, _) = request_in(&mut s, b"shutdown\r\n").unwrap().unwrap();
        let (resp, fwd, _) = reply_in(&mut s, &req, b"").unwrap();
        assert!(resp.close && fwd.is_empty());
        let (resp, fwd, _) = reply_in(&mut s, &req, b"ERROR: shutdown not enabled\r\n").unwrap();
        assert!(!resp.close);
        assert_eq!(fwd, b"ERROR: shutdown not enabled\r\n");
    }

    #[test]
    fn meta_commands() {
        for (input, name) in [
            (&b"mg foo v f t\r\n"[..], "mg"),
            (b"mg foo\r\n", "mg"),
            (b"md foo\r\n", "md"),
            (b"md foo I T30\r\n", "md"),
            (b"ma foo N0 J13 v\r\n", "ma"),
            (b"ms foo 3 T0 F5\r\nbar\r\n", "ms"),
            (b"ms foo 0\r\n\r\n", "ms"),
            (b"mn\r\n", "mn"),
            (b"me foo\r\n", "me"),
        ] {
            let req = whole(input);
            assert_eq!(req.name, name);
            assert!(req.expects_response && !req.tunnel);
        }
        complete_reply(b"mg foo v\r\n", b"VA 3 f0\r\nbar\r\n");
        complete_reply(b"mg foo v\r\n", b"VA 0\r\n\r\n");
        complete_reply(b"mg foo\r\n", b"HD\r\n");
        complete_reply(b"mg foo k v\r\n", b"EN\r\n");
        complete_reply(b"ms foo 3\r\nbar\r\n", b"HD c123\r\n");
        complete_reply(b"ms foo 3\r\nbar\r\n", b"NS\r\n");
        complete_reply(b"md foo\r\n", b"NF\r\n");
        complete_reply(b"ma foo v\r\n", b"VA 2\r\n13\r\n");
        complete_reply(b"ma foo\r\n", b"EX\r\n");
        complete_reply(b"mn\r\n", b"MN\r\n");
        complete_reply(
            b"me foo\r\n",
            b"ME foo exp=-1 la=2 cas=3 fetch=no cls=1 size=63\r\n",
        );
        complete_reply(b"mg foo\r\n", b"CLIENT_ERROR bad command line format\r\n");
        for bad in [
            &b"VA x\r\n"[..],
            b"VA 3\r\nbarX",
            b"hello\r\n",
            b"H\r\n",
            b"HDX\r\n",
        ] {
            assert!(reply(b"mg foo v\r\n", bad).is_err(), "{}", show(bad));
        }
        for bad in [
            &b"mg\r\n"[..],
            b"ms foo\r\n",
            b"ms foo x\r\n",
            b"ms foo -1\r\n",
            b"ms foo 3\r\nbarX\r\n",
            b"mn x\r\n",
            b"me\r\n",
        ] {
            assert!(request(bad).is_err(), "{}", show(bad));
        }
        // A base64 key may be longer than 250 bytes.
        let mut b64 = b"mg ".to_vec();
        b64.extend_from_slice(&[b'A'; 300]);
        b64.extend_from_slice(b" b v\r\n");
        whole(&b64);
        b64.truncate(b64.len() - 6);
        b64.extend_from_slice(b" v\r\n");
        assert!(request(&b64).is_err());
    }

    #[test]
    fn quiet_batches_end_with_mn() {
        let mut s = MemcacheSession::default();
        let input = b"mg a v q\r\nms b 1 q\r\nx\r\nmd c q\r\nmn\r\n";
        let mut r = &input[..];
        let mut reqs = Vec::new();
        for _ in 0..4 {
            let mut head = Vec::new();
            let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
            s.copy_body(req.body, &mut r, &mut head).unwrap();
            reqs.push(req);
        }
        assert!(r.is_empty());
        assert!(reqs[..3].iter().all(|q| !q.expects_response && !q.tunnel));
        assert!(reqs[3].expects_response && !reqs[3].tunnel);
        // The mn call takes every reply of the batch.
        let batch = b"VA 1 ka\r\nx\r\nNS\r\nCLIENT_ERROR bad\r\nMN\r\nEND\r\n";
        let (_, fwd, rest) = reply_in(&mut s, &reqs[3], batch).unwrap();
        assert_eq!(fwd, &batch[..batch.len() - 5]);
        assert_eq!(rest, b"END\r\n");
        // The batch is over: a plain command is a call again.
        let (req, _, _) = request_in(&mut s, b"get a\r\n").unwrap().unwrap();
        assert!(!req.tunnel);
        // Garbage inside a batch reply.
        assert!(reply_in(&mut s, &reqs[3], b"VA 1\r\nx\r\nhello\r\nMN\r\n").is_err());
    }

    #[test]
    fn quiet_commands_not_ended_by_mn_make_a_tunnel() {
        let mut s = MemcacheSession::default();
        let (q, _, _) = request_in(&mut s, b"mg a v q\r\n").unwrap().unwrap();
        assert!(!q.expects_response);
        let (last, _, _) = request_in(&mut s, b"mg b v\r\n").unwrap().unwrap();
        assert!(last.tunnel);

        let mut s = MemcacheSession::default();
        for _ in 0..MAX_QUIET {
            let (q, _, _) = request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
            assert!(!q.tunnel && !q.expects_response);
        }
        let (q, _, _) = request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
        assert!(q.tunnel);

        // quit after quiet commands just closes.
        let mut s = MemcacheSession::default();
        request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
        let (q, _, _) = request_in(&mut s, b"quit\r\n").unwrap().unwrap();
        assert!(q.close && !q.tunnel);
    }

    #[test]
    fn pipelined_commands_are_read_one_at_a_time() {
        let input = b"set a 0 0 1\r\n1\r\nget a\r\ndelete a noreply\r\nget a b\r\nquit\r\n";
        let mut s = MemcacheSession::default();
        let mut r = &input[..];
        let mut names = Vec::new();
        loop {
            let mut head = Vec::new();
            let Some(req) = s.read_request(&mut r, &mut head).unwrap() else {
                break;
            };
            names.push(req.name);
        }
        assert_eq!(names, ["set", "get", "delete", "get", "quit"]);

        let replies = b"STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nEND\r\n";
        let mut r = &replies[..];
        let mut s = MemcacheSession::default();
        let mut out = Vec::new();
        for cmd in [&b"set a 0 0 1\r\n1\r\n"[..], b"get a\r\n", b"get a b\r\n"] {
            let (req, _, _) = request_in(&mut s, cmd).unwrap().unwrap();
            let mut head = Vec::new();
            s.read_response(&req, &mut r, &mut head).unwrap();
            out.push(head);
        }
        assert_eq!(
            out,
            [
                &b"STORED\r\n"[..],
                b"VALUE a 0 1\r\n1\r\nEND\r\n",
                b"END\r\n"
            ]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn garbage_and_limits() {
        assert!(request(b"").unwrap().is_none());
        for input in [
            &b"\x00\x01\x02\xff\r\n"[..],
            b"hello world\r\n",
            b"GET foo\r\n",
            b"get fo\x01o\r\n",
            b"get foo\rbar\r\n",
            b"*1\r\n$4\r\nPING\r\n",
        ] {
            assert_eq!(
                kind(request(input)),
                io::ErrorKind::InvalidData,
                "{}",
                show(input)
            );
        }
        assert_eq!(kind(request(b"get foo")), io::ErrorKind::UnexpectedEof);
        // A command line is at most 2 KiB, a multi-get line much longer.
        let long = vec![b'a'; 3000];
        assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
        let mut delete = b"delete ".to_vec();
        delete.extend_from_slice(&[b' '; 2100]);
        delete.extend_from_slice(b"a\r\n");
        assert_eq!(kind(request(&delete)), io::ErrorKind::InvalidData);
        let mut get = b"get".to_vec();
        for i in 0..2000 {
            get.extend_from_slice(format!(" key{i}").as_bytes());
        }
        get.extend_from_slice(b"\r\n");
        assert!(get.len() > MAX_LINE);
        assert_eq!(whole(&get).name, "get");
        let mut huge = b"get ".to_vec();
        huge.extend_from_slice(&vec![b'k'; MAX_GET_LINE]);
        assert_eq!(kind(request(&huge)), io::ErrorKind::InvalidData);
    }

    #[test]
    fn error_replies() {
        let mut s = MemcacheSession::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let get = whole(b"get a\r\n");
        let reply = s.error_reply(&get, &mut rng);
        assert_eq!(
            reply.bytes,
            b"SERVER_ERROR vaurien: injected error on get\r\n"
        );
        assert!(!reply.close);
        for silent in [
            &b"set a 0 0 1 noreply\r\nx\r\n"[..],
            b"quit\r\n",
            b"incr a 1 noreply\r\n",
        ] {
            let req = whole(silent);
            assert!(s.error_reply(&req, &mut rng).bytes.is_empty());
        }
        let quiet = whole(b"mg a v q\r\n");
        assert!(s
            .error_reply(&quiet, &mut rng)
            .bytes
            .starts_with(b"SERVER_ERROR vaurien"));
    }

    #[test]
    fn spec_builds() {
        let spec = spec();
        let proto = (spec.build)(&Values::defaults(spec.options)).unwrap();
        assert_eq!(proto.name(), "memcache");
        assert!(!proto.stream_options().keep_alive);
        let backend = HostPort::parse("127.0.0.1:11211").unwrap();
        assert!(proto.framing(&backend).is_some());
    }
}
