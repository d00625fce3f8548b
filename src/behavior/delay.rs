//! `delay`: latency on the request or on the response.

use std::time::Duration;

use super::{Behavior, Call, Direction, Verdict};
use crate::opts::{BadOption, Values, MAX_SECONDS};

/// Adds `sleep` (± `jitter`) seconds of latency to the request (`before`) or the response.
///
/// The delay is latency, not a throughput cap: the protocol writes data read at time t at
/// t + sleep, so a burst of chunks is delayed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    /// Latency added to a call, in seconds.
    pub sleep: f64,
    /// Delay the request (true) or the response (false).
    pub before: bool,
    /// Uniform random variation of the latency, in seconds.
    pub jitter: f64,
}

impl Delay {
    /// Builds it from its option values; negative durations, and durations past
    /// [`MAX_SECONDS`] (a deadline that far would overflow the clock), are refused.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let d = Delay {
            sleep: v.float("sleep"),
            before: v.bool("before"),
            jitter: v.float("jitter"),
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

    /// The latency of one call: `sleep` plus a uniform draw in [-jitter, +jitter], never below 0.
    pub fn latency(&self, rng: &mut fastrand::Rng) -> Duration {
        let mut secs = self.sleep;
        if self.jitter > 0.0 {
            secs += (rng.f64() * 2.0 - 1.0) * self.jitter;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    fn apply(&self, call: &mut Call<'_>, wanted: Direction) -> Verdict {
        if call.direction == wanted {
            call.delay += self.latency(call.rng);
        }
        Verdict::Forward
    }
}

impl Behavior for Delay {
    fn before(&self, call: &mut Call<'_>) -> Verdict {
        if self.before {
            self.apply(call, Direction::ToBackend)
        } else {
            Verdict::Forward
        }
    }
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        if self.before {
            Verdict::Forward
        } else {
            self.apply(call, Direction::ToClient)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_delay(d: &Delay, dir: Direction, seed: u64) -> Duration {
        let mut data = b"x".to_vec();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut call = Call {
            direction: dir,
            data: &mut data,
            rng: &mut rng,
            framed: false,
            delay: Duration::ZERO,
        };
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
            before: true,
            jitter: 0.0,
        };
        assert_eq!(
            call_delay(&d, Direction::ToBackend, 1),
            Duration::from_millis(500)
        );
        assert_eq!(call_delay(&d, Direction::ToClient, 1), Duration::ZERO);
        let d = Delay { before: false, ..d };
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
            before: true,
            jitter: 0.05,
        };
        for seed in 0..200 {
            let l = call_delay(&d, Direction::ToBackend, seed).as_secs_f64();
            assert!((0.05..=0.15).contains(&l), "{l}");
            assert_eq!(call_delay(&d, Direction::ToBackend, seed).as_secs_f64(), l);
        }
        let big = Delay {
            sleep: 0.01,
            before: true,
            jitter: 1.0,
        };
        assert!((0..100).all(|s| call_delay(&big, Direction::ToBackend, s) >= Duration::ZERO));
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
            before: true,
            jitter: MAX_SECONDS,
        };
        for seed in 0..100 {
            let latency = call_delay(&longest, Direction::ToBackend, seed);
            assert!(std::time::Instant::now().checked_add(latency).is_some());
        }
    }
}
