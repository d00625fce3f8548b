//! The faults Toxiproxy users rely on, on a tcp stream as a client sees them: latency,
//! bandwidth, slicer, limit_data, reset_peer, slow_close and timeout, each on its stream, and
//! their bad values refused.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// A backend that answers the first bytes of each connection with `n` bytes, then reads
/// until the client leaves.
fn sender(n: usize) -> Backend {
    Backend::start(move |mut s| {
        let mut buf = [0u8; 4096];
        if matches!(s.read(&mut buf), Ok(k) if k > 0) {
            let _ = s.write_all(&random_bytes(1, n));
        }
        while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
    })
}

fn proxy(backend: &Backend, args: &[&str]) -> ProxyProcess {
    let backend = backend.arg();
    let mut all = vec!["--backend", backend.as_str()];
    all.extend_from_slice(args);
    ProxyProcess::start(&all)
}

/// Sends one byte, then reads what comes back: the times (since the byte went) and sizes of
/// each read, until `total` bytes came or the stream ended.
fn reads_after_a_byte(client: TcpStream, total: usize) -> Vec<(Duration, usize)> {
    within(Duration::from_secs(30), "reading the answer", move || {
        let mut client = client;
        client.write_all(b"?").unwrap();
        let sent = Instant::now();
        let mut reads = Vec::new();
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 20];
        while got < total {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    reads.push((sent.elapsed(), n));
                }
                Err(e) => panic!("read failed after {got} bytes: {e}"),
            }
        }
        reads
    })
}

#[test]
fn latency_delays_an_echo_and_a_burst_once() {
    let echo = Backend::echo();
    let p = proxy(
        &echo,
        &["--behavior", "latency", "--behavior-latency-latency", "300"],
    );
    let mut client = p.connect();
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"ping"), b"ping");
    let took = t.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(1300)).contains(&took),
        "an echo with latency 300 took {took:?}"
    );
    // 2 MB in many chunks: delayed once (per chunk would take minutes), in either stream.
    let big = sender(2_000_000);
    for stream in ["downstream", "upstream"] {
        let p = proxy(
            &big,
            &[
                "--behavior",
                "latency",
                "--behavior-latency-latency",
                "300",
                "--behavior-latency-stream",
                stream,
            ],
        );
        let reads = reads_after_a_byte(p.connect(), 2_000_000);
        let total: usize = reads.iter().map(|r| r.1).sum();
        assert_eq!(total, 2_000_000, "{stream}");
        let (first, last) = (reads[0].0, reads[reads.len() - 1].0);
        assert!(
            first >= Duration::from_millis(300),
            "{stream}: first byte at {first:?}"
        );
        assert!(
            last < Duration::from_secs(3),
            "{stream}: 2 MB took {last:?}: delayed per chunk?"
        );
    }
}

#[test]
fn bandwidth_paces_400_kb_over_two_seconds_without_a_silent_second() {
    let big = sender(400_000);
    let p = proxy(
        &big,
        &[
            "--behavior",
            "bandwidth",
            "--behavior-bandwidth-rate",
            "200",
        ],
    );
    let reads = reads_after_a_byte(p.connect(), 400_000);
    let total: usize = reads.iter().map(|r| r.1).sum();
    assert_eq!(total, 400_000);
    let took = reads[reads.len() - 1].0;
    assert_delta(
        took,
        Duration::from_secs(2),
        Duration::from_millis(500),
        "400 kB at 200 KB/s",
    );
    let longest_gap = reads
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap < Duration::from_millis(600),
        "data stopped for {longest_gap:?}"
    );
}

#[test]
fn slicer_writes_small_pieces_apart_and_the_seed_replays_their_sizes() {
    let big = sender(100);
    let p = proxy(
        &big,
        &[
            "--behavior",
            "slicer",
            "--behavior-slicer-average-size",
            "10",
            "--behavior-slicer-size-variation",
            "0",
            "--behavior-slicer-delay",
            "20000",
        ],
    );
    let reads = reads_after_a_byte(p.connect(), 100);
    assert!(reads.iter().all(|r| r.1 <= 10), "pieces: {reads:?}");
    assert_eq!(reads.iter().map(|r| r.1).sum::<usize>(), 100);
    let span = reads[reads.len() - 1].0 - reads[0].0;
    // Ten slices, nine gaps of 20 ms.
    assert!(
        (Duration::from_millis(150)..Duration::from_millis(1500)).contains(&span),
        "ten slices 20 ms apart took {span:?}: {reads:?}"
    );
    let sizes = |seed: &str| -> Vec<usize> {
        let p = proxy(
            &big,
            &[
                "--seed",
                seed,
                "--behavior",
                "slicer",
                "--behavior-slicer-average-size",
                "10",
                "--behavior-slicer-size-variation",
                "6",
                "--behavior-slicer-delay",
                "30000",
            ],
        );
        reads_after_a_byte(p.connect(), 100)
            .iter()
            .map(|r| r.1)
            .collect()
    };
    let first = sizes("7");
    assert!(first.iter().any(|&n| n != 10), "no variation: {first:?}");
    assert_eq!(first, sizes("7"), "the same seed cut other slices");
}

