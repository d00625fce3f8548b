//! Toxics: Toxiproxy's model beside the mix. A proxy has an ordered list of toxics; each is a
//! behavior (any of them, Toxiproxy's types included) acting on one stream, with a
//! `toxicity`: the share of connections it acts on.
//!
//! ```text
//! a call ─▶ mix.pick ─▶ its behavior's hook ─▶ each toxic the connection drew, in list
//!           order, whose stream the call is in ─▶ the driver delivers what they describe
//! ```
//! A connection draws each toxic once, with its seeded random source, the first time it sees
//! it; it keeps that draw for as long as the toxic is unchanged (Toxiproxy draws again on
//! every change of the list, which its users report as a bug). A toxic that is added, changed
//! or removed reaches open connections at their next call, as a new list in the live
//! snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::behavior::{Behavior, Call, Direction, Stream, Verdict};
use crate::opts::{find, Value, Values};
use crate::registry::Registry;

/// Versions of toxics and of toxic lists: unique in the process, so that a connection can
/// tell a toxic it drew from a changed one of the same name.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// One toxic of a proxy.
#[derive(Debug)]
pub struct Toxic {
    /// Its name, unique in its proxy.
    pub name: String,
    /// Its type: the canonical name of the behavior it is.
    pub kind: String,
    /// The stream it acts on.
    pub stream: Stream,
    /// The share of connections it acts on, 0.0 to 1.0.
    pub toxicity: f64,
    /// Its attributes, as set: the options of its behavior.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The behavior instance built from them.
    pub behavior: Arc<dyn Behavior>,
    version: u64,
}

impl Toxic {
    /// A toxic named `name` of type `kind` acting as `behavior` on `stream`, for the share
    /// `toxicity` of connections; a new version, drawn afresh by every connection.
    pub fn new(
        name: String,
        kind: String,
        stream: Stream,
        toxicity: f64,
        attributes: serde_json::Map<String, serde_json::Value>,
        behavior: Arc<dyn Behavior>,
    ) -> Toxic {
        Toxic {
            name,
            kind,
            stream,
            toxicity: toxicity.clamp(0.0, 1.0),
            attributes,
            behavior,
            version: next_version(),
        }
    }
}

/// Why a toxic was refused: the field (`type`, `stream`, `toxicity`, or an attribute) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToxicError {
    /// The field refused.
    pub field: String,
    /// What is wrong, a phrase.
    pub why: String,
}

impl std::fmt::Display for ToxicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

fn refused(field: &str, why: impl Into<String>) -> ToxicError {
    ToxicError {
        field: field.to_string(),
        why: why.into(),
    }
}

/// Builds toxic `name` of type `kind` (any behavior, or an alias such as Toxiproxy's `noop`)
/// on `stream` (default downstream) for the share `toxicity` of connections (default 1.0),
/// with `attributes`: the behavior's options, given as JSON values (text is read as the
/// command line reads it). As Toxiproxy does, attributes the type does not have are ignored.
pub fn build(
    registry: &Registry,
    name: &str,
    kind: &str,
    stream: Option<&str>,
    toxicity: Option<f64>,
    attributes: &Map<String, Json>,
) -> Result<Toxic, ToxicError> {
    let spec = registry.behavior(kind).ok_or_else(|| {
        refused(
            "type",
            format!(
                "invalid toxic type '{kind}' (known: {})",
                registry.behavior_names().join(", ")
            ),
        )
    })?;
    let stream = match stream {
        None | Some("") => Stream::Downstream,
        Some(text) => Stream::parse(text).map_err(|e| refused("stream", e.why))?,
    };
    let toxicity = toxicity.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&toxicity) {
        return Err(refused(
            "toxicity",
            format!("must be between 0 and 1 (got {toxicity})"),
        ));
    }
    let mut values = Values::defaults(spec.options);
    for (key, json) in attributes {
        let Some(opt) = find(spec.options, key).filter(|o| o.name != "stream") else {
            continue;
        };
        let value = opt.from_json(json).map_err(|why| refused(opt.name, why))?;
        values.set(opt.name, value);
    }
    if find(spec.options, "stream").is_some() {
        values.set("stream", Value::Str(stream.as_str().to_string()));
    }
    let behavior = spec
        .instantiate(&values)
        .map_err(|bad| refused(bad.key, bad.why))?;
    let shown: Map<String, Json> = spec
        .options
        .iter()
        .filter(|o| o.name != "stream")
        .filter_map(|o| Some((o.name.to_string(), json_of(values.get(o.name)?))))
        .collect();
    // The type as given, an alias included (Toxiproxy's clients read `noop` back).
    Ok(Toxic::new(
        name.to_string(),
        kind.to_string(),
        stream,
        toxicity,
        shown,
        behavior,
    ))
}

