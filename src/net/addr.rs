//! Addresses as users write them: `HOST:PORT`, `[v6]:PORT`.

/// An address given as `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// Port number.
    pub port: u16,
}

impl HostPort {
    /// Reads `HOST:PORT`.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = || format!("'{text}' is not an address HOST:PORT");
        let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(rest) => rest.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            HostPort::parse("localhost:80").unwrap(),
            HostPort {
                host: "localhost".into(),
                port: 80
            }
        );
        assert_eq!(HostPort::parse("[::1]:8000").unwrap().host, "::1");
        assert_eq!(
            HostPort::parse("[::1]:8000").unwrap().to_string(),
            "[::1]:8000"
        );
        for bad in [
            "localhost",
            "::1:80",
            "host:",
            "host:99999",
            ":80",
            "a b:1",
            "[::1:80",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }
}
