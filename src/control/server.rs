//! The control API's server: its own accept loop and a thread per API connection, so that
//! no client can freeze, starve or kill it; tiny_http writes the answers.
//!
//! ```text
//! listener ─▶ accept loop (survives EMFILE: waits, logs once a second) ─▶ thread per connection
//!   connection: wait for a request (15 s idle) ─▶ read it whole within 10 s (the proxy's HTTP
//!   parser: heads bounded) ─▶ browser guard, token ─▶ body (at most 64 KiB) ─▶ route ─▶ answer
//! ```
//!
//! tiny_http's own server cannot be made to hold against such clients from outside: its
//! accept thread stops for good at the first accept error (out of file descriptors), its pool
//! serves a connection with no read timeout (an idle or stalled client holds a thread, and a
//! lost wake-up in the pool leaves a new connection unserved behind them), and it reads header
//! lines of any length. So the control API reads requests itself, with the request parser the
//! proxy uses for `--protocol http` (fuzzed), and keeps tiny_http's `Response` for the answers.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{HTTPVersion, Header, Method, Response};

use super::{error, route, Answer, ControlState, MAX_BODY};
use crate::error::Error;
use crate::net::HostPort;
use crate::protocol::http::HttpSession;
use crate::protocol::{Body, Framing};

/// How long an API connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a request may take to arrive whole, once its first byte is there.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing an answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// API connections served at once; past them a client gets a 503 at once.
pub const MAX_CONNECTIONS: usize = 128;
/// The longest wait between two accept attempts while out of file descriptors.
const EXHAUSTED_WAIT: Duration = Duration::from_millis(100);
/// Stack of a connection thread: requests are parsed into heap buffers.
const STACK: usize = 256 * 1024;

/// Open API connections, so that stopping can shut them down.
#[derive(Default)]
struct Open {
    streams: Mutex<HashMap<u64, Weak<TcpStream>>>,
    next: AtomicU64,
}

