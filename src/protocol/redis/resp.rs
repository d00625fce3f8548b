//! The RESP wire format: type lines, lengths as the server reads them, bulk payloads, and the
//! parser of values and aggregates (RESP2 and RESP3), which stops to let a long bulk string be
//! copied as it arrives.

use super::*;

/// Where parsing of a message stopped, to go on in `copy_body`.
#[derive(Debug)]
pub(super) struct Resume {
    pub(super) stack: Vec<Frame>,
    pub(super) request: bool,
}
/// An aggregate being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// This many values still to read.
    Count(u64),
    /// A streamed aggregate (`*?`): values until `.`.
    Streamed,
    /// A streamed string (`$?`): `;` chunks until `;0`.
    Chunks,
}
/// Why parsing returned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The message is complete.
    Done,
    /// This many bytes of a bulk string (payload and CRLF) follow and are to be copied as
    /// they arrive, then parsing goes on; 0: the head is full, parsing goes on at once.
    Bulk(u64),
}
/// A length field.
pub(super) enum Len {
    Null,
    Streamed,
    N(u64),
}
/// Reads one line ended by LF (`crlf`: by CRLF) into `out`, at most [`MAX_LINE`] bytes.
pub(super) fn read_line(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    crlf: bool,
    what: &str,
) -> io::Result<()> {
    let start = out.len();
    expect_line(r, out, MAX_LINE, &what)?;
    if crlf && !out[start..].ends_with(b"\r\n") {
        return Err(invalid(format!(
            "{what} not ended by CRLF: {}",
            show(&out[start..])
        )));
    }
    Ok(())
}
pub(super) fn parse_len(field: &[u8], what: &str) -> io::Result<Len> {
    match field {
        b"?" => return Ok(Len::Streamed),
        b"-1" => return Ok(Len::Null),
        _ => {}
    }
    // At most 19 digits, as ever: a longer length is no frame a server sends.
    match decimal(field).filter(|_| field.len() <= 19) {
        Some(n) => Ok(Len::N(n)),
        None => Err(invalid(format!("bad {what} length {:?}", show(field)))),
    }
}
/// A count or length of a command as the server reads it (`string2ll`): an optional `-`, then
/// `0` alone or digits without a leading zero, within an `i64`.
pub(super) fn server_ll(field: &[u8]) -> Option<i64> {
    let digits = field.strip_prefix(b"-").unwrap_or(field);
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    if leading_zero || field == b"-0" {
        return None;
    }
    signed_decimal(field)
}
pub(super) fn check_number(field: &[u8], kind: u8) -> io::Result<()> {
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
pub(super) fn push_frame(stack: &mut Vec<Frame>, frame: Frame) -> io::Result<()> {
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
pub(super) fn bulk_payload(
    r: &mut dyn BufRead,
    out: &mut Vec<u8>,
    n: u64,
) -> io::Result<Option<Stop>> {
    if n > STREAM_BULK {
        return Ok(Some(Stop::Bulk(n + 2)));
    }
    read_exactly(r, out, n as usize + 2, "bulk string")?;
    Ok(None)
}
/// Reads RESP values into `out` until the aggregates on `stack` are complete (`request`: only
/// bulk strings, the elements of a command). Returns early to let a long bulk string, or the
/// rest of a message whose head is full, be copied as it arrives.
pub(super) fn parse(
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
pub(super) fn copy_bulk(from: &mut dyn BufRead, to: &mut dyn Write, total: u64) -> io::Result<()> {
    copy_exact(from, to, total, "bulk string")
}
