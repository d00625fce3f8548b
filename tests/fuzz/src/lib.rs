//! What every framing fuzz target checks: a session reads messages from arbitrary bytes as
//! the proxy's driver does (head, then body), never panics, and loses no byte: what it
//! forwards for a message, or keeps for the driver when it cannot frame it, is exactly what
//! it consumed.

use std::io::{self, BufRead, BufReader, Cursor};

use vaurien::protocol::{Framing, Request};

/// Messages read from one input at most.
const MESSAGES: usize = 64;

/// A reader over `input` whose buffer holds `cap` bytes, so that message boundaries fall
/// anywhere in a read, as they do on a socket; the offset says what it consumed.
pub struct Input<'a> {
    reader: BufReader<Cursor<&'a [u8]>>,
}

impl<'a> Input<'a> {
    pub fn new(input: &'a [u8], cap: usize) -> Input<'a> {
        Input {
            reader: BufReader::with_capacity(cap.max(1), Cursor::new(input)),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.reader.get_ref().position() as usize - self.reader.buffer().len()
    }

    pub fn reader(&mut self) -> &mut dyn BufRead {
        &mut self.reader
    }

    fn input(&self) -> &'a [u8] {
        self.reader.get_ref().get_ref()
    }
}

/// How strictly the bytes a session forwards must match what it consumed.
#[derive(Clone, Copy)]
pub enum Forwarding {
    /// Byte for byte.
    Exact,
    /// Byte for byte unless the message holds one of these words (in any case): the heads a
    /// protocol edits (HTTP's `Expect`, `Transfer-Encoding` with `Content-Length`).
    ExactUnless(&'static [&'static str]),
}

fn contains_word(bytes: &[u8], word: &str) -> bool {
    bytes
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

fn check(consumed: &[u8], forwarded: &[u8], rule: Forwarding, what: &str) {
    match rule {
        Forwarding::Exact => assert_eq!(forwarded, consumed, "{what}: bytes changed or lost"),
        Forwarding::ExactUnless(words) => {
            if !words.iter().any(|w| contains_word(consumed, w)) {
                assert_eq!(forwarded, consumed, "{what}: bytes changed or lost");
            }
        }
    }
}

/// Reads requests from `input` on `session` until the input ends or a request cannot be
/// framed; returns the last request read.
pub fn requests(session: &mut dyn Framing, input: &mut Input, rule: Forwarding) -> Option<Request> {
    let mut last = None;
    for _ in 0..MESSAGES {
        let start = input.offset();
        let mut head = Vec::new();
        let read = session.read_request(input.reader(), &mut head);
        let req = match read {
            Ok(Some(req)) => req,
            Ok(None) => return last,
            Err(_) => {
                session.unframed(&mut head);
                let consumed = &input.input()[start..input.offset()];
                check(consumed, &head, rule, "a request that could not be framed");
                return last;
            }
        };
        let copied = session.copy_body(req.body, input.reader(), &mut head);
        let consumed = &input.input()[start..input.offset()];
        check(consumed, &head, rule, "a request");
        if copied.is_err() {
            return last;
        }
        last = Some(req);
    }
    last
}

/// Reads replies to `req` from `input` on `session`, as many as the input holds.
pub fn replies(session: &mut dyn Framing, req: &Request, input: &mut Input, rule: Forwarding) {
    for _ in 0..MESSAGES {
        if input.offset() == input.input().len() {
            return;
        }
        let start = input.offset();
        let mut head = Vec::new();
        let resp = match session.read_response(req, input.reader(), &mut head) {
            Ok(resp) => resp,
            Err(e) => {
                session.unframed(&mut head);
                let consumed = &input.input()[start..input.offset()];
                if e.kind() != io::ErrorKind::Interrupted {
                    check(consumed, &head, rule, "a reply that could not be framed");
                }
                return;
            }
        };
        let copied = session.copy_body(resp.body, input.reader(), &mut head);
        let consumed = &input.input()[start..input.offset()];
        check(consumed, &head, rule, "a reply");
        if copied.is_err() || resp.close || resp.tunnel {
            return;
        }
    }
}

/// Splits fuzz input into a selector byte, a buffer size and the rest.
pub fn split(data: &[u8]) -> Option<(u8, usize, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let (&cap, rest) = rest.split_first()?;
    Some((selector, usize::from(cap) + 1, rest))
}
