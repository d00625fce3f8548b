//! `delay`: latency on the request or on the response.

use std::time::Duration;

use super::{Behavior, Call, Stream, Verdict};
use crate::opts::{BadOption, Values, MAX_SECONDS};

/// Adds `sleep` (± `jitter`) seconds of latency to the data of its streams: the request
/// (`before`, the default) or the response, or both. `latency` is the same in milliseconds.
///
/// The delay is latency, not a throughput cap: the protocol writes data read at time t at
/// t + sleep, so a burst of chunks is delayed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    /// Latency added to a call, in seconds.
    pub sleep: f64,
    /// Uniform random variation of the latency, in seconds.
    pub jitter: f64,
    /// The streams it delays.
    pub stream: Stream,
}

impl Delay {
    /// Builds `delay` from its option values (seconds; `stream`, else `before`, says which
    /// way); negative durations, and durations past [`MAX_SECONDS`] (a deadline that far
    /// would overflow the clock), are refused.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let by_before = if v.bool("before") {
            Stream::Upstream
        } else {
            Stream::Downstream
        };
        let d = Delay {
            sleep: v.float("sleep"),
            jitter: v.float("jitter"),
            stream: Stream::from_values(v, by_before)?,
        };
        for (name, secs) in [("sleep", d.sleep), ("jitter", d.jitter)] {
            if secs < 0.0 {
                return Err(BadOption::new(
                    name,
                    format!("must not be negative (got {secs})"),
                ));
            }
            if secs > MAX_SECONDS {
                return Err(BadOption::new(
                    name,
                    format!("must be at most {MAX_SECONDS} seconds (got {secs})"),
                ));
            }
        }
        Ok(d)
    }

    /// Builds `latency` from its option values: `latency` and `jitter` in milliseconds, on
    /// the downstream unless `stream` says otherwise.
    pub fn from_latency_values(v: &Values) -> Result<Self, BadOption> {
        Ok(Delay {
            sleep: super::faults::duration(v, "latency", 1000)?.as_secs_f64(),
            jitter: super::faults::duration(v, "jitter", 1000)?.as_secs_f64(),
            stream: Stream::from_values(v, Stream::Downstream)?,
        })
    }

    /// The latency of one call: `sleep` plus a uniform draw in [-jitter, +jitter], never below 0.
    pub fn latency(&self, rng: &mut fastrand::Rng) -> Duration {
        let mut secs = self.sleep;
        if self.jitter > 0.0 {
            secs += (rng.f64() * 2.0 - 1.0) * self.jitter;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    fn apply(&self, call: &mut Call<'_>) -> Verdict {
        if self.stream.covers(call.direction) {
            call.delay += self.latency(call.rng);
        }
        Verdict::Forward
    }
}

impl Behavior for Delay {
    fn before(&self, call: &mut Call<'_>) -> Verdict {
        self.apply(call)
    }
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        self.apply(call)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::*;

    fn call_delay(d: &Delay, dir: Direction, seed: u64) -> Duration {
        let mut data = b"x".to_vec();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut call = Call::new(dir, &mut data, &mut rng, false);
        let verdict = match dir {
            Direction::ToBackend => d.before(&mut call),
            Direction::ToClient => d.after(&mut call),
        };
        assert_eq!(verdict, Verdict::Forward);
        call.delay
    }

    #[test]
    fn before_delays_requests_only() {
        let d = Delay {
            sleep: 0.5,
            jitter: 0.0,
            stream: Stream::Upstream,
        };
        assert_eq!(
            call_delay(&d, Direction::ToBackend, 1),
            Duration::from_millis(500)
        );
        assert_eq!(call_delay(&d, Direction::ToClient, 1), Duration::ZERO);
        let d = Delay {
            stream: Stream::Downstream,
            ..d
        };
        assert_eq!(call_delay(&d, Direction::ToBackend, 1), Duration::ZERO);
        assert_eq!(
            call_delay(&d, Direction::ToClient, 1),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn jitter_stays_in_bounds_and_follows_the_seed() {
        let d = Delay {
            sleep: 0.1,
            jitter: 0.05,
            stream: Stream::Upstream,
        };
        for seed in 0..200 {
            let l = call_delay(&d, Direction::ToBackend, seed).as_secs_f64();
            assert!((0.05..=0.15).contains(&l), "{l}");
            assert_eq!(call_delay(&d, Direction::ToBackend, seed).as_secs_f64(), l);
        }
        let big = Delay {
            sleep: 0.01,
            jitter: 1.0,
            stream: Stream::Upstream,
        };
        assert!((0..100).all(|s| call_delay(&big, Direction::ToBackend, s) >= Duration::ZERO));
    }

    #[test]
    fn stream_overrides_before_and_latency_is_milliseconds_downstream() {
        let mut v = Values::defaults(super::super::DELAY_OPTIONS);
        v.set("stream", crate::opts::Value::Str("both".into()));
        let d = Delay::from_values(&v).unwrap();
        assert_eq!(d.stream, Stream::Both, "before (true) is overridden");
        for dir in [Direction::ToBackend, Direction::ToClient] {
            assert_eq!(call_delay(&d, dir, 1), Duration::from_secs(1));
        }
        let mut v = Values::defaults(super::super::LATENCY_OPTIONS);
        v.set("latency", crate::opts::Value::Int(300));
        let l = Delay::from_latency_values(&v).unwrap();
        assert_eq!(
            call_delay(&l, Direction::ToClient, 1),
            Duration::from_millis(300)
        );
        assert_eq!(call_delay(&l, Direction::ToBackend, 1), Duration::ZERO);
    }

    #[test]
    fn negative_durations_are_refused() {
        let mut v = Values::defaults(super::super::DELAY_OPTIONS);
        v.set("sleep", crate::opts::Value::Float(-1.0));
        assert!(Delay::from_values(&v).is_err());
    }

    #[test]
    fn durations_past_the_clock_are_refused_and_the_longest_one_is_a_duration() {
        for (name, secs) in [("sleep", 1e20), ("jitter", 1e300)] {
            let mut v = Values::defaults(super::super::DELAY_OPTIONS);
            v.set(name, crate::opts::Value::Float(secs));
            let why = Delay::from_values(&v).unwrap_err();
            assert!(why.key == name && why.why.contains("at most"), "{why}");
        }
        let longest = Delay {
            sleep: MAX_SECONDS,
            jitter: MAX_SECONDS,
            stream: Stream::Upstream,
        };
        for seed in 0..100 {
            let latency = call_delay(&longest, Direction::ToBackend, seed);
            assert!(std::time::Instant::now().checked_add(latency).is_some());
        }
    }
}
