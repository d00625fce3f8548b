//! Behaviors: what the proxy does to a call.
//!
//! A behavior has three hooks around each call: [`Behavior::before`] sees the request on its
//! way to the backend, [`Behavior::between`] runs once the request reached the backend, and
//! [`Behavior::after`] sees the response on its way to the client. On stream protocols (tcp,
//! mysql) a call is one chunk in one direction: a chunk toward the backend goes through
//! `before` only, a chunk toward the client through `after` only.
//!
//! A behavior never does I/O itself: it edits the call's data, adds latency to
//! [`Call::delay`], or returns a [`Verdict`] that the protocol carries out. That keeps each
//! behavior a pure function of (call, options, rng), testable on its own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::opts::{BadOption, OptSpec, Values};

mod delay;
mod error;
mod simple;

pub use delay::Delay;
pub(crate) use error::garble;
pub use error::{Error, Transient};
pub use simple::{Abort, Blackout, Dummy, Hang};

/// Which way a call's data travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the backend (a request).
    ToBackend,
    /// From the backend to the client (a response).
    ToClient,
}

impl Direction {
    /// `to_backend` or `to_client`, as logs and statistics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToBackend => "to_backend",
            Direction::ToClient => "to_client",
        }
    }
}

/// What the protocol does with a call after a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: forward the (possibly edited) data after `Call::delay`.
    Forward,
    /// Fail the call in the protocol's own language (an HTTP 50x, a redis `-ERR`...); a stream
    /// protocol sends 1000 random bytes to the client instead.
    Fail,
    /// Read and drop what the client sends, answer nothing, keep the client connection open.
    Hang,
    /// Close the client connection at once; nothing more reaches the backend.
    Close,
    /// Let the request reach the backend, then shut the backend connection down and close
    /// the client without a response.
    Abort,
}

/// One call as a hook sees it.
pub struct Call<'a> {
    /// Which way `data` travels.
    pub direction: Direction,
    /// The bytes about to be forwarded; a hook may edit or replace them.
    pub data: &'a mut Vec<u8>,
    /// The connection's random source (seeded by `--seed`): every random draw goes through it.
    pub rng: &'a mut fastrand::Rng,
    /// True when the protocol frames requests and responses and answers `Verdict::Fail` with
    /// its own error reply; false on stream protocols.
    pub framed: bool,
    /// Latency to add before `data` is written; hooks add to it.
    pub delay: Duration,
}

/// A behavior instance; built from its options each time it is activated, so counters it keeps
/// (such as `warmup`) start again at activation.
pub trait Behavior: Send + Sync + fmt::Debug {
    /// The request is about to be forwarded to the backend.
    fn before(&self, _call: &mut Call<'_>) -> Verdict {
        Verdict::Forward
    }
    /// The request has reached the backend; the response is not read yet (framed protocols).
    fn between(&self, _call: &mut Call<'_>) -> Verdict {
        Verdict::Forward
    }
    /// The response is about to be written to the client.
    fn after(&self, _call: &mut Call<'_>) -> Verdict {
        Verdict::Forward
    }
    /// True when no hook ever edits, delays or fails a call: framed protocols may then
    /// forward pipelined requests in batches without calling the hooks one by one.
    fn transparent(&self) -> bool {
        false
    }
}

/// Builds a behavior instance from its option values.
pub type BuildBehavior = fn(&Values) -> Result<Arc<dyn Behavior>, BadOption>;

/// The declaration of a behavior: its name, options and constructor.
#[derive(Clone)]
pub struct BehaviorSpec {
    /// The name used in mixes, the INI file and the API.
    pub name: std::borrow::Cow<'static, str>,
    /// Other names accepted for it (the 2012 interface).
    pub aliases: &'static [&'static str],
    /// One line saying what it does.
    pub summary: &'static str,
    /// The options it declares: its flags, INI keys, API keys and their documentation come
    /// from them.
    pub options: &'static [OptSpec],
    /// Builds an instance from its option values, or names the option it refuses.
    pub build: BuildBehavior,
}

