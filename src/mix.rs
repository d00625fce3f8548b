//! Mixes: `20:delay,5:error` — the weighted set of behaviors drawn from for every call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::behavior::Behavior;
use crate::behavior::BehaviorSpec;
use crate::opts::{BadOption, Values};
use crate::registry::Registry;

/// Option values per behavior name, as the command line, the file and the API set them.
pub type BehaviorOptions = BTreeMap<String, Values>;

/// Activates `behavior` with its values in `options`, its defaults where it has none there.
pub fn activate_with(
    options: &BehaviorOptions,
    behavior: &BehaviorSpec,
) -> Result<Arc<dyn Behavior>, BadOption> {
    match options.get(behavior.name.as_ref()) {
        Some(values) => behavior.instantiate(values),
        None => behavior.instantiate(&Values::defaults(behavior.options)),
    }
}

/// One behavior of a mix with its weight.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Percentage of calls, 0..=100.
    pub weight: u32,
    /// Canonical behavior name.
    pub name: String,
    /// The activated instance (its counters start at activation).
    pub behavior: Arc<dyn Behavior>,
    /// Calls drawn for this behavior (shared with the proxy's statistics by `count_into`).
    pub calls: Arc<AtomicU64>,
}

/// A parsed mix; what the weights leave goes to `dummy`.
#[derive(Debug, Clone)]
pub struct Mix {
    entries: Vec<Entry>,
    dummy: Entry,
}

/// Why a mix could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixError {
    /// A weight that is not an integer 0..=100.
    BadWeight(String),
    /// A behavior name nobody declared; carries the known names.
    UnknownBehavior(String, Vec<String>),
    /// Weights adding up past 100.
    OverHundred(u32),
    /// The behavior refused one of its options.
    BadOptions(String, BadOption),
    /// Nothing at all.
    Empty,
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::BadWeight(w) => write!(f, "weight '{w}' is not an integer from 0 to 100"),
            MixError::UnknownBehavior(n, known) => {
                write!(
                    f,
                    "the '{n}' behavior does not exist (known: {})",
                    known.join(", ")
                )
            }
            MixError::OverHundred(sum) => write!(f, "weights add up to {sum}, over 100"),
            MixError::BadOptions(n, why) => write!(f, "behavior '{n}': {why}"),
            MixError::Empty => write!(f, "empty behavior mix"),
        }
    }
}

impl Mix {
    /// Reads `PCT:NAME[,PCT:NAME...]`, or a bare `NAME` meaning `100:NAME`, and activates each
    /// behavior with its options from `options` (defaults where absent).
    pub fn parse(
        spec: &str,
        registry: &Registry,
        options: &BehaviorOptions,
    ) -> Result<Mix, MixError> {
        Mix::parse_with(spec, registry, |behavior| activate_with(options, behavior))
    }

    /// [`Mix::parse`], each behavior of the mix activated by `activate` (the instances a
    /// checked configuration built already).
    pub fn parse_with(
        spec: &str,
        registry: &Registry,
        activate: impl FnMut(&BehaviorSpec) -> Result<Arc<dyn Behavior>, BadOption>,
    ) -> Result<Mix, MixError> {
        Mix::read(spec, registry)?.activate(activate)
    }

    /// Reads a mix without activating it: its weights and behavior names are checked, its
    /// behaviors' options are not yet.
    pub fn read<'r>(spec: &str, registry: &'r Registry) -> Result<MixDraft<'r>, MixError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(MixError::Empty);
        }
        let known = |name: &str| {
            registry.behavior(name).ok_or_else(|| {
                MixError::UnknownBehavior(name.to_string(), registry.behavior_names())
            })
        };
        let mut parts = Vec::new();
        let mut sum = 0u32;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (weight, name) = match part.split_once(':') {
                Some((w, n)) => {
                    let w = w.trim();
                    let weight = w
                        .parse::<u32>()
                        .ok()
                        .filter(|w| *w <= 100)
                        .ok_or_else(|| MixError::BadWeight(w.into()))?;
                    (weight, n.trim())
                }
                None => (100, part),
            };
            parts.push((weight, known(name)?));
            sum += weight;
        }
        if parts.is_empty() {
            return Err(MixError::Empty);
        }
        if sum > 100 {
            return Err(MixError::OverHundred(sum));
        }
        Ok(MixDraft {
            parts,
            dummy: (100 - sum, known("dummy")?),
        })
    }

    /// True when every behavior this mix can draw is transparent (`100:dummy`): calls
    /// may then be batched.
    pub fn is_transparent(&self) -> bool {
        self.entries
            .iter()
            .chain(std::iter::once(&self.dummy))
            .all(|e| e.weight == 0 || e.behavior.transparent())
    }

    /// Draws the behavior of one call: exactly one draw from `rng` per call, so a seeded
    /// connection replays the same choices.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> &Entry {
        let mut r = rng.u32(0..100);
        for e in &self.entries {
            if r < e.weight {
                return e;
            }
            r -= e.weight;
        }
        &self.dummy
    }

    /// Makes every entry count its calls into `stats`' counter of the same behavior.
    pub fn count_into(mut self, stats: &crate::stats::Stats) -> Mix {
        for e in self
            .entries
            .iter_mut()
            .chain(std::iter::once(&mut self.dummy))
        {
            e.calls = stats.call_counter(&e.name);
        }
        self
    }

    /// The behaviors of the mix, without the implicit `dummy` remainder.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// A mix read but not activated: each behavior's declaration and weight, in order.
