//! `error` and `transient`: calls that fail, after a warmup or for a while.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Behavior, Call, Stream, Verdict};
use crate::opts::{BadOption, Values};

/// Bytes sent instead of a response on stream protocols.
const REPLACEMENT_LEN: usize = 1000;
/// Bytes inserted in the middle of a response with `inject`.
const INJECTED_LEN: usize = 100;

/// Which calls fail, counted across all connections since activation.
#[derive(Debug)]
struct Failing {
    inject: bool,
    warmup: u64,
    /// Stream protocols: the streams whose chunks are garbled.
    stream: Stream,
    /// How many calls fail after the warmup; `None`: all of them.
    window: Option<u64>,
    calls: AtomicU64,
}

impl Failing {
    fn new(v: &Values, window: Option<u64>) -> Result<Self, BadOption> {
        let warmup = u64::try_from(v.int("warmup"))
            .map_err(|_| BadOption::new("warmup", "must not be negative"))?;
        Ok(Failing {
            inject: v.bool("inject"),
            warmup,
            stream: Stream::from_values(v, Stream::Downstream)?,
            window,
            calls: AtomicU64::new(0),
        })
    }

    /// Counts one call and tells whether it fails.
    fn next_fails(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        n >= self.warmup && self.window.is_none_or(|w| n - self.warmup < w)
    }

    /// Framed protocols: the request fails before it reaches the backend.
    fn before(&self, call: &mut Call<'_>) -> Verdict {
        if call.framed {
            return if self.next_fails() {
                Verdict::Fail
            } else {
                Verdict::Forward
            };
        }
        self.garble_chunk(call)
    }

    /// Stream protocols: a chunk in the behavior's streams is a call; its bytes are garbled.
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        if !call.framed {
            return self.garble_chunk(call);
        }
        Verdict::Forward
    }

    fn garble_chunk(&self, call: &mut Call<'_>) -> Verdict {
        if self.stream.covers(call.direction) && self.next_fails() {
            garble(call.data, self.inject, call.rng);
        }
        Verdict::Forward
    }
}

/// Replaces `data` with 1000 random bytes, or with `inject` inserts 100 in its middle.
pub(crate) fn garble(data: &mut Vec<u8>, inject: bool, rng: &mut fastrand::Rng) {
    if inject {
        let mut noise = [0u8; INJECTED_LEN];
        rng.fill(&mut noise);
        let mid = data.len() / 2;
        data.splice(mid..mid, noise);
    } else {
        data.clear();
        data.resize(REPLACEMENT_LEN, 0);
        rng.fill(data);
    }
}

/// After `warmup` calls, every call fails.
#[derive(Debug)]
pub struct Error(Failing);

impl Error {
    /// Builds it from its option values.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        Failing::new(v, None).map(Error)
    }
}

impl Behavior for Error {
    fn before(&self, call: &mut Call<'_>) -> Verdict {
        self.0.before(call)
    }
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        self.0.after(call)
    }
}

/// After `warmup` calls, the next `agitate` calls fail; the ones after pass.
#[derive(Debug)]
pub struct Transient(Failing);

impl Transient {
    /// Builds it from its option values.
    pub fn from_values(v: &Values) -> Result<Self, BadOption> {
        let agitate = u64::try_from(v.int("agitate"))
            .map_err(|_| BadOption::new("agitate", "must not be negative"))?;
        Failing::new(v, Some(agitate)).map(Transient)
    }
}

impl Behavior for Transient {
    fn before(&self, call: &mut Call<'_>) -> Verdict {
        self.0.before(call)
    }
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        self.0.after(call)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::*;
    use crate::opts::Value;

    fn values(pairs: &[(&str, Value)]) -> Values {
        let mut v = Values::defaults(super::super::TRANSIENT_OPTIONS);
        for (k, val) in pairs {
            v.set(k, val.clone());
        }
        v
    }

    fn framed_verdicts(b: &dyn Behavior, n: usize) -> Vec<Verdict> {
        let mut rng = fastrand::Rng::with_seed(3);
        (0..n)
            .map(|_| {
                let mut data = b"GET".to_vec();
                let mut call = Call::new(Direction::ToBackend, &mut data, &mut rng, true);
                b.before(&mut call)
            })
            .collect()
    }

    #[test]
    fn error_fails_after_warmup() {
        let e = Error::from_values(&values(&[("warmup", Value::Int(3))])).unwrap();
        let v = framed_verdicts(&e, 5);
        assert_eq!(
            v,
            [
                Verdict::Forward,
                Verdict::Forward,
                Verdict::Forward,
                Verdict::Fail,
                Verdict::Fail
            ]
        );
    }

    #[test]
    fn transient_fails_a_window_then_recovers() {
        let t = Transient::from_values(&values(&[
            ("agitate", Value::Int(2)),
            ("warmup", Value::Int(1)),
        ]))
        .unwrap();
        let v = framed_verdicts(&t, 5);
        assert_eq!(
            v,
            [
                Verdict::Forward,
                Verdict::Fail,
                Verdict::Fail,
                Verdict::Forward,
                Verdict::Forward
            ]
        );
    }

    #[test]
    fn streams_garble_only_responses() {
        let e = Error::from_values(&values(&[])).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut data = b"request".to_vec();
        let mut call = Call::new(Direction::ToBackend, &mut data, &mut rng, false);
        assert_eq!(e.before(&mut call), Verdict::Forward);
        assert_eq!(e.after(&mut call), Verdict::Forward);
        assert_eq!(data, b"request");
        let mut data = b"response".to_vec();
        let mut call = Call::new(Direction::ToClient, &mut data, &mut rng, false);
        e.after(&mut call);
        assert_eq!(data.len(), REPLACEMENT_LEN);
    }

    #[test]
    fn stream_upstream_garbles_requests_instead() {
        let e = Error::from_values(&values(&[("stream", Value::Str("upstream".into()))])).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut data = b"response".to_vec();
        e.after(&mut Call::new(
            Direction::ToClient,
            &mut data,
            &mut rng,
            false,
        ));
        assert_eq!(data, b"response");
        let mut data = b"request".to_vec();
        e.before(&mut Call::new(
            Direction::ToBackend,
            &mut data,
            &mut rng,
            false,
        ));
        assert_eq!(data.len(), REPLACEMENT_LEN);
    }

    #[test]
    fn inject_keeps_the_response_around_the_noise() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut data = b"aaaabbbb".to_vec();
        garble(&mut data, true, &mut rng);
        assert_eq!(data.len(), 8 + INJECTED_LEN);
        assert_eq!(&data[..4], b"aaaa");
        assert_eq!(&data[data.len() - 4..], b"bbbb");
    }

    #[test]
    fn negative_counts_are_refused() {
        assert!(Error::from_values(&values(&[("warmup", Value::Int(-1))])).is_err());
        assert!(Transient::from_values(&values(&[("agitate", Value::Int(-2))])).is_err());
    }
}
