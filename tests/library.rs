//! A Rust test written only against the public library API: start a proxy in-process, drive
//! it with `Client::with_behavior`, register a custom behavior, start more proxies and give
//! them toxics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use vaurien::behavior::{Behavior, BehaviorSpec, Call, Verdict};
use vaurien::cli::config_from_args;
use vaurien::{Registry, Vaurien};

use crate::support::{within, Backend};

fn ping(proxy: SocketAddr) -> Option<Vec<u8>> {
    within(Duration::from_secs(10), "ping", move || {
        let mut s = TcpStream::connect(proxy).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"ping").ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).ok()?;
        Some(buf.to_vec())
    })
}

fn start(backend: &Backend, registry: Registry) -> Vaurien {
    let args = [
        "--proxy",
        "127.0.0.1:0",
        "--backend",
        &backend.arg(),
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ];
    Vaurien::start(&config_from_args(&args, registry).unwrap()).unwrap()
}

#[test]
fn with_behavior_fails_calls_and_the_guard_restores() {
    let backend = Backend::echo();
    let proxy = start(&backend, Registry::builtin());
    let client = proxy.client().expect("the control API is on");
    assert_eq!(ping(proxy.proxy_addr()).as_deref(), Some(&b"ping"[..]));
    {
        let guard = client.with_behavior("blackout", &Map::new()).unwrap();
        assert_eq!(guard.previous(), "dummy");
        assert_eq!(ping(proxy.proxy_addr()), None, "blackout: the call fails");
    }
    assert_eq!(client.get_behavior().unwrap(), "dummy");
    assert_eq!(
        ping(proxy.proxy_addr()).as_deref(),
        Some(&b"ping"[..]),
        "recovered after the guard dropped"
    );
    let mut opts = Map::new();
    opts.insert("sleep".into(), json!(0.3));
    client.set_behavior("20:delay", &opts).unwrap();
    {
        let _hang = client.with_behavior("hang", &Map::new()).unwrap();
    }
    assert_eq!(
        client.get_behavior().unwrap(),
        "20:delay,80:dummy",
        "a saved mix comes back as a mix"
    );
    proxy.stop();
}

/// A custom behavior: answers every response with "nope".
#[derive(Debug)]
struct Nope;
impl Behavior for Nope {
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        call.data.clear();
        call.data.extend_from_slice(b"nope");
        Verdict::Forward
    }
}

#[test]
fn a_custom_behavior_is_usable_in_mixes_and_through_the_api() {
    let backend = Backend::echo();
    let registry = Registry::builtin().with_behavior(BehaviorSpec {
        name: "nope".into(),
        aliases: &[],
        summary: "answers nope",
        options: &[],
        build: |_| Ok(Arc::new(Nope)),
    });
    let proxy = start(&backend, registry);
    let client = proxy.client().unwrap();
    assert!(client
        .list_behaviors()
        .unwrap()
        .contains(&"nope".to_string()));
    let _guard = client.with_behavior("nope", &Map::new()).unwrap();
    assert_eq!(ping(proxy.proxy_addr()).as_deref(), Some(&b"nope"[..]));
    assert!(
        proxy.stats().calls().get("nope").copied().unwrap_or(0) >= 1,
        "calls of nope are counted"
    );
}

#[test]
fn a_test_adds_and_removes_toxics_and_takes_the_proxy_down() {
    let backend = Backend::echo();
    let proxy = start(&backend, Registry::builtin());
    let client = proxy.client().expect("the control API is on");
    let toxic = client
        .add_toxic(
            "vaurien",
            &json!({"type": "timeout", "name": "silence", "attributes": {"timeout": 200}}),
        )
        .unwrap();
    assert_eq!(toxic["stream"], "downstream");
    assert_eq!(ping(proxy.proxy_addr()), None, "the answer is dropped");
    client.remove_toxic("vaurien", "silence").unwrap();
    assert_eq!(ping(proxy.proxy_addr()).as_deref(), Some(&b"ping"[..]));
    proxy.set_enabled(false).unwrap();
    assert!(!proxy.enabled());
    assert!(
        TcpStream::connect(proxy.proxy_addr()).is_err(),
        "down: refused"
    );
    proxy.set_enabled(true).unwrap();
    assert_eq!(ping(proxy.proxy_addr()).as_deref(), Some(&b"ping"[..]));
    proxy.stop();
}

#[test]
fn a_test_starts_several_proxies_each_with_its_own_toxics() {
    let backend = Backend::echo();
    let proxy = start(&backend, Registry::builtin());
    let replica = proxy
        .add_proxy("replica", "127.0.0.1:0", &backend.arg(), None)
        .unwrap();
    assert_eq!(proxy.addr_of("replica"), Some(replica));
    assert!(
        proxy
            .add_proxy("replica", "127.0.0.1:0", &backend.arg(), None)
            .is_err(),
        "a name is taken once"
    );
    let client = proxy.client().expect("the control API is on");
    client
        .add_toxic(
            "replica",
            &json!({"type": "limit_data", "name": "cut", "attributes": {"bytes": 2}}),
        )
        .unwrap();
    let cut = within(Duration::from_secs(10), "a cut echo", move || {
        let mut s = TcpStream::connect(replica).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"ping").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    assert_eq!(cut, b"pi", "the replica's echo is cut at 2 bytes");
    assert_eq!(ping(proxy.proxy_addr()).as_deref(), Some(&b"ping"[..]));
    client.remove_toxic("replica", "cut").unwrap();
    assert_eq!(ping(replica).as_deref(), Some(&b"ping"[..]));
    assert!(proxy.remove_proxy("replica"));
    assert!(!proxy.remove_proxy("replica"));
    assert!(TcpStream::connect(replica).is_err(), "removed: refused");
    proxy.stop();
}
