//! The framed-protocol driver, through a minimal line protocol registered with the public
//! library API: each request is one line, each response one line.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vaurien::net::HostPort;
use vaurien::protocol::{
    BackendReuse, ErrorReply, Framing, KeepAlive, Protocol, ProtocolSpec, Request, Response,
    TcpOptions, TCP_OPTIONS,
};
use vaurien::{Registry, Vaurien};

use crate::support::{within, Backend};

#[derive(Debug)]
struct Lines(TcpOptions);

struct LineSession;

fn read_line(r: &mut dyn BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let n = r.take(1024).read_until(b'\n', out)?;
    if n > 0 && !out.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or cut",
        ));
    }
    Ok(n)
}

impl Framing for LineSession {
    fn read_request(
        &mut self,
        client: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Option<Request>> {
        if read_line(client, head)? == 0 {
            return Ok(None);
        }
        let quiet = head.starts_with(b"quiet");
        Ok(Some(Request {
            name: "line".into(),
            expects_response: !quiet,
            close: head.starts_with(b"bye"),
            ..Request::default()
        }))
    }
    fn read_response(
        &mut self,
        _req: &Request,
        backend: &mut dyn BufRead,
        head: &mut Vec<u8>,
    ) -> io::Result<Response> {
        if read_line(backend, head)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "backend closed",
            ));
        }
        Ok(Response::default())
    }
    /// Replies come back in order and a line reads the same whatever came before.
    fn pipelines(&self) -> bool {
        true
    }
    fn error_reply(&mut self, _req: &Request, _rng: &mut fastrand::Rng) -> ErrorReply {
        ErrorReply {
            bytes: b"ERR chaos\n".to_vec(),
            close: false,
        }
    }
}

impl Protocol for Lines {
    fn name(&self) -> &str {
        "lines"
    }
    fn tcp_options(&self) -> &TcpOptions {
        &self.0
    }
    fn framing(&self, _backend: &HostPort) -> Option<Box<dyn Framing>> {
        Some(Box::new(LineSession))
    }
}

fn registry() -> Registry {
    Registry::builtin().with_protocol(ProtocolSpec {
        name: "lines",
        summary: "one line each way",
        options: TCP_OPTIONS,
        build: |v| {
            Ok(Arc::new(Lines(TcpOptions::from_values(
                "lines",
                v,
                KeepAlive::Optional,
                BackendReuse::Safe,
            )?)))
        },
    })
}

/// A line echo backend that counts the connections it accepted.
fn line_backend() -> (Backend, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let backend = Backend::start(move |s| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut w = s.try_clone().unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if line.starts_with("quiet") {
                continue;
            }
            if w.write_all(format!("echo {line}\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    (backend, accepted)
}

fn start(backend: &Backend, extra: &[&str]) -> Vaurien {
    let mut args = vec![
        "--proxy",
        "127.0.0.1:0",
        "--protocol",
        "lines",
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ];
    let b = backend.arg();
    args.extend(["--backend", b.as_str()]);
    args.extend_from_slice(extra);
    Vaurien::start(&vaurien::cli::config_from_args(&args, registry()).unwrap()).unwrap()
}

fn connect(proxy: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (s.try_clone().unwrap(), BufReader::new(s))
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).map(|_| l).unwrap_or_default()
}

#[test]
fn calls_pipeline_in_order_and_error_answers_in_the_protocol() {
    let (backend, _) = line_backend();
    let proxy = start(&backend, &[]);
    within(Duration::from_secs(20), "line calls", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(b"one\ntwo\nquiet\nthree\n").unwrap();
        assert_eq!(line(&mut r), "echo one\n");
        assert_eq!(line(&mut r), "echo two\n");
        assert_eq!(
            line(&mut r),
            "echo three\n",
            "a request without response is forwarded, not awaited"
        );
        let client = proxy.client().unwrap();
        {
            let _e = client.with_behavior("error", &Default::default()).unwrap();
            w.write_all(b"four\n").unwrap();
            assert_eq!(line(&mut r), "ERR chaos\n");
        }
        w.write_all(b"five\n").unwrap();
        assert_eq!(
            line(&mut r),
            "echo five\n",
            "the same connection goes on after the error"
        );
        let stats = client.stats().unwrap();
        assert_eq!(stats["calls"]["error"], 1);
    });
}

#[test]
fn a_transparent_mix_forwards_a_pipeline_in_one_batch() {
    // The backend answers nothing until it holds the whole pipeline: a proxy that waited for
    // each reply before forwarding the next request would wait for ever.
    const PIPELINE: &[u8] = b"a\nb\nc\nd\ne\n";
    let backend = Backend::start(|s| {
        let mut w = s.try_clone().unwrap();
        let lines: Vec<String> = BufReader::new(s)
            .lines()
            .take(5)
            .map_while(Result::ok)
            .collect();
        for l in lines {
            let _ = w.write_all(format!("echo {l}\n").as_bytes());
        }
    });
    let proxy = start(&backend, &[]);
    within(Duration::from_secs(20), "a batched pipeline", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(PIPELINE).unwrap();
        for l in ["a", "b", "c", "d", "e"] {
            assert_eq!(line(&mut r), format!("echo {l}\n"), "reply to {l}");
        }
    });
}