impl fmt::Debug for BehaviorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BehaviorSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BehaviorSpec {
    /// Whether `name` is this behavior's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    /// Builds an instance with `values` for its options.
    pub fn instantiate(&self, values: &Values) -> Result<Arc<dyn Behavior>, BadOption> {
        (self.build)(values)
    }
}

/// The options of `error`, shared by `transient`.
const ERROR_OPTIONS: &[OptSpec] = &[
    OptSpec::bool(
        "inject",
        "false",
        "stream protocols: insert 100 random bytes in the middle of the response instead of replacing it with 1000",
    ),
    OptSpec::int("warmup", "0", "calls", "let this many calls pass before failing"),
];

const TRANSIENT_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "agitate",
        "1",
        "calls",
        "how many calls fail before the following ones pass",
    ),
    ERROR_OPTIONS[0],
    ERROR_OPTIONS[1],
];

const DELAY_OPTIONS: &[OptSpec] = &[
    OptSpec::float("sleep", "1.0", "seconds", "latency added to the call"),
    OptSpec::bool(
        "before",
        "true",
        "delay the request on its way to the backend; false: delay the response on its way to the client",
    ),
    OptSpec::float("jitter", "0", "seconds", "add a uniform random latency in [-jitter, +jitter]"),
];

/// The built-in behaviors, in documentation order.
pub fn builtins() -> Vec<BehaviorSpec> {
    use std::borrow::Cow::Borrowed;
    vec![
        BehaviorSpec {
            name: Borrowed("dummy"),
            aliases: &["normal"],
            summary: "transparent: forwards everything unchanged",
            options: &[],
            build: |_| Ok(Arc::new(Dummy)),
        },
        BehaviorSpec {
            name: Borrowed("delay"),
            aliases: &[],
            summary: "adds latency to the request (before) or to the response",
            options: DELAY_OPTIONS,
            build: |v| Delay::from_values(v).map(|d| Arc::new(d) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("error"),
            aliases: &["errors"],
            summary: "after warmup calls, every call fails: the protocol's own error reply, or random bytes on streams",
            options: ERROR_OPTIONS,
            build: |v| Error::from_values(v).map(|e| Arc::new(e) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("hang"),
            aliases: &[],
            summary: "reads and drops what the client sends, answers nothing, keeps the connection open",
            options: &[],
            build: |_| Ok(Arc::new(Hang)),
        },
        BehaviorSpec {
            name: Borrowed("blackout"),
            aliases: &[],
            summary: "closes the client connection at once; nothing reaches the backend",
            options: &[],
            build: |_| Ok(Arc::new(Blackout)),
        },
        BehaviorSpec {
            name: Borrowed("abort"),
            aliases: &[],
            summary: "lets the request reach the backend, then closes both connections without a response",
            options: &[],
            build: |_| Ok(Arc::new(Abort)),
        },
        BehaviorSpec {
            name: Borrowed("transient"),
            aliases: &[],
            summary: "the first agitate calls fail as error does, the following ones pass",
            options: TRANSIENT_OPTIONS,
            build: |v| Transient::from_values(v).map(|t| Arc::new(t) as Arc<dyn Behavior>),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_unique_and_defaults_parse() {
        let specs = builtins();
        let mut names: Vec<&str> = specs
            .iter()
            .flat_map(|s| std::iter::once(s.name.as_ref()).chain(s.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a behavior name or alias is declared twice");
        for spec in &specs {
            for opt in spec.options {
                assert!(
                    opt.parse(opt.default).is_ok(),
                    "{}.{} default",
                    spec.name,
                    opt.name
                );
                assert!(!opt.help.is_empty());
            }
            assert!(spec.instantiate(&Values::defaults(spec.options)).is_ok());
        }
    }
}
