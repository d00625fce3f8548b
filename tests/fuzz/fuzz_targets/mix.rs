//! Mix specs (`20:delay,5:error`), then draws from each mix that parses, and its shown form
//! read back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::mix::{BehaviorOptions, Mix};
use vaurien::Registry;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else { return };
    let registry = Registry::builtin();
    if let Ok(mix) = Mix::parse(spec, &registry, &BehaviorOptions::new()) {
        let mut rng = fastrand::Rng::with_seed(data.len() as u64);
        for _ in 0..4 {
            let _ = mix.pick(&mut rng);
        }
        let shown = mix.to_string();
        let again = Mix::parse(&shown, &registry, &BehaviorOptions::new())
            .expect("a mix as shown reads again");
        assert_eq!(again.to_string(), shown);
    }
});
