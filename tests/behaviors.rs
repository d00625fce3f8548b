//! Behaviors on a stream protocol as a client sees them: `delay` is latency (replayed by
//! `--seed`), `error` garbles responses after its warmup, `hang` keeps the client waiting,
//! `blackout` and `abort` close connections.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Round trips of `rounds` small sequential echo exchanges on one connection.
fn ping_pong_times(proxy: &ProxyProcess, rounds: usize) -> Vec<Duration> {
    let mut client = proxy.connect();
    within(Duration::from_secs(60), "ping-pong exchanges", move || {
        (0..rounds)
            .map(|i| {
                let msg = format!("ping {i:04}\n").into_bytes();
                let t = Instant::now();
                assert_eq!(exchange(&mut client, &msg), msg, "exchange {i}");
                t.elapsed()
            })
            .collect()
    })
}

#[test]
fn seeded_delay_replays_the_same_delayed_exchanges() {
    const ROUNDS: usize = 40;
    let echo = Backend::echo();
    let args = [
        "--behavior",
        "50:delay",
        "--behavior-delay-sleep",
        "0.2",
        "--seed",
        "7",
        "--backend",
        &echo.arg(),
    ];
    // Two fresh proxies, same seed, same traffic, run side by side.
    let runs: Vec<Vec<Duration>> = (0..2)
        .map(|_| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let proxy = ProxyProcess::start(&args);
                ping_pong_times(&proxy, ROUNDS)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("a run failed"))
        .collect();
    let delayed: Vec<Vec<usize>> = runs
        .iter()
        .map(|times| {
            (0..ROUNDS)
                .filter(|&i| times[i] > Duration::from_millis(100))
                .collect()
        })
        .collect();
    assert_eq!(
        delayed[0], delayed[1],
        "the same seed delayed different exchanges: {runs:?}"
    );
    let n = delayed[0].len();
    eprintln!(
        "seed 7: {n} of {ROUNDS} exchanges delayed: {:?}",
        delayed[0]
    );
    assert!(
        (ROUNDS / 4..=3 * ROUNDS / 4).contains(&n),
        "{n} of {ROUNDS} exchanges delayed with 50:delay"
    );
    for times in &runs {
        for &i in &delayed[0] {
            assert!(
                times[i] >= Duration::from_millis(200),
                "exchange {i} delayed only {:?}",
                times[i]
            );
        }
    }
}

/// Time from sending `GET` to reading the last byte of the backend's 4 MiB answer.
fn big_response_time(extra: &[&str]) -> Duration {
    const RESPONSE: usize = 4 << 20;
    let backend = Backend::start(|mut s| {
        let mut req = [0u8; 4];
        if s.read_exact(&mut req).is_ok() && &req == b"GET\n" {
            let _ = s.write_all(&random_bytes(4, RESPONSE));
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    });
    let mut args = vec!["--backend".to_string(), backend.arg()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = ProxyProcess::start(&args);
    let mut client = proxy.connect();
    let (took, response) = within(Duration::from_secs(30), "4 MiB response", move || {
        let t = Instant::now();
        client.write_all(b"GET\n").unwrap();
        let response = read_exactly(&mut client, RESPONSE).expect("read the response");
        (t.elapsed(), response)
    });
    assert!(
        response == random_bytes(4, RESPONSE),
        "response bytes differ"
    );
    took
}

fn assert_delays_a_big_response_once(before: &[&str]) {
    let baseline = big_response_time(&["--behavior", "100:dummy"]);
    let mut args = vec!["--behavior", "100:delay", "--behavior-delay-sleep", "0.5"];
    args.extend_from_slice(before);
    let delayed = big_response_time(&args);
    let added = delayed.saturating_sub(baseline);
    eprintln!("4 MiB response {before:?}: baseline {baseline:?}, delayed {delayed:?}");
    assert_delta(
        added,
        Duration::from_millis(500),
        Duration::from_millis(250),
        &format!("latency added to a 4 MiB response ({before:?}; baseline {baseline:?})"),
    );
}

#[test]
fn delay_before_adds_its_sleep_once() {
    // `before` is true by default: the request reaches the backend 0.5 s late.
    assert_delays_a_big_response_once(&[]);
}

#[test]
fn delay_after_delays_a_big_response_once_not_per_chunk() {
    // Every chunk of the response is delayed, but as latency: the whole 4 MiB arrive 0.5 s
    // late, not 0.5 s per chunk.
    assert_delays_a_big_response_once(&["--behavior-delay-before=false"]);
}

#[test]
fn delay_defaults_to_delaying_the_request() {
    // Without `before` given, the request is delayed: a server-first greeting is not.
    let backend = Backend::greeting(b"220 hello\r\n");
    let proxy = ProxyProcess::start(&[
        "--behavior",
        "100:delay",
        "--behavior-delay-sleep",
        "0.5",
        "--backend",
        &backend.arg(),
    ]);
    let mut client = proxy.connect();
    let (greeting_after, echo_after) = within(Duration::from_secs(10), "greeting", move || {
        let t = Instant::now();
        assert_eq!(read_exactly(&mut client, 11).unwrap(), b"220 hello\r\n");
        let greeting_after = t.elapsed();
        let t = Instant::now();
        assert_eq!(exchange(&mut client, b"EHLO\r\n"), b"EHLO\r\n");
        (greeting_after, t.elapsed())
    });
    assert!(
        greeting_after < Duration::from_millis(250),
        "greeting delayed {greeting_after:?}"
    );
    assert_delta(
        echo_after,
        Duration::from_millis(500),
        Duration::from_millis(250),
        "round trip of a delayed request",
    );
}

#[test]
fn error_garbles_responses_after_the_warmup() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--behavior",
        "100:error",
        "--behavior-error-warmup",
        "3",
        "--backend",
        &echo.arg(),
    ]);
    let mut client = proxy.connect();
    within(Duration::from_secs(20), "five exchanges", move || {
        for i in 0..5u8 {
            let msg: Vec<u8> = (0..100).map(|j| b'a' + (i + j) % 26).collect();
            client.write_all(&msg).unwrap();
            if i < 3 {
                let got = read_exactly(&mut client, msg.len()).expect("intact echo");
                assert_eq!(got, msg, "exchange {i} during the warmup");
            } else {
                let got = read_exactly(&mut client, 1000).expect("1000 garbled bytes");
                assert_ne!(&got[..100], &msg[..], "exchange {i} came back intact");
                assert!(
                    got.windows(8).all(|w| w != &msg[..8]),
                    "exchange {i}: the original bytes are still there"
                );
            }
        }
        // Nothing more than 1000 bytes per call.
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(read_once(&mut client), ReadOutcome::TimedOut);
    });
}

