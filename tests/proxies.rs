//! Several proxies through Toxiproxy's API: `GET /metrics` counting each one's bytes with
//! Toxiproxy's labels, and a proxy moved to another address or backend.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// `POST /proxies` with `body`, which must be created: the new proxy's address.
fn create(http: SocketAddr, body: &str) -> SocketAddr {
    let (status, proxy) = api(http, "POST", "/proxies", body, "");
    assert_eq!(status, 201, "{proxy}");
    proxy["listen"].as_str().unwrap().parse().unwrap()
}

/// `GET /metrics` parsed: each sample line's name and labels, and its value.
fn metrics(http: SocketAddr) -> BTreeMap<String, f64> {
    let (status, head, body) = api_text(http, "GET", "/metrics", "", "");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut samples = BTreeMap::new();
    let mut declared = Vec::new();
    for line in body.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            declared.push(family.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("NAME VALUE");
        let name = key.split('{').next().unwrap();
        assert!(declared.iter().any(|d| d == name), "undeclared: {line}");
        samples.insert(key.to_string(), value.parse().expect("a number"));
    }
    samples
}

/// The labels Toxiproxy gives a byte counter of `proxy`, in its order.
fn link(direction: &str, listener: SocketAddr, proxy: &str, upstream: &str) -> String {
    format!(
        "{{direction=\"{direction}\",listener=\"{listener}\",proxy=\"{proxy}\",upstream=\"{upstream}\"}}"
    )
}