/// An option value as JSON, for a toxic's attributes.
fn json_of(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => Json::from(*f),
        Value::Str(s) => Json::String(s.clone()),
    }
}

/// A proxy's toxics, in order, as one version of the list.
#[derive(Debug, Clone)]
pub struct Toxics {
    list: Arc<[Arc<Toxic>]>,
    version: u64,
}

impl Default for Toxics {
    fn default() -> Self {
        Toxics::new(Vec::new())
    }
}

impl Toxics {
    /// The list `toxics`, in this order.
    pub fn new(toxics: Vec<Arc<Toxic>>) -> Toxics {
        Toxics {
            list: toxics.into(),
            version: next_version(),
        }
    }

    /// The toxics, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Toxic>> {
        self.list.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The toxic named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Toxic>> {
        self.list.iter().find(|t| t.name == name)
    }

    /// The list with `toxic` in place of the one of its name, or at its end.
    pub fn with(&self, toxic: Toxic) -> Toxics {
        let toxic = Arc::new(toxic);
        let mut list: Vec<Arc<Toxic>> = self.list.to_vec();
        match list.iter().position(|t| t.name == toxic.name) {
            Some(i) => list[i] = toxic,
            None => list.push(toxic),
        }
        Toxics::new(list)
    }

    /// The list without the toxic named `name`.
    pub fn without(&self, name: &str) -> Toxics {
        Toxics::new(
            self.list
                .iter()
                .filter(|t| t.name != name)
                .cloned()
                .collect(),
        )
    }
}

/// The toxics one connection drew: which of the list's toxics act on it.
#[derive(Debug, Default)]
pub struct Drawn {
    /// The version of the list the draws are for.
    list: u64,
    /// Per toxic of that list, in order: its version and whether it acts.
    acting: Vec<(u64, bool)>,
}

impl Drawn {
    /// Brings the draws up to `toxics`: a toxic seen before keeps its draw, a new or changed
    /// one is drawn with `rng` (one draw each, so a seeded connection replays them).
    pub fn update(&mut self, toxics: &Toxics, rng: &mut fastrand::Rng) {
        if self.list == toxics.version {
            return;
        }
        let old = std::mem::take(&mut self.acting);
        self.acting = toxics
            .iter()
            .map(|t| {
                let kept = old.iter().find(|(v, _)| *v == t.version).map(|d| d.1);
                (t.version, kept.unwrap_or_else(|| rng.f64() < t.toxicity))
            })
            .collect();
        self.list = toxics.version;
    }

