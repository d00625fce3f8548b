//! The INI file: sections, keys, values of every type, derived behaviors, then the checks
//! start-up runs on what it sets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::config::from_text;
use vaurien::config::{Config, Overrides};
use vaurien::Registry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let registry = Registry::builtin();
    if let Ok(overrides) = from_text("fuzz.ini", text, &registry) {
        if let Ok(config) = Config::build(registry, Some(("fuzz.ini", overrides)), Overrides::default()) {
            let _ = config.mix();
        }
    }
});
