//! Control API requests: any method and path the routes know, with a fuzzed body (JSON or
//! not); an answer is always JSON with a status the API documents.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vaurien::control::{route, ControlState};
use vaurien::hub::{Hub, Live};
use vaurien::net::HostPort;
use vaurien::config::Config;
use vaurien::stats::Stats;
use vaurien::Registry;

fn state() -> &'static ControlState {
    static STATE: OnceLock<ControlState> = OnceLock::new();
    STATE.get_or_init(|| {
        let registry = Registry::builtin();
        let config = Config::defaults(registry.clone()).expect("the defaults check");
        ControlState {
            hub: Hub::new(Live {
                mix: config.mix().clone(),
                backend: HostPort::parse("127.0.0.1:9").expect("an address"),
                toxics: Default::default(),
            }),
            registry,
            base_options: config.behavior_options().clone(),
            stats: Arc::new(Stats::default()),
            token: None,
            proxy: None,
            proxies: None,
        }
    })
}

const PATHS: [&str; 7] = ["/behavior", "/behaviors", "/backend", "/stats", "/nope", "/behavior/", "/proxy"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let method = if selector & 1 == 0 { tiny_http::Method::Put } else { tiny_http::Method::Get };
    let path = PATHS[usize::from(selector >> 1) % PATHS.len()];
    let answer = route(state(), &method, path, body);
    assert!([200, 400, 404, 405].contains(&answer.status), "{} {}", answer.status, answer.body);
    if answer.status >= 400 {
        assert_eq!(answer.body["status"], "error", "{}", answer.body);
        assert!(answer.body["errors"][0]["description"].is_string());
    }
});

