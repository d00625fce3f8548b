//! Small pieces every protocol parser uses: its error kinds, how bytes appear in a message,
//! line ends, and whether input is waiting; and the helpers their tests share.

use std::io::{self, BufRead, Write};

/// Malformed data: the driver closes that connection with a warning.
pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// End of input in the middle of a message.
pub(crate) fn cut_short(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.into())
}

/// Shows protocol bytes in an error message: printable ASCII as is, at most 40 bytes.
pub(crate) fn show(bytes: &[u8]) -> String {
    let mut s: String = bytes
        .iter()
        .take(40)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > 40 {
        s.push_str("...");
    }
    s
}

/// `line` without its `\n` or `\r\n`.
pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first byte waiting in `r`, `None` at end of input.
pub(crate) fn peek(r: &mut dyn BufRead) -> io::Result<Option<u8>> {
    loop {
        match r.fill_buf() {
            Ok(buf) => return Ok(buf.first().copied()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Copies exactly `n` bytes of `from` to `to` as they arrive. On an error, every byte
/// consumed before it was written, so that a driver can still forward the rest; fewer bytes
/// than `n` before the end of input is `UnexpectedEof` naming `what`.
pub(crate) fn copy_exact(
    from: &mut dyn BufRead,
    to: &mut dyn Write,
    n: u64,
    what: &str,
) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let buf = match from.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Err(cut_short(format!(
                "{what} cut short by the end of input: {} of {n} bytes",
                n - left
            )));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        to.write_all(&buf[..take])?;
        from.consume(take);
        left -= take as u64;
    }
    Ok(())
}

/// Appends exactly `n` bytes of `r` to `out` as they arrive (all that was read stays in
/// `out` on an error; see [`copy_exact`]).
pub(crate) fn read_exactly(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    n: usize,
    what: &str,
) -> io::Result<()> {
    copy_exact(r, out, n as u64, what)
}

/// Whether input is waiting; `false` at end of input.
pub(crate) fn more_input(r: &mut dyn BufRead) -> io::Result<bool> {
    Ok(peek(r)?.is_some())
}

/// Test helpers shared by the framed protocols' tests: a request or a reply read as the
/// driver reads it.
#[cfg(test)]
pub(crate) mod testing {
    use crate::protocol::{Framing, Request, Response};
    use std::io;

    /// A request, the bytes forwarded for it and the input left after it.
    pub(crate) type Parsed = io::Result<Option<(Request, Vec<u8>, Vec<u8>)>>;

    /// Reads one request from `input` on session `s` as the driver does (head, then body).
    pub(crate) fn request_in(s: &mut dyn Framing, input: &[u8]) -> Parsed {
        let mut r = input;
        let mut head = Vec::new();
        let Some(req) = s.read_request(&mut r, &mut head)? else {
            return Ok(None);
        };
        s.copy_body(req.body, &mut r, &mut head)?;
        Ok(Some((req, head, r.to_vec())))
    }

    /// Reads the reply to `req` from `input` on session `s` as the driver does (head, then
    /// body); returns the response, the bytes forwarded and the input left.
    pub(crate) fn reply_in(
        s: &mut dyn Framing,
        req: &Request,
        input: &[u8],
    ) -> io::Result<(Response, Vec<u8>, Vec<u8>)> {
        let mut r = input;
        let mut head = Vec::new();
        let resp = s.read_response(req, &mut r, &mut head)?;
        s.copy_body(resp.body, &mut r, &mut head)?;
        Ok((resp, head, r.to_vec()))
    }

    /// The kind of the error `r` must be.
    pub(crate) fn kind(r: io::Result<impl std::fmt::Debug>) -> io::ErrorKind {
        r.expect_err("expected an error").kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show(b"GET\r\n"), "GET\\r\\n");
        assert_eq!(show(&[b'x'; 50]), format!("{}...", "x".repeat(40)));
        assert!(!more_input(&mut &b""[..]).unwrap());
        assert!(more_input(&mut &b"a"[..]).unwrap());
        assert_eq!(peek(&mut &b"ab"[..]).unwrap(), Some(b'a'));
        assert_eq!(peek(&mut &b""[..]).unwrap(), None);
        assert_eq!(trim_eol(b"a\r\n"), b"a");
        assert_eq!(trim_eol(b"a\n"), b"a");
        assert_eq!(trim_eol(b"a\r"), b"a");
        assert_eq!(trim_eol(b"a"), b"a");
    }

    #[test]
    fn read_exactly_keeps_what_it_consumed_before_the_end() {
        let mut out = b"head ".to_vec();
        read_exactly(&mut &b"abcdef"[..], &mut out, 3, "x").unwrap();
        assert_eq!(out, b"head abc");
        let mut out = Vec::new();
        let mut r = io::BufReader::with_capacity(2, &b"abcde"[..]);
        let e = read_exactly(&mut r, &mut out, 9, "a block").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"abcde", "every consumed byte is kept");
    }
}
