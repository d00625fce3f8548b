//! Control API requests: any method and path the routes know (the original's and Toxiproxy's),
//! with a fuzzed body (JSON or not); an answer is always JSON with a status the API
//! documents, in the error shape of its family of routes.
#![no_main]
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vaurien::config::Config;
use vaurien::control::{route, ControlState, ProxyDirectory, ProxyRef, ProxySwitch};
use vaurien::hub::{Hub, Live};
use vaurien::net::HostPort;
use vaurien::stats::Stats;
use vaurien::Registry;

/// A proxy that only pretends to listen: switching it flips a flag.
struct Pretend(AtomicBool);

impl ProxySwitch for Pretend {
    fn listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8666))
    }
    fn protocol(&self) -> &str {
        "tcp"
    }
    fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set_enabled(&self, on: bool) -> std::io::Result<()> {
        self.0.store(on, Ordering::Relaxed);
        Ok(())
    }
    fn move_to(&self, to: &HostPort) -> std::io::Result<bool> {
        // Never resolved nor bound: a fuzz target sends nothing to the network.
        Ok(to.port != 8666)
    }
    fn drop_connections(&self) {}
}

/// One pretend proxy, named `vaurien`; creating more fails as a listen error would.
struct OneProxy(ProxyRef);

impl ProxyDirectory for OneProxy {
    fn names(&self) -> Vec<String> {
        vec!["vaurien".to_string()]
    }
    fn get(&self, name: &str) -> Option<ProxyRef> {
        (name == "vaurien").then(|| self.0.clone())
    }
    fn create(
        &self,
        name: &str,
        _listen: &str,
        _upstream: &str,
        _protocol: Option<&str>,
        _enabled: bool,
    ) -> Result<ProxyRef, (u16, String)> {
        match name {
            "vaurien" => Err((409, "proxy already exists".to_string())),
            _ => Err((500, "listen tcp: not in a fuzz target".to_string())),
        }
    }
    fn delete(&self, _name: &str) -> bool {
        false
    }
}

fn state() -> &'static ControlState {
    static STATE: OnceLock<ControlState> = OnceLock::new();
    STATE.get_or_init(|| {
        let registry = Registry::builtin();
        let config = Config::defaults(registry.clone()).expect("the defaults check");
        let hub = Hub::new(Live {
            mix: config.mix().clone(),
            backend: HostPort::parse("127.0.0.1:9").expect("an address"),
            toxics: Default::default(),
        });
        let switch: Arc<dyn ProxySwitch> = Arc::new(Pretend(AtomicBool::new(true)));
        let proxies = OneProxy(ProxyRef {
            hub: hub.clone(),
            switch: switch.clone(),
            stats: Arc::new(Stats::default()),
        });
        ControlState {
            hub,
            registry,
            base_options: config.behavior_options().clone(),
            stats: Arc::new(Stats::default()),
            token: None,
            proxy: Some(switch),
            proxies: Some(Arc::new(proxies)),
        }
    })
}

const PATHS: [&str; 19] = [
    "/behavior",
    "/behavior?proxy=vaurien",
    "/backend?proxy=%76aurien",
    "/stats?proxy=nope",
    "/proxy?proxy=vaur%ZZien",
    "/metrics",
    "/behaviors",
    "/backend",
    "/stats",
    "/nope",
    "/behavior/",
    "/proxy",
    "/proxies",
    "/proxies/vaurien",
    "/proxies/vaurien/toxics",
    "/proxies/vaurien/toxics/latency_downstream",
    "/proxies/nope/toxics",
    "/reset",
    "/version",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let method = match selector & 3 {
        0 => tiny_http::Method::Put,
        1 => tiny_http::Method::Get,
        2 => tiny_http::Method::Post,
        _ => tiny_http::Method::Patch,
    };
    let path = PATHS[usize::from(selector >> 2) % PATHS.len()];
    let state = state();
    let answer = route(state, &method, path, body);
    assert!(
        [200, 201, 204, 400, 404, 405, 409, 500, 501].contains(&answer.status),
        "{} {}",
        answer.status,
        answer.body
    );
    let toxiproxy = ["/proxies", "/reset", "/version", "/populate"]
        .iter()
        .any(|p| path.starts_with(p));
    if answer.status >= 400 && toxiproxy {
        assert!(answer.body["error"].is_string(), "{}", answer.body);
        assert_eq!(answer.body["status"], answer.status, "{}", answer.body);
    } else if answer.status >= 400 {
        assert_eq!(answer.body["status"], "error", "{}", answer.body);
        assert!(answer.body["errors"][0]["description"].is_string());
    }
    // Toxics added by the fuzzer must not pile up without bound.
    if state.hub.current().toxics.iter().count() > 64 {
        let _ = route(state, &tiny_http::Method::Post, "/reset", b"");
    }
});
