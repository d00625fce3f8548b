//! Stream protocols (tcp, mysql) as a client sees them: bytes arrive intact, half-close
//! and server-first protocols work, a dead backend, idle timeouts, shutdown and the
//! `--max-connections` limit.

use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// A `Hasher` over a byte stream: the same bytes in the same order give the same hash,
/// whatever the chunk boundaries.
fn stream_hasher() -> std::collections::hash_map::DefaultHasher {
    std::collections::hash_map::DefaultHasher::new()
}

#[test]
fn tcp_carries_256_mib_each_way_byte_identical() {
    const TOTAL: usize = 256 << 20;
    const CHUNK: usize = 256 * 1024;
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--protocol",
        "tcp",
        "--behavior",
        "100:dummy",
        "--backend",
        &echo.arg(),
    ]);
    let client = proxy.connect();
    let mut writer = client.try_clone().unwrap();
    let mut reader = client;
    let started = Instant::now();
    let sent = thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut hasher = stream_hasher();
        let mut buf = vec![0u8; CHUNK];
        let mut left = TOTAL;
        while left > 0 {
            let n = left.min(CHUNK);
            rng.fill(&mut buf[..n]);
            hasher.write(&buf[..n]);
            writer.write_all(&buf[..n]).expect("write to the proxy");
            left -= n;
        }
        writer.shutdown(Shutdown::Write).unwrap();
        (TOTAL, hasher.finish())
    });
    let received = within(Duration::from_secs(150), "256 MiB echoed back", move || {
        let mut hasher = stream_hasher();
        let mut buf = vec![0u8; CHUNK];
        let mut count = 0usize;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.write(&buf[..n]);
                    count += n;
                }
                Err(e) => panic!("read from the proxy after {count} bytes: {e}"),
            }
        }
        (count, hasher.finish())
    });
    let sent = sent.join().expect("writer thread");
    assert_eq!(received.0, sent.0, "byte count");
    assert_eq!(received.1, sent.1, "hash of the stream");
    eprintln!("256 MiB each way in {:?}", started.elapsed());
}

#[test]
fn half_close_still_delivers_the_whole_response() {
    const RESPONSE: usize = 1 << 20;
    // Reads the request to end of stream, then answers 1 MiB and closes.
    let backend = Backend::start(|mut s| {
        let mut request = Vec::new();
        if s.read_to_end(&mut request).is_err() || request != b"the whole request" {
            return;
        }
        let _ = s.write_all(&random_bytes(11, RESPONSE));
    });
    let proxy = ProxyProcess::start(&["--protocol", "tcp", "--backend", &backend.arg()]);
    let mut client = proxy.connect();
    let response = within(
        Duration::from_secs(20),
        "response after half-close",
        move || {
            client.write_all(b"the whole request").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            read_to_end(&mut client).expect("read the response")
        },
    );
    assert_eq!(response.len(), RESPONSE);
    assert!(
        response == random_bytes(11, RESPONSE),
        "response bytes differ"
    );
}

#[test]
fn server_first_protocols_deliver_the_greeting() {
    let backend = Backend::greeting(b"220 hello\r\n");
    for protocol in ["mysql", "tcp"] {
        let proxy = ProxyProcess::start(&["--protocol", protocol, "--backend", &backend.arg()]);
        let mut client = proxy.connect();
        let greeting = within(Duration::from_secs(10), "greeting", move || {
            let greeting = read_exactly(&mut client, 11).expect("read the greeting");
            // The session goes on after the greeting.
            let echoed = exchange(&mut client, b"EHLO me\r\n");
            (greeting, echoed)
        });
        assert_eq!(greeting.0, b"220 hello\r\n", "{protocol}");
        assert_eq!(greeting.1, b"EHLO me\r\n", "{protocol}");
    }
}

#[test]
fn dead_backend_closes_the_client_and_the_proxy_goes_on() {
    let dead = dead_address();
    let mut proxy = ProxyProcess::start(&["--backend", &dead]);
    for attempt in 0..2 {
        let mut client = proxy.connect();
        let (outcome, took) = within(Duration::from_secs(10), "client closed", move || {
            let t = Instant::now();
            let _ = client.write_all(b"hello?");
            (read_once(&mut client), t.elapsed())
        });
        assert!(
            outcome.is_closed(),
            "client {attempt}: expected EOF or reset, got {outcome:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "client {attempt}: closed only after {took:?}"
        );
        assert!(
            proxy.is_running(),
            "the proxy exited after client {attempt}"
        );
    }
    let log = proxy.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(&dead)),
        "no warning naming {dead} in the log:\n{log}"
    );
}

#[test]
fn sigterm_with_an_open_connection_exits_zero_within_one_second() {
    let echo = Backend::echo();
    let mut proxy = ProxyProcess::start(&["--backend", &echo.arg()]);
    let mut client = proxy.connect();
    let mut client = within(Duration::from_secs(10), "echo", move || {
        assert_eq!(exchange(&mut client, b"ping"), b"ping");
        client
    });
    let t = Instant::now();
    let status = proxy.terminate();
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after SIGTERM"
    );
    let outcome = within(Duration::from_secs(5), "client closed", move || {
        read_once(&mut client)
    });
    assert!(
        outcome.is_closed(),
        "the open connection was not closed: {outcome:?}"
    );
}