    /// Runs `hook` of every toxic of `toxics` (the list the draws were brought up to) that
    /// acts on this connection and whose stream holds `call`, in order; the first verdict
    /// that does not forward ends the round and is returned.
    pub fn apply(
        &self,
        toxics: &Toxics,
        call: &mut Call<'_>,
        hook: fn(&dyn Behavior, &mut Call<'_>) -> Verdict,
    ) -> Verdict {
        for (toxic, (_, acting)) in toxics.iter().zip(&self.acting) {
            if !acting || !toxic.stream.covers(call.direction) {
                continue;
            }
            let verdict = hook(toxic.behavior.as_ref(), call);
            if verdict != Verdict::Forward {
                return verdict;
            }
        }
        Verdict::Forward
    }

    /// Whether any toxic acts on this connection in `direction`.
    pub fn any(&self, toxics: &Toxics, direction: Direction) -> bool {
        toxics
            .iter()
            .zip(&self.acting)
            .any(|(t, (_, acting))| *acting && t.stream.covers(direction))
    }
}

/// The hook of a call going `direction` on a stream: `before` toward the backend, `after`
/// toward the client.
pub fn stream_hook(direction: Direction) -> fn(&dyn Behavior, &mut Call<'_>) -> Verdict {
    match direction {
        Direction::ToBackend => |b, c| b.before(c),
        Direction::ToClient => |b, c| b.after(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behavior::{Delay, Hang};

    fn toxic(name: &str, stream: Stream, toxicity: f64) -> Toxic {
        let latency = Delay {
            sleep: 0.1,
            jitter: 0.0,
            stream,
        };
        Toxic::new(
            name.into(),
            "latency".into(),
            stream,
            toxicity,
            serde_json::Map::new(),
            Arc::new(latency),
        )
    }

    fn delay_of(toxics: &Toxics, drawn: &Drawn, direction: Direction) -> f64 {
        let mut data = b"x".to_vec();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut call = Call::new(direction, &mut data, &mut rng, false);
        let verdict = drawn.apply(toxics, &mut call, stream_hook(direction));
        assert_eq!(verdict, Verdict::Forward);
        call.delay.as_secs_f64()
    }

    #[test]
    fn toxics_act_in_order_on_their_stream_and_add_up() {
        let toxics = Toxics::default()
            .with(toxic("a", Stream::Downstream, 1.0))
            .with(toxic("b", Stream::Both, 1.0))
            .with(toxic("never", Stream::Both, 0.0));
        let mut drawn = Drawn::default();
        drawn.update(&toxics, &mut fastrand::Rng::with_seed(3));
        assert!((delay_of(&toxics, &drawn, Direction::ToClient) - 0.2).abs() < 1e-9);
        assert!((delay_of(&toxics, &drawn, Direction::ToBackend) - 0.1).abs() < 1e-9);
        assert!(drawn.any(&toxics, Direction::ToBackend));
    }

    #[test]
    fn a_verdict_ends_the_round() {
        let hang = Toxic::new(
            "h".into(),
            "hang".into(),
            Stream::Both,
            1.0,
            serde_json::Map::new(),
            Arc::new(Hang),
        );
        let toxics = Toxics::default()
            .with(hang)
            .with(toxic("late", Stream::Both, 1.0));
        let mut drawn = Drawn::default();
        drawn.update(&toxics, &mut fastrand::Rng::with_seed(3));
        let mut data = b"x".to_vec();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut call = Call::new(Direction::ToClient, &mut data, &mut rng, false);
        let hook = stream_hook(Direction::ToClient);
        assert_eq!(drawn.apply(&toxics, &mut call, hook), Verdict::Hang);
        assert!(call.delay.is_zero(), "the toxic after the hang did not run");
    }

    #[test]
    fn unchanged_toxics_keep_their_draw_and_changed_ones_draw_again() {
        // Half the connections: find a seed where the first draw acts.
        let mut toxics = Toxics::default()
            .with(toxic("kept", Stream::Both, 0.5))
            .with(toxic("other", Stream::Both, 0.5));
        let draws = |toxics: &Toxics, seed: u64| {
            let mut d = Drawn::default();
            d.update(toxics, &mut fastrand::Rng::with_seed(seed));
            d
        };
        let acting: Vec<bool> = (0..200).map(|s| draws(&toxics, s).acting[0].1).collect();
        let share = acting.iter().filter(|a| **a).count();
        assert!(
            (60..=140).contains(&share),
            "{share} of 200 drew a toxicity 0.5 toxic"
        );
        for seed in 0..50 {
            let mut d = draws(&toxics, seed);
            let before = d.acting[0].1;
            // Another toxic changes: "kept" keeps its draw, whatever the rng says now.
            toxics = toxics.with(toxic("other", Stream::Both, 0.5));
            d.update(&toxics, &mut fastrand::Rng::with_seed(seed + 1000));
            assert_eq!(d.acting[0].1, before, "seed {seed}");
            toxics = toxics.without("other");
            d.update(&toxics, &mut fastrand::Rng::with_seed(seed + 2000));
            assert_eq!(d.acting.len(), 1);
            assert_eq!(d.acting[0].1, before, "seed {seed}");
            toxics = toxics.with(toxic("other", Stream::Both, 0.5));
        }
        // Changing the toxic itself draws it again: at toxicity 1 it now acts everywhere.
        let changed = toxics.with(toxic("kept", Stream::Both, 1.0));
        let mut d = draws(&toxics, 7);
        d.update(&changed, &mut fastrand::Rng::with_seed(8));
        assert!(d.acting[0].1);
    }
}
