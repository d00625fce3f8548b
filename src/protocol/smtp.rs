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

use super::wire::{cut_short, invalid, more_input, peek, show, trim_eol};
use super::Sessions;
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

/// [`Request::flags`]: the `DATA` command.
const DATA: u32 = 1;
/// [`Request::flags`]: the `STARTTLS` command.
const STARTTLS: u32 = 1 << 1;
/// [`Request::flags`]: a message, sent after a 354 reply.
const MESSAGE: u32 = 1 << 2;
/// [`Request::flags`]: a line answering an `AUTH` challenge.
const AUTH_LINE: u32 = 1 << 3;

/// The declaration of `smtp`.
pub fn spec() -> ProtocolSpec {
    ProtocolSpec {
        name: "smtp",
        summary: "SMTP: the server speaks first; a call is one command (or message) and its \
                  reply; STARTTLS turns the connection into a tunnel; keep-alive always on",
        options: TCP_OPTIONS,
        build: |v| Sessions::<SmtpSession>::build("smtp", v, true, false),
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
    /// The message being copied starts a line at the next byte (its head ended with a line
    /// end): what `copy_body` needs to see the `.` line.
    message_at_line_start: bool,
}

/// Appends one line ended by LF, at most `limit` bytes, to `out`.
fn read_line(r: &mut dyn BufRead, out: &mut Vec<u8>, limit: usize, what: &str) -> io::Result<()> {
    let start = out.len();
    let n = r.take(limit as u64).read_until(b'\n', out)?;
    if n > 0 && out.ends_with(b"\n") {
        return Ok(());
    }
    if n >= limit {
        return Err(invalid(format!(
            "{what} longer than {limit} bytes: {}",
            show(&out[start..])
        )));
    }
    Err(cut_short(if n == 0 {
        format!("end of input where {what} was expected")
    } else {
        format!("{what} cut short by the end of input")
    }))
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
        if next == Next::Message {
            let body = match read_message(client, head, true, MESSAGE_HEAD)? {
                MessageRead::Nothing => return Ok(None),
                MessageRead::Whole => Body::None,
                MessageRead::Partial(line_start) => {
                    self.message_at_line_start = line_start;
                    Body::Delimited
                }
            };
            return Ok(Some(Request {
                name: "message".into(),
                expects_response: true,
                body,
                flags: MESSAGE,
                ..Request::default()
            }));
        }
        if !more_input(client)? {
            return Ok(None);
        }
        let start = head.len();
        read_line(client, head, MAX_COMMAND, "a command line")?;
        let line = trim_eol(&head[start..]);
        check_text(line, "a command line")?;
        if next == Next::AuthLine {
            return Ok(Some(Request {
                name: "AUTH continuation".into(),
                expects_response: true,
                flags: AUTH_LINE,
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
            "DATA" => req.flags |= DATA,
            "STARTTLS" => req.flags |= STARTTLS,
            "BDAT" => {
                let size = words
                    .next()
                    .and_then(|w| std::str::from_utf8(w).ok())
                    .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|w| w.parse::<u64>().ok())
                    .ok_or_else(|| invalid(format!("bad BDAT size: {}", show(line))))?;
                req.body = Body::Length(size);
            }
            _ => {}
        }
        Ok(Some(req))
    }

    fn read_response(
        &mut self,
        req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        let mut lines = 0;
        let code = loop {
            let start = head.len();
            read_line(backend, head, MAX_REPLY_LINE, "a reply line")?;
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
            354 if req.flags & DATA != 0 => Next::Message,
            334 => Next::AuthLine,
            _ => Next::Command,
        };
        Ok(Response {
            body: Body::None,
            tunnel: code == 220 && req.flags & STARTTLS != 0,
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

    fn error_reply(&mut self, req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        ErrorReply {
            bytes: ERROR_REPLY.to_vec(),
            close: req.flags & (MESSAGE | AUTH_LINE) != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
    use super::*;
    use crate::net::HostPort;
    use crate::opts::Values;

    /// Reads one request from `input` on a new session.
    fn request(input: &[u8]) -> Parsed {
        request_in(&mut SmtpSession::default(), input)
    }

    /// One command and its reply on session `s`; the reply must be all of `answer`.
    fn call(s: &mut SmtpSession, cmd: &[u8], answer: &[u8]) -> (Request, Response) {
        let (req, fwd, rest) = request_in(s, cmd).unwrap().unwrap();
        assert_eq!(fwd, cmd);
        assert!(rest.is_empty());
        let (resp, fwd, rest) = reply_in(s, &req, answer).unwrap();
        assert_eq!(fwd, answer);
        assert!(rest.is_empty());
        (req, resp)
    }

    #[test]
    fn greeting_and_multi_line_replies() {
        let mut s = SmtpSession::default();
        assert!(s.server_speaks_first());
        let greeting = b"220-mx.example.org ESMTP\r\n220-more\r\n220 ready\r\nrest";
        let (resp, fwd, rest) = reply_in(&mut s, &Request::greeting(), greeting).unwrap();
        assert_eq!(fwd, &greeting[..greeting.len() - 4]);
        assert_eq!(rest, b"rest");
        assert!(!resp.tunnel && !resp.close);
        let (req, _) = call(
            &mut s,
            b"EHLO client.example.org\r\n",
            b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
        );
        assert_eq!(req.name, "EHLO");
        assert!(req.expects_response && !req.close);
        call(&mut s, b"noop\r\n", b"250\r\n");
        call(&mut s, b"HELO x\n", b"250 ok\n");
    }

    #[test]
    fn a_mail_transaction() {
        let mut s = SmtpSession::default();
        reply_in(&mut s, &Request::greeting(), b"220 hi\r\n").unwrap();
        call(
            &mut s,
            b"MAIL FROM:<a@example.org>\r\n",
            b"250 2.1.0 Ok\r\n",
        );
        call(&mut s, b"RCPT TO:<b@example.org>\r\n", b"250 2.1.5 Ok\r\n");
        let (req, _) = call(
            &mut s,
            b"DATA\r\n",
            b"354 End data with <CR><LF>.<CR><LF>\r\n",
        );
        assert_eq!(req.name, "DATA");
        // The message: dot-stuffed lines pass as they are; a dot line ends it.
        let message =
            b"Subject: hi\r\n\r\n..leading dot\r\n.x\r\nline\n.\r\nstill body\r\n\r\n.\r\n";
        let mut input = message.to_vec();
        input.extend_from_slice(b"QUIT\r\n");
        let (req, fwd, rest) = request_in(&mut s, &input).unwrap().unwrap();
        assert_eq!(req.name, "message");
        assert!(req.expects_response);
        assert_eq!(fwd, message);
        assert_eq!(rest, b"QUIT\r\n");
        reply_in(&mut s, &req, b"250 2.0.0 Ok: queued\r\n").unwrap();
        // Then commands again.
        let (req, _) = call(&mut s, b"QUIT\r\n", b"221 2.0.0 Bye\r\n");
        assert!(req.close);
    }

    #[test]
    fn messages() {
        let body = |input: &[u8]| {
            let mut s = SmtpSession {
                next: Next::Message,
                ..SmtpSession::default()
            };
            request_in(&mut s, input)
        };
        let (_, fwd, rest) = body(b".\r\nNOOP\r\n").unwrap().unwrap();
        assert_eq!(fwd, b".\r\n");
        assert_eq!(rest, b"NOOP\r\n");
        assert!(body(b"").unwrap().is_none());
        assert_eq!(kind(body(b"line\r\n")), io::ErrorKind::UnexpectedEof);
        assert_eq!(kind(body(b"line\r\n.")), io::ErrorKind::UnexpectedEof);
        // Binary content (8BITMIME) passes.
        let (_, fwd, _) = body(b"\x00\xff\x1b\r\n.\r\n").unwrap().unwrap();
        assert_eq!(fwd, b"\x00\xff\x1b\r\n.\r\n");
        // A 354 to anything but DATA does not start a message.
        let mut s = SmtpSession::default();
        call(&mut s, b"NOOP\r\n", b"354 what\r\n");
        let (req, _, _) = request_in(&mut s, b"NOOP\r\n").unwrap().unwrap();
        assert_eq!(req.name, "NOOP");
        // A refused DATA neither.
        call(
            &mut s,
            b"DATA\r\n",
            b"554 5.5.1 Error: no valid recipients\r\n",
        );
        let (req, _, _) = request_in(&mut s, b"RSET\r\n").unwrap().unwrap();
        assert_eq!(req.name, "RSET");
    }

    #[test]
    fn a_message_of_any_size_is_streamed_past_its_head() {
        // 70 MiB of message, long lines (8BITMIME) and a dot-line cut by nothing, then QUIT.
        let mut big = Vec::with_capacity(71 << 20);
        big.extend_from_slice(&[b'y'; 200_000]);
        big.extend_from_slice(b"\r\n..stuffed\r\n");
        while big.len() <= 70 << 20 {
            big.extend_from_slice(&[b'x'; 998]);
            big.extend_from_slice(b"\r\n");
        }
        let message_len = big.len() + 3;
        big.extend_from_slice(b".\r\nQUIT\r\n");
        let mut s = SmtpSession {
            next: Next::Message,
            ..SmtpSession::default()
        };
        let mut r = &big[..];
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        assert_eq!(req.name, "message");
        assert_eq!(req.body, Body::Delimited);
        assert!(
            head.len() <= MESSAGE_HEAD + MESSAGE_PIECE,
            "head of {}",
            head.len()
        );
        let mut body = Vec::new();
        s.copy_body(req.body, &mut r, &mut body).unwrap();
        assert_eq!(head.len() + body.len(), message_len);
        head.extend_from_slice(&body);
        assert_eq!(head, &big[..message_len]);
        assert_eq!(r, b"QUIT\r\n");
        // Cut short while streamed: an end of input, after what was read went on.
        let mut s = SmtpSession {
            next: Next::Message,
            ..SmtpSession::default()
        };
        let cut = &big[..10 << 20];
        let mut r = cut;
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        let mut body = Vec::new();
        let e = s.copy_body(req.body, &mut r, &mut body).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(head.len() + body.len(), cut.len());
    }

    #[test]
    fn the_dot_line_is_found_on_every_piece_boundary() {
        for pad in 0..8 {
            let mut msg = vec![b'a'; MESSAGE_HEAD - 3 + pad];
            msg.extend_from_slice(b"\r\n.\r\n");
            let mut s = SmtpSession {
                next: Next::Message,
                ..SmtpSession::default()
            };
            let mut r = &msg[..];
            let mut head = Vec::new();
            let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
            s.copy_body(req.body, &mut r, &mut head).unwrap();
            assert_eq!(head, msg, "pad {pad}");
        }
    }

    #[test]
    fn starttls_becomes_a_tunnel() {
        let mut s = SmtpSession::default();
        let (_, resp) = call(&mut s, b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n");
        assert!(resp.tunnel);
        let (_, resp) = call(&mut s, b"STARTTLS\r\n", b"454 4.7.0 TLS not available\r\n");
        assert!(!resp.tunnel);
        let (_, resp) = call(&mut s, b"NOOP\r\n", b"220 odd\r\n");
        assert!(!resp.tunnel);
        let (_, resp) = call(&mut s, b"NOOP\r\n", b"421 4.4.2 closing\r\n");
        assert!(resp.close);
    }

    #[test]
    fn auth_continuations() {
        let mut s = SmtpSession::default();
        call(&mut s, b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n");
        let (req, _) = call(&mut s, b"dXNlcg==\r\n", b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(req.name, "AUTH continuation");
        let (req, _) = call(
            &mut s,
            b"cGFzcw==\r\n",
            b"235 2.7.0 Authentication successful\r\n",
        );
        assert_eq!(req.name, "AUTH continuation");
        let mut rng = fastrand::Rng::with_seed(1);
        assert!(s.error_reply(&req, &mut rng).close);
        let (req, _) = call(&mut s, b"NOOP\r\n", b"250 ok\r\n");
        assert_eq!(req.name, "NOOP");
    }

    #[test]
    fn bdat_carries_its_chunk() {
        let mut s = SmtpSession::default();
        let (req, fwd, rest) = request_in(&mut s, b"BDAT 5 LAST\r\nab\r\ncQUIT\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.body, Body::Length(5));
        assert_eq!(fwd, b"BDAT 5 LAST\r\nab\r\nc");
        assert_eq!(rest, b"QUIT\r\n");
        assert_eq!(kind(request(b"BDAT x\r\n")), io::ErrorKind::InvalidData);
        assert_eq!(kind(request(b"BDAT\r\n")), io::ErrorKind::InvalidData);
        // A chunk of any size is copied as it arrives.
        let mut head = Vec::new();
        let req = SmtpSession::default()
            .read_request(&mut &b"BDAT 99999999999\r\n"[..], &mut head)
            .unwrap()
            .unwrap();
        assert_eq!(req.body, Body::Length(99_999_999_999));
        assert_eq!(kind(request(b"BDAT 5\r\nab")), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn pipelined_commands() {
        let input = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n";
        let replies = b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n";
        let mut s = SmtpSession::default();
        let (mut r, mut b) = (&input[..], &replies[..]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
            let mut head = Vec::new();
            s.read_response(&req, &mut b, &mut head).unwrap();
            seen.push((req.name, head));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[2].1, b"550 no\r\n");
        assert_eq!(s.next, Next::Message);
    }

    #[test]
    fn garbage_and_limits() {
        assert!(request(b"").unwrap().is_none());
        for input in [
            &b"\x00\x01\x02\r\n"[..],
            b"NOOP\x1b[0m\r\n",
            b"\xff\xfe hello\r\n",
            b"MAIL\rFROM:<a@b>\r\n",
        ] {
            assert_eq!(
                kind(request(input)),
                io::ErrorKind::InvalidData,
                "{}",
                show(input)
            );
        }
        assert_eq!(kind(request(b"NOOP")), io::ErrorKind::UnexpectedEof);
        let long = vec![b'A'; MAX_COMMAND + 1];
        assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
        // Long AUTH lines are fine.
        let mut auth = b"AUTH XOAUTH2 ".to_vec();
        auth.extend_from_slice(&[b'Q'; 3000]);
        auth.extend_from_slice(b"\r\n");
        assert_eq!(request(&auth).unwrap().unwrap().0.name, "AUTH");
        // Non-ASCII mail addresses (SMTPUTF8) are fine.
        let utf8 = "MAIL FROM:<jöran@example.org> SMTPUTF8\r\n".as_bytes();
        assert_eq!(request(utf8).unwrap().unwrap().1, utf8);

        let greeting = Request::greeting();
        let mut s = SmtpSession::default();
        for bad in [
            &b"hello\r\n"[..],
            b"22\r\n",
            b"2200 x\r\n",
            b"220x\r\n",
            b"120 x\r\n",
            b"620 x\r\n",
            b"\x16\x03\x01\x02\x00\r\n",
        ] {
            assert_eq!(
                kind(reply_in(&mut s, &greeting, bad)),
                io::ErrorKind::InvalidData,
                "{}",
                show(bad)
            );
        }
        assert_eq!(
            kind(reply_in(&mut s, &greeting, b"")),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            kind(reply_in(&mut s, &greeting, b"220-a\r\n220-b\r\n")),
            io::ErrorKind::UnexpectedEof
        );
        let long = vec![b'2'; MAX_REPLY_LINE + 1];
        assert_eq!(
            kind(reply_in(&mut s, &greeting, &long)),
            io::ErrorKind::InvalidData
        );
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES);
        assert_eq!(
            kind(reply_in(&mut s, &greeting, &many)),
            io::ErrorKind::InvalidData
        );
        let mut most = b"250-x\r\n".repeat(MAX_REPLY_LINES - 1);
        most.extend_from_slice(b"250 x\r\n");
        assert_eq!(reply_in(&mut s, &greeting, &most).unwrap().1, most);
    }

    #[test]
    fn error_replies() {
        let mut s = SmtpSession::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let (mail, _, _) = request(b"MAIL FROM:<a@b>\r\n").unwrap().unwrap();
        let reply = s.error_reply(&mail, &mut rng);
        assert_eq!(reply.bytes, ERROR_REPLY);
        assert!(!reply.close);
        let (data, _, _) = request(b"DATA\r\n").unwrap().unwrap();
        assert!(!s.error_reply(&data, &mut rng).close);
        let mut s = SmtpSession {
            next: Next::Message,
            ..SmtpSession::default()
        };
        let (message, _, _) = request_in(&mut s, b"hi\r\n.\r\n").unwrap().unwrap();
        let reply = s.error_reply(&message, &mut rng);
        assert_eq!(reply.bytes, ERROR_REPLY);
        assert!(reply.close);
    }

    #[test]
    fn spec_builds() {
        let spec = spec();
        let proto = (spec.build)(&Values::defaults(spec.options)).unwrap();
        assert_eq!(proto.name(), "smtp");
        assert!(proto.stream_options().keep_alive);
        assert!(!proto.stream_options().reuse_socket);
        let backend = HostPort::parse("127.0.0.1:25").unwrap();
        assert!(proto.framing(&backend).unwrap().server_speaks_first());
    }
}
