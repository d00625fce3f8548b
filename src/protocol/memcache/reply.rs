//! Replies, by the shape the command gives them: reply lines, data blocks read or copied as
//! they arrive, and where a reply ends.

use super::*;

/// The shape of a reply, which the command gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// One line.
    Line,
    /// `VALUE` lines with their data blocks, until `END`.
    Retrieval,
    /// `STAT`/`ITEM`/`PREFIX` lines until `END`, or one `RESET`/`OK` line.
    Stats,
    /// Lines until `END` (`lru_crawler metadump`).
    UntilEnd,
    /// Lines until `EN` (`lru_crawler mgdump`).
    UntilEn,
    /// One meta reply: a code line, or `VA` and its data block.
    Meta,
    /// Meta replies until `MN` (`mn` after quiet commands).
    MetaBatch,
    /// One line, or the backend closes (`shutdown`).
    LineOrClose,
}
/// Where a message stopped, to go on in `copy_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    /// Bytes of a data block, its CRLF included, still to copy (0: none).
    pub(super) block: u64,
    /// The reply goes on after the block; `None`: the message ends with it.
    pub(super) then: Option<Shape>,
}
/// What a reply line means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The reply goes on with another line.
    More,
    /// This line ends the reply.
    Done,
    /// A data block of `len` bytes (and CRLF) follows; the reply ends after it when `last`.
    Block { len: u64, last: bool },
}
/// Reads one reply line into `out`.
pub(super) fn read_reply_line(r: &mut dyn BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    if !read_until_lf(r, out, start, MAX_REPLY_LINE)? {
        return Err(too_long(&"reply line", MAX_REPLY_LINE, &out[start..]));
    }
    Ok(())
}
/// Reads a data block of `len` bytes and its CRLF into `out` (all that was read stays in
/// `out` on an error).
pub(super) fn read_block(r: &mut dyn BufRead, out: &mut Vec<u8>, len: u64) -> io::Result<()> {
    read_exactly(r, out, len as usize + 2, "data block")?;
    if !out.ends_with(b"\r\n") {
        return Err(invalid("data block not ended by CRLF"));
    }
    Ok(())
}
/// Copies a data block of `total` bytes, the last two of which must be CRLF.
pub(super) fn copy_block(from: &mut dyn BufRead, to: &mut dyn Write, total: u64) -> io::Result<()> {
    let data = total.saturating_sub(2);
    copy_exact(from, to, data, "data block")?;
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
pub(super) fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}
/// A meta reply code line: two capital letters, alone or followed by a space.
pub(super) fn is_meta_code(line: &[u8]) -> bool {
    line.len() >= 2
        && line[..2].iter().all(u8::is_ascii_uppercase)
        && (line.len() == 2 || line[2] == b' ')
}
/// The `n`-th word of a line.
pub(super) fn word(line: &[u8], n: usize) -> Option<&[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty()).nth(n)
}
/// What the reply line `line` (without its terminator) means in a reply of `shape`.
pub(super) fn reply_step(shape: Shape, line: &[u8]) -> io::Result<Step> {
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
pub(super) fn reply_head(
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
pub(super) fn copy_rest(
    mut pending: Pending,
    from: &mut dyn BufRead,
    to: &mut dyn Write,
) -> io::Result<()> {
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
