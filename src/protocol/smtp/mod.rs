//! `smtp`: SMTP (RFC 5321) command and reply framing for the framed driver.
//!
//! The server speaks first: its greeting is a reply, read before the first command. A call is
//! one command line and its reply. A reply is one or more lines `NNN-text` ended by a line
//! `NNN text` (or `NNN` alone), where `NNN` is a code from 200 to 599; at most 1000 lines of at
//! most 4 KiB each. A command line is at most 16 KiB (RFC 4954 allows `AUTH` lines of 12,288
//! bytes, which OAuth tokens need) and holds no control character but a tab; pipelined
//! commands (RFC 2920) wait in the client's buffer and are answered in order.
//!
//! Three replies change what the client sends next:
//! - `354` to `DATA`: the next call is the message, every line up to and including the line
//!   `.` (`CRLF.CRLF`, strictly: a line ended by a bare LF does not start a line for the
//!   terminator), dot-stuffing passed through untouched, of any size: its first 64 KiB (whole
//!   lines) are the call's head, the rest is copied as it arrives, so a session holds no more
//!   of a message than that;
//! - `334` (an `AUTH` challenge): the next call is the client's answer line, logged as
//!   `AUTH continuation` rather than by its content (credentials);
//! - `220` to `STARTTLS`: the connection becomes a byte tunnel (TLS goes through untouched).
//!
//! `BDAT <size> [LAST]` (RFC 3030) carries its chunk as a body of `size` bytes, copied as it
//! arrives. `QUIT` closes the connection after its reply; a `421` reply (the server is
//! closing) too. What the module cannot frame (a line too long, a control character, a reply
//! that is not `NNN text`) is forwarded with the rest of the connection untouched.
//!
//! The `error` behavior answers `451 4.3.0 vaurien: requested action aborted: local error in
//! processing`; the command does not reach the backend and the session goes on (a failed
//! `DATA` gets its 451 before any 354, so the client sends no message). Two calls are the
//! exception, as the backend is then in the middle of an exchange that SMTP cannot abort
//! without acting on it: the message after a `354` (the backend waits for its end, and ending
//! it would deliver a message the client was told failed) and an `AUTH` continuation line.
//! When one of these fails, the client gets the 451 and the connection is closed; the backend
//! sees its connection close mid-exchange and delivers nothing.

use super::wire::{cut_short, decimal, expect_line, invalid, more_input, peek, show, trim_eol};
use super::{BackendReuse, FramedProtocol, KeepAlive};
use std::io::{self, BufRead, Read, Write};

use crate::protocol::{
    Body, ErrorReply, Framing, Name, ProtocolSpec, Request, Response, TCP_OPTIONS,
};

/// A command line, terminator included, is at most this long.
pub const MAX_COMMAND: usize = 16 * 1024;
/// A reply line, terminator included, is at most this long.
pub const MAX_REPLY_LINE: usize = 4096;
/// A reply has at most this many lines.
pub const MAX_REPLY_LINES: usize = 1000;
/// The most of a message (after `DATA`) read into the call's head; the rest is copied as it
/// arrives.
pub const MESSAGE_HEAD: usize = 64 * 1024;

/// The answer of the `error` behavior.
pub const ERROR_REPLY: &[u8] =
    b"451 4.3.0 vaurien: requested action aborted: local error in processing\r\n";

/// What the client sent last, which the reply read next answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Sent {
    /// Nothing yet (the greeting comes first), or a command that changes nothing.
    #[default]
    Command,
    /// `DATA`: a 354 reply asks for the message.
    Data,
    /// `STARTTLS`: a 220 reply starts TLS.
    StartTls,
    /// A message, after a 354 reply.
    Message,
    /// A line answering an `AUTH` challenge.
    AuthLine,
}

/// The declaration of `smtp`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "smtp",
        summary: "SMTP: the server speaks first; a call is one command (or message) and its \
                  reply; STARTTLS turns the connection into a stream; keep-alive always on",
        options: TCP_OPTIONS,
        build: |v| {
            FramedProtocol::<SmtpSession>::build("smtp", v, KeepAlive::Always, BackendReuse::Unsafe)
        },
    }
}

/// What the client sends next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Next {
    /// A command.
    #[default]
    Command,
    /// A message, after a 354 reply to `DATA`.
    Message,
    /// An answer to an `AUTH` challenge (a 334 reply).
    AuthLine,
}

/// The SMTP framing of one connection.
#[derive(Debug, Default)]
pub struct SmtpSession {
    next: Next,
    sent: Sent,
    /// The message being copied starts a line at the next byte (its head ended with a line
    /// end): what `copy_body` needs to see the `.` line.
    message_at_line_start: bool,
}

/// Refuses control characters (but tab) in a line.
fn check_text(line: &[u8], what: &str) -> io::Result<()> {
    match line
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        Some(&b) => Err(invalid(format!(
            "control character {:?} in {what}: {}",
            show(&[b]),
            show(line)
        ))),
        None => Ok(()),
    }
}

/// Where reading a message stopped.
#[derive(Debug, PartialEq, Eq)]
enum MessageRead {
    /// The client closed before sending any of it.
    Nothing,
    /// Up to and including its `.` line.
    Whole,
    /// `budget` bytes read, the `.` line not among them; the next byte starts a line when the
    /// flag says so.
    Partial(bool),
}

/// A message line longer than this is read in pieces of this size.
const MESSAGE_PIECE: usize = 64 * 1024;

