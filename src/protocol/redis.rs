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

use super::wire::{copy_exact, cut_short, invalid, peek, read_exactly, show, trim_eol};
use super::Sessions;
use std::io::{self, BufRead, Read, Write};

use crate::protocol::{
    Body, ErrorReply, Framing, Name, ProtocolSpec, Request, Response, TCP_OPTIONS,
};

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

/// Commands after which the connection becomes a byte tunnel.
const TUNNEL_COMMANDS: &[&[u8]] = &[
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
    b"SYNC",
    b"PSYNC",
];

/// `CLIENT` subcommands after which the connection becomes a byte tunnel.
const TUNNEL_CLIENT_SUBCOMMANDS: &[&[u8]] = &[b"REPLY", b"TRACKING"];

/// Commands that leave state on the backend connection a later client must not inherit.
const STATEFUL_COMMANDS: &[&[u8]] = &[
    b"SELECT",
    b"HELLO",
    b"AUTH",
    b"READONLY",
    b"READWRITE",
    b"ASKING",
];

/// `CLIENT` subcommands that leave state on the backend connection.
const STATEFUL_CLIENT_SUBCOMMANDS: &[&[u8]] = &[
    b"SETNAME",
    b"SETINFO",
    b"NO-EVICT",
    b"NO-TOUCH",
    b"CACHING",
    b"TRACKING",
    b"REPLY",
];

/// The declaration of `redis`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "redis",
        summary: "Redis RESP2/RESP3: a call is one command and its reply; pipelining, inline \
                  commands; SUBSCRIBE and MONITOR turn the connection into a tunnel",
        options: TCP_OPTIONS,
        build: |v| Sessions::<RedisSession>::build("redis", v, false, true),
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

/// Where parsing of a message stopped, to go on in `copy_body`.
#[derive(Debug)]
struct Resume {
    stack: Vec<Frame>,
    request: bool,
}

/// An aggregate being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// This many values still to read.
    Count(u64),
    /// A streamed aggregate (`*?`): values until `.`.
    Streamed,
    /// A streamed string (`$?`): `;` chunks until `;0`.
    Chunks,
}

/// Why parsing returned.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The message is complete.
    Done,
    /// This many bytes of a bulk string (payload and CRLF) follow and are to be copied as
    /// they arrive, then parsing goes on; 0: the head is full, parsing goes on at once.
    Bulk(u64),
}

/// A length field.
enum Len {
    Null,
    Streamed,
    N(u64),
}

/// Reads one line ended by LF (`crlf`: by CRLF) into `out`, at most [`MAX_LINE`] bytes.
fn read_line(r: &mut dyn BufRead, out: &mut Vec<u8>, crlf: bool, what: &str) -> io::Result<()> {
    let start = out.len();
    let n = r.take(MAX_LINE as u64).read_until(b'\n', out)?;
    if !out.ends_with(b"\n") || n == 0 {
        if n >= MAX_LINE {
            return Err(invalid(format!("{what} longer than 64 KiB")));
        }
        return Err(cut_short(format!("{what} cut short by the end of input")));
    }
    if crlf && !out[start..].ends_with(b"\r\n") {
        return Err(invalid(format!(
            "{what} not ended by CRLF: {}",
            show(&out[start..])
        )));
    }
    Ok(())
}

fn parse_len(field: &[u8], what: &str) -> io::Result<Len> {
    match field {
        b"?" => return Ok(Len::Streamed),
        b"-1" => return Ok(Len::Null),
        _ => {}
    }
    if field.is_empty() || field.len() > 19 || !field.iter().all(u8::is_ascii_digit) {
        return Err(invalid(format!("bad {what} length {:?}", show(field))));
    }
    let n = field
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Ok(Len::N(n))
}

/// A count or length of a command as the server reads it (`string2ll`): an optional `-`, then
/// `0` alone or digits without a leading zero, within an `i64`.
fn server_ll(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits == b"0" {
        return (!negative).then_some(0);
    }
    if digits.is_empty()
        || digits.len() > 19
        || digits[0] == b'0'
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let n = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    if negative {
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    }
}

fn check_number(field: &[u8], kind: u8) -> io::Result<()> {
    let ok = match kind {
        b':' => std::str::from_utf8(field).is_ok_and(|s| s.parse::<i64>().is_ok()),
        b',' => std::str::from_utf8(field).is_ok_and(|s| s.parse::<f64>().is_ok()),
        b'(' => {
            let digits = field.strip_prefix(b"-").unwrap_or(field);
            let digits = digits.strip_prefix(b"+").unwrap_or(digits);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        }
        b'#' => field == b"t" || field == b"f",
        b'_' => field.is_empty(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "bad value {:?} for RESP type '{}'",
            show(field),
            char::from(kind)
        )))
    }
}

