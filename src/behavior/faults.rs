//! The faults Toxiproxy users rely on: `bandwidth`, `slicer`, `limit_data`, `reset_peer`,
//! `slow_close` and `timeout` (`latency` is [`super::Delay`] in milliseconds). Each only
//! describes, in [`Call::delivery`], how the bytes of a call in its stream are delivered; the
//! driver carries that out, with what it keeps for the connection (bytes counted, pace).

use std::time::Duration;

use super::{Behavior, Call, Slices, Stall, Stream, Verdict};
use crate::opts::{BadOption, Values, MAX_SECONDS};

/// The integer option `name` of `v`, refused when negative.
pub(super) fn count(v: &Values, name: &'static str) -> Result<u64, BadOption> {
    let n = v.int(name);
    u64::try_from(n).map_err(|_| BadOption::new(name, format!("must not be negative (got {n})")))
}

/// The option `name` of `v`, a whole number of `per_second`ths of a second (1000:
/// milliseconds), as a duration; refused when negative or past [`MAX_SECONDS`].
pub(super) fn duration(
    v: &Values,
    name: &'static str,
    per_second: u64,
) -> Result<Duration, BadOption> {
    let n = count(v, name)?;
    let secs = n as f64 / per_second as f64;
    if secs > MAX_SECONDS {
        return Err(BadOption::new(
            name,
            format!("must be at most {MAX_SECONDS} seconds (got {n})"),
        ));
    }
    Ok(Duration::from_secs(n / per_second)
        + Duration::from_nanos((n % per_second) * (1_000_000_000 / per_second)))
}

/// Runs `describe` on calls in `stream`; every call is forwarded.
fn on_stream(stream: Stream, call: &mut Call<'_>, describe: impl FnOnce(&mut Call<'_>)) -> Verdict {
    if stream.covers(call.direction) {
        describe(call);
    }
    Verdict::Forward
}

/// Implements both data hooks of a fault as `on_stream` with its `describe` method.
macro_rules! stream_hooks {
    ($t:ty) => {
        impl Behavior for $t {
            fn before(&self, call: &mut Call<'_>) -> Verdict {
                on_stream(self.stream, call, |c| self.describe(c))
            }
            fn after(&self, call: &mut Call<'_>) -> Verdict {
                on_stream(self.stream, call, |c| self.describe(c))
            }
        }
    };
}

/// `bandwidth`: the data flows at most `rate` KB/s (1 KB = 1000 bytes), paced smoothly.
#[derive(Debug, Clone, PartialEq)]
pub struct Bandwidth {
    /// The pace, in KB per second (at least 1).
    pub rate: u64,
    /// The streams it acts on.
    pub stream: Stream,
}

impl Bandwidth {
    /// Builds it from its option values; `rate` must be at least 1.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let rate = count(v, "rate")?;
        if rate == 0 {
            return Err(BadOption::new("rate", "must be at least 1 KB/s (got 0)"));
        }
        Ok(Bandwidth {
            rate,
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.rate = Some(self.rate.saturating_mul(1000));
    }
}
stream_hooks!(Bandwidth);

/// `slicer`: the data is written in slices of `average_size` ± `size_variation` bytes,
/// `delay` apart, each its own write.
#[derive(Debug, Clone, PartialEq)]
pub struct Slicer {
    /// How the data is cut.
    pub slices: Slices,
    /// The streams it acts on.
    pub stream: Stream,
}

impl Slicer {
    /// Builds it from its option values (`delay` in microseconds).
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let size = count(v, "average_size")?;
        let variation = count(v, "size_variation")?;
        let too_big = |name| BadOption::new(name, "is too large");
        Ok(Slicer {
            slices: Slices {
                size: usize::try_from(size).map_err(|_| too_big("average_size"))?,
                variation: usize::try_from(variation).map_err(|_| too_big("size_variation"))?,
                gap: duration(v, "delay", 1_000_000)?,
            },
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.slices = Some(self.slices);
    }
}
stream_hooks!(Slicer);

/// `limit_data`: once `bytes` bytes went through a stream of the connection, the rest is cut
/// and both connections close.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitData {
    /// How many bytes of the stream go through.
    pub bytes: u64,
    /// The streams it acts on.
    pub stream: Stream,
}

impl LimitData {
    /// Builds it from its option values.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        Ok(LimitData {
            bytes: count(v, "bytes")?,
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.limit = Some(self.bytes);
    }
}
stream_hooks!(LimitData);

/// `reset_peer`: `timeout` after the call, both connections are reset (RST); the data that
/// arrives meanwhile is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetPeer {
    /// How long after the call the connections are reset.
    pub timeout: Duration,
    /// The streams it acts on.
    pub stream: Stream,
}

impl ResetPeer {
    /// Builds it from its option values (`timeout` in milliseconds).
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        Ok(ResetPeer {
            timeout: duration(v, "timeout", 1000)?,
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.stall = Some(Stall {
            after: Some(self.timeout),
            reset: true,
        });
    }
}
stream_hooks!(ResetPeer);

/// `slow_close`: the data passes unchanged; the end of the stream reaches the other side
/// `delay` late.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowClose {
    /// How late the end of the stream arrives.
    pub delay: Duration,
    /// The streams it acts on.
    pub stream: Stream,
}

