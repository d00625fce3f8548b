//! Command lines as memcached reads them: words, numbers, keys, and what each command asks for
//! (its reply's shape, its data block, `noreply`, quiet meta flags).

use super::*;

/// A decimal number within a `u64`.
pub(super) fn unsigned(word: &[u8], what: &str) -> io::Result<u64> {
    decimal(word).ok_or_else(|| invalid(format!("bad {what} {:?}", show(word))))
}
/// A signed decimal number within an `i64`.
pub(super) fn signed(word: &[u8], what: &str) -> io::Result<i64> {
    signed_decimal(word).ok_or_else(|| invalid(format!("bad {what} {:?}", show(word))))
}
/// The length of a data block, at most [`MAX_DATA`].
pub(super) fn data_len(word: &[u8]) -> io::Result<u64> {
    let n = unsigned(word, "data length")?;
    if n > MAX_DATA {
        return Err(invalid(format!(
            "data block of {n} bytes, more than {} MiB",
            MAX_DATA >> 20
        )));
    }
    Ok(n)
}
pub(super) fn check_key(key: &[u8], max: usize) -> io::Result<()> {
    if key.len() > max {
        return Err(invalid(format!(
            "key of {} bytes, longer than {max}: {}",
            key.len(),
            show(key)
        )));
    }
    Ok(())
}
/// The command a line starts with, for the long-line rule (`get` lines may be long).
pub(super) fn is_retrieval_line(line: &[u8]) -> bool {
    let line = &line[line.iter().take_while(|&&b| b == b' ').count()..];
    [&b"get "[..], b"gets ", b"gat ", b"gats "]
        .iter()
        .any(|p| line.starts_with(p))
}
/// What a parsed command line asks for.
pub(super) struct Command {
    pub(super) name: &'static str,
    pub(super) shape: Shape,
    /// Data block length, for storage commands and `ms`.
    pub(super) block: Option<u64>,
    pub(super) noreply: bool,
    pub(super) quiet: bool,
    pub(super) close: bool,
    pub(super) tunnel: bool,
}
impl Command {
    pub(super) fn new(name: &'static str, shape: Shape) -> Command {
        Command {
            name,
            shape,
            block: None,
            noreply: false,
            quiet: false,
            close: false,
            tunnel: false,
        }
    }
}
/// Checks the number of words of a command.
pub(super) fn arity(name: &str, argc: usize, ok: impl FnOnce(usize) -> bool) -> io::Result<()> {
    if ok(argc) {
        Ok(())
    } else {
        Err(invalid(format!(
            "bad command line format: {name} with {} argument(s)",
            argc - 1
        )))
    }
}
/// Parses a command line (without its terminator).
/// Words of a command line held without allocating.
pub(super) const INLINE_WORDS: usize = 24;
pub(super) fn parse_command(line: &[u8]) -> io::Result<Command> {
    if let Some(&b) = line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        return Err(invalid(format!(
            "control character {:?} in a command line: {}",
            show(&[b]),
            show(line)
        )));
    }
    // Words on the stack for the usual command, on the heap only for a long multi-key get.
    let mut inline: [&[u8]; INLINE_WORDS] = [&[]; INLINE_WORDS];
    let mut many: Vec<&[u8]> = Vec::new();
    let mut count = 0;
    for word in line.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if count < INLINE_WORDS {
            inline[count] = word;
        } else {
            if many.is_empty() {
                many.extend_from_slice(&inline);
            }
            many.push(word);
        }
        count += 1;
    }
    let words: &[&[u8]] = if many.is_empty() {
        &inline[..count]
    } else {
        &many
    };
    let Some(&first) = words.first() else {
        // memcached answers an empty line with ERROR.
        return Ok(Command::new("(empty)", Shape::Line));
    };
    let argc = words.len();
    let noreply = argc > 1 && words[argc - 1] == b"noreply";
    let name: &'static str = match first {
        b"get" => "get",
        b"gets" => "gets",
        b"gat" => "gat",
        b"gats" => "gats",
        b"set" => "set",
        b"add" => "add",
        b"replace" => "replace",
        b"append" => "append",
        b"prepend" => "prepend",
        b"cas" => "cas",
        b"delete" => "delete",
        b"incr" => "incr",
        b"decr" => "decr",
        b"touch" => "touch",
        b"stats" => "stats",
        b"flush_all" => "flush_all",
        b"version" => "version",
        b"verbosity" => "verbosity",
        b"quit" => "quit",
        b"shutdown" => "shutdown",
        b"cache_memlimit" => "cache_memlimit",
        b"slabs" => "slabs",
        b"lru" => "lru",
        b"lru_crawler" => "lru_crawler",
        b"extstore" => "extstore",
        b"debugtime" => "debugtime",
        b"misbehave" => "misbehave",
        b"refresh_certs" => "refresh_certs",
        b"watch" => "watch",
        b"mg" => "mg",
        b"ms" => "ms",
        b"md" => "md",
        b"ma" => "ma",
        b"mn" => "mn",
        b"me" => "me",
        _ => {
            return Err(invalid(format!(
                "unknown memcache command {:?}",
                show(first)
            )))
        }
    };
    let mut cmd = Command::new(name, Shape::Line);
    match name {
        "get" | "gets" | "gat" | "gats" => {
            let keys = if name.starts_with("gat") {
                arity(name, argc, |n| n >= 3)?;
                signed(words[1], "exptime")?;
                &words[2..]
            } else {
                arity(name, argc, |n| n >= 2)?;
                &words[1..]
            };
            for key in keys {
                check_key(key, MAX_KEY)?;
            }
            cmd.shape = Shape::Retrieval;
        }
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => {
            let base = if name == "cas" { 6 } else { 5 };
            arity(name, argc, |n| n == base || n == base + 1)?;
            check_key(words[1], MAX_KEY)?;
            let flags = unsigned(words[2], "flags")?;
            if flags > u64::from(u32::MAX) {
                return Err(invalid(format!("bad flags {:?}", show(words[2]))));
            }
            signed(words[3], "exptime")?;
            cmd.block = Some(data_len(words[4])?);
            if name == "cas" {
                unsigned(words[5], "cas unique")?;
            }
            cmd.noreply = argc == base + 1 && noreply;
        }
        "delete" => {
            arity(name, argc, |n| (2..=4).contains(&n))?;
            check_key(words[1], MAX_KEY)?;
            cmd.noreply = noreply;
        }
        "incr" | "decr" | "touch" => {
            arity(name, argc, |n| n == 3 || n == 4)?;
            check_key(words[1], MAX_KEY)?;
            cmd.noreply = noreply;
        }
        "stats" => cmd.shape = Shape::Stats,
        "flush_all" => {
            arity(name, argc, |n| (1..=3).contains(&n))?;
            cmd.noreply = noreply;
        }
        "verbosity" | "cache_memlimit" => {
            arity(name, argc, |n| n == 2 || n == 3)?;
            cmd.noreply = noreply;
        }
        "version" | "mn" | "misbehave" | "refresh_certs" => {
            arity(name, argc, |n| n == 1)?;
            if name == "mn" {
                cmd.shape = Shape::MetaBatch;
            }
        }
        "quit" => {
            arity(name, argc, |n| n == 1)?;
            cmd.close = true;
        }
        "shutdown" => {
            arity(name, argc, |n| n <= 2)?;
            cmd.shape = Shape::LineOrClose;
        }
        "lru_crawler" => {
            arity(name, argc, |n| n >= 2)?;
            cmd.shape = match words[1] {
                b"metadump" => Shape::UntilEnd,
                b"mgdump" => Shape::UntilEn,
                _ => Shape::Line,
            };
        }
        "slabs" | "lru" | "extstore" | "debugtime" => {}
        "watch" => cmd.tunnel = true,
        "me" => {
            arity(name, argc, |n| n == 2)?;
            check_key(words[1], MAX_KEY_BASE64)?;
        }
        _ => {
            // mg, md, ma: KEY FLAGS*; ms: KEY DATALEN FLAGS*.
            let first_flag = if name == "ms" { 3 } else { 2 };
            arity(name, argc, |n| n >= first_flag)?;
            let flags = &words[first_flag..];
            let base64 = flags.iter().any(|f| *f == b"b");
            check_key(words[1], if base64 { MAX_KEY_BASE64 } else { MAX_KEY })?;
            if name == "ms" {
                cmd.block = Some(data_len(words[2])?);
            }
            cmd.quiet = flags.iter().any(|f| *f == b"q");
            cmd.shape = Shape::Meta;
        }
    }
    Ok(cmd)
}
