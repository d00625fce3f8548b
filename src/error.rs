//! The one error type of start-up, and its exit statuses.

use std::fmt;

/// Why the proxy could not start (or a control request failed).
#[derive(Debug)]
pub enum Error {
    /// A bad command line: exit status 2.
    Usage(String),
    /// A configuration file that cannot be read or is wrong: exit status 1.
    Config(String),
    /// Anything else at start-up (address in use, no such host): exit status 1.
    Start(String),
}

impl Error {
    /// The exit status `vaurien` ends with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Config(_) | Error::Start(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m} (see 'vaurien --help')"),
            Error::Config(m) | Error::Start(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