#[derive(Debug)]
pub struct MixDraft<'r> {
    parts: Vec<(u32, &'r BehaviorSpec)>,
    /// What the weights leave.
    dummy: (u32, &'r BehaviorSpec),
}

impl MixDraft<'_> {
    /// The behaviors the mix names, in order (a behavior named twice comes twice).
    pub fn behaviors(&self) -> impl Iterator<Item = &BehaviorSpec> + '_ {
        self.parts.iter().map(|(_, spec)| *spec)
    }

    /// Activates every behavior of the mix with `activate`, in order, the remainder last.
    pub fn activate(
        self,
        mut activate: impl FnMut(&BehaviorSpec) -> Result<Arc<dyn Behavior>, BadOption>,
    ) -> Result<Mix, MixError> {
        let mut entry = |(weight, spec): (u32, &BehaviorSpec)| {
            let name = spec.name.to_string();
            let behavior = activate(spec).map_err(|e| MixError::BadOptions(name.clone(), e))?;
            Ok(Entry {
                weight,
                name,
                behavior,
                calls: Arc::default(),
            })
        };
        let entries = self
            .parts
            .into_iter()
            .map(&mut entry)
            .collect::<Result<Vec<_>, MixError>>()?;
        let dummy = entry(self.dummy)?;
        Ok(Mix { entries, dummy })
    }
}

impl fmt::Display for Mix {
    /// The mix as a spec that parses back to the same mix: `NAME` for a single behavior at
    /// 100 %, otherwise every weight, with the remainder written as `dummy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.entries.as_slice() {
            if only.weight == 100 {
                return f.write_str(&only.name);
            }
        }
        let parts: Vec<String> = self
            .entries
            .iter()
            .chain((self.dummy.weight > 0).then_some(&self.dummy))
            .map(|e| format!("{}:{}", e.weight, e.name))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Mix, MixError> {
        Mix::parse(spec, &Registry::builtin(), &BehaviorOptions::new())
    }

    #[test]
    fn renders_back_to_a_spec_that_parses_the_same() {
        assert_eq!(parse("100:dummy").unwrap().to_string(), "dummy");
        assert_eq!(parse("delay").unwrap().to_string(), "delay");
        assert_eq!(
            parse("20:delay, 5:errors").unwrap().to_string(),
            "20:delay,5:error,75:dummy"
        );
        assert_eq!(parse("normal").unwrap().to_string(), "dummy");
        let again = parse(&parse("30:hang,70:blackout").unwrap().to_string()).unwrap();
        assert_eq!(again.to_string(), "30:hang,70:blackout");
    }

    #[test]
    fn only_mixes_of_transparent_behaviors_are_transparent() {
        for (spec, transparent) in [
            ("100:dummy", true),
            ("0:delay", true),
            ("normal", true),
            ("1:delay", false),
            ("100:error", false),
            ("50:hang,50:dummy", false),
        ] {
            assert_eq!(parse(spec).unwrap().is_transparent(), transparent, "{spec}");
        }
    }

    #[test]
    fn rejects_what_the_user_gets_wrong() {
        assert_eq!(
            parse("150:delay").unwrap_err(),
            MixError::BadWeight("150".into())
        );
        assert_eq!(
            parse("60:delay,50:error").unwrap_err(),
            MixError::OverHundred(110)
        );
        assert_eq!(
            parse("x:delay").unwrap_err(),
            MixError::BadWeight("x".into())
        );
        assert_eq!(
            parse("-5:delay").unwrap_err(),
            MixError::BadWeight("-5".into())
        );
        assert_eq!(parse("").unwrap_err(), MixError::Empty);
        let err = parse("20:nope").unwrap_err();
        assert!(
            matches!(&err, MixError::UnknownBehavior(n, known) if n == "nope" && known.contains(&"delay".to_string()))
        );
        assert!(
            err.to_string()
                .contains("abort, bandwidth, blackout, delay"),
            "{err}"
        );
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix = parse("25:delay,25:hang").unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(mix.pick(&mut rng).name.clone()).or_insert(0) += 1;
        }
        for (name, expected) in [("delay", 2500), ("hang", 2500), ("dummy", 5000)] {
            let got: i32 = counts[name];
            assert!((got - expected).abs() < 300, "{name}: {got}");
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let mix = parse("50:delay").unwrap();
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..64)
                .map(|_| mix.pick(&mut rng).name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }
}
