//! Option values as the command line, the INI file (text) and the API (JSON) give them, for
//! every declared option; a behavior built with the value then runs its hooks on a call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaurien::behavior::{Call, Direction};
use vaurien::opts::{OptSpec, Values};
use vaurien::config::{Settings, GLOBAL_OPTIONS};
use vaurien::Registry;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let registry = Registry::builtin();
    let json = serde_json::from_str::<serde_json::Value>(text).ok();
    let value_of = |spec: &OptSpec| {
        let value = if selector & 0x80 != 0 { json.as_ref().map(|j| spec.from_json(j)) } else { None };
        value.unwrap_or_else(|| spec.parse(text))
    };
    let behaviors = registry.behaviors();
    let protocols = registry.protocols();
    let which = usize::from(selector & 0x7f);
    let globals = GLOBAL_OPTIONS.len();
    if which < globals {
        let spec = &GLOBAL_OPTIONS[which];
        if let Ok(v) = value_of(spec) {
            let mut values = Values::defaults(GLOBAL_OPTIONS);
            values.set(spec.name, v);
            let _ = Settings::from_values(&values);
        }
        return;
    }
    let which = which - globals;
    let behavior_options: Vec<_> = behaviors.iter().flat_map(|b| b.options.iter().map(move |o| (b, o))).collect();
    if let Some((behavior, spec)) = behavior_options.get(which) {
        let Ok(v) = value_of(spec) else { return };
        let mut values = Values::defaults(behavior.options);
        values.set(spec.name, v);
        let Ok(instance) = behavior.instantiate(&values) else { return };
        let mut rng = fastrand::Rng::with_seed(selector.into());
        for direction in [Direction::ToBackend, Direction::ToClient] {
            for framed in [false, true] {
                let mut bytes = b"a call's data".to_vec();
                let mut call = Call::new(direction, &mut bytes, &mut rng, framed);
                let _ = instance.before(&mut call);
                let _ = instance.between(&mut call);
                let _ = instance.after(&mut call);
                // The driver adds the delay to the time the chunk was read.
                assert!(std::time::Instant::now().checked_add(call.delay).is_some());
                // And the waits of a delivery to the time of the call.
                let d = call.delivery;
                for wait in [d.close_delay, d.stall.and_then(|s| s.after), d.slices.map(|s| s.gap)].into_iter().flatten() {
                    assert!(std::time::Instant::now().checked_add(wait).is_some());
                }
                assert!(d.rate != Some(0), "a pace of nothing");
            }
        }
        return;
    }
    let which = which - behavior_options.len();
    let protocol_options: Vec<_> = protocols.iter().flat_map(|p| p.options.iter().map(move |o| (p, o))).collect();
    if let Some((protocol, spec)) = protocol_options.get(which % protocol_options.len().max(1)) {
        let Ok(v) = value_of(spec) else { return };
        let mut values = Values::defaults(protocol.options);
        values.set(spec.name, v);
        let _ = (protocol.build)(&values);
    }
});
