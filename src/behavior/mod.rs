//! Behaviors: what the proxy does to a call.
//!
//! A behavior has three hooks around each call: [`Behavior::before`] sees the request on its
//! way to the backend, [`Behavior::between`] runs once the request reached the backend, and
//! [`Behavior::after`] sees the response on its way to the client. On stream protocols (tcp,
//! mysql) a call is one chunk in one direction: a chunk toward the backend goes through
//! `before` only, a chunk toward the client through `after` only.
//!
//! A behavior never does I/O itself: it edits the call's data, adds latency to
//! [`Call::delay`], describes how the bytes are delivered in [`Call::delivery`] (a pace,
//! slices, a cut, a stall, a late close), or returns a [`Verdict`] that the protocol carries
//! out. That keeps each behavior a pure function of (call, options, rng), testable on its own;
//! what lives for a connection (the bytes a stream carried, its pace) is kept by the driver.
//!
//! A behavior that acts on bytes acts on one stream or both ([`Stream`]): `upstream` is the
//! client's data on its way to the backend (the request, `before`), `downstream` the backend's
//! on its way to the client (the response, `after`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::opts::{BadOption, OptSpec, Values};

mod delay;
mod error;
mod faults;
mod simple;

pub use delay::Delay;
pub(crate) use error::garble;
pub use error::{Error, Transient};
pub use faults::{Bandwidth, LimitData, ResetPeer, Slicer, SlowClose, Timeout};
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

/// The streams of a connection a behavior acts on (its `stream` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// From the client to the backend: requests.
    Upstream,
    /// From the backend to the client: responses.
    Downstream,
    /// Both ways.
    Both,
}

impl Stream {
    /// Reads a `stream` option's value (without regard to case, as Toxiproxy does).
    pub fn parse(text: &str) -> Result<Stream, BadOption> {
        match text.trim().to_ascii_lowercase().as_str() {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            "both" => Ok(Stream::Both),
            _ => Err(BadOption::new(
                "stream",
                format!(
                    "must be upstream, downstream or both (got '{}')",
                    text.trim()
                ),
            )),
        }
    }

    /// The `stream` option of `v`, or `default` when it is unset.
    pub fn from_values(v: &Values, default: Stream) -> Result<Stream, BadOption> {
        match v.str("stream") {
            "" => Ok(default),
            text => Stream::parse(text),
        }
    }

    /// Whether data travelling `direction` is in this stream.
    pub fn covers(self, direction: Direction) -> bool {
        match self {
            Stream::Both => true,
            Stream::Upstream => direction == Direction::ToBackend,
            Stream::Downstream => direction == Direction::ToClient,
        }
    }

    /// `upstream`, `downstream` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
            Stream::Both => "both",
        }
    }
}

/// How the driver delivers a call's bytes, besides [`Call::delay`]: hooks fill it in, and the
/// driver carries it out alike on a stream chunk and on a framed call's request or response.
/// Everything is off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delivery {
    /// At most this many bytes per second, paced smoothly (`bandwidth`).
    pub rate: Option<u64>,
    /// Written in slices, each its own write (`slicer`).
    pub slices: Option<Slices>,
    /// Once this many bytes went through this stream of the connection, the rest is cut and
    /// both connections close (`limit_data`).
    pub limit: Option<u64>,
    /// The call's data, and what follows it in this stream, is dropped, and the connection
    /// ends later (`timeout`, `reset_peer`).
    pub stall: Option<Stall>,
    /// When this stream ends, its end reaches the other side this much later (`slow_close`).
    pub close_delay: Option<Duration>,
}

/// How `slicer` cuts a call's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slices {
    /// The average size of a slice, in bytes (at least 1).
    pub size: usize,
    /// A slice is `size` plus or minus up to this many bytes.
    pub variation: usize,
    /// The time between two slices.
    pub gap: Duration,
}

impl Slices {
    /// The size of the next slice: uniform in `size ± variation`, at least 1 byte.
    pub fn draw(&self, rng: &mut fastrand::Rng) -> usize {
        let low = self.size.saturating_sub(self.variation).max(1);
        let high = self.size.saturating_add(self.variation).max(low);
        rng.usize(low..=high)
    }
}

/// How a stalled connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// This long after the call; `None`: only when the client leaves.
    pub after: Option<Duration>,
    /// Both connections are reset (RST) rather than closed.
    pub reset: bool,
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
    /// How `data` is delivered after the delay: pace, slices, cut, stall, late close.
    pub delivery: Delivery,
}

impl<'a> Call<'a> {
    /// A call carrying `data` in `direction`, with nothing added yet.
    pub fn new(
        direction: Direction,
        data: &'a mut Vec<u8>,
        rng: &'a mut fastrand::Rng,
        framed: bool,
    ) -> Call<'a> {
        Call {
            direction,
            data,
            rng,
            framed,
            delay: Duration::ZERO,
            delivery: Delivery::default(),
        }
    }
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

/// The `stream` option of a behavior whose default is `downstream`.
const DOWNSTREAM: OptSpec = OptSpec::str(
    "stream",
    "downstream",
    "",
    "the streams it acts on: upstream (client to backend), downstream (backend to client) or both",
);