#[test]
fn idle_connection_is_closed_after_the_timeout() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&["--timeout", "1", "--backend", &echo.arg()]);
    let mut client = proxy.connect();
    let (outcome, took) = within(Duration::from_secs(10), "idle close", move || {
        let t = Instant::now();
        (read_once(&mut client), t.elapsed())
    });
    assert!(outcome.is_closed(), "expected a close, got {outcome:?}");
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(2000),
        "idle connection closed after {took:?}, expected about 1-1.5 s"
    );
}

#[test]
fn traffic_keeps_a_connection_past_the_idle_timeout() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&["--timeout", "1", "--backend", &echo.arg()]);
    let mut client = proxy.connect();
    within(Duration::from_secs(10), "exchanges", move || {
        // One exchange every 0.3 s for 2.4 s: never idle for 1 s.
        for i in 0..8u8 {
            assert_eq!(exchange(&mut client, &[i; 4]), [i; 4], "exchange {i}");
            thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(exchange(&mut client, b"last"), b"last");
    });
}

#[test]
fn stay_connected_never_closes_an_idle_connection() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--timeout",
        "1",
        "--stay-connected",
        "--backend",
        &echo.arg(),
    ]);
    let mut client = proxy.connect();
    client
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    within(
        Duration::from_secs(10),
        "idle with --stay-connected",
        move || {
            let outcome = read_once(&mut client);
            assert_eq!(outcome, ReadOutcome::TimedOut, "after 2.5 s idle");
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            assert_eq!(exchange(&mut client, b"still here"), b"still here");
        },
    );
}

#[test]
fn max_connections_makes_the_next_client_wait() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&["--max-connections", "2", "--backend", &echo.arg()]);
    let mut first = proxy.connect();
    let mut second = proxy.connect();
    let (first, second) = within(Duration::from_secs(10), "two clients served", move || {
        assert_eq!(exchange(&mut first, b"one"), b"one");
        assert_eq!(exchange(&mut second, b"two"), b"two");
        (first, second)
    });
    let mut third = proxy.connect();
    third
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut third = within(Duration::from_secs(10), "third client waits", move || {
        third.write_all(b"three").unwrap();
        assert_eq!(
            read_once(&mut third),
            ReadOutcome::TimedOut,
            "the third client was served while two were connected"
        );
        third
    });
    drop(first);
    let took = within(Duration::from_secs(10), "third client served", move || {
        let t = Instant::now();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            read_exactly(&mut third, 5).expect("echo of three"),
            b"three"
        );
        assert_eq!(exchange(&mut third, b"again"), b"again");
        t.elapsed()
    });
    assert!(
        took < Duration::from_secs(3),
        "served {took:?} after a slot freed"
    );
    drop(second);
}

#[test]
fn clients_held_open_never_stop_the_next_one_being_accepted() {
    // The thread that accepts a connection serves it and puts another in its place: a
    // dozen clients held open, more than ever wait in accept(), leave the proxy accepting.
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&["--backend", &echo.arg()]);
    let addr = proxy.addr;
    within(Duration::from_secs(20), "13 clients at once", move || {
        let mut held = Vec::new();
        for i in 0..13 {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let msg = format!("client {i}");
            assert_eq!(
                exchange(&mut c, msg.as_bytes()),
                msg.as_bytes(),
                "with {i} clients held open"
            );
            held.push(c);
        }
        for (i, c) in held.iter_mut().enumerate() {
            let msg = format!("again {i}");
            assert_eq!(exchange(c, msg.as_bytes()), msg.as_bytes());
        }
    });
}

#[test]
fn out_of_file_descriptors_the_accept_loop_waits_and_goes_on() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start_with(&["--backend", &echo.arg()], Some(40));
    // Each proxied connection takes two descriptors: 40 clients exhaust 40.
    let held: Vec<_> = (0..40).map(|_| proxy.connect()).collect();
    let log = within(Duration::from_secs(20), "an accept warning", {
        let path = proxy.log_path.clone();
        move || loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.contains("accept:") {
                return log;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(log.contains("open-files limit is 40"), "{log}");
    drop(held);
    let addr = proxy.addr;
    within(
        Duration::from_secs(20),
        "service after descriptors came back",
        move || loop {
            // Clients still in the backlog are being served and released; a new one gets through.
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            if c.write_all(b"again").is_ok()
                && read_exactly(&mut c, 5).ok().as_deref() == Some(&b"again"[..])
            {
                return;
            }
        },
    );
    let mut proxy = proxy;
    assert!(proxy.is_running());
}

#[test]
fn listens_and_forwards_over_ipv6() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&["--proxy", "[::1]:0", "--backend", &echo.arg()]);
    assert!(proxy.addr.is_ipv6(), "{}", proxy.ready_line);
    let mut c = proxy.connect();
    assert_eq!(exchange(&mut c, b"over v6"), b"over v6");
}
