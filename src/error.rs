//! The one error type of start-up, and its exit statuses.

use std::fmt;

/// Why the proxy could not start (or a control request failed).
#[derive(Debug)]
pub enum Error {
    /// A bad command line: exit status 2.
    Usage(String),
    /// A configuration file that cannot be read or is wrong: exit status 1.
    Config(String),
    /// Anything else at start-up (no such host, no thread): exit status 1.
    Start(String),
    /// The proxy cannot listen on `addr` (in use, not this host's): exit status 1.
    Listen {
        /// The address asked for, as given.
        addr: String,
        /// Why, as the system said it.
        source: std::io::Error,
    },
}

impl Error {
    /// The exit status `vaurien` ends with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Config(_) | Error::Start(_) | Error::Listen { .. } => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m} (see 'vaurien --help')"),
            Error::Config(m) | Error::Start(m) => f.write_str(m),
            Error::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl std::error::Error for Error {}