#[test]
fn error_inject_inserts_100_bytes_in_the_middle() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--behavior",
        "100:error",
        "--behavior-error-inject",
        "--backend",
        &echo.arg(),
    ]);
    let mut client = proxy.connect();
    within(Duration::from_secs(20), "injected response", move || {
        let msg: Vec<u8> = (0..200).map(|j| b'A' + (j % 26) as u8).collect();
        client.write_all(&msg).unwrap();
        let got = read_exactly(&mut client, 300).expect("300 bytes");
        assert_eq!(&got[..100], &msg[..100], "start of the response");
        assert_eq!(&got[200..], &msg[100..], "end of the response");
        assert_ne!(&got[100..200], &msg[..100], "no noise in the middle");
    });
}

#[test]
fn hang_answers_nothing_keeps_the_client_and_frees_its_slot() {
    let (tx, backend_got) = mpsc::channel();
    let backend = Backend::recording(tx, Some(b"answer"));
    // One connection at a time: a second client is served only once the first is gone.
    let mut proxy = ProxyProcess::start(&[
        "--behavior",
        "100:hang",
        "--max-connections",
        "1",
        "--backend",
        &backend.arg(),
    ]);
    let mut client = proxy.connect();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let (outcome, took, client) = within(Duration::from_secs(10), "hung client", move || {
        client.write_all(b"hello?").unwrap();
        let t = Instant::now();
        let outcome = read_once(&mut client);
        let took = t.elapsed();
        // The connection is still open: writing more is accepted.
        client.write_all(b"anyone?").unwrap();
        (outcome, took, client)
    });
    assert_eq!(
        outcome,
        ReadOutcome::TimedOut,
        "a hung client got an answer"
    );
    assert!(
        took >= Duration::from_millis(900),
        "read ended after {took:?}"
    );
    let first = backend_got
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend connection was not dropped");
    assert!(first.is_empty(), "the backend received {first:?}");
    drop(client);
    // The slot is free again: a second client gets a backend connection (and hangs too).
    let mut second = proxy.connect();
    second
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let outcome = within(Duration::from_secs(10), "second hung client", move || {
        second.write_all(b"hello again").unwrap();
        read_once(&mut second)
    });
    assert_eq!(outcome, ReadOutcome::TimedOut);
    let again = backend_got
        .recv_timeout(Duration::from_secs(5))
        .expect("the second client was never served");
    assert!(again.is_empty(), "the backend received {again:?}");
    assert!(proxy.is_running());
}

#[test]
fn blackout_closes_the_client_and_sends_nothing_to_the_backend() {
    let (tx, backend_got) = mpsc::channel();
    let backend = Backend::recording(tx, Some(b"answer"));
    let proxy = ProxyProcess::start(&["--behavior", "100:blackout", "--backend", &backend.arg()]);
    let mut client = proxy.connect();
    let outcome = within(Duration::from_secs(10), "blackout", move || {
        client.write_all(b"hello?").unwrap();
        read_once(&mut client)
    });
    assert!(
        outcome.is_closed(),
        "expected EOF or reset, got {outcome:?}"
    );
    let got = backend_got
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend connection was not closed");
    assert!(got.is_empty(), "the backend received {got:?}");
}