/// Appends message lines from `r` to `out` until the `.` line (included), or until at least
/// `budget` bytes are read (stopping at a line start, or inside a line longer than
/// [`MESSAGE_PIECE`], which 8BITMIME allows and which is taken in pieces: so the terminator is
/// never split); `line_start`: the first byte starts a line.
fn read_message(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    mut line_start: bool,
    budget: usize,
) -> io::Result<MessageRead> {
    let start = out.len();
    loop {
        if out.len() - start >= budget {
            return Ok(MessageRead::Partial(line_start));
        }
        let from = out.len();
        let n = r.take(MESSAGE_PIECE as u64).read_until(b'\n', out)?;
        if n == 0 {
            if out.len() == start {
                return Ok(MessageRead::Nothing);
            }
            return Err(cut_short("message cut short by the end of input"));
        }
        if !out.ends_with(b"\n") {
            if n >= MESSAGE_PIECE {
                // A CR at the end of a piece may be half of the line's CRLF: the LF joins it,
                // so that the line end is seen whole.
                if out.ends_with(b"\r") && peek(r)? == Some(b'\n') {
                    out.push(b'\n');
                    r.consume(1);
                    line_start = true;
                } else {
                    line_start = false;
                }
                continue;
            }
            return Err(cut_short("message cut short by the end of input"));
        }
        let piece = &out[from..];
        if line_start && piece == b".\r\n" {
            return Ok(MessageRead::Whole);
        }
        line_start = piece.ends_with(b"\r\n");
    }
}

impl Framing for SmtpSession {
    fn server_speaks_first(&self) -> bool {
        true
    }

    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>> {
        let next = std::mem::take(&mut self.next);
        self.sent = Sent::Command;
        if next == Next::Message {
            let body = match read_message(client, head, true, MESSAGE_HEAD)? {
                MessageRead::Nothing => return Ok(None),
                MessageRead::Whole => Body::None,
                MessageRead::Partial(line_start) => {
                    self.message_at_line_start = line_start;
                    Body::Delimited
                }
            };
            self.sent = Sent::Message;
            return Ok(Some(Request {
                name: "message".into(),
                expects_response: true,
                body,
                ..Request::default()
            }));
        }
        if !more_input(client)? {
            return Ok(None);
        }
        let start = head.len();
        expect_line(client, head, MAX_COMMAND, &"a command line")?;
        let line = trim_eol(&head[start..]);
        check_text(line, "a command line")?;
        if next == Next::AuthLine {
            self.sent = Sent::AuthLine;
            return Ok(Some(Request {
                name: "AUTH continuation".into(),
                expects_response: true,
                ..Request::default()
            }));
        }
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let verb = words.next().unwrap_or_default();
        if verb.len() > 32
            || !verb
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(format!("not an SMTP command: {}", show(line))));
        }
        let name = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let mut req = Request {
            name: Name::new(&name),
            expects_response: true,
            ..Request::default()
        };
        match req.name.as_str() {
            "QUIT" => req.close = true,
            "DATA" => self.sent = Sent::Data,
            "STARTTLS" => self.sent = Sent::StartTls,
            "BDAT" => {
                let size = words
                    .next()
                    .and_then(decimal)
                    .ok_or_else(|| invalid(format!("bad BDAT size: {}", show(line))))?;
                req.body = Body::Length(size);
            }
            _ => {}
        }
        Ok(Some(req))
    }

    fn read_response(
        &mut self,
        _req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        let mut lines = 0;
        let code = loop {
            let start = head.len();
            expect_line(backend, head, MAX_REPLY_LINE, &"a reply line")?;
            lines += 1;
            let line = trim_eol(&head[start..]);
            let code_ok = line.len() >= 3
                && (b'2'..=b'5').contains(&line[0])
                && line[1..3].iter().all(u8::is_ascii_digit);
            if !code_ok {
                return Err(invalid(format!("not an SMTP reply: {}", show(line))));
            }
            let code = u16::from(line[0] - b'0') * 100
                + u16::from(line[1] - b'0') * 10
                + u16::from(line[2] - b'0');
            match line.get(3) {
                None | Some(b' ') => break code,
                Some(b'-') if lines < MAX_REPLY_LINES => {}
                Some(b'-') => {
                    return Err(invalid(format!(
                        "reply of more than {MAX_REPLY_LINES} lines"
                    )))
                }
                Some(_) => return Err(invalid(format!("not an SMTP reply: {}", show(line)))),
            }
        };
        self.next = match code {
            354 if self.sent == Sent::Data => Next::Message,
            334 => Next::AuthLine,
            _ => Next::Command,
        };
        Ok(Response {
            body: Body::None,
            tunnel: code == 220 && self.sent == Sent::StartTls,
            close: code == 421,
        })
    }

    fn copy_body(
        &mut self,
        body: Body,
        from: &mut dyn BufRead,
        to: &mut dyn Write,
    ) -> io::Result<()> {
        match body {
            Body::Delimited => {
                // The rest of a message, a piece at a time, as it arrives.
                let mut piece = Vec::with_capacity(8 * 1024);
                let mut line_start = self.message_at_line_start;
                loop {
                    piece.clear();
                    let read = read_message(from, &mut piece, line_start, MESSAGE_PIECE);
                    to.write_all(&piece)?;
                    match read? {
                        MessageRead::Whole => return Ok(()),
                        MessageRead::Partial(at) => line_start = at,
                        MessageRead::Nothing => {
                            return Err(cut_short("message cut short by the end of input"))
                        }
                    }
                }
            }
            // A BDAT chunk's length.
            other => super::copy_plain_body(other, from, to),
        }
    }

    fn error_reply(&mut self, _req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        ErrorReply {
            bytes: ERROR_REPLY.to_vec(),
            close: matches!(self.sent, Sent::Message | Sent::AuthLine),
        }
    }
}

#[cfg(test)]
mod tests;