#[test]
fn delay_before_and_after_add_their_latency_once_per_call() {
    let (backend, _) = line_backend();
    for flag in [
        "--behavior-delay-before=true",
        "--behavior-delay-before=false",
    ] {
        let proxy = start(
            &backend,
            &["--behavior", "delay", "--behavior-delay-sleep", "0.3", flag],
        );
        let took = within(Duration::from_secs(20), "delayed calls", move || {
            let (mut w, mut r) = connect(proxy.proxy_addr());
            let t = Instant::now();
            for i in 0..3 {
                w.write_all(format!("n{i}\n").as_bytes()).unwrap();
                assert_eq!(line(&mut r), format!("echo n{i}\n"));
            }
            t.elapsed()
        });
        crate::support::assert_delta(
            took,
            Duration::from_millis(900),
            Duration::from_millis(300),
            flag,
        );
    }
}

#[test]
fn hang_blackout_and_abort_end_calls_as_documented() {
    let (backend, _) = line_backend();
    let hang = start(&backend, &["--behavior", "hang"]);
    within(Duration::from_secs(20), "hang", move || {
        let (mut w, mut r) = connect(hang.proxy_addr());
        w.write_all(b"x\n").unwrap();
        r.get_mut()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1];
        let err = r
            .read(&mut buf)
            .expect_err("hang answers nothing and keeps the connection open");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    });
    for behavior in ["blackout", "abort"] {
        let proxy = start(&backend, &["--behavior", behavior]);
        within(Duration::from_secs(20), behavior, move || {
            let (mut w, mut r) = connect(proxy.proxy_addr());
            w.write_all(b"x\n").unwrap();
            assert_eq!(line(&mut r), "", "{behavior}: closed without a response");
        });
    }
}

#[test]
fn a_hung_call_whose_client_half_closed_keeps_the_client_waiting() {
    let (backend, _) = line_backend();
    let proxy = start(&backend, &["--behavior", "hang"]);
    let stats = proxy.stats();
    within(Duration::from_secs(20), "half-closed hang", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(b"x\n").unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
        r.get_mut()
            .set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        let mut buf = [0u8; 1];
        let err = r
            .read(&mut buf)
            .expect_err("a half-close must not end the hang");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        // Held without its thread: parked, and closed when the proxy stops.
        assert_eq!(stats.connections_parked.load(Ordering::Relaxed), 1);
        proxy.stop();
        r.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 0, "closed when the proxy stops");
    });
}

#[test]
fn reuse_socket_returns_backend_connections_to_the_pool() {
    let (backend, accepted) = line_backend();
    let proxy = start(&backend, &["--protocol-lines-reuse-socket"]);
    let addr = proxy.proxy_addr();
    within(Duration::from_secs(20), "pooled calls", move || {
        for i in 0..5 {
            let (mut w, mut r) = connect(addr);
            w.write_all(format!("c{i}\n").as_bytes()).unwrap();
            assert_eq!(line(&mut r), format!("echo c{i}\n"));
            drop(w);
            drop(r);
            // The proxy returns the backend connection once it sees this client leave; the
            // next client is served either way.
        }
    });
    assert!(
        accepted.load(Ordering::SeqCst) < 5,
        "backend connections were reused: {} for 5 clients",
        accepted.load(Ordering::SeqCst)
    );
    let (other, other_accepted) = line_backend();
    let fresh = start(&other, &[]);
    let addr = fresh.proxy_addr();
    within(Duration::from_secs(20), "unpooled calls", move || {
        for i in 0..3 {
            let (mut w, mut r) = connect(addr);
            w.write_all(format!("c{i}\n").as_bytes()).unwrap();
            assert_eq!(line(&mut r), format!("echo c{i}\n"));
        }
    });
    assert_eq!(
        other_accepted.load(Ordering::SeqCst),
        3,
        "without reuse_socket every client gets its own backend connection"
    );
}