#[test]
fn limit_data_lets_exactly_its_bytes_through_in_its_stream() {
    let big = sender(5000);
    let p = proxy(
        &big,
        &[
            "--behavior",
            "limit_data",
            "--behavior-limit-data-bytes",
            "1000",
        ],
    );
    let mut client = p.connect();
    client.write_all(b"?").unwrap();
    let got = within(Duration::from_secs(10), "the cut answer", move || {
        read_to_end(&mut client)
    });
    assert_eq!(got.expect("end of stream, not an error").len(), 1000);
    // Upstream: the backend receives the first 1000 bytes of what the client sends.
    let (tx, rx) = mpsc::channel();
    let recording = Backend::recording(tx, None);
    let p = proxy(
        &recording,
        &[
            "--behavior",
            "limit_data",
            "--behavior-limit-data-bytes",
            "1000",
            "--behavior-limit-data-stream",
            "upstream",
        ],
    );
    let mut client = p.connect();
    let sent = random_bytes(3, 5000);
    let _ = client.write_all(&sent);
    let received = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend's input");
    assert_eq!(received, sent[..1000]);
    assert!(
        read_once(&mut client).is_closed(),
        "the client is closed too"
    );
}

#[test]
fn reset_peer_resets_the_client_after_its_timeout() {
    let echo = Backend::echo();
    let p = proxy(
        &echo,
        &[
            "--behavior",
            "reset_peer",
            "--behavior-reset-peer-timeout",
            "200",
        ],
    );
    let mut client = p.connect();
    client.write_all(b"hello").unwrap();
    let sent = Instant::now();
    let outcome = within(Duration::from_secs(10), "the reset", move || {
        read_once(&mut client)
    });
    let took = sent.elapsed();
    assert_eq!(
        outcome,
        ReadOutcome::Reset,
        "the echo was dropped and the client reset"
    );
    assert!(
        (Duration::from_millis(180)..Duration::from_millis(1200)).contains(&took),
        "reset after {took:?}"
    );
    // Its alias, at once.
    let p = proxy(&echo, &["--behavior", "reset"]);
    let mut client = p.connect();
    client.write_all(b"hello").unwrap();
    let outcome = within(Duration::from_secs(10), "the reset", move || {
        read_once(&mut client)
    });
    assert_eq!(outcome, ReadOutcome::Reset);
}

#[test]
fn slow_close_delivers_the_data_at_once_and_the_end_late() {
    let echo = Backend::echo();
    let p = proxy(
        &echo,
        &[
            "--behavior",
            "slow_close",
            "--behavior-slow-close-delay",
            "500",
        ],
    );
    let mut client = p.connect();
    client.write_all(b"bye").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let sent = Instant::now();
    let (data_at, end_at) = within(Duration::from_secs(10), "data then end", move || {
        let data = read_exactly(&mut client, 3).expect("the echo");
        assert_eq!(data, b"bye");
        let data_at = sent.elapsed();
        assert_eq!(read_once(&mut client), ReadOutcome::Eof);
        (data_at, sent.elapsed())
    });
    assert!(
        data_at < Duration::from_millis(300),
        "the data took {data_at:?}"
    );
    assert!(
        (Duration::from_millis(480)..Duration::from_millis(1500)).contains(&end_at),
        "the end came after {end_at:?}"
    );
}

#[test]
fn timeout_drops_the_data_and_closes_later_or_when_the_client_leaves() {
    let echo = Backend::echo();
    let p = proxy(
        &echo,
        &["--behavior", "timeout", "--behavior-timeout-timeout", "500"],
    );
    let mut client = p.connect();
    client.write_all(b"anyone?").unwrap();
    let sent = Instant::now();
    let outcome = within(Duration::from_secs(10), "the close", move || {
        read_once(&mut client)
    });
    let took = sent.elapsed();
    assert!(
        outcome.is_closed(),
        "nothing arrives, then the close: {outcome:?}"
    );
    assert!(
        (Duration::from_millis(480)..Duration::from_millis(1500)).contains(&took),
        "closed after {took:?}"
    );
    // 0: open until the client leaves; then the backend connection is freed too.
    let (tx, rx) = mpsc::channel();
    let recording = Backend::recording(tx, None);
    let p = proxy(
        &recording,
        &[
            "--behavior",
            "timeout",
            "--behavior-timeout-stream",
            "upstream",
        ],
    );
    let mut client = p.connect();
    client
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    client.write_all(b"anyone?").unwrap();
    assert_eq!(
        read_once(&mut client),
        ReadOutcome::TimedOut,
        "still open, silent"
    );
    drop(client);
    let received = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend freed");
    assert!(
        received.is_empty(),
        "the upstream data was dropped: {received:?}"
    );
}