/// The options of `error`, shared by `transient`.
const ERROR_OPTIONS: &[OptSpec] = &[
    OptSpec::bool(
        "inject",
        "false",
        "stream protocols: insert 100 random bytes in the middle of the response instead of replacing it with 1000",
    ),
    OptSpec::int("warmup", "0", "calls", "let this many calls pass before failing"),
    OptSpec::str(
        "stream",
        "downstream",
        "",
        "stream protocols: the streams whose chunks it garbles: upstream, downstream or both",
    ),
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
    ERROR_OPTIONS[2],
];

const DELAY_OPTIONS: &[OptSpec] = &[
    OptSpec::float("sleep", "1.0", "seconds", "latency added to the call"),
    OptSpec::bool(
        "before",
        "true",
        "delay the request on its way to the backend; false: delay the response on its way to the client",
    ),
    OptSpec::float("jitter", "0", "seconds", "add a uniform random latency in [-jitter, +jitter]"),
    OptSpec::str(
        "stream",
        "",
        "",
        "the streams it delays: upstream, downstream or both; when unset, before decides",
    ),
];

const LATENCY_OPTIONS: &[OptSpec] = &[
    OptSpec::int("latency", "0", "ms", "latency added to the data"),
    OptSpec::int(
        "jitter",
        "0",
        "ms",
        "add a uniform random latency in [-jitter, +jitter]",
    ),
    DOWNSTREAM,
];

const BANDWIDTH_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "rate",
        "100",
        "KB/s",
        "the most data that flows per second, 1 KB = 1000 bytes, at least 1",
    ),
    DOWNSTREAM,
];

const SLICER_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "average_size",
        "64",
        "bytes",
        "the average size of a slice (a slice holds 1 byte at least)",
    ),
    OptSpec::int(
        "size_variation",
        "0",
        "bytes",
        "a slice is average_size plus or minus up to this",
    ),
    OptSpec::int("delay", "0", "microseconds", "the time between two slices"),
    DOWNSTREAM,
];

const LIMIT_DATA_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "bytes",
        "0",
        "bytes",
        "how many bytes of the stream go through before it is cut and both connections close",
    ),
    DOWNSTREAM,
];

const RESET_PEER_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "timeout",
        "0",
        "ms",
        "how long after the call both connections are reset; data arriving meanwhile is dropped",
    ),
    DOWNSTREAM,
];

const SLOW_CLOSE_OPTIONS: &[OptSpec] = &[
    OptSpec::int(
        "delay",
        "0",
        "ms",
        "how late the end of the stream reaches the other side",
    ),
    DOWNSTREAM,
];

const TIMEOUT_OPTIONS: &[OptSpec] = &[
    OptSpec::int("timeout", "0", "ms", "how long after the call both connections close, the data being dropped meanwhile; 0: when the client leaves"),
    DOWNSTREAM,
];

/// The built-in behaviors, in documentation order.
pub fn builtins() -> Vec<BehaviorSpec> {
    use std::borrow::Cow::Borrowed;
    vec![
        BehaviorSpec {
            name: Borrowed("dummy"),
            aliases: &["normal", "noop"],
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
        BehaviorSpec {
            name: Borrowed("latency"),
            aliases: &[],
            summary: "Toxiproxy's latency: delay in milliseconds, on the response by default",
            options: LATENCY_OPTIONS,
            build: |v| Delay::from_latency_values(v).map(|d| Arc::new(d) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("bandwidth"),
            aliases: &[],
            summary: "the data flows at most rate KB/s, paced smoothly",
            options: BANDWIDTH_OPTIONS,
            build: |v| Bandwidth::from_values(v).map(|b| Arc::new(b) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("slicer"),
            aliases: &[],
            summary: "the data is written in small slices, each its own write, delay apart",
            options: SLICER_OPTIONS,
            build: |v| Slicer::from_values(v).map(|s| Arc::new(s) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("limit_data"),
            aliases: &[],
            summary: "after bytes bytes of the stream, the rest is cut and both connections close",
            options: LIMIT_DATA_OPTIONS,
            build: |v| LimitData::from_values(v).map(|l| Arc::new(l) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("reset_peer"),
            aliases: &["reset"],
            summary: "timeout ms after the call, both connections are reset (RST)",
            options: RESET_PEER_OPTIONS,
            build: |v| ResetPeer::from_values(v).map(|r| Arc::new(r) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("slow_close"),
            aliases: &[],
            summary: "the data passes; the end of the stream arrives delay ms late",
            options: SLOW_CLOSE_OPTIONS,
            build: |v| SlowClose::from_values(v).map(|s| Arc::new(s) as Arc<dyn Behavior>),
        },
        BehaviorSpec {
            name: Borrowed("timeout"),
            aliases: &[],
            summary: "the data of the stream is dropped; both connections close timeout ms later (0: never)",
            options: TIMEOUT_OPTIONS,
            build: |v| Timeout::from_values(v).map(|t| Arc::new(t) as Arc<dyn Behavior>),
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
