//! What never breaks (SPEC §13), each defect once seen in a test named after what it checks:
//! idle connections through live changes, `--stay-connected` on streams, a hang whose client
//! half-closed, durations too long for the clock, and calls that wait for their reply.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Open client connections as `GET /stats` counts them.
fn open_connections(http: SocketAddr) -> u64 {
    let (status, stats) = api(http, "GET", "/stats", "", "");
    assert_eq!(status, 200, "{stats}");
    stats["connections"]["open"].as_u64().expect("open count")
}

/// Waits (at most 10 s) until the proxy counts `n` open connections.
fn wait_open_connections(http: SocketAddr, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = open_connections(http);
        if open == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {open} connections open, not {n}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A proxy in front of `backend` with its control API on a free port, and `extra` options.
fn with_api(backend: &Backend, extra: &[&str]) -> ProxyProcess {
    let backend = backend.arg();
    let mut args = vec![
        "--backend",
        backend.as_str(),
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ];
    args.extend_from_slice(extra);
    ProxyProcess::start(&args)
}

fn set_behavior(http: SocketAddr, body: &str) {
    let (status, answer) = api(http, "PUT", "/behavior", body, "");
    assert_eq!(status, 200, "PUT /behavior {body}: {answer}");
}

#[test]
fn idle_connections_hold_no_history_of_behavior_changes() {
    const IDLE: usize = 200;
    const CHANGES: usize = 5_000;
    let echo = Backend::echo();
    let proxy = with_api(&echo, &[]);
    let http = proxy.http_addr();
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| proxy.connect()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        let msg = format!("hello {i}");
        assert_eq!(exchange(c, msg.as_bytes()), msg.as_bytes());
    }
    wait_open_connections(http, IDLE as u64, "idle clients");
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    within(Duration::from_secs(120), "behavior changes", move || {
        // One keep-alive connection to the API, so that the changes are quick.
        let mut api = TcpStream::connect(http).unwrap();
        api.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = [0u8; 4096];
        for i in 0..CHANGES {
            let body = if i % 2 == 0 {
                r#"{"name": "10:delay", "sleep": 0.01}"#
            } else {
                r#"{"name": "dummy"}"#
            };
            let request = format!(
                "PUT /behavior HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            api.write_all(request.as_bytes()).unwrap();
            let n = api.read(&mut answer).unwrap();
            assert!(
                answer[..n].starts_with(b"HTTP/1.1 200"),
                "change {i}: {}",
                String::from_utf8_lossy(&answer[..n])
            );
        }
    });
    let growth = rss_kib(pid).saturating_sub(before);
    assert!(
        growth < 10 * 1024,
        "RSS grew by {growth} KiB over {CHANGES} changes with {IDLE} idle connections"
    );
    // Every idle connection still works, with the last mix.
    for (i, c) in idle.iter_mut().enumerate() {
        let msg = format!("again {i}");
        assert_eq!(exchange(c, msg.as_bytes()), msg.as_bytes());
    }
}

#[test]
fn stay_connected_keeps_a_stream_client_hanging_on_blackout_and_abort() {
    let echo = Backend::echo();
    let proxy = with_api(&echo, &["--stay-connected"]);
    let http = proxy.http_addr();
    for behavior in ["blackout", "abort"] {
        set_behavior(http, r#"{"name": "dummy"}"#);
        let mut client = proxy.connect();
        assert_eq!(exchange(&mut client, b"before"), b"before");
        set_behavior(http, &format!(r#"{{"name": "{behavior}"}}"#));
        client.write_all(b"during").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let outcome = within(Duration::from_secs(10), "read while hanging", move || {
            (read_once(&mut client), client)
        });
        let (outcome, mut client) = outcome;
        assert_eq!(
            outcome,
            ReadOutcome::TimedOut,
            "{behavior} with --stay-connected must hang the client, not close it"
        );
        // What the client sends meanwhile is dropped, and the connection is still there.
        client.write_all(b"more").unwrap();
        assert_eq!(open_connections(http), 1, "{behavior}: the hung client");
        drop(client);
        wait_open_connections(http, 0, &format!("{behavior}: after the client left"));
    }
}

#[test]
fn a_hung_client_that_half_closed_is_held_until_it_leaves() {
    let echo = Backend::echo();
    let proxy = with_api(&echo, &["--behavior", "hang"]);
    let http = proxy.http_addr();
    let mut client = proxy.connect();
    client.write_all(b"a request, then end of input").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let (outcome, client) = within(Duration::from_secs(10), "read while hanging", move || {
        (read_once(&mut client), client)
    });
    assert_eq!(
        outcome,
        ReadOutcome::TimedOut,
        "a half-close must not end the hang"
    );
    // Held without a thread or a connection slot: parked.
    wait_open_connections(http, 0, "the half-closed hung client");
    assert_eq!(parked_connections(http), 1);
    // The client leaves for good (a reset, so that its going is seen at once).
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while parked_connections(http) > 0 {
        assert!(Instant::now() < deadline, "the gone client is still parked");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Hung clients that half-closed, as `GET /stats` counts them.
fn parked_connections(http: SocketAddr) -> u64 {
    let (_, stats) = api(http, "GET", "/stats", "", "");
    stats["connections"]["parked"]
        .as_u64()
        .expect("parked count")
}

#[test]
fn durations_too_long_for_the_clock_are_refused_everywhere() {
    // The command line: a usage error naming the option.
    let out = run_vaurien(&["--behavior", "delay", "--behavior-delay-sleep", "1e20"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sleep") && stderr.contains("at most"),
        "{stderr}"
    );
    let out = run_vaurien(&["--behavior", "delay", "--behavior-delay-jitter", "1e300"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // The INI file: a start-up failure naming the file.
    let dir = fresh_dir("vaurien-long-delay").expect("temp dir");
    let ini = dir.join("long.ini");
    std::fs::write(
        &ini,
        "[vaurien]\nbehavior = delay\n\n[behavior:delay]\nsleep = 1e20\n",
    )
    .unwrap();
    let out = run_vaurien(&["--config", ini.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sleep") && stderr.contains("at most"),
        "{stderr}"
    );
    // The API: a 400 naming the option, and the proxy goes on serving.
    let echo = Backend::echo();
    let mut proxy = with_api(&echo, &[]);
    let http = proxy.http_addr();
    for body in [
        r#"{"name": "delay", "sleep": 1e20}"#,
        r#"{"name": "delay", "jitter": 1e300}"#,
    ] {
        let (status, answer) = api(http, "PUT", "/behavior", body, "");
        assert_eq!(status, 400, "{body}: {answer}");
        let key = answer["errors"][0]["name"].as_str().unwrap_or_default();
        assert!(body.contains(key) && !key.is_empty(), "{answer}");
    }
    let mut client = proxy.connect();
    assert_eq!(exchange(&mut client, b"still fine"), b"still fine");
    assert_proxy_survived(&mut proxy, "refused durations");
}

/// Reads an HTTP request head (to its empty line) from `s`.
fn read_request_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

#[test]
fn a_slow_answer_and_gaps_in_a_streamed_body_are_not_cut_by_the_idle_timeout() {
    // A long poll: the answer comes after 1.5 s, its body in chunks 1.5 s apart.
    let backend = Backend::start(|mut s| {
        read_request_head(&mut s);
        thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
        thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n");
    });
    let proxy = ProxyProcess::start(&[
        "--protocol",
        "http",
        "--timeout",
        "1",
        "--backend",
        &backend.arg(),
    ]);
    let mut client = proxy.connect();
    let answer = within(Duration::from_secs(20), "the long poll", move || {
        client
            .write_all(b"GET /poll HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_to_end(&mut client).expect("the answer")
    });
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n")
            && answer.ends_with("5\r\nfirst\r\n4\r\nlast\r\n0\r\n\r\n"),
        "{answer:?}"
    );
}

#[test]
fn a_call_waiting_for_its_answer_notices_the_client_leaving() {
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    let ended_tx = std::sync::Mutex::new(ended_tx);
    // The backend never answers: it waits for the end of its connection, and says when.
    let backend = Backend::start(move |mut s| {
        read_request_head(&mut s);
        let t = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut byte = [0u8; 1];
        let ended = matches!(s.read(&mut byte), Ok(0) | Err(_));
        let _ = ended_tx.lock().unwrap().send((ended, t.elapsed()));
    });
    let proxy = ProxyProcess::start(&["--protocol", "http", "--backend", &backend.arg()]);
    let mut client = proxy.connect();
    client
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    drop(client);
    let (ended, after) = ended_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend saw nothing of the client leaving");
    assert!(ended, "the backend's read timed out");
    assert!(
        after < Duration::from_secs(5),
        "the client's leaving reached the backend after {after:?}"
    );
}

/// A raw request to the API on connection `s`; the status of its answer (the body is read).
fn api_on(s: &mut TcpStream, request: &str) -> u16 {
    s.write_all(request.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn stalled_and_idle_api_clients_freeze_nothing_and_sigterm_still_exits() {
    let echo = Backend::echo();
    let mut proxy = with_api(&echo, &[]);
    let http = proxy.http_addr();
    // Six connections that send nothing, a PUT whose body never comes whole, and one that
    // asks 100-continue and sends no body.
    let idle: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(http).unwrap()).collect();
    let mut stalled = TcpStream::connect(http).unwrap();
    stalled
        .write_all(
            format!(
                "PUT /behavior HTTP/1.1\r\nHost: {http}\r\nContent-Length: 5000\r\n\r\n{{\"name\":"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut expecting = TcpStream::connect(http).unwrap();
    expecting
        .write_all(
            format!(
                "PUT /behavior HTTP/1.1\r\nHost: {http}\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let took = within(Duration::from_secs(10), "GET /behavior", move || {
        let t = Instant::now();
        let (status, body) = api(http, "GET", "/behavior", "", "");
        assert_eq!((status, body["behavior"].as_str()), (200, Some("dummy")));
        t.elapsed()
    });
    assert!(
        took < Duration::from_millis(500),
        "GET /behavior took {took:?}"
    );
    // The idle ones are still served, on their own connections.
    for mut c in idle {
        let request =
            format!("GET /behavior HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        let status = within(
            Duration::from_secs(10),
            "a GET on an idle connection",
            move || api_on(&mut c, &request),
        );
        assert_eq!(status, 200);
    }
    let t = Instant::now();
    assert_eq!(proxy.terminate().code(), Some(0));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    drop((stalled, expecting));
}

#[test]
fn after_running_out_of_descriptors_the_proxy_and_the_api_serve_again() {
    let echo = Backend::echo();
    let mut proxy = ProxyProcess::start_with(
        &[
            "--backend",
            &echo.arg(),
            "--http",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
        ],
        Some(256),
    );
    let (addr, http) = (proxy.addr, proxy.http_addr());
    // 400 clients: past 256 descriptors the proxy cannot accept or connect.
    let clients = within(Duration::from_secs(60), "400 clients", move || {
        let mut clients = Vec::new();
        for _ in 0..400 {
            match TcpStream::connect(addr) {
                Ok(c) => {
                    let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = (&c).write_all(b"x");
                    clients.push(c);
                }
                Err(_) => break,
            }
        }
        clients
    });
    assert!(
        clients.len() > 256,
        "only {} clients connected",
        clients.len()
    );
    // While out of descriptors, an API request waits in the backlog; once descriptors come
    // back it is answered.
    let pending = std::thread::spawn(move || api(http, "GET", "/behavior", "", ""));
    drop(clients);
    let (status, _) = pending.join().expect("the API request during exhaustion");
    assert_eq!(status, 200);
    let (status, _) = api(http, "PUT", "/behavior", r#"{"name": "dummy"}"#, "");
    assert_eq!(status, 200);
    // Once the connections of the clients that left are closed, descriptors are back.
    wait_open_connections(http, 0, "after the clients left");
    let mut client = proxy.connect();
    assert_eq!(exchange(&mut client, b"served again"), b"served again");
    assert_proxy_survived(&mut proxy, "running out of descriptors");
    let warnings = proxy
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("open files"))
        .count();
    assert!(
        warnings <= 20,
        "{warnings} warnings about open files:\n{}",
        proxy.log()
    );
}

#[test]
fn the_api_refuses_rebinding_hosts_and_foreign_origins() {
    let echo = Backend::echo();
    let proxy = with_api(&echo, &[]);
    let http = proxy.http_addr();
    let put = |headers: &str| {
        let request = format!(
            "PUT /backend HTTP/1.1\r\n{headers}Content-Length: 29\r\nConnection: close\r\n\r\n{{\"backend\": \"127.0.0.1:9999\"}}"
        );
        within(Duration::from_secs(10), "PUT /backend", move || {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            raw
        })
    };
    let rebinding = put("Host: evil.example:8080\r\n");
    assert!(rebinding.starts_with("HTTP/1.1 403"), "{rebinding}");
    assert!(rebinding.contains(r#""name":"Host""#), "{rebinding}");
    let csrf = put(&format!("Host: {http}\r\nOrigin: http://evil.example\r\n"));
    assert!(csrf.starts_with("HTTP/1.1 403"), "{csrf}");
    assert!(csrf.contains(r#""name":"Origin""#), "{csrf}");
    let (_, backend) = api(http, "GET", "/backend", "", "");
    assert_eq!(
        backend["backend"],
        echo.arg(),
        "a refused PUT changed the backend"
    );
    let own = put(&format!("Host: {http}\r\nOrigin: http://{http}\r\n"));
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
}

#[test]
fn a_put_without_a_name_gets_the_originals_error_through_curl() {
    let echo = Backend::echo();
    let proxy = with_api(&echo, &[]);
    let url = format!("http://{}/behavior", proxy.http_addr());
    let curl = need_tool(&["curl"], "the Debian package curl").unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(curl);
    cmd.args([
        "-s",
        "-X",
        "PUT",
        "-d",
        r#"{"sleep": 1}"#,
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    let out = run_tool(cmd, None, Duration::from_secs(20))
        .ok("curl")
        .stdout();
    let (body, status) = out.rsplit_once('\n').expect("a body and a status");
    assert_eq!(status, "400");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errors"][0]["location"], "body");
    assert_eq!(body["errors"][0]["name"], "");
    assert_eq!(
        body["errors"][0]["description"],
        r#"the value should contain a "name" key"#
    );
}
