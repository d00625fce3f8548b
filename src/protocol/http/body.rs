//! Message bodies: how a head frames its body, copied as it arrives (by length, chunked with
//! its trailers, to the end), a small one moved after its head.

use super::*;

/// Bodies up to this size that the backend already sent are forwarded with the head.
pub(super) const INLINE_BODY: u64 = 16 * 1024;
/// Moves a small body, as much of it as is already read, after `head`: the response then goes
/// to the client in one write instead of two. Returns what is left to copy.
pub(super) fn inline_small_body(
    body: Body,
    backend: &mut dyn BufRead,
    head: &mut Vec<u8>,
) -> io::Result<Body> {
    let Body::Length(n) = body else {
        return Ok(body);
    };
    if n == 0 || n > INLINE_BODY {
        return Ok(body);
    }
    let buffered = backend.fill_buf()?;
    let k = buffered.len().min(n as usize);
    head.extend_from_slice(&buffered[..k]);
    backend.consume(k);
    Ok(match n - k as u64 {
        0 => Body::None,
        rest => Body::Length(rest),
    })
}
/// What the framing headers of a message say about its body.
pub(super) enum Framed {
    None,
    Chunked,
    /// `Transfer-Encoding` without `chunked` last.
    OtherEncoding,
    Length(u64),
}
/// Reads `Transfer-Encoding` and `Content-Length`; `Transfer-Encoding` wins.
pub(super) fn body_framing(head: &Head, what: &str) -> io::Result<Framed> {
    if head.has("transfer-encoding") {
        return Ok(if head.last_token_is("transfer-encoding", "chunked") {
            Framed::Chunked
        } else {
            Framed::OtherEncoding
        });
    }
    let mut length: Option<u64> = None;
    for value in head.values("content-length") {
        for part in value.split(|&b| b == b',') {
            let part = trim_ows(part);
            let n = decimal(part).ok_or_else(|| {
                invalid(format!(
                    "bad {what} Content-Length {:?}",
                    String::from_utf8_lossy(&value[..value.len().min(40)])
                ))
            })?;
            match length {
                Some(l) if l != n => {
                    return Err(invalid(format!(
                        "{what} has two different Content-Length values ({l} and {n})"
                    )))
                }
                _ => length = Some(n),
            }
        }
    }
    Ok(match length {
        Some(n) => Framed::Length(n),
        None => Framed::None,
    })
}
/// Copies a body that is not chunked, as the driver's default does.
pub(super) fn copy_plain(body: Body, from: &mut dyn BufRead, to: &mut dyn Write) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => copy_exact(from, to, n, "body"),
        Body::UntilClose => io::copy(from, to).map(drop),
        Body::Chunked => copy_chunked(from, to),
        Body::Delimited => Err(invalid("HTTP has no such body")),
    }
}
/// Reads a line as `read_line` does into `line` (cleared first) and writes what it read to
/// `to`, whether or not the line is whole.
pub(super) fn read_line_through(
    from: &mut dyn BufRead,
    to: &mut dyn Write,
    line: &mut Vec<u8>,
    max: usize,
    what: &str,
) -> io::Result<usize> {
    line.clear();
    let read = read_line(from, line, max, &what);
    to.write_all(line)?;
    read
}
/// Copies a chunked body verbatim: size lines with their extensions, data, CRLFs, the last
/// chunk and the trailer section.
pub(super) fn copy_chunked(from: &mut dyn BufRead, to: &mut dyn Write) -> io::Result<()> {
    // Every line read is written before it is checked: when one cannot be read, what came
    // before it has gone on, and the driver forwards the rest untouched.
    let mut line = Vec::with_capacity(64);
    loop {
        if read_line_through(from, to, &mut line, MAX_CHUNK_LINE, "chunk-size line")? == 0 {
            return Err(cut_short("chunked body cut short before a chunk size"));
        }
        let size = chunk_size(trim_eol(&line))?;
        if size == 0 {
            break;
        }
        copy_exact(from, to, size, "chunk")?;
        if read_line_through(from, to, &mut line, 2, "chunk data terminator")? == 0 {
            return Err(cut_short("chunked body cut short after a chunk"));
        }
        if trim_eol(&line) != b"" {
            return Err(invalid("chunk data not followed by CRLF"));
        }
    }
    // The trailer section, up to its empty line.
    let mut total = 0usize;
    let mut fields = 0usize;
    loop {
        let n = read_line_through(from, to, &mut line, MAX_LINE, "trailer line")?;
        if n == 0 {
            return Err(cut_short("chunked body cut short in its trailers"));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(invalid(format!(
                "trailer section longer than {}",
                size_text(MAX_HEAD)
            )));
        }
        if trim_eol(&line).is_empty() {
            return Ok(());
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(invalid(format!("more than {MAX_HEADERS} trailer fields")));
        }
    }
}
/// Reads the hex size of a chunk-size line, ignoring extensions.
pub(super) fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = trim_ows(digits);
    let bad = || {
        invalid(format!(
            "bad chunk size {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        ))
    };
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}