#[test]
fn bad_values_get_one_line_and_exit_2() {
    for (args, needle) in [
        (
            &["--behavior-bandwidth-rate", "0"][..],
            "rate must be at least 1",
        ),
        (
            &["--behavior-limit-data-bytes", "-1"][..],
            "bytes must not be negative",
        ),
        (
            &["--behavior-latency-latency", "1.5"][..],
            "'1.5' is not an integer",
        ),
        (
            &["--behavior-timeout-stream", "sideways"][..],
            "stream must be upstream, downstream or both",
        ),
        (
            &["--behavior-slicer-delay", "-3"][..],
            "delay must not be negative",
        ),
    ] {
        let out = run_vaurien(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn the_api_refuses_bad_values_naming_the_option_and_sets_good_ones() {
    let echo = Backend::echo();
    let p = proxy(
        &echo,
        &["--http", "--http-host", "127.0.0.1", "--http-port", "0"],
    );
    let http = p.http_addr();
    for (body, key) in [
        (r#"{"name": "bandwidth", "rate": 0}"#, "rate"),
        (r#"{"name": "latency", "latency": -5}"#, "latency"),
        (r#"{"name": "slow_close", "stream": "sideways"}"#, "stream"),
    ] {
        let (status, answer) = api(http, "PUT", "/behavior", body, "");
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(key), "{body}: {answer}");
    }
    set_behavior(http, r#"{"name": "latency", "latency": 300}"#);
    let mut client = p.connect();
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"ping"), b"ping");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

/// An INI file in a fresh directory, removed when the test's process leaves.
fn ini_file(name: &str, text: &str) -> String {
    let dir = fresh_dir("vaurien-toxics").expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn a_toxic_from_the_config_file_acts_after_the_mix() {
    let echo = Backend::echo();
    let ini = ini_file(
        "toxic.ini",
        "[vaurien]\nbehavior = dummy\n\n[toxic:vaurien:slow]\ntype = latency\nstream = upstream\nlatency = 300\n",
    );
    let p = proxy(&echo, &["--config", &ini]);
    let mut client = p.connect();
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"ping"), b"ping");
    let took = t.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(1300)).contains(&took),
        "an echo through a 300 ms latency toxic took {took:?}"
    );
    // Mistakes name the file, the section and the key.
    for (text, needle) in [
        (
            "[toxic:vaurien:x]\ntype = nope\n",
            "[toxic:vaurien:x] type: invalid toxic type 'nope'",
        ),
        (
            "[toxic:vaurien:x]\ntype = latency\nlatncy = 3\n",
            "[toxic:vaurien:x] latncy: unknown key",
        ),
        (
            "[toxic:vaurien:x]\ntype = latency\nstream = sideways\n",
            "stream: must be upstream, downstream or both",
        ),
        (
            "[toxic:vaurien:x]\ntype = latency\ntoxicity = 2\n",
            "toxicity: must be between 0 and 1",
        ),
        ("[toxic:other:x]\ntype = latency\n", "unknown proxy 'other'"),
    ] {
        let out = run_vaurien(&["--config", &ini_file("bad.ini", text)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
}

#[test]
fn toxicity_is_drawn_once_per_connection_and_the_seed_replays_the_draws() {
    const CONNECTIONS: usize = 60;
    let echo = Backend::echo();
    let ini = ini_file(
        "half.ini",
        "[toxic:vaurien:half]\ntype = latency\nlatency = 50\ntoxicity = 0.5\n",
    );
    let slow_ones = || -> Vec<usize> {
        let p = proxy(&echo, &["--config", &ini, "--seed", "7"]);
        (0..CONNECTIONS)
            .filter(|_| {
                let mut client = p.connect();
                let t = Instant::now();
                assert_eq!(exchange(&mut client, b"a"), b"a");
                let slow = t.elapsed() >= Duration::from_millis(50);
                // The draw holds for the connection: its next call is just as slow.
                let t = Instant::now();
                assert_eq!(exchange(&mut client, b"b"), b"b");
                assert_eq!(t.elapsed() >= Duration::from_millis(50), slow);
                slow
            })
            .collect()
    };
    let first = slow_ones();
    eprintln!(
        "seed 7: {} of {CONNECTIONS} connections drew the toxic",
        first.len()
    );
    assert!(
        (CONNECTIONS / 4..=3 * CONNECTIONS / 4).contains(&first.len()),
        "{} of {CONNECTIONS} connections drew a toxicity 0.5 toxic",
        first.len()
    );
    assert_eq!(first, slow_ones(), "the same seed drew other connections");
}