#[test]
fn abort_forwards_the_request_then_closes_without_a_response() {
    let (tx, backend_got) = mpsc::channel();
    // The backend answers as soon as the request arrives; that answer must not get through.
    let backend = Backend::recording(tx, Some(b"answer"));
    let proxy = ProxyProcess::start(&["--behavior", "100:abort", "--backend", &backend.arg()]);
    for _ in 0..5 {
        let mut client = proxy.connect();
        let outcome = within(Duration::from_secs(10), "abort", move || {
            client.write_all(b"the request").unwrap();
            read_once(&mut client)
        });
        assert!(
            outcome.is_closed(),
            "expected EOF or reset without data, got {outcome:?}"
        );
        let got = backend_got
            .recv_timeout(Duration::from_secs(5))
            .expect("the backend connection was not closed");
        assert_eq!(got, b"the request");
    }
}

#[test]
fn data_held_by_a_delay_is_not_idle() {
    // The request waits 1.5 s in the proxy, past the 1 s idle timeout: the connection is
    // busy, not idle, and the answer arrives.
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--timeout",
        "1",
        "--behavior",
        "100:delay",
        "--behavior-delay-sleep",
        "1.5",
        "--backend",
        &echo.arg(),
    ]);
    let mut client = proxy.connect();
    let took = within(Duration::from_secs(10), "delayed exchange", move || {
        let t = Instant::now();
        assert_eq!(exchange(&mut client, b"slow ping"), b"slow ping");
        t.elapsed()
    });
    assert_delta(
        took,
        Duration::from_millis(1500),
        Duration::from_millis(400),
        "round trip through a 1.5 s delay",
    );
}

#[test]
fn sigterm_with_delayed_data_in_flight_exits_within_one_second() {
    let echo = Backend::echo();
    let mut proxy = ProxyProcess::start(&[
        "--log-level",
        "debug",
        "--behavior",
        "100:delay",
        "--behavior-delay-sleep",
        "10",
        "--backend",
        &echo.arg(),
    ]);
    let mut client = proxy.connect();
    client.write_all(b"ping").unwrap();
    // The proxy logs the call once the request sits in its delay line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("delay 10s") {
        assert!(
            Instant::now() < deadline,
            "no delayed call logged:\n{}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
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
    assert!(outcome.is_closed(), "got {outcome:?}");
}

/// Sets the live mix through the control API at `http`.
fn set_mix(http: std::net::SocketAddr, mix: &str) {
    let (status, answer) = api(
        http,
        "PUT",
        "/behavior",
        &format!(r#"{{"name": "{mix}"}}"#),
        "",
    );
    assert_eq!(status, 200, "{answer}");
}

/// A proxy with the control API whose mix is `100:delay` of 1 s, and the API's address.
fn delaying_proxy_with_api(backend: &Backend) -> (ProxyProcess, std::net::SocketAddr) {
    let proxy = ProxyProcess::start(&[
        "--log-level",
        "debug",
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--behavior",
        "100:delay",
        "--behavior-delay-sleep",
        "1",
        "--backend",
        &backend.arg(),
    ]);
    let http = proxy.http_addr();
    (proxy, http)
}

/// Sends "first|" through `proxy` and waits until it sits in the delay line.
fn first_chunk_delayed(proxy: &ProxyProcess) -> std::net::TcpStream {
    let mut client = proxy.connect();
    client.write_all(b"first|").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("delay 1s") {
        assert!(
            Instant::now() < deadline,
            "the first chunk was never delayed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    client
}

#[test]
fn an_abort_waits_for_the_data_a_delay_holds_ahead_of_it() {
    // "first|" waits 1 s in the delay line when the mix turns to abort: it still reaches the
    // backend, ahead of the chunk that aborts, and only then is the connection cut.
    let (tx, rx) = mpsc::channel();
    let backend = Backend::recording(tx, None);
    let (proxy, http) = delaying_proxy_with_api(&backend);
    let mut client = first_chunk_delayed(&proxy);
    set_mix(http, "100:abort");
    client.write_all(b"second").unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend connection was not closed");
    assert_eq!(String::from_utf8_lossy(&got), "first|second");
    let outcome = within(Duration::from_secs(10), "client closed", move || {
        read_once(&mut client)
    });
    assert!(outcome.is_closed(), "{outcome:?}");
}

#[test]
fn a_hang_waits_for_the_data_a_delay_holds_ahead_of_it() {
    // "first|" waits in the delay line when the mix turns to hang: it reaches the backend,
    // which is then dropped, and the client is kept waiting, not closed.
    let (tx, rx) = mpsc::channel();
    let backend = Backend::recording(tx, None);
    let (proxy, http) = delaying_proxy_with_api(&backend);
    let mut client = first_chunk_delayed(&proxy);
    set_mix(http, "100:hang");
    client.write_all(b"second").unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend connection was not closed");
    assert_eq!(String::from_utf8_lossy(&got), "first|");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let outcome = within(Duration::from_secs(10), "client kept waiting", move || {
        read_once(&mut client)
    });
    assert_eq!(outcome, ReadOutcome::TimedOut);
}