fn push_frame(stack: &mut Vec<Frame>, frame: Frame) -> io::Result<()> {
    // A parent whose last element this is has nothing left to read: forget it, so that a
    // chain of one-element aggregates (a nested Lua table) costs one frame, not one a level.
    // The bottom frame stays: it tells a reply's own push from one nested in it.
    while stack.len() > 1 && stack.last() == Some(&Frame::Count(0)) {
        stack.pop();
    }
    if stack.len() > MAX_DEPTH {
        return Err(invalid(format!(
            "aggregates nested deeper than {MAX_DEPTH}"
        )));
    }
    stack.push(frame);
    Ok(())
}

/// Reads the `n` bytes of a bulk payload and the two bytes after it (CRLF, not checked: the
/// server skips them) into `out`, or asks for them to be copied as they arrive when there
/// are many.
fn bulk_payload(r: &mut dyn BufRead, out: &mut Vec<u8>, n: u64) -> io::Result<Option<Stop>> {
    if n > STREAM_BULK {
        return Ok(Some(Stop::Bulk(n + 2)));
    }
    read_exactly(r, out, n as usize + 2, "bulk string")?;
    Ok(None)
}

/// Reads RESP values into `out` until the aggregates on `stack` are complete (`request`: only
/// bulk strings, the elements of a command). Returns early to let a long bulk string, or the
/// rest of a message whose head is full, be copied as it arrives.
fn parse(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    stack: &mut Vec<Frame>,
    request: bool,
) -> io::Result<Stop> {
    loop {
        while stack.last() == Some(&Frame::Count(0)) {
            stack.pop();
        }
        let Some(&top) = stack.last() else {
            return Ok(Stop::Done);
        };
        if out.len() >= MAX_HEAD {
            return Ok(Stop::Bulk(0));
        }
        let start = out.len();
        read_line(r, out, true, "RESP line")?;
        let line = &out[start..out.len() - 2];
        let Some((&kind, field)) = line.split_first() else {
            return Err(invalid("empty line where a RESP value was expected"));
        };
        match top {
            Frame::Chunks => {
                if kind != b';' {
                    return Err(invalid(format!(
                        "expected a ';' chunk in a streamed string, got {:?}",
                        show(line)
                    )));
                }
                match parse_len(field, "chunk")? {
                    Len::N(0) => {
                        stack.pop();
                    }
                    Len::N(n) => {
                        if let Some(stop) = bulk_payload(r, out, n)? {
                            return Ok(stop);
                        }
                    }
                    _ => return Err(invalid(format!("bad chunk length {:?}", show(field)))),
                }
                continue;
            }
            Frame::Streamed if kind == b'.' => {
                if !field.is_empty() {
                    return Err(invalid(format!("bad end of aggregate {:?}", show(line))));
                }
                stack.pop();
                continue;
            }
            _ => {}
        }
        if request && kind != b'$' {
            return Err(invalid(format!(
                "expected '$' in a command, got {:?}",
                show(line)
            )));
        }
        // A value fills a slot of the aggregate it is in; an attribute comes before the value
        // it describes, and so does a push that arrives ahead of a reply.
        let fills = !(kind == b'|' || (kind == b'>' && !request && stack.len() == 1));
        if fills {
            if let Some(Frame::Count(n)) = stack.last_mut() {
                *n -= 1;
            }
        }
        match kind {
            b'+' | b'-' => {}
            b':' | b',' | b'(' | b'#' | b'_' => check_number(field, kind)?,
            b'$' if request => match server_ll(field) {
                Some(n) if (0..=MAX_BULK as i64).contains(&n) => {
                    if let Some(stop) = bulk_payload(r, out, n as u64)? {
                        return Ok(stop);
                    }
                }
                _ => return Err(invalid(format!("invalid bulk length {:?}", show(line)))),
            },
            b'$' | b'!' | b'=' => match parse_len(field, "bulk string")? {
                Len::N(n) => {
                    if let Some(stop) = bulk_payload(r, out, n)? {
                        return Ok(stop);
                    }
                }
                Len::Null if !request => {}
                Len::Streamed if kind == b'$' && !request => push_frame(stack, Frame::Chunks)?,
                _ => return Err(invalid(format!("bad bulk length {:?}", show(line)))),
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => match parse_len(field, "aggregate")? {
                Len::N(n) => {
                    if n > MAX_ELEMENTS {
                        return Err(invalid(format!("aggregate of {n} elements")));
                    }
                    let n = if matches!(kind, b'%' | b'|') {
                        2 * n
                    } else {
                        n
                    };
                    if n > 0 || kind == b'|' {
                        push_frame(stack, Frame::Count(n))?;
                    }
                }
                Len::Null => {}
                Len::Streamed => push_frame(stack, Frame::Streamed)?,
            },
            _ => {
                return Err(invalid(format!(
                    "unknown RESP type byte {:?}",
                    show(&[kind])
                )))
            }
        }
    }
}

/// Copies `total` bytes of a bulk string as they arrive (the last two, CRLF, unchecked).
fn copy_bulk(from: &mut dyn BufRead, to: &mut dyn Write, total: u64) -> io::Result<()> {
    copy_exact(from, to, total, "bulk string")
}

/// The first two arguments of a RESP command head (those held whole in it), and how many
/// there are.
fn first_args(head: &[u8]) -> ([&[u8]; 2], usize) {
    let mut args: [&[u8]; 2] = [&[], &[]];
    let mut found = 0;
    let Some(nl) = head.iter().position(|&b| b == b'\n') else {
        return (args, found);
    };
    let mut rest = &head[nl + 1..];
    while found < args.len() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        if nl < 2 {
            break;
        }
        let Ok(Len::N(n)) = parse_len(&rest[1..nl - 1], "") else {
            break;
        };
        let body = &rest[nl + 1..];
        let Some(arg) = body.get(..n as usize) else {
            break;
        };
        args[found] = arg;
        found += 1;
        rest = &body[(n as usize + 2).min(body.len())..];
    }
    (args, found)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits an inline command into arguments as the server does (`sdssplitargs`: double quotes
/// with `\n`, `\xHH`... escapes, single quotes); `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_dq {
                let c = c?;
                let hex = |j: usize| line.get(j).and_then(|&h| char::from(h).to_digit(16));
                if c == b'\\' && line.get(i + 1) == Some(&b'x') && hex(i + 2).is_some() {
                    if let (Some(h), Some(l)) = (hex(i + 2), hex(i + 3)) {
                        cur.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    cur.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                    i += 1;
                }
            } else if in_sq {
                let c = c?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                    i += 1;
                }
            } else {
                match c {
                    None => break,
                    Some(c) if is_space(c) => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(c) => cur.push(c),
                }
                i += 1;
            }
        }
        args.push(cur);
    }
}