impl Open {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<TcpStream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the accept loop and the connection threads share.
struct Shared {
    state: ControlState,
    stopping: AtomicBool,
    open: Open,
    /// The address the API listens on: the browser guard checks `Host` only on loopback.
    listen: SocketAddr,
    /// The `--http-host` name, which a `Host` header may carry.
    host_name: String,
}

/// A running control API.
pub struct Control {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Control {
    /// Binds `addr` and serves the API until stopped.
    pub fn start(addr: &HostPort, state: ControlState) -> Result<Control, Error> {
        let listener = crate::net::listen(addr, 128)
            .map_err(|e| Error::Start(format!("cannot listen on {addr} (control API): {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Start(e.to_string()))?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            state,
            stopping: AtomicBool::new(false),
            open: Open::default(),
            listen: local,
            host_name: addr.host.clone(),
        });
        let (l, s) = (listener.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("vaurien-control".into())
            .spawn(move || accept_loop(&l, &s))
            .map_err(|e| Error::Start(format!("cannot start the control thread: {e}")))?;
        Ok(Control {
            shared,
            listener,
            thread: Some(thread),
            addr: local,
        })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, shuts every API connection down, and waits for the accept loop.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // On Linux, shutting a listening socket down wakes a blocked accept().
        let _ = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Both);
        let open: Vec<Arc<TcpStream>> = self
            .shared
            .open
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for stream in open {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut last_warning: Option<Instant> = None;
    let mut wait = Duration::from_millis(5);
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if crate::net::is_resource_exhaustion(&e) => {
                // The connection waits in the backlog until descriptors come back.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log::warn!("control: accept: {e}; retrying");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(EXHAUSTED_WAIT);
                continue;
            }
            Err(e) => {
                log::debug!("control: accept: {e}");
                continue;
            }
        };
        wait = Duration::from_millis(5);
        let stream = Arc::new(stream);
        let id = shared.open.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = shared.open.lock();
            open.retain(|_, s| s.strong_count() > 0);
            if open.len() >= MAX_CONNECTIONS {
                drop(open);
                refuse_busy(&stream);
                continue;
            }
            open.insert(id, Arc::downgrade(&stream));
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("vaurien-api".into())
            .stack_size(STACK)
            .spawn(move || {
                serve(&s, &stream, peer);
                s.open.lock().remove(&id);
            });
        if let Err(e) = spawned {
            log::warn!("control: cannot start a thread for {peer}: {e}");
            shared.open.lock().remove(&id);
        }
    }
}

/// Answers 503 to a client past [`MAX_CONNECTIONS`], without waiting for it.
fn refuse_busy(stream: &TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let answer = error(
        503,
        "url",
        "",
        format!("the control API serves {MAX_CONNECTIONS} connections at once; try again"),
    );
    let _ = write_answer(&mut &*stream, &answer, None, true, false);
}

/// Reads of a connection whose read timeout follows a deadline.
struct Timed<'a> {
    stream: &'a TcpStream,
    deadline: Option<Instant>,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        let mut s = self.stream;
        s.read(buf)
    }
}

/// A body, refused past `MAX_BODY`.
struct Bounded(Vec<u8>);

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_BODY {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "body too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serves one API connection: requests one after the other until it closes or idles.
fn serve(shared: &Shared, stream: &TcpStream, peer: SocketAddr) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::with_capacity(
        4096,
        Timed {
            stream,
            deadline: None,
        },
    );
    let mut session = HttpSession::new(None);
    loop {
        // Waiting for the next request: an idle connection closes after IDLE_TIMEOUT.
        reader.get_mut().deadline = Some(Instant::now() + IDLE_TIMEOUT);
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        reader.get_mut().deadline = Some(Instant::now() + REQUEST_TIMEOUT);
        let close = match one_request(shared, &mut reader, &mut session, stream, peer) {
            Ok(close) => close,
            Err(e) => {
                log::debug!("control: {peer}: {e}");
                true
            }
        };
        if close {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reads, checks and answers one request; `Ok(true)` when the connection is to close.
fn one_request(
    shared: &Shared,
    reader: &mut BufReader<Timed<'_>>,
    session: &mut HttpSession,
    stream: &TcpStream,
    peer: SocketAddr,
) -> io::Result<bool> {
    let mut head = Vec::new();
    let req = match session.read_request(reader, &mut head) {
        Ok(Some(req)) => req,
        Ok(None) => return Ok(true),
        Err(e) => {
            let answer = if crate::net::is_timeout(&e) {
                error(408, "body", "", "the request did not arrive in time")
            } else {
                error(400, "body", "", format!("not an HTTP request: {e}"))
            };
            write_answer(&mut &*stream, &answer, None, true, false)?;
            return Ok(true);
        }
    };
    let target = String::from_utf8_lossy(session.target()).into_owned();
    let path = target.split('?').next().unwrap_or("").to_string();
    let Ok(method) = Method::from_str(&req.name) else {
        let answer = error(400, "body", "", "not an HTTP method");
        write_answer(&mut &*stream, &answer, None, true, false)?;
        return Ok(true);
    };
    let head_only = method == Method::Head;
    let refused = guard(shared, session).or_else(|| authorize(shared, session));
    let mut body = Bounded(Vec::new());
    let (answer, close) = match refused {
        // The body is left unread: the connection closes after the answer.
        Some(answer) => (answer, true),
        None => match req.body {
            Body::Length(n) if n > MAX_BODY as u64 => (too_large(), true),
            _ => {
                if !req.early_reply.is_empty() {
                    (&*stream).write_all(&req.early_reply)?;
                }
                match session.copy_body(req.body, reader, &mut body) {
                    Ok(())
                        if path.trim_end_matches('/') == "/metrics"
                            && matches!(method, Method::Get | Method::Head) =>
                    {
                        let text = super::metrics::render(&shared.state);
                        let r = Response::from_string(text).with_status_code(200);
                        let r =
                            with_headers(r, Some(super::metrics::CONTENT_TYPE), None, req.close);
                        write_response(&mut &*stream, r, head_only)?;
                        return Ok(req.close);
                    }
                    Ok(()) => (route(&shared.state, &method, &target, &body.0), req.close),
                    Err(e) if e.kind() == io::ErrorKind::OutOfMemory => (too_large(), true),
                    Err(e) if crate::net::is_timeout(&e) => (
                        error(408, "body", "", "the body did not arrive in time"),
                        true,
                    ),
                    Err(e) => (
                        error(400, "body", "", format!("cannot read the body: {e}")),
                        true,
                    ),
                }
            }
        },
    };
    // A refusal before the route (the guard, the token, a body too large or too slow) on
    // one of Toxiproxy's paths is in Toxiproxy's shape, which its clients decode.
    let answer = match super::toxiproxy::owns(path.trim_end_matches('/')) {
        true => super::toxiproxy::in_its_shape(answer),
        false => answer,
    };
    if answer.status >= 400 {
        log::info!(
            "control: {peer} {method} {path} -> {} {}",
            answer.status,
            answer.body
        );
    } else if method != Method::Get {
        log::info!("control: {peer} {method} {path} -> {}", answer.status);
    }
    let allow = (answer.status == 405).then(|| {
        let path = path.trim_end_matches('/');
        if super::toxiproxy::owns(path) {
            super::toxiproxy::allowed(path)
        } else if matches!(path, "/behaviors" | "/stats" | "/metrics") {
            "GET"
        } else {
            "GET, PUT"
        }
    });
    write_answer(&mut &*stream, &answer, allow, close, head_only)?;
    Ok(close)
}

fn too_large() -> Answer {
    error(
        413,
        "body",
        "",
        format!("the body is larger than {MAX_BODY} bytes"),
    )
}

/// Writes `answer` as JSON (`Allow` for a 405; `Connection: close` when closing).
fn write_answer(
    to: &mut dyn Write,
    answer: &Answer,
    allow: Option<&str>,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let body = match answer.status {
        204 => String::new(),
        _ => answer.body.to_string(),
    };
    let response = Response::from_string(body).with_status_code(answer.status);
    let content_type = (answer.status != 204).then_some("application/json");
    write_response(
        to,
        with_headers(response, content_type, allow, close),
        head_only,
    )
}

/// `response` with its content type, a request id, `Allow` and `Connection: close` as given.
fn with_headers(
    mut response: Response<io::Cursor<Vec<u8>>>,
    content_type: Option<&str>,
    allow: Option<&str>,
    close: bool,
) -> Response<io::Cursor<Vec<u8>>> {
    // A request id on every answer, as Toxiproxy's clients may log it.
    static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut add = |name: &str, value: &str| {
        if let Ok(h) = Header::from_bytes(name, value) {
            response.add_header(h);
        }
    };
    if let Some(t) = content_type {
        add("Content-Type", t);
    }
    add("X-Toxiproxy-Request-Id", &format!("{id:016x}"));
    if let Some(methods) = allow {
        add("Allow", methods);
    }
    if close {
        add("Connection", "close");
    }
    response
}

/// Writes `response` in one write.
fn write_response(
    to: &mut dyn Write,
    response: Response<io::Cursor<Vec<u8>>>,
    head_only: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(512);
    response.raw_print(&mut out, HTTPVersion(1, 1), &[], head_only, None)?;
    to.write_all(&out)
}

/// The one value of header `name`; `Err` when it is given twice.
fn single<'a>(session: &'a HttpSession, name: &'a str) -> Result<Option<&'a [u8]>, ()> {
    let mut values = session.header_values(name);
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// The host of a `Host` value (`name`, `name:port`, `[v6]:port`), lower-cased.
fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

/// Whether a `Host` may name this API listening on loopback: an IP address, `localhost`
/// (or a name under it, which resolves to loopback only), or the `--http-host` name. Any
/// other name is how a DNS-rebinding page reaches a loopback server from a browser.
fn loopback_name(host: &str, configured: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || host.eq_ignore_ascii_case(configured)
}

/// The browser guard: a `Host` that names another host while the API listens on loopback
/// (DNS rebinding), or an `Origin` that is not the API's own (a page of another site), is
/// refused with 403. Clients that are not browsers send no `Origin`.
fn guard(shared: &Shared, session: &HttpSession) -> Option<Answer> {
    let refuse = |name: &str, why: String| Some(error(403, "header", name, why));
    let Ok(host) = single(session, "host") else {
        return Some(error(400, "header", "Host", "more than one Host header"));
    };
    let host = host.map(|h| String::from_utf8_lossy(h).trim().to_string());
    if shared.listen.ip().is_loopback() {
        if let Some(h) = &host {
            if !loopback_name(&host_of(h), &shared.host_name) {
                return refuse(
                    "Host",
                    format!("Host '{h}' does not name this API, which listens on loopback"),
                );
            }
        }
    }
    let Ok(origin) = single(session, "origin") else {
        return refuse("Origin", "more than one Origin header".into());
    };
    if let Some(origin) = origin {
        let origin = String::from_utf8_lossy(origin).trim().to_string();
        let own = host
            .as_deref()
            .and_then(|h| {
                origin
                    .strip_prefix("http://")
                    .map(|o| o.eq_ignore_ascii_case(h))
            })
            .unwrap_or(false);
        if !own {
            return refuse(
                "Origin",
                format!("requests from the page of another origin ('{origin}') are refused"),
            );
        }
    }
    None
}

/// Compares in a time that does not depend on where the two differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// With `--http-token`, every request needs `Authorization: Bearer TOKEN` (the scheme in any
/// case, the token compared in constant time).
fn authorize(shared: &Shared, session: &HttpSession) -> Option<Answer> {
    let token = shared.state.token.as_ref()?;
    let given = session.header_values("authorization").any(|value| {
        let value = value.trim_ascii();
        let (scheme, rest) = value.split_at(value.len().min(6));
        scheme.eq_ignore_ascii_case(b"bearer")
            && rest.first().is_some_and(|b| *b == b' ')
            && same_secret(rest.trim_ascii(), token.as_bytes())
    });
    (!given).then(|| {
        error(
            401,
            "header",
            "Authorization",
            "a valid 'Authorization: Bearer TOKEN' header is required",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_for(head: &str) -> HttpSession {
        let mut s = HttpSession::new(None);
        let mut out = Vec::new();
        s.read_request(&mut head.as_bytes(), &mut out)
            .unwrap()
            .unwrap();
        s
    }

    fn shared(listen: &str, token: Option<&str>) -> Shared {
        let mut state = super::super::tests::state();
        state.token = token.map(str::to_string);
        Shared {
            state,
            stopping: AtomicBool::new(false),
            open: Open::default(),
            listen: listen.parse().unwrap(),
            host_name: "localhost".into(),
        }
    }

    fn status(shared: &Shared, head: &str) -> u16 {
        let s = session_for(head);
        guard(shared, &s)
            .or_else(|| authorize(shared, &s))
            .map_or(200, |a| a.status)
    }

    #[test]
    fn the_browser_guard_refuses_rebinding_hosts_and_foreign_origins() {
        let loopback = shared("127.0.0.1:8080", None);
        for (head, want) in [
            ("GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: api.localhost\r\n\r\n", 200),
            ("GET / HTTP/1.0\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n", 403),
            (
                "GET / HTTP/1.1\r\nHost: LOCALHOST.evil.example\r\n\r\n",
                403,
            ),
            ("GET / HTTP/1.1\r\nHost: localhost\r\nHost: x\r\n\r\n", 400),
            (
                "PUT / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:8080\r\n\r\n",
                200,
            ),
            (
                "PUT / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://evil.example\r\n\r\n",
                403,
            ),
            (
                "PUT / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: null\r\n\r\n",
                403,
            ),
            (
                "PUT / HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: https://localhost:8080\r\n\r\n",
                403,
            ),
        ] {
            assert_eq!(status(&loopback, head), want, "{head:?}");
        }
        // Listening on every interface, other names reach it; a foreign origin still not.
        let open = shared("0.0.0.0:8080", None);
        assert_eq!(
            status(&open, "GET / HTTP/1.1\r\nHost: proxy.lan:8080\r\n\r\n"),
            200
        );
        assert_eq!(
            status(
                &open,
                "GET / HTTP/1.1\r\nHost: proxy.lan:8080\r\nOrigin: http://evil.example\r\n\r\n"
            ),
            403
        );
    }

    #[test]
    fn the_token_takes_any_case_of_bearer_and_nothing_else() {
        let s = shared("127.0.0.1:8080", Some("s3cret"));
        for (auth, want) in [
            ("Bearer s3cret", 200),
            ("bearer s3cret", 200),
            ("BEARER   s3cret ", 200),
            ("Bearer s3cre", 401),
            ("Bearer s3cret2", 401),
            ("Basic s3cret", 401),
            ("Bearers3cret", 401),
            ("", 401),
        ] {
            let head =
                format!("GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n\r\n");
            assert_eq!(status(&s, &head), want, "{auth:?}");
        }
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd") && !same_secret(b"abc", b"ab"));
    }
}