impl SlowClose {
    /// Builds it from its option values (`delay` in milliseconds).
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        Ok(SlowClose {
            delay: duration(v, "delay", 1000)?,
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.close_delay = Some(self.delay);
    }
}
stream_hooks!(SlowClose);

/// `timeout`: from this call on, the data of the stream is dropped, and both connections
/// close `timeout` later (0: only when the client leaves).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeout {
    /// How long after the call the connections close; `None`: never.
    pub timeout: Option<Duration>,
    /// The streams it acts on.
    pub stream: Stream,
}

impl Timeout {
    /// Builds it from its option values (`timeout` in milliseconds, 0: never).
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let timeout = duration(v, "timeout", 1000)?;
        Ok(Timeout {
            timeout: (!timeout.is_zero()).then_some(timeout),
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    fn describe(&self, call: &mut Call<'_>) {
        call.delivery.stall = Some(Stall {
            after: self.timeout,
            reset: false,
        });
    }
}
stream_hooks!(Timeout);

#[cfg(test)]
mod tests {
    use super::super::{builtins, Direction};
    use super::*;
    use crate::opts::Value;

    fn values(behavior: &str, set: &[(&str, Value)]) -> Values {
        let spec = builtins()
            .into_iter()
            .find(|s| s.name == behavior)
            .expect("a built-in behavior");
        let mut v = Values::defaults(spec.options);
        for (k, val) in set {
            v.set(k, val.clone());
        }
        v
    }

    fn delivery(b: &dyn Behavior, direction: Direction) -> super::super::Delivery {
        let mut data = b"hello".to_vec();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut call = Call::new(direction, &mut data, &mut rng, false);
        let verdict = match direction {
            Direction::ToBackend => b.before(&mut call),
            Direction::ToClient => b.after(&mut call),
        };
        assert_eq!(verdict, Verdict::Forward);
        assert_eq!(call.data.as_slice(), b"hello", "faults never edit the data");
        call.delivery
    }

    #[test]
    fn each_fault_acts_on_its_stream_only_and_defaults_to_downstream() {
        let b = Bandwidth::from_values(&values("bandwidth", &[("rate", Value::Int(200))])).unwrap();
        assert_eq!(delivery(&b, Direction::ToClient).rate, Some(200_000));
        assert_eq!(delivery(&b, Direction::ToBackend).rate, None);
        let up = values("limit_data", &[("stream", Value::Str("UpStream".into()))]);
        let l = LimitData::from_values(&up).unwrap();
        assert_eq!(delivery(&l, Direction::ToBackend).limit, Some(0));
        assert_eq!(delivery(&l, Direction::ToClient).limit, None);
        let both = values("slow_close", &[("stream", Value::Str("both".into()))]);
        let s = SlowClose::from_values(&both).unwrap();
        for d in [Direction::ToBackend, Direction::ToClient] {
            assert_eq!(delivery(&s, d).close_delay, Some(Duration::ZERO));
        }
    }

    #[test]
    fn times_are_milliseconds_and_slicer_gaps_microseconds() {
        let r =
            ResetPeer::from_values(&values("reset_peer", &[("timeout", Value::Int(200))])).unwrap();
        assert_eq!(r.timeout, Duration::from_millis(200));
        let t = Timeout::from_values(&values("timeout", &[])).unwrap();
        assert_eq!(t.timeout, None, "0 waits for the client to leave");
        let s = Slicer::from_values(&values(
            "slicer",
            &[
                ("average_size", Value::Int(10)),
                ("size_variation", Value::Int(0)),
                ("delay", Value::Int(20_000)),
            ],
        ))
        .unwrap();
        assert_eq!(s.slices.gap, Duration::from_millis(20));
        let mut rng = fastrand::Rng::with_seed(3);
        assert!((0..100).all(|_| s.slices.draw(&mut rng) == 10));
        let varied = Slices {
            size: 10,
            variation: 4,
            gap: Duration::ZERO,
        };
        let sizes: Vec<usize> = (0..500).map(|_| varied.draw(&mut rng)).collect();
        assert!(sizes.iter().all(|n| (6..=14).contains(n)));
        assert!(sizes.contains(&6) && sizes.contains(&14));
        let zero = Slices {
            size: 0,
            variation: 0,
            gap: Duration::ZERO,
        };
        assert_eq!(zero.draw(&mut rng), 1, "a slice holds a byte at least");
    }

    #[test]
    fn bad_values_name_their_option() {
        let bad = |behavior: &str, key: &str, value: Value| {
            let v = values(behavior, &[(key, value)]);
            let spec = builtins().into_iter().find(|s| s.name == behavior).unwrap();
            spec.instantiate(&v).unwrap_err()
        };
        let e = bad("bandwidth", "rate", Value::Int(0));
        assert_eq!(
            (e.key, e.why.as_str()),
            ("rate", "must be at least 1 KB/s (got 0)")
        );
        let e = bad("limit_data", "bytes", Value::Int(-1));
        assert_eq!(e.key, "bytes");
        assert!(e.why.contains("negative"), "{e}");
        let e = bad("timeout", "stream", Value::Str("sideways".into()));
        assert_eq!(
            e.to_string(),
            "stream must be upstream, downstream or both (got 'sideways')"
        );
        let e = bad("reset_peer", "timeout", Value::Int(i64::MAX));
        assert!(e.why.contains("at most"), "{e}");
    }
}
