//! Message heads: lines read with their limits, header fields kept as positions in the head
//! read, the fields the framing depends on, and a head written back with edits.

use super::*;

pub(super) fn trim_ows(v: &[u8]) -> &[u8] {
    let (start, end) = ows_bounds(v);
    &v[start..end]
}
/// Where `v` starts and ends without its surrounding whitespace.
pub(super) fn ows_bounds(v: &[u8]) -> (usize, usize) {
    let ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = v.iter().position(|b| !ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    (start, end)
}
/// RFC 9110 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}
/// One header field of a parsed head, as positions in [`Head::raw`].
#[derive(Debug)]
pub(super) struct Field {
    /// Its bytes (continuation lines included): its name starts at `start`.
    pub(super) start: usize,
    pub(super) end: usize,
    /// End of its name.
    pub(super) name_end: usize,
    /// Its value without surrounding whitespace, on its first line.
    pub(super) value: (usize, usize),
    /// Non-empty: the whole value, its obs-fold continuation lines joined by a space (rare;
    /// an empty `Vec` holds no memory).
    pub(super) folded: Vec<u8>,
}
/// A parsed message head; `raw` holds it exactly as read.
#[derive(Debug, Default)]
pub(super) struct Head {
    pub(super) raw: Vec<u8>,
    /// Start of the start line in `raw`: empty lines before it are kept, and forwarded.
    pub(super) start: usize,
    /// End of the start line in `raw`.
    pub(super) start_end: usize,
    /// Start of the empty line that ends the head in `raw`.
    pub(super) blank: usize,
    pub(super) fields: Vec<Field>,
}
/// How a rebuilt head treats a field.
pub(super) enum Edit<'a> {
    Keep,
    Drop,
    Replace(&'a [u8]),
}
/// The comma-separated list elements of a field value, without surrounding whitespace,
/// empty ones left out.
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}
impl Head {
    pub(super) fn start_line(&self) -> &[u8] {
        trim_eol(&self.raw[self.start..self.start_end])
    }

    pub(super) fn name(&self, f: &Field) -> &[u8] {
        &self.raw[f.start..f.name_end]
    }

    pub(super) fn value<'a>(&'a self, f: &'a Field) -> &'a [u8] {
        if f.folded.is_empty() {
            &self.raw[f.value.0..f.value.1]
        } else {
            &f.folded
        }
    }

    /// The values of the `name` fields; `name` is lower-case, field names match it in any
    /// case.
    pub(super) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.name(f).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| self.value(f))
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// Whether a list element of a `name` field is `token` (in any case).
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the last list element of the `name` fields is `token` (in any case).
    pub(super) fn last_token_is(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(list_elements)
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Appends the head to `out`, fields edited by `edit` (given a field's name), `extra`
    /// lines added at the end.
    pub(super) fn emit<'a>(
        &self,
        out: &mut Vec<u8>,
        edit: impl Fn(&[u8]) -> Edit<'a>,
        extra: &[u8],
    ) {
        out.extend_from_slice(&self.raw[..self.start_end]);
        for f in &self.fields {
            match edit(self.name(f)) {
                Edit::Keep => out.extend_from_slice(&self.raw[f.start..f.end]),
                Edit::Drop => {}
                Edit::Replace(line) => out.extend_from_slice(line),
            }
        }
        out.extend_from_slice(extra);
        out.extend_from_slice(&self.raw[self.blank..]);
    }
}
/// A session keeps at most this much of a head's buffer for the next head: a rare big head
/// does not stay in memory for the life of the connection.
pub(super) const KEEP_HEAD: usize = 16 * 1024;
/// Likewise, the most header fields whose places a session keeps for the next head.
pub(super) const KEEP_FIELDS: usize = 128;
/// Reads a message head into `head`, whose buffers are reused: empty lines before it are
/// kept (a recipient ignores them; the proxy forwards them); `Ok(false)`: the input ended
/// before any byte of a head. `what` is "request" or
/// "response"; `budget` is how many bytes the head may take.
pub(super) fn read_head(
    r: &mut dyn BufRead,
    what: &str,
    budget: usize,
    head: &mut Head,
) -> io::Result<bool> {
    let Head {
        raw,
        start,
        start_end,
        blank,
        fields,
    } = head;
    if raw.capacity() > KEEP_HEAD {
        *raw = Vec::new();
    }
    if fields.capacity() > KEEP_FIELDS {
        *fields = Vec::new();
    }
    raw.clear();
    fields.clear();
    loop {
        *start = raw.len();
        let n = read_line(r, raw, MAX_LINE, &format_args!("{what} line"))?;
        if n == 0 {
            return Ok(false);
        }
        if trim_eol(&raw[*start..]).is_empty() {
            if raw.len() > MAX_HEAD {
                return Err(invalid(format!(
                    "more than {} of empty lines before a {what}",
                    size_text(MAX_HEAD)
                )));
            }
            continue;
        }
        break;
    }
    *start_end = raw.len();
    loop {
        let start = raw.len();
        let n = read_line(r, raw, MAX_LINE, &format_args!("{what} header line"))?;
        if n == 0 {
            return Err(cut_short(format!(
                "{what} head cut short by the end of input"
            )));
        }
        if raw.len() > budget {
            return Err(invalid(format!(
                "{what} head longer than {}",
                size_text(MAX_HEAD)
            )));
        }
        let line = trim_eol(&raw[start..]);
        if line.is_empty() {
            *blank = start;
            return Ok(true);
        }
        if matches!(line[0], b' ' | b'\t') {
            // obs-fold: a continuation of the previous field's value.
            let Some(last) = fields.last_mut() else {
                return Err(invalid(format!(
                    "{what} head starts with a continuation line"
                )));
            };
            let folded = trim_ows(line);
            if !folded.is_empty() {
                if last.folded.is_empty() {
                    last.folded
                        .extend_from_slice(&raw[last.value.0..last.value.1]);
                }
                if !last.folded.is_empty() {
                    last.folded.push(b' ');
                }
                last.folded.extend_from_slice(folded);
            }
            last.end = raw.len();
            continue;
        }
        if fields.len() == MAX_HEADERS {
            return Err(invalid(format!(
                "more than {MAX_HEADERS} header fields in a {what}"
            )));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(invalid(format!(
                "{what} header line without a colon: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        };
        let name = &line[..colon];
        if !is_token(name) {
            return Err(invalid(format!(
                "bad {what} header name {:?}",
                String::from_utf8_lossy(&name[..name.len().min(80)])
            )));
        }
        // `line` starts at `start` in `raw`.
        let (from, to) = ows_bounds(&line[colon + 1..]);
        let value_at = start + colon + 1;
        fields.push(Field {
            start,
            end: raw.len(),
            name_end: start + colon,
            value: (value_at + from, value_at + to),
            folded: Vec::new(),
        });
    }
}
/// Reads `HTTP/1.x`; returns x. Other versions are refused.
pub(super) fn parse_version(v: &[u8]) -> io::Result<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Ok(minor - b'0')
        }
        _ => Err(invalid(format!(
            "unsupported HTTP version {:?}",
            String::from_utf8_lossy(&v[..v.len().min(20)])
        ))),
    }
}
/// Whether a message of version 1.`minor` with these `Connection` tokens ends its connection.
pub(super) fn closes(head: &Head, minor: u8) -> bool {
    head.has_token("connection", "close")
        || (minor == 0 && !head.has_token("connection", "keep-alive"))
}