#[test]
fn a_request_the_module_cannot_frame_goes_through_for_the_backend_to_answer() {
    let (backend, _) = line_backend();
    let proxy = start(&backend, &[]);
    within(Duration::from_secs(20), "unframed", move || {
        // A line past the module's limit: forwarded whole, and the connection becomes a
        // tunnel in which the backend answers this line and the next ones.
        let (mut w, mut r) = connect(proxy.proxy_addr());
        let long = "x".repeat(5000);
        w.write_all(format!("{long}\nfine\n").as_bytes()).unwrap();
        assert_eq!(line(&mut r), format!("echo {long}\n"));
        assert_eq!(line(&mut r), "echo fine\n");
        w.write_all(b"still\n").unwrap();
        assert_eq!(line(&mut r), "echo still\n");
        // Other connections are framed as before.
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(b"fine\n").unwrap();
        assert_eq!(line(&mut r), "echo fine\n");
    });
}

#[test]
fn a_backend_that_closed_an_idle_connection_is_replaced() {
    // Each backend connection answers one line, then closes (a keep-alive timeout).
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let backend = Backend::start(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut line = String::new();
        if BufReader::new(s).read_line(&mut line).unwrap_or(0) > 0 {
            let _ = w.write_all(format!("echo {line}").as_bytes());
        }
        drop(w);
        let _ = closed_tx.lock().unwrap().send(());
    });
    let proxy = start(&backend, &[]);
    within(
        Duration::from_secs(20),
        "calls across backend closes",
        move || {
            let (mut w, mut r) = connect(proxy.proxy_addr());
            for i in 0..3 {
                w.write_all(format!("n{i}\n").as_bytes()).unwrap();
                assert_eq!(
                    line(&mut r),
                    format!("echo n{i}\n"),
                    "call {i} after the backend closed its connection"
                );
                closed_rx.recv().unwrap();
            }
        },
    );
}

#[test]
fn faults_act_on_a_calls_response_and_request() {
    let (backend, _) = line_backend();
    // limit_data: the stream's first 12 bytes ("echo first\n" and one more), then the end.
    let proxy = start(
        &backend,
        &[
            "--behavior",
            "limit_data",
            "--behavior-limit-data-bytes",
            "12",
        ],
    );
    within(Duration::from_secs(20), "limit_data", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(b"first\n").unwrap();
        assert_eq!(line(&mut r), "echo first\n");
        w.write_all(b"second\n").unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("the end, not an error");
        assert_eq!(rest, b"e", "cut at 12 bytes of responses");
    });
    // bandwidth at 1 KB/s: a 1000-byte response takes about 0.9 s (its first tenth goes at
    // once).
    let proxy = start(
        &backend,
        &["--behavior", "bandwidth", "--behavior-bandwidth-rate", "1"],
    );
    let took = within(Duration::from_secs(20), "bandwidth", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        r.get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let long = "x".repeat(994);
        let t = Instant::now();
        w.write_all(format!("{long}\n").as_bytes()).unwrap();
        assert_eq!(line(&mut r).len(), 1000);
        t.elapsed()
    });
    crate::support::assert_delta(
        took,
        Duration::from_millis(900),
        Duration::from_millis(400),
        "1000 bytes at 1 KB/s",
    );
    // reset_peer on the request: the client is reset, the backend never sees the call.
    let proxy = start(
        &backend,
        &[
            "--behavior",
            "reset_peer",
            "--behavior-reset-peer-timeout",
            "100",
            "--behavior-reset-peer-stream",
            "upstream",
        ],
    );
    within(Duration::from_secs(20), "reset_peer", move || {
        let (mut w, mut r) = connect(proxy.proxy_addr());
        w.write_all(b"x\n").unwrap();
        let err = r.read(&mut [0u8; 16]).expect_err("a reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    });
}