/// Longer than every command and subcommand name the driver looks for.
const UPPER_MAX: usize = 24;

/// `arg` in upper case, written to `buf`; empty when missing or longer than any name looked
/// for (so it matches none), without allocating.
fn upper<'b>(arg: Option<&&[u8]>, buf: &'b mut [u8; UPPER_MAX]) -> &'b [u8] {
    match arg {
        Some(arg) if arg.len() <= UPPER_MAX => {
            let upper = &mut buf[..arg.len()];
            upper.copy_from_slice(arg);
            upper.make_ascii_uppercase();
            upper
        }
        _ => &[],
    }
}

/// A command name fit for logs: upper case, printable ASCII, at most 32 bytes.
fn display_name(arg: &[u8]) -> Name {
    let mut upper = [b'?'; Name::MAX];
    let len = arg.len().clamp(1, Name::MAX);
    for (to, &b) in upper.iter_mut().zip(arg) {
        if b.is_ascii_graphic() {
            *to = b.to_ascii_uppercase();
        }
    }
    Name::new(std::str::from_utf8(&upper[..len]).unwrap_or("?"))
}

/// The request for a command whose first arguments are `args` (empty when the command name
/// was too long to be held in the head).
fn request_for(args: &[&[u8]], body: Body) -> Request {
    let (mut first, mut second) = ([0u8; UPPER_MAX], [0u8; UPPER_MAX]);
    let command = upper(args.first(), &mut first);
    let tunnel = TUNNEL_COMMANDS.contains(&command)
        || (command == b"CLIENT"
            && TUNNEL_CLIENT_SUBCOMMANDS.contains(&upper(args.get(1), &mut second)));
    Request {
        name: display_name(args.first().copied().unwrap_or_default()),
        expects_response: true,
        body,
        tunnel,
        close: command == b"QUIT",
        ..Request::default()
    }
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
mod tests {
    use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
    use super::*;
    use crate::net::HostPort;
    use crate::opts::Values;
    use std::io::BufReader;

    #[test]
    fn a_call_allocates_nothing_once_the_session_is_warm() {
        let mut session = RedisSession::default();
        let mut head = Vec::with_capacity(256);
        let call = |session: &mut RedisSession, head: &mut Vec<u8>| {
            head.clear();
            let req = session
                .read_request(&mut &b"*2\r\n$3\r\nget\r\n$3\r\nkey\r\n"[..], head)
                .unwrap()
                .unwrap();
            head.clear();
            let reply = b"*2\r\n$5\r\nhello\r\n:1\r\n";
            session.read_response(&req, &mut &reply[..], head).unwrap();
            assert_eq!(&head[..], reply);
        };
        let (cold, warm) =
            crate::sys::alloc_count::cold_then_warm(|| call(&mut session, &mut head));
        assert!(cold > 0, "the first call sets up the parse stack");
        assert_eq!(warm, 0, "allocations in 100 GET calls");
    }

    /// Reads one request from `input` on a new session, as the driver does (head, then body).
    fn request(input: &[u8]) -> Parsed {
        request_in(&mut RedisSession::default(), input)
    }

    /// Reads one reply from `input`; returns the bytes forwarded and the input left.
    fn reply(input: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
        reply_in(&mut RedisSession::default(), &Request::default(), input)
            .map(|(_, fwd, rest)| (fwd, rest))
    }

    /// The same through a reader that hands out one byte at a time.
    fn reply_bytewise(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut s = RedisSession::default();
        let mut r = BufReader::with_capacity(1, input);
        let mut head = Vec::new();
        let resp = s.read_response(&Request::default(), &mut r, &mut head)?;
        s.copy_body(resp.body, &mut r, &mut head)?;
        Ok(head)
    }

    /// Asserts `msg` is read as exactly one whole reply, also when followed by more.
    fn whole_reply(msg: &[u8]) {
        assert_eq!(reply(msg).unwrap(), (msg.to_vec(), vec![]), "{}", show(msg));
        let mut two = msg.to_vec();
        two.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(
            reply(&two).unwrap(),
            (msg.to_vec(), b"+NEXT\r\n".to_vec()),
            "{}",
            show(msg)
        );
        assert_eq!(reply_bytewise(msg).unwrap(), msg, "{}", show(msg));
    }

    fn bad_reply(msg: &[u8]) {
        assert_eq!(
            kind(reply(msg)),
            io::ErrorKind::InvalidData,
            "{}",
            show(msg)
        );
    }

    fn truncated_reply(msg: &[u8]) {
        assert_eq!(
            kind(reply(msg)),
            io::ErrorKind::UnexpectedEof,
            "{}",
            show(msg)
        );
    }

    #[test]
    fn resp2_scalars() {
        for msg in [
            &b"+OK\r\n"[..],
            b"+\r\n",
            b"-ERR unknown command 'FOO'\r\n",
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            b":0\r\n",
            b":-42\r\n",
            b":9223372036854775807\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$4\r\na\r\nb\r\n",
            b"$3\r\n\x00\xff\n\r\n",
        ] {
            whole_reply(msg);
        }
    }

    #[test]
    fn resp2_arrays_and_nulls() {
        for msg in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"*2\r\n$3\r\nfoo\r\n$-1\r\n",
            b"*3\r\n:1\r\n:2\r\n:3\r\n",
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
            b"*1\r\n*1\r\n*1\r\n*0\r\n",
            b"*3\r\n$1\r\na\r\n*-1\r\n$1\r\nb\r\n",
        ] {
            whole_reply(msg);
        }
    }

    #[test]
    fn exec_replies_with_nested_arrays() {
        // MULTI; SET; INCR; LRANGE; HGETALL; GET missing; failing command; EXEC
        let exec = b"*6\r\n+OK\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*4\r\n$1\r\nf\r\n$1\r\nv\r\n\
$1\r\ng\r\n$1\r\nw\r\n$-1\r\n-WRONGTYPE Operation against a key\r\n";
        whole_reply(exec);
        whole_reply(b"*-1\r\n"); // EXEC after a WATCHed key changed
                                 // XREAD: array of [stream, array of [id, array of fields]]
        whole_reply(
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        );
    }

    #[test]
    fn resp3_types() {
        for msg in [
            &b"_\r\n"[..],
            b",3.14\r\n",
            b",-1.5e10\r\n",
            b",inf\r\n",
            b",-inf\r\n",
            b",nan\r\n",
            b"#t\r\n",
            b"#f\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
            b"(-1\r\n",
            b"!21\r\nSYNTAX invalid syntax\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            b"%0\r\n",
            b"~3\r\n+a\r\n+b\r\n#t\r\n",
            b"*2\r\n%1\r\n$1\r\nk\r\n~1\r\n_\r\n,1.0\r\n",
            // HELLO 3
            b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        ] {
            whole_reply(msg);
        }
    }

    #[test]
    fn attributes_belong_to_the_reply_they_precede() {
        let msg = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
*2\r\n:2039123\r\n:9543892\r\n";
        whole_reply(msg);
        // inside an aggregate, too
        whole_reply(b"*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n");
        whole_reply(b"|0\r\n+OK\r\n");
    }

    #[test]
    fn a_push_before_a_reply_travels_with_it() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
        let mut msg = push.to_vec();
        msg.extend_from_slice(b"$1\r\nv\r\n");
        whole_reply(&msg);
        // a push nested in an aggregate is an ordinary element
        whole_reply(b"*1\r\n>1\r\n+x\r\n");
    }

    #[test]
    fn streamed_strings_and_aggregates() {
        whole_reply(b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n");
        whole_reply(b"*?\r\n:1\r\n:2\r\n.\r\n");
        whole_reply(b"%?\r\n+a\r\n:1\r\n.\r\n");
        whole_reply(b"*?\r\n*?\r\n.\r\n$?\r\n;0\r\n.\r\n");
        bad_reply(b"$?\r\n;x\r\n");
        bad_reply(b"$?\r\n+no\r\n");
        bad_reply(b"*?\r\n.x\r\n");
    }

    #[test]
    fn malformed_replies_are_invalid_data() {
        for msg in [
            &b"?what\r\n"[..],
            b"hello\r\n",
            b"\r\n",
            b"+OK\n",
            b":12a\r\n",
            b":\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b",abc\r\n",
            b"(12x\r\n",
            b"$-2\r\n",
            b"$abc\r\n",
            b"$\r\n",
            b"$+5\r\nhello\r\n",
            b"*-2\r\n",
            b"*x\r\n",
            b"*1\r\n\r\n",
            b"%-5\r\n",
            b";3\r\nabc\r\n",
            b".\r\n",
        ] {
            bad_reply(msg);
        }
    }

    #[test]
    fn truncated_replies_are_unexpected_eof() {
        for msg in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$5\r\nhel",
            b"$5\r\nhello",
            b"$5\r\nhello\r",
            b"*2\r\n:1\r\n",
            b"*2\r\n*2\r\n:1\r\n",
            b"|1\r\n+a\r\n+b\r\n",
            b">1\r\n+a\r\n",
            b"$100000\r\nabc",
        ] {
            truncated_reply(msg);
        }
    }

    #[test]
    fn the_two_bytes_after_a_bulk_string_are_not_checked_as_the_server_does_not() {
        let (fwd, rest) = reply(b"$5\r\nhelloXY+NEXT\r\n").unwrap();
        assert_eq!(
            (&fwd[..], &rest[..]),
            (&b"$5\r\nhelloXY"[..], &b"+NEXT\r\n"[..])
        );
        let (req, fwd, rest) = request(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.name, "PING");
        assert_eq!(fwd, b"*1\r\n$4\r\nPINGxx");
        assert_eq!(rest, b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn oversized_lengths_and_lines() {
        // A reply's bulk string of any length is streamed (the server's limit is settable).
        let mut s = RedisSession::default();
        let mut head = Vec::new();
        let resp = s
            .read_response(&Request::default(), &mut &b"$536870913\r\n"[..], &mut head)
            .unwrap();
        assert_eq!(resp.body, Body::Length(536_870_915));
        bad_reply(b"$99999999999999999999\r\n");
        bad_reply(b"*1099511627777\r\n");
        let mut long = b"+".to_vec();
        long.resize(MAX_LINE + 10, b'a');
        long.extend_from_slice(b"\r\n");
        bad_reply(&long);
        // a line just under the limit is fine
        let mut ok = b"+".to_vec();
        ok.resize(MAX_LINE - 2, b'a');
        ok.extend_from_slice(b"\r\n");
        whole_reply(&ok);
    }

    #[test]
    fn nesting_goes_past_the_servers_own() {
        // A Lua table nested deeper than the server converts: 7,995 levels, then the error
        // it puts at the bottom (what redis 7 sends for a table nested 10,000 deep).
        let mut lua = b"*1\r\n".repeat(7995);
        lua.extend_from_slice(b"-ERR reached lua stack limit\r\n");
        whole_reply(&lua);
        // One-element chains cost nothing however deep; other nesting is bounded.
        let mut chain = b"*1\r\n".repeat(MAX_DEPTH * 2);
        chain.extend_from_slice(b":1\r\n");
        whole_reply(&chain);
        let nested = |depth: usize| {
            let mut m = b"*2\r\n".repeat(depth);
            m.extend_from_slice(&b":1\r\n".repeat(depth + 1));
            m
        };
        whole_reply(&nested(MAX_DEPTH));
        bad_reply(&nested(MAX_DEPTH + 2));
        // depth is not the element count: a long flat array is fine
        let mut flat = b"*1000\r\n".to_vec();
        flat.extend_from_slice(&b":7\r\n".repeat(1000));
        whole_reply(&flat);
    }

    #[test]
    fn long_bulk_strings_are_streamed() {
        let value = vec![b'x'; 3 * STREAM_BULK as usize];
        let mut msg = format!("${}\r\n", value.len()).into_bytes();
        msg.extend_from_slice(&value);
        msg.extend_from_slice(b"\r\n");
        let mut s = RedisSession::default();
        let mut r = &msg[..];
        let mut head = Vec::new();
        let resp = s
            .read_response(&Request::default(), &mut r, &mut head)
            .unwrap();
        assert_eq!(head, format!("${}\r\n", value.len()).as_bytes());
        assert_eq!(resp.body, Body::Length(value.len() as u64 + 2));
        whole_reply(&msg);

        // MGET with a long value between short ones, and a long value not ended by CRLF
        let mut mget = b"*3\r\n$1\r\na\r\n".to_vec();
        mget.extend_from_slice(&msg);
        mget.extend_from_slice(b"$-1\r\n");
        whole_reply(&mget);
        let mut odd = msg[..msg.len() - 2].to_vec();
        odd.extend_from_slice(b"XX");
        whole_reply(&odd);
        truncated_reply(&msg[..msg.len() - 10]);
    }

    #[test]
    fn a_huge_reply_is_not_held_whole() {
        // 200,000 elements of 10 bytes: more than MAX_HEAD
        let n = 200_000;
        let mut msg = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            msg.extend_from_slice(format!("$4\r\n{:04}\r\n", i % 10_000).as_bytes());
        }
        let mut s = RedisSession::default();
        let mut r = &msg[..];
        let mut head = Vec::new();
        let resp = s
            .read_response(&Request::default(), &mut r, &mut head)
            .unwrap();
        assert!(head.len() <= MAX_HEAD + MAX_LINE, "head of {}", head.len());
        assert_eq!(resp.body, Body::Length(0));
        s.copy_body(resp.body, &mut r, &mut head).unwrap();
        assert_eq!(head, msg);
        assert!(r.is_empty());
    }

    #[test]
    fn resp_commands() {
        let set = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let (req, fwd, rest) = request(set).unwrap().unwrap();
        assert_eq!(req.name, "SET");
        assert!(req.expects_response && !req.tunnel && !req.close);
        assert_eq!(req.body, Body::None);
        assert_eq!((fwd.as_slice(), rest.as_slice()), (&set[..], &b""[..]));

        let (req, _, _) = request(b"*1\r\n$4\r\nping\r\n").unwrap().unwrap();
        assert_eq!(req.name, "PING");
        let (req, _, _) = request(b"*2\r\n$5\r\nhello\r\n$1\r\n3\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.name, "HELLO");
        assert!(!req.tunnel && !req.close);
        let (req, _, _) = request(b"*1\r\n$5\r\nRESET\r\n").unwrap().unwrap();
        assert!(!req.tunnel && !req.close);
        // binary arguments are forwarded as they are
        let bin = b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\x00\xff\r\n";
        let (req, fwd, _) = request(bin).unwrap().unwrap();
        assert_eq!((req.name.as_str(), fwd.as_slice()), ("ECHO", &bin[..]));
    }

    #[test]
    fn tunnel_and_quit_commands() {
        for (cmd, tunnel, close) in [
            (&b"*2\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n"[..], true, false),
            (b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nc*\r\n", true, false),
            (b"*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nch\r\n", true, false),
            (b"*1\r\n$11\r\nUNSUBSCRIBE\r\n", true, false),
            (b"*1\r\n$7\r\nMONITOR\r\n", true, false),
            (b"*2\r\n$6\r\nCLIENT\r\n$5\r\nreply\r\n", true, false),
            (
                b"*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n",
                true,
                false,
            ),
            (b"*2\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n", false, false),
            (b"*1\r\n$4\r\nQUIT\r\n", false, true),
            (b"subscribe ch1 ch2\r\n", true, false),
            (b"\"MONITOR\"\n", true, false),
            (b"quit\r\n", false, true),
        ] {
            let (req, fwd, _) = request(cmd).unwrap().unwrap();
            assert_eq!((req.tunnel, req.close), (tunnel, close), "{}", show(cmd));
            assert!(req.expects_response);
            assert_eq!(fwd, cmd);
        }
    }

    #[test]
    fn inline_commands() {
        let (req, fwd, rest) = request(b"set k \"a b\\x41\"\r\nGET k\n").unwrap().unwrap();
        assert_eq!(req.name, "SET");
        assert_eq!(fwd, b"set k \"a b\\x41\"\r\n");
        assert_eq!(rest, b"GET k\n");
        let (req, fwd, rest) = request(&rest).unwrap().unwrap();
        assert_eq!(
            (req.name.as_str(), fwd.as_slice()),
            ("GET", &b"GET k\n"[..])
        );
        assert!(rest.is_empty());
        // blank lines and empty arrays, which the server skips, go with the next command
        let input = b"\r\n  \r\n\n*0\r\n*-1\r\nPING\r\n";
        let (req, fwd, _) = request(input).unwrap().unwrap();
        assert_eq!((req.name.as_str(), fwd.as_slice()), ("PING", &input[..]));
        let endless = b"\r\n".repeat(MAX_LINE);
        assert_eq!(kind(request(&endless)), io::ErrorKind::InvalidData);
        assert!(request(b"\r\n\r\n").unwrap().is_none());
        assert_eq!(
            split_args(b"a \"b c\" 'd\\'e' \"\\n\\x41\\q\"").unwrap(),
            vec![
                b"a".to_vec(),
                b"b c".to_vec(),
                b"d'e".to_vec(),
                b"\nAq".to_vec()
            ]
        );
        assert_eq!(split_args(b"  ").unwrap(), Vec::<Vec<u8>>::new());
        assert!(split_args(b"\"abc").is_none());
        assert!(split_args(b"'abc").is_none());
        assert!(split_args(b"\"a\"b").is_none());
        assert_eq!(
            kind(request(b"set k \"unbalanced\r\n")),
            io::ErrorKind::InvalidData
        );
        let mut long = vec![b'a'; MAX_LINE + 1];
        long.push(b'\n');
        assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
    }

    #[test]
    fn pipelined_commands_back_to_back() {
        let cmds: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n",
            b"PING\r\n",
            b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n",
            b"*1\r\n$4\r\nEXEC\r\n",
            b"*1\r\n$4\r\nQUIT\r\n",
        ];
        let input = cmds.concat();
        let mut s = RedisSession::default();
        let mut r = BufReader::with_capacity(7, &input[..]);
        let mut names = Vec::new();
        for cmd in cmds {
            let mut head = Vec::new();
            let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
            s.copy_body(req.body, &mut r, &mut head).unwrap();
            assert_eq!(head, *cmd);
            names.push(req.name);
        }
        assert_eq!(names, ["SET", "PING", "INCR", "EXEC", "QUIT"]);
        assert!(s.read_request(&mut r, &mut Vec::new()).unwrap().is_none());

        // replies back to back
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"+PONG\r\n",
            b":2\r\n",
            b"*1\r\n:2\r\n",
            b"+OK\r\n",
        ];
        let input = replies.concat();
        let mut r = BufReader::with_capacity(3, &input[..]);
        for want in replies {
            let mut head = Vec::new();
            let resp = s
                .read_response(&Request::default(), &mut r, &mut head)
                .unwrap();
            s.copy_body(resp.body, &mut r, &mut head).unwrap();
            assert_eq!(head, *want);
        }
    }

    #[test]
    fn malformed_and_truncated_commands() {
        for (cmd, want) in [
            (
                &b"*2\r\n$3\r\nGET\r\n:1\r\n"[..],
                io::ErrorKind::InvalidData,
            ),
            (b"*1\r\n+PING\r\n", io::ErrorKind::InvalidData),
            (b"*1\r\n$-1\r\n", io::ErrorKind::InvalidData),
            (b"*1\r\n$?\r\n", io::ErrorKind::InvalidData),
            (b"*?\r\n", io::ErrorKind::InvalidData),
            (b"*abc\r\n", io::ErrorKind::InvalidData),
            (b"*+5\r\n", io::ErrorKind::InvalidData),
            (b"*007\r\n", io::ErrorKind::InvalidData),
            (b"*-0\r\n", io::ErrorKind::InvalidData),
            (b"*2147483648\r\n", io::ErrorKind::InvalidData),
            (b"*1\r\n$536870913\r\n", io::ErrorKind::InvalidData),
            (b"*1\r\n$-5\r\n", io::ErrorKind::InvalidData),
            (b"*1\r\n$04\r\nPING\r\n", io::ErrorKind::InvalidData),
            (b"PI\x00NG\r\n", io::ErrorKind::InvalidData),
            (b"*1\n$4\nPING\n", io::ErrorKind::InvalidData),
            (b"*2\r\n$3\r\nGET\r\n", io::ErrorKind::UnexpectedEof),
            (b"*1\r\n$4\r\nPI", io::ErrorKind::UnexpectedEof),
            (b"*1", io::ErrorKind::UnexpectedEof),
            (b"PING", io::ErrorKind::UnexpectedEof),
        ] {
            assert_eq!(kind(request(cmd)), want, "{}", show(cmd));
        }
        assert!(request(b"").unwrap().is_none());
        // Counts of zero or less are empty commands the server skips without a reply.
        for empty in [&b"*0\r\n"[..], b"*-1\r\n", b"*-10\r\n"] {
            let mut input = empty.to_vec();
            input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            let (req, fwd, rest) = request(&input).unwrap().unwrap();
            assert_eq!(req.name, "PING", "after {}", show(empty));
            assert_eq!(fwd, input, "forwarded with the command after it");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn a_command_that_cannot_be_read_keeps_every_byte_it_consumed() {
        let mut long = vec![b'a'; MAX_LINE + 100];
        long.extend_from_slice(b"\r\n");
        for input in [
            &b"*1\r\nfoo\r\n"[..],
            b"*1\r\n$abc\r\n",
            b"SET \"a b\r\n",
            &long,
        ] {
            let mut s = RedisSession::default();
            let mut r = input;
            let mut head = Vec::new();
            let e = s.read_request(&mut r, &mut head).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let consumed = input.len() - r.len();
            assert_eq!(head, &input[..consumed], "{}", show(input));
        }
    }

    #[test]
    fn a_long_argument_is_streamed_and_can_be_dropped() {
        let value = vec![b'v'; 200_000];
        let mut cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n".to_vec();
        cmd.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
        cmd.extend_from_slice(&value);
        cmd.extend_from_slice(b"\r\n");
        let mut input = cmd.clone();
        input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");

        let mut s = RedisSession::default();
        let mut r = &input[..];
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        assert_eq!(req.name, "SET");
        assert_eq!(req.body, Body::Length(value.len() as u64 + 2));
        assert!(head.len() < 100);
        let mut body = Vec::new();
        s.copy_body(req.body, &mut r, &mut body).unwrap();
        head.extend_from_slice(&body);
        assert_eq!(head, cmd);

        // the error behavior drops the body; the next command is read cleanly
        let mut r = &input[..];
        let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
        s.copy_body(req.body, &mut r, &mut io::sink()).unwrap();
        let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
        assert_eq!((req.name.as_str(), req.body), ("PING", Body::None));

        // MSET with many arguments past the head limit
        let n = 150_000;
        let mut mset = format!("*{}\r\n$4\r\nMSET\r\n", 2 * n + 1).into_bytes();
        for i in 0..n {
            mset.extend_from_slice(format!("$7\r\nk{i:06}\r\n$1\r\nv\r\n").as_bytes());
        }
        let (req, fwd, rest) = request(&mset).unwrap().unwrap();
        assert_eq!(req.name, "MSET");
        assert_eq!(req.body, Body::Length(0));
        assert!(fwd == mset && rest.is_empty());
    }

    #[test]
    fn error_reply_keeps_the_connection() {
        let mut s = RedisSession::default();
        let (req, _, _) = request(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n").unwrap().unwrap();
        let e = s.error_reply(&req, &mut fastrand::Rng::with_seed(1));
        assert!(!e.close);
        assert!(e.bytes.starts_with(b"-ERR vaurien: "));
        // it is itself one well-formed reply
        whole_reply(&e.bytes);
        // a command name with odd bytes cannot break the reply line
        let (req, _, _) = request(b"*1\r\n$3\r\na\r\n\r\n").unwrap().unwrap();
        let e = s.error_reply(&req, &mut fastrand::Rng::with_seed(1));
        whole_reply(&e.bytes);
    }

    #[test]
    fn state_left_on_the_backend_connection_is_followed() {
        let mut s = RedisSession::default();
        let send = |s: &mut RedisSession, cmd: &[u8]| {
            let mut r = cmd;
            s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
            s.backend_reusable()
        };
        assert!(send(&mut s, b"GET k\r\n"));
        assert!(send(&mut s, b"CLIENT LIST\r\n"));
        assert!(!send(&mut s, b"*1\r\n$5\r\nMULTI\r\n"));
        assert!(!send(&mut s, b"SET k v\r\n"));
        assert!(send(&mut s, b"exec\r\n"));
        assert!(!send(&mut s, b"WATCH k\r\n"));
        assert!(send(&mut s, b"UNWATCH\r\n"));
        assert!(!send(&mut s, b"*2\r\n$6\r\nselect\r\n$1\r\n3\r\n"));
        assert!(!send(&mut s, b"GET k\r\n"));
        assert!(send(&mut s, b"RESET\r\n"));
        assert!(!send(&mut s, b"HELLO 3\r\n"));
        assert!(send(&mut s, b"reset\r\n"));
        assert!(!send(&mut s, b"client setname x\r\n"));
    }

    #[test]
    fn spec_builds_a_framed_protocol() {
        let spec = spec();
        assert_eq!(spec.name, "redis");
        let p = (spec.build)(&Values::defaults(spec.options)).unwrap();
        assert_eq!(p.name(), "redis");
        assert!(!p.stream_options().keep_alive);
        let backend = HostPort::parse("localhost:6379").unwrap();
        assert!(p.framing(&backend).is_some());
    }
}
