//! Small pieces every protocol parser uses: its error kinds, how bytes appear in a message,
//! and whether input is waiting.

use std::io::{self, BufRead};

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

/// Whether input is waiting; `false` at end of input.
pub(crate) fn more_input(r: &mut dyn BufRead) -> io::Result<bool> {
    loop {
        match r.fill_buf() {
            Ok(buf) => return Ok(!buf.is_empty()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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
    }
}
