//! Small pieces every protocol parser uses: its error kinds, how bytes appear in a message,
//! line ends, and whether input is waiting; and the helpers their tests share.

use std::io::{self, BufRead, Read, Write};

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

/// Where reading a line stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// At its LF.
    Ended,
    /// At its size limit, no LF among its bytes.
    TooLong,
    /// At the end of input, inside the line.
    Cut,
    /// At the end of input, before any byte of the line.
    Absent,
}

/// Appends to `out` the rest of a line ended by LF, so that the line (from `start`, with what
/// `out` already holds of it) is at most `max` bytes with its terminator. The one place where
/// every parser reads a line: the limits differ, the reading does not.
pub(crate) fn fill_line(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    start: usize,
    max: usize,
) -> io::Result<LineRead> {
    let room = max.saturating_sub(out.len() - start);
    let n = r.take(room as u64).read_until(b'\n', out)?;
    Ok(if out.len() > start && out.ends_with(b"\n") {
        LineRead::Ended
    } else if n == room {
        LineRead::TooLong
    } else if out.len() == start {
        LineRead::Absent
    } else {
        LineRead::Cut
    })
}

/// Reads one line (up to and including its LF) into `out`, at most `max` bytes: the bytes
/// read, 0 at the end of input before any. A longer line is `InvalidData`, a line cut by the
/// end of input `UnexpectedEof`, both naming `what` (a `format_args!` is put together only
/// for an error).
pub(crate) fn read_line(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    max: usize,
    what: &dyn std::fmt::Display,
) -> io::Result<usize> {
    let start = out.len();
    match fill_line(r, out, start, max)? {
        LineRead::Ended => Ok(out.len() - start),
        LineRead::Absent => Ok(0),
        LineRead::TooLong => Err(too_long(what, max, &out[start..])),
        LineRead::Cut => Err(cut_short(format!("{what} cut short by the end of input"))),
    }
}

/// [`read_line`] where a line must come: the end of input before it is `UnexpectedEof` too.
pub(crate) fn expect_line(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    max: usize,
    what: &dyn std::fmt::Display,
) -> io::Result<()> {
    if read_line(r, out, max, what)? == 0 {
        return Err(cut_short(format!("end of input where {what} was expected")));
    }
    Ok(())
}

/// The error for a line of `what` that reached `max` bytes without its end.
pub(crate) fn too_long(what: &dyn std::fmt::Display, max: usize, line: &[u8]) -> io::Error {
    invalid(format!(
        "{what} longer than {}: {}",
        size_text(max),
        show(line)
    ))
}

/// A size limit as people write it: `8 KiB`, `1000 bytes`.
pub(crate) fn size_text(n: usize) -> String {
    if n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Decimal digits alone (no sign, no space) as a number; `None` when there are none, when a
/// byte is not a digit or when the number is past `u64`.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// An optional `-`, then [`decimal`] digits, within an `i64`.
pub(crate) fn signed_decimal(field: &[u8]) -> Option<i64> {
    match field.split_first() {
        Some((b'-', digits)) => 0i64.checked_sub_unsigned(decimal(digits)?),
        _ => i64::try_from(decimal(field)?).ok(),
    }
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
    fn lines_stop_at_their_end_their_limit_or_the_input() {
        let mut out = Vec::new();
        assert_eq!(
            read_line(&mut &b"ab\ncd"[..], &mut out, 8, &"line").unwrap(),
            3
        );
        assert_eq!(out, b"ab\n");
        let mut out = Vec::new();
        assert_eq!(read_line(&mut &b""[..], &mut out, 8, &"line").unwrap(), 0);
        let e = read_line(&mut &b"abcdefghij\n"[..], &mut out, 8, &"a line").unwrap_err();
        assert_eq!(e.to_string(), "a line longer than 8 bytes: abcdefgh");
        let e = read_line(&mut &b"ab"[..], &mut Vec::new(), 8, &"a line").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = expect_line(&mut &b""[..], &mut Vec::new(), 8, &"a line").unwrap_err();
        assert_eq!(e.to_string(), "end of input where a line was expected");
        // A line read in two steps, the second with a larger limit.
        let mut out = b"x".to_vec();
        let mut r = &b"abcdef\n"[..];
        assert_eq!(
            fill_line(&mut r, &mut out, 1, 4).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(fill_line(&mut r, &mut out, 1, 16).unwrap(), LineRead::Ended);
        assert_eq!(out, b"xabcdef\n");
        assert_eq!(size_text(8192), "8 KiB");
    }

    #[test]
    fn decimals_are_digits_alone_within_their_type() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+5",
            b"-5",
            b" 5",
            b"5x",
        ] {
            assert_eq!(decimal(bad), None, "{}", show(bad));
        }
        assert_eq!(signed_decimal(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(signed_decimal(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(signed_decimal(b"9223372036854775808"), None);
        assert_eq!(signed_decimal(b"-"), None);
        assert_eq!(signed_decimal(b"--1"), None);
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
