//! The control plane as a user drives it: the HTTP API, `vaurienctl`, statistics, statsd, and
//! the library API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// Starts vaurien with the control API on a free port; returns it and the API address.
fn with_api(extra: &[&str]) -> (ProxyProcess, SocketAddr) {
    let mut args = vec!["--http", "--http-host", "127.0.0.1", "--http-port", "0"];
    args.extend_from_slice(extra);
    let v = ProxyProcess::start(&args);
    let http = v.http_addr();
    (v, http)
}

fn ctl(http: SocketAddr, args: &[&str]) -> (i32, String, String) {
    vaurienctl_at(http, args)
}

/// One ping-pong through the proxy on a new connection: Some(answer) or None when closed.
fn exchange(proxy: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let msg = msg.to_vec();
    within(Duration::from_secs(10), "exchange", move || {
        let mut s = TcpStream::connect(proxy).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&msg).ok()?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).ok()?;
        Some(buf)
    })
}

#[test]
fn vaurienctl_switches_behaviors_like_the_original() {
    let backend = Backend::echo();
    let (v, http) = with_api(&["--backend", &backend.arg()]);
    assert_eq!(ctl(http, &["wait", "--timeout", "5"]).0, 0);
    assert_eq!(
        ctl(http, &["list-behaviors"]).1,
        "abort, bandwidth, blackout, delay, dummy, error, hang, latency, limit_data, reset_peer, slicer, slow_close, timeout, transient"
    );
    assert_eq!(ctl(http, &["get-behavior"]).1, "dummy");
    assert_eq!(
        ctl(http, &["set-behavior", "blackout"]),
        (0, "Behavior changed to \"blackout\"".into(), String::new())
    );
    assert_eq!(
        exchange(v.addr, b"ping"),
        None,
        "blackout: the next request fails"
    );
    assert_eq!(
        ctl(http, &["set-behavior", "dummy"]).1,
        "Behavior changed to \"dummy\""
    );
    assert_eq!(
        exchange(v.addr, b"ping").as_deref(),
        Some(&b"ping"[..]),
        "dummy: it works again"
    );
    let (code, out, _) = ctl(http, &["set-behavior", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(out, "The request failed. Please use one of abort, bandwidth, blackout, delay, dummy, error, hang, latency, limit_data, reset_peer, slicer, slow_close, timeout, transient");
    assert_eq!(
        ctl(
            http,
            &["set-behavior", "20:delay", "sleep=0.1", "before=false"]
        )
        .0,
        0
    );
    assert_eq!(ctl(http, &["get-behavior"]).1, "20:delay,80:dummy");
    assert_eq!(ctl(http, &["get-backend"]).1, backend.arg());
    assert_eq!(ctl(http, &["set-backend", "nowhere"]).0, 1);
    let (code, out, _) = ctl(http, &["stats"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["connections"]["total"], 2);
}

#[test]
fn vaurienctl_wait_times_out_when_nothing_answers() {
    let start = Instant::now();
    let dead: SocketAddr = dead_address().parse().unwrap();
    let (code, _, err) = ctl(dead, &["wait", "--timeout", "0.3"]);
    assert_eq!(code, 1, "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn vaurienctl_says_when_the_api_does_not_answer() {
    // A listener that accepts and never answers (a frozen API).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let (code, _, err) = ctl(addr, &["wait", "--timeout", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not answer within"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    drop(silent);
}

#[test]
fn curl_put_without_content_type_delays_the_next_request() {
    let backend = Backend::echo();
    let (v, http) = with_api(&["--backend", &backend.arg()]);
    let url = format!("http://{http}/behavior");
    let out = within(Duration::from_secs(10), "curl", move || {
        Command::new("curl")
            .args([
                "-s",
                "-XPUT",
                "-d",
                r#"{"sleep": 1, "name": "delay"}"#,
                &url,
            ])
            .output()
            .expect("curl is installed")
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
    let t = Instant::now();
    assert_eq!(exchange(v.addr, b"ping").as_deref(), Some(&b"ping"[..]));
    assert_delta(
        t.elapsed(),
        Duration::from_secs(1),
        Duration::from_millis(400),
        "delay set through the API",
    );
}

#[test]
fn api_errors_have_the_documented_status_and_body() {
    let (_v, http) = with_api(&["--backend", "127.0.0.1:9"]);
    let err = |r: (u16, serde_json::Value)| {
        (
            r.0,
            r.1["errors"][0]["name"].as_str().unwrap_or("?").to_string(),
        )
    };
    assert_eq!(
        err(api(http, "PUT", "/behavior", r#"{"name": "xyz"}"#, "")),
        (400, "name".into())
    );
    let (_, body) = api(http, "PUT", "/behavior", r#"{"name": "xyz"}"#, "");
    assert_eq!(
        body,
        serde_json::json!({"status": "error", "errors": [{"location": "body", "name": "name", "description": "the 'xyz' behavior does not exist"}]})
    );
    assert_eq!(
        err(api(http, "PUT", "/behavior", "[]", "")),
        (400, "".into())
    );
    assert_eq!(
        err(api(
            http,
            "PUT",
            "/behavior",
            r#"{"name": "delay", "sleep": "x"}"#,
            ""
        )),
        (400, "sleep".into())
    );
    assert_eq!(
        err(api(
            http,
            "PUT",
            "/backend",
            r#"{"backend": "no port"}"#,
            ""
        )),
        (400, "backend".into())
    );
    assert_eq!(api(http, "GET", "/nope", "", "").0, 404);
    assert_eq!(api(http, "DELETE", "/behavior", "", "").0, 405);
    let big = format!(r#"{{"name": "dummy", "pad": "{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        err(api(http, "PUT", "/behavior", &big, "")),
        (413, "".into())
    );
    assert_eq!(
        api(http, "GET", "/behavior", "", "").1,
        serde_json::json!({"behavior": "dummy"})
    );
}

#[test]
fn a_token_protects_the_api() {
    let (_v, http) = with_api(&["--backend", "127.0.0.1:9", "--http-token", "s3cret"]);
    assert_eq!(api(http, "GET", "/behavior", "", "").0, 401);
    assert_eq!(
        api(
            http,
            "GET",
            "/behavior",
            "",
            "Authorization: Bearer wrong\r\n"
        )
        .0,
        401
    );
    assert_eq!(
        api(
            http,
            "GET",
            "/behavior",
            "",
            "Authorization: Bearer s3cret\r\n"
        )
        .0,
        200
    );
    let (code, out, _) = ctl(http, &["--token", "s3cret", "get-behavior"]);
    assert_eq!((code, out.as_str()), (0, "dummy"));
}

#[test]
fn a_change_reaches_open_keep_alive_connections() {
    let backend = Backend::echo();
    let (v, http) = with_api(&["--backend", &backend.arg()]);
    let mut conns: Vec<TcpStream> = (0..50).map(|_| v.connect()).collect();
    for c in &mut conns {
        c.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"before");
    }
    assert_eq!(
        api(http, "PUT", "/behavior", r#"{"name": "error"}"#, "").0,
        200
    );
    within(
        Duration::from_secs(30),
        "50 connections after the change",
        move || {
            for c in &mut conns {
                c.write_all(b"after!").unwrap();
                let mut buf = vec![0u8; 1000];
                c.read_exact(&mut buf).unwrap();
                assert_ne!(
                    &buf[..6],
                    b"after!",
                    "the error behavior replaced the answer"
                );
            }
        },
    );
}

#[test]
fn the_api_answers_while_every_connection_hangs_or_sleeps() {
    let backend = Backend::echo();
    let (v, http) = with_api(&[
        "--backend",
        &backend.arg(),
        "--behavior",
        "50:hang,50:delay",
        "--behavior-delay-sleep",
        "5",
    ]);
    let mut conns: Vec<TcpStream> = (0..20).map(|_| v.connect()).collect();
    for c in &mut conns {
        c.write_all(b"stuck").unwrap();
    }
    // Let the proxy read them; every worker is now in hang or delay.
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _) = api(http, "GET", "/behavior", "", "");
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "API took {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(
            api(
                http,
                "PUT",
                "/behavior",
                r#"{"name": "50:hang,50:delay"}"#,
                ""
            )
            .0,
            200
        );
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "PUT took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn a_thousand_changes_while_traffic_flows_lose_nothing() {
    let backend = Backend::echo();
    let (v, http) = with_api(&["--backend", &backend.arg()]);
    let stop = Arc::new(AtomicBool::new(false));
    let exchanged = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, exchanged, mut c) = (stop.clone(), exchanged.clone(), v.connect());
            std::thread::spawn(move || {
                let msg = format!("worker{i}");
                while !stop.load(Ordering::Relaxed) {
                    c.write_all(msg.as_bytes()).expect("connection lost");
                    let mut buf = vec![0u8; msg.len()];
                    c.read_exact(&mut buf).expect("connection lost");
                    assert_eq!(
                        buf,
                        msg.as_bytes(),
                        "dummy and a 0% delay must not change data"
                    );
                    exchanged.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    within(Duration::from_secs(60), "1000 PUTs", move || {
        for i in 0..1000 {
            let body = if i % 2 == 0 {
                r#"{"name": "0:delay", "sleep": 0.01}"#
            } else {
                r#"{"name": "dummy"}"#
            };
            assert_eq!(
                api(http, "PUT", "/behavior", body, "").1,
                serde_json::json!({"status": "ok"})
            );
        }
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a traffic thread failed");
    }
    assert!(exchanged.load(Ordering::Relaxed) > 0);
    assert_eq!(api(http, "GET", "/behavior", "", "").1["behavior"], "dummy");
    assert!(!v.log().contains("panicked"));
}

#[test]
fn stats_count_the_traffic_and_statsd_receives_it() {
    let backend = Backend::echo();
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = statsd.local_addr().unwrap().port().to_string();
    let (v, http) = with_api(&[
        "--backend",
        &backend.arg(),
        "--statsd",
        "--statsd-host",
        "127.0.0.1",
        "--statsd-port",
        &port,
        "--statsd-prefix",
        "chaos",
    ]);
    for _ in 0..3 {
        assert_eq!(
            exchange(v.addr, b"0123456789").as_deref(),
            Some(&b"0123456789"[..])
        );
    }
    let dead = within(Duration::from_secs(5), "wait for connections to close", {
        move || loop {
            let (_, s) = api(http, "GET", "/stats", "", "");
            if s["connections"]["open"] == 0 {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    assert_eq!(dead["connections"]["total"], 3);
    assert_eq!(dead["bytes"]["to_backend"], 30);
    assert_eq!(dead["bytes"]["to_client"], 30);
    assert_eq!(
        dead["calls"]["dummy"], 6,
        "one call per chunk each way: {dead}"
    );
    assert_eq!(dead["backend_errors"], 0);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = statsd.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        if seen
            .iter()
            .filter(|l| l.starts_with("chaos.tcp.end"))
            .count()
            == 3
        {
            break;
        }
    }
    assert!(
        seen.contains(&"chaos.tcp.start:1|c".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"chaos.tcp.to_backend:10|c".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"chaos.behavior.dummy:1|c".to_string()),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("chaos.tcp.end"))
            .count(),
        3
    );
}

#[test]
fn a_makefile_drives_vaurien_by_pid_file_without_sleeping() {
    let backend = Backend::echo();
    let dir = std::env::temp_dir().join(format!("vaurien-mk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mk = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/example.mk");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let vars = [
        format!("PROXY_PORT={}", free_port()),
        format!("HTTP_PORT={}", free_port()),
        format!("VAURIEN={}", env!("CARGO_BIN_EXE_vaurien")),
        format!("VAURIENCTL={}", env!("CARGO_BIN_EXE_vaurienctl")),
        format!("BACKEND={}", backend.arg()),
        format!("RUN={}", dir.display()),
    ];
    let out = within(
        Duration::from_secs(60),
        "make -f tests/example.mk",
        move || {
            Command::new("make")
                .arg("-s")
                .arg("-f")
                .arg(mk)
                .args(&vars)
                .arg("check")
                .output()
                .unwrap()
        },
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("through vaurien: hello"), "{stdout}");
    assert!(stdout.contains("with blackout: closed"), "{stdout}");
    assert!(
        !dir.join("vaurien.pid").exists(),
        "the pid file is removed at exit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_vaurienctl_man_page_documents_every_command_and_option() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/vaurienctl.1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vaurienctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = help
        .split_whitespace()
        .filter(|w| {
            w.starts_with("--")
                || w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && w.contains('-')
        })
        .collect();
    assert!(words.len() > 10, "{words:?}");
    for w in words {
        let w = w.trim_end_matches(',');
        assert!(
            page.contains(&w.replace('-', "\\-")),
            "man/vaurienctl.1 lacks {w}"
        );
    }
    let groff = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/man/vaurienctl.1"))
        .output();
    let groff = groff.expect("groff is installed (.ci/run installs it)");
    assert!(
        groff.status.success() && groff.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&groff.stderr)
    );
}

#[test]
fn vaurienctl_down_refuses_clients_and_up_serves_them_on_the_same_port() {
    let backend = Backend::echo();
    let (v, http) = with_api(&["--backend", &backend.arg()]);
    let mut open = v.connect();
    assert_eq!(crate::support::exchange(&mut open, b"before"), b"before");
    let (status, out, _) = ctl(http, &["down"]);
    assert_eq!(status, 0);
    assert_eq!(out, format!("Proxy down: {} refuses connections", v.addr));
    assert!(
        read_once(&mut open).is_closed(),
        "the open connection is closed"
    );
    let refused = TcpStream::connect_timeout(&v.addr, Duration::from_secs(5))
        .expect_err("a new client is refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (status, proxy) = api(http, "GET", "/proxy", "", "");
    assert_eq!(status, 200);
    assert_eq!(proxy["enabled"], false);
    assert_eq!(proxy["listen"], v.addr.to_string());
    assert_eq!(proxy["protocol"], "tcp");
    assert_eq!(proxy["behavior"], "dummy");
    assert_eq!(api(http, "GET", "/stats", "", "").1["enabled"], false);
    let (status, out, _) = ctl(http, &["up"]);
    assert_eq!(status, 0);
    assert_eq!(out, format!("Proxy up: listening on {}", v.addr));
    let mut again = v.connect();
    assert_eq!(crate::support::exchange(&mut again, b"after"), b"after");
    assert_eq!(api(http, "GET", "/proxy", "", "").1["enabled"], true);
    let log = v.log();
    assert!(has_line_with(&log, &["proxy down"]), "{log}");
    assert!(has_line_with(&log, &["proxy up"]), "{log}");
    // Bad bodies name what is wrong.
    for (body, key) in [
        (r#"{"enabled": "no"}"#, "enabled"),
        (r#"{}"#, "enabled"),
        (r#"{"enabled": true, "listen": "x"}"#, "listen"),
    ] {
        let (status, answer) = api(http, "PUT", "/proxy", body, "");
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["name"], key, "{body}: {answer}");
    }
}