/// Polls `/metrics` until `done` holds (a proxy counts a write just after it returns), 5 s
/// at most; the last samples either way.
fn metrics_when(
    http: SocketAddr,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(http);
        if done(&m) || Instant::now() > until {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_each_proxys_bytes_received_and_sent_with_toxiproxys_labels() {
    let echo = Backend::echo();
    let response: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let web = Backend::start(move |mut s: TcpStream| {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = s.write_all(response);
    });
    let (p, http) = proxy_with_api(&echo);
    // The command line's proxy cuts what comes back at 4 bytes.
    add_toxic(
        http,
        "vaurien",
        r#"{"type": "limit_data", "attributes": {"bytes": 4}}"#,
    );
    let mut client = connect(p.addr);
    client.write_all(b"hello world").unwrap();
    assert_eq!(read_to_end(&mut client).unwrap(), b"hell");
    // A second proxy, plain, and a third that frames HTTP.
    let plain = create(
        http,
        &format!(r#"{{"name": "plain", "upstream": "{}"}}"#, echo.arg()),
    );
    assert_eq!(exchange(&mut connect(plain), b"abc"), b"abc");
    let framed = create(
        http,
        &format!(
            r#"{{"name": "web", "upstream": "{}", "protocol": "http"}}"#,
            web.arg()
        ),
    );
    let request: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut client = connect(framed);
    client.write_all(request).unwrap();
    assert_eq!(read_to_end(&mut client).unwrap(), response);

    let main = |d: &str| link(d, p.addr, "vaurien", &echo.arg());
    let plain = |d: &str| link(d, plain, "plain", &echo.arg());
    let web = |d: &str| link(d, framed, "web", &web.arg());
    let received = |labels: String| format!("toxiproxy_proxy_received_bytes_total{labels}");
    let sent = |labels: String| format!("toxiproxy_proxy_sent_bytes_total{labels}");
    let expected = [
        (received(main("upstream")), 11.0),
        (sent(main("upstream")), 11.0),
        (sent(main("downstream")), 4.0),
        (received(plain("upstream")), 3.0),
        (sent(plain("upstream")), 3.0),
        (received(plain("downstream")), 3.0),
        (sent(plain("downstream")), 3.0),
        (received(web("upstream")), request.len() as f64),
        (sent(web("upstream")), request.len() as f64),
        (received(web("downstream")), response.len() as f64),
        (sent(web("downstream")), response.len() as f64),
    ];
    let m = metrics_when(http, |m| expected.iter().all(|(k, v)| m.get(k) == Some(v)));
    for (key, value) in &expected {
        assert_eq!(m.get(key), Some(value), "{key} in {m:#?}");
    }
    // What came back before the cut was received whole or in part, never less than sent.
    let back = m[&received(main("downstream"))];
    assert!((4.0..=11.0).contains(&back), "{back}");
    assert_eq!(
        m.get(r#"vaurien_proxy_connections_total{proxy="vaurien"}"#),
        Some(&1.0)
    );
    assert_eq!(
        m.get(r#"vaurien_proxy_toxics{proxy="vaurien"}"#),
        Some(&1.0)
    );
    assert_eq!(m.get(r#"vaurien_proxy_enabled{proxy="web"}"#), Some(&1.0));
    assert!(m[r#"vaurien_proxy_calls_total{behavior="dummy",proxy="web"}"#] >= 1.0);
    assert!(m["process_resident_memory_bytes"] > 0.0);
    assert!(m["process_threads"] >= 1.0);
    let (status, _, slashed) = api_text(http, "GET", "/metrics/", "", "");
    assert_eq!(status, 200);
    assert!(slashed.contains("toxiproxy_proxy_sent_bytes_total{"));
    // Only GET and HEAD.
    let (status, head, _) = api_text(http, "POST", "/metrics", "", "");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
}

#[test]
fn a_proxy_moved_to_another_listen_or_upstream_restarts_and_keeps_its_toxics() {
    let echo = Backend::echo();
    let other = Backend::start(|mut s: TcpStream| {
        let _ = s.write_all(b"other backend\n");
    });
    let (_p, http) = proxy_with_api(&echo);
    let old = create(
        http,
        &format!(r#"{{"name": "moving", "upstream": "{}"}}"#, echo.arg()),
    );
    add_toxic(
        http,
        "moving",
        r#"{"type": "latency", "attributes": {"latency": 200}}"#,
    );
    let mut open = connect(old);
    assert_eq!(exchange(&mut open, b"before"), b"before");
    // The listen address it has already: nothing happens (Node's client sends it back).
    let body = format!(r#"{{"listen": "{old}", "enabled": true}}"#);
    let (status, same) = api(http, "POST", "/proxies/moving", &body, "");
    assert_eq!(
        (status, same["listen"].clone()),
        (200, json!(old.to_string()))
    );
    assert_eq!(exchange(&mut open, b"still"), b"still");
    // A new one: the open connection closes, the old port refuses, the new one serves,
    // slow as before.
    let (status, moved) = api(
        http,
        "PATCH",
        "/proxies/moving",
        r#"{"listen": "127.0.0.1:0"}"#,
        "",
    );
    assert_eq!(status, 200, "{moved}");
    let new: SocketAddr = moved["listen"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, old);
    assert_eq!(moved["toxics"][0]["name"], "latency_downstream");
    assert!(read_once(&mut open).is_closed());
    assert!(TcpStream::connect(old).is_err(), "the old port refuses");
    let mut client = connect(new);
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"after"), b"after");
    assert!(t.elapsed() >= Duration::from_millis(200), "toxics kept");
    // To an address in use: 500, and it stays where it was.
    let body = format!(r#"{{"listen": "{}"}}"#, echo.arg());
    let (status, answer) = api(http, "POST", "/proxies/moving", &body, "");
    assert_eq!(status, 500, "{answer}");
    assert_eq!(
        answer["error"],
        format!("listen tcp {}: bind: address already in use", echo.arg())
    );
    assert_eq!(exchange(&mut connect(new), b"here"), b"here");
    // A new upstream: the open connection closes, new ones reach the new backend.
    let body = format!(r#"{{"upstream": "{}"}}"#, other.arg());
    let (status, answer) = api(http, "POST", "/proxies/moving", &body, "");
    assert_eq!(
        (status, answer["upstream"].clone()),
        (200, json!(other.arg()))
    );
    assert!(read_once(&mut client).is_closed());
    assert_eq!(read_to_end(&mut connect(new)).unwrap(), b"other backend\n");
    // Moved while down: it comes up at the new address.
    let (status, _) = api(http, "POST", "/proxies/moving", r#"{"enabled": false}"#, "");
    assert_eq!(status, 200);
    let port = free_port();
    let body = format!(r#"{{"listen": "127.0.0.1:{port}"}}"#);
    let (status, down) = api(http, "POST", "/proxies/moving", &body, "");
    assert_eq!((status, down["enabled"].clone()), (200, json!(false)));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let (status, up) = api(http, "POST", "/proxies/moving", r#"{"enabled": true}"#, "");
    assert_eq!(
        (status, up["listen"].clone()),
        (200, json!(format!("127.0.0.1:{port}")))
    );
    assert_eq!(
        read_to_end(&mut connect(("127.0.0.1", port))).unwrap(),
        b"other backend\n"
    );
}

#[test]
fn the_original_commands_act_on_the_proxy_that_vaurienctl_proxy_names() {
    let echo = Backend::echo();
    let (p, http) = proxy_with_api(&echo);
    let second = create(
        http,
        &format!(r#"{{"name": "second", "upstream": "{}"}}"#, echo.arg()),
    );
    let ctl = |args: &[&str]| vaurienctl_at(http, args);
    let on_second = |args: &[&str]| ctl(&[&["--proxy", "second"][..], args].concat());
    let (status, out, err) = on_second(&["set-behavior", "latency", "latency=300"]);
    assert_eq!(
        (status, out.as_str()),
        (0, "Behavior changed to \"latency\""),
        "{err}"
    );
    assert_eq!(on_second(&["get-behavior"]).1, "latency");
    assert_eq!(ctl(&["get-behavior"]).1, "dummy");
    assert_eq!(ctl(&["--proxy", "vaurien", "get-behavior"]).1, "dummy");
    let slow = |addr| {
        let mut client = connect(addr);
        let t = Instant::now();
        assert_eq!(exchange(&mut client, b"ping"), b"ping");
        t.elapsed() >= Duration::from_millis(300)
    };
    assert!(slow(second), "the named proxy has the new mix");
    assert!(!slow(p.addr), "the command line's proxy keeps its own");
    // The API route underneath.
    let (status, mix) = api(http, "GET", "/behavior?proxy=second", "", "");
    assert_eq!((status, mix), (200, json!({"behavior": "latency"})));
    // Routes of no proxy ignore the name.
    let (status, _) = api(http, "GET", "/behaviors?proxy=nope", "", "");
    assert_eq!(status, 200);
    // Down and up, statistics, and the backend, on that proxy only.
    assert_eq!(on_second(&["down"]).0, 0);
    assert!(TcpStream::connect(second).is_err());
    assert_eq!(exchange(&mut connect(p.addr), b"main"), b"main");
    let (_, stats, _) = on_second(&["stats"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["enabled"], false);
    assert_eq!(stats["connections"]["total"], 1);
    assert_eq!(on_second(&["up"]).0, 0);
    assert!(slow(second));
    assert_eq!(on_second(&["get-backend"]).1, echo.arg());
    // A name that is no proxy: 404, exit 1.
    let (status, _, err) = ctl(&["--proxy", "nope", "get-behavior"]);
    assert_eq!(
        (status, err.contains("404: no proxy named 'nope'")),
        (1, true),
        "{err}"
    );
}

#[test]
fn moves_and_switches_at_once_leave_the_proxy_where_it_says_it_is() {
    let echo = Backend::echo();
    let (_p, http) = proxy_with_api(&echo);
    create(
        http,
        &format!(r#"{{"name": "busy", "upstream": "{}"}}"#, echo.arg()),
    );
    let mover = std::thread::spawn(move || {
        for _ in 0..15 {
            let (status, answer) = api(
                http,
                "PATCH",
                "/proxies/busy",
                r#"{"listen": "127.0.0.1:0"}"#,
                "",
            );
            assert_eq!(status, 200, "{answer}");
        }
    });
    for i in 0..30 {
        let body = format!(r#"{{"enabled": {}}}"#, i % 2 == 1);
        let (status, answer) = api(http, "POST", "/proxies/busy", &body, "");
        assert_eq!(status, 200, "{answer}");
    }
    mover.join().unwrap();
    let (_, proxy) = api(http, "GET", "/proxies/busy", "", "");
    assert_eq!(proxy["enabled"], true);
    let at: SocketAddr = proxy["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(exchange(&mut connect(at), b"here"), b"here", "{proxy}");
}

#[test]
fn names_in_toxiproxys_paths_are_percent_decoded_as_go_decodes_them() {
    let echo = Backend::echo();
    let (_p, http) = proxy_with_api(&echo);
    create(
        http,
        &format!(r#"{{"name": "my db", "upstream": "{}"}}"#, echo.arg()),
    );
    let (status, proxy) = api(http, "GET", "/proxies/my%20db", "", "");
    assert_eq!((status, proxy["name"].clone()), (200, json!("my db")));
    add_toxic(http, "my%20db", r#"{"type": "latency", "name": "a+b"}"#);
    let (status, toxic) = api(http, "GET", "/proxies/my%20db/toxics/a+b", "", "");
    assert_eq!((status, toxic["name"].clone()), (200, json!("a+b")));
    // vaurienctl encodes the names it puts in paths.
    let ctl = |args: &[&str]| vaurienctl_at(http, args);
    let (status, _, err) = ctl(&["toxic", "add", "-n", "x y", "-t", "latency", "my db"]);
    assert_eq!(status, 0, "{err}");
    let (status, out, err) = ctl(&["inspect", "my db"]);
    assert!(status == 0 && out.contains("x y"), "{out} {err}");
    assert_eq!(ctl(&["toxic", "remove", "-n", "x y", "my db"]).0, 0);
    assert_eq!(
        ctl(&["delete", "my db"]),
        (0, "Deleted proxy my db".into(), String::new())
    );
    let (status, _) = api(http, "GET", "/proxies/my%20db", "", "");
    assert_eq!(status, 404);
}

#[test]
fn toxiproxys_words_for_noop_a_port_in_use_and_a_refusal() {
    let echo = Backend::echo();
    let (_p, http) = proxy_with_api(&echo);
    // `noop` is read back as `noop`, named TYPE_STREAM.
    let toxic = add_toxic(http, "vaurien", r#"{"type": "noop"}"#);
    assert_eq!(
        (toxic["type"].clone(), toxic["name"].clone()),
        (json!("noop"), json!("noop_downstream"))
    );
    // Listening where something listens already: Go's words, as clients match them.
    let body = format!(
        r#"{{"name": "clash", "listen": "{}", "upstream": "{}"}}"#,
        echo.arg(),
        echo.arg()
    );
    let (status, answer) = api(http, "POST", "/proxies", &body, "");
    let expected = format!("listen tcp {}: bind: address already in use", echo.arg());
    assert_eq!(
        (status, answer),
        (500, json!({"error": expected, "status": 500}))
    );
    // The browser guard's refusal, on Toxiproxy's paths, is in Toxiproxy's shape.
    let (status, answer) = api(
        http,
        "GET",
        "/proxies",
        "",
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(status, 403);
    assert_eq!(answer["status"], 403, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
}
