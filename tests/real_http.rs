//! `--protocol http` against a real nginx and the real `curl`, plus a small HTTP server written
//! here for what nginx does not send (chunked trailers, `100 Continue`, `101` upgrades).
//!
//! Every test here is `#[ignore]`d: `make test` skips them, `make test-real` (see `.ci/run`)
//! runs them. They fail, never skip, when nginx or curl is missing (Debian:
//! `apt-get install nginx curl`).
//!
//! The module shares one private nginx, started by the first test that needs it: a config
//! generated under the temp dir (`vaurien-nginx-PID-N`: `daemon off`, `master_process off`,
//! its pid file, logs and temp paths in that directory) serves a 10 MiB file and 100 small
//! ones on 127.0.0.1 and a free port. It is ready when it accepts a connection (retried
//! against a deadline inside `within`, never a fixed sleep). Its access log records, for every
//! request, the nginx connection number and the request's rank on it, which shows keep-alive
//! at work.
//!
//! Clean-up: an `atexit` handler sends nginx SIGTERM by its pid (SIGKILL after 10 s) and
//! removes the directory; nginx also gets SIGTERM through `PR_SET_PDEATHSIG` if the test binary
//! dies without running `atexit` handlers. Directories left by such a death are removed by the
//! next run once their pid is gone.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use crate::support::*;

/// Size of the big file nginx serves.
const BIG: usize = 10 << 20;
/// How many small files (`/s/1.txt` ... `/s/100.txt`).
const SMALL: usize = 100;

/// The private nginx of this module.
struct Nginx {
    /// Config, document root, logs and pid file live here; removed when nginx stops.
    dir: PathBuf,
    /// Its port; stopped (SIGTERM, SIGKILL after 10 s) when the test binary exits.
    process: ServerProcess,
}

static SERVER: OnceLock<Result<Nginx, String>> = OnceLock::new();

/// The module's nginx, started on first use; panics (fails the test) if it cannot start.
fn nginx() -> &'static Nginx {
    shared_server(&SERVER, "nginx", start_nginx)
}

/// What to install when a tool is missing.
const INSTALL: &str = "the Debian packages nginx and curl";

/// The content of the big file: pseudo-random, so that a shifted or dropped block shows.
fn big_content() -> Vec<u8> {
    random_bytes(0x6e67696e78, BIG)
}

fn small_content(i: usize) -> String {
    format!("small file {i}\n")
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20   log_format conn '$connection $connection_requests \"$request\" $status';\n\
         \x20   access_log {d}/access.log conn;\n\
         \x20   client_body_temp_path {d}/tmp/body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   keepalive_requests 10000;\n\
         \x20   keepalive_timeout 60s;\n\
         \x20   sendfile on;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       server_name localhost;\n\
         \x20       root {d}/www;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Writes the document root and config, then starts nginx on a free port; retries with
/// another port if the one picked was taken meanwhile.
fn start_nginx() -> Result<Nginx, String> {
    let bin = need_tool(&["nginx"], INSTALL)?;
    need_tool(&["curl"], INSTALL)?;
    let dir = fresh_dir("vaurien-nginx")?;
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("s")).map_err(|e| format!("create {}: {e}", www.display()))?;
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("create tmp: {e}"))?;
    std::fs::write(www.join("big.bin"), big_content()).map_err(|e| format!("big.bin: {e}"))?;
    for i in 1..=SMALL {
        std::fs::write(www.join(format!("s/{i}.txt")), small_content(i))
            .map_err(|e| format!("small file: {e}"))?;
    }
    let started = on_a_free_port(|port| {
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port)).map_err(|e| format!("write config: {e}"))?;
        let _ = std::fs::remove_file(dir.join("error.log"));
        let mut cmd = Command::new(&bin);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            spawn_tied_to_this_process(cmd).map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let pid = child.id();
        let process = ServerProcess::new(child, port, Duration::from_secs(10));
        // Ready when it accepts; gone if it exited (a port taken, a bad config).
        let accepts = move || TcpStream::connect(("127.0.0.1", port)).is_ok();
        if wait_ready("nginx to accept connections", pid, accepts) {
            return Ok(process);
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        Err(format!(
            "nginx did not start on port {port}; its error log:\n{log}"
        ))
    });
    match started {
        Ok(process) => Ok(Nginx {
            dir: dir.clone(),
            process: process.with_dir(dir).stop_at_exit(),
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

impl Nginx {
    fn backend(&self) -> String {
        self.process.addr()
    }

    /// The access log lines of requests whose target carries `?t=TAG` (tests share nginx).
    fn access_log_tagged(&self, tag: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let needle = format!("?t={tag} ");
        log.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }
}

/// Runs `curl --silent --show-error ARGS`, the whole run bounded by 60 s.
fn curl(args: &[&str]) -> Ran {
    let mut cmd = Command::new(need_tool(&["curl"], INSTALL).unwrap_or_else(|e| panic!("{e}")));
    cmd.args(["--silent", "--show-error", "--max-time", "50"])
        .args(args);
    run_tool(cmd, None, Duration::from_secs(60))
}

/// `vaurien --protocol http --backend BACKEND EXTRA...`.
fn http_proxy(backend: &str, extra: &[&str]) -> ProxyProcess {
    protocol_proxy("http", backend, extra)
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// A path for a file named `name` in this run's scratch directory, removed at exit.
fn scratch(name: &str) -> PathBuf {
    let dir = SCRATCH.get_or_init(|| {
        let dir = fresh_dir("vaurien-http-test").expect("scratch dir");
        let gone = dir.clone();
        at_exit(move || {
            let _ = std::fs::remove_dir_all(gone);
        });
        dir
    });
    dir.join(name)
}

/// A short fingerprint of `data` for failure messages.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn a_10_mib_file_arrives_intact_through_the_proxy() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let want = big_content();
    for (what, port) in [
        ("direct", server.process.port),
        ("proxied", proxy.addr.port()),
    ] {
        let out = scratch(&format!("big-{what}.bin"));
        let url = format!("http://127.0.0.1:{port}/big.bin");
        let run = curl(&[
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ])
        .ok(what);
        assert_eq!(run.stdout(), format!("200 {BIG}"), "{what}");
        let got = std::fs::read(&out).expect("curl's output");
        let _ = std::fs::remove_file(&out);
        assert_eq!(
            (got.len(), fnv(&got)),
            (want.len(), fnv(&want)),
            "{what}: the file differs"
        );
        assert!(got == want, "{what}: the file differs");
        eprintln!("{what}: 10 MiB in {:?}", run.took);
    }
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn head_then_get_on_one_connection() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let url = format!("http://127.0.0.1:{}/big.bin", proxy.addr.port());
    let small = format!("http://127.0.0.1:{}/s/7.txt", proxy.addr.port());
    let run = curl(&[
        "--head",
        "-w",
        "CODE=%{http_code} NC=%{num_connects}\n",
        &url,
        "--next",
        "-w",
        "\nCODE=%{http_code} NC=%{num_connects}\n",
        &small,
    ])
    .ok("HEAD then GET");
    let out = run.stdout();
    assert!(
        out.contains(&format!("Content-Length: {BIG}\r\n")),
        "HEAD answer lacks the length:\n{out}"
    );
    assert!(
        out.contains("CODE=200 NC=1\n") && out.ends_with("small file 7\n\nCODE=200 NC=0\n"),
        "the GET after a HEAD (no body despite Content-Length) must reuse the connection:\n{out}"
    );
    assert!(
        run.took < Duration::from_secs(5),
        "HEAD + GET took {:?}",
        run.took
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn not_modified_has_no_body_and_keeps_the_connection() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let url = format!("http://127.0.0.1:{}/s/3.txt", proxy.addr.port());
    let head = curl(&["--head", &url])
        .ok("HEAD for the validators")
        .stdout();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in\n{head}"))
    };
    let etag = header("ETag");
    let modified = header("Last-Modified");
    let inm = format!("If-None-Match: {etag}");
    let ims = format!("If-Modified-Since: {modified}");
    let other = format!("http://127.0.0.1:{}/s/4.txt", proxy.addr.port());
    let run = curl(&[
        "-H",
        &inm,
        "-w",
        "CODE=%{http_code} NC=%{num_connects} SIZE=%{size_download}\n",
        &url,
        "--next",
        "-H",
        &ims,
        "-w",
        "CODE=%{http_code} NC=%{num_connects} SIZE=%{size_download}\n",
        &url,
        "--next",
        "-w",
        "CODE=%{http_code} NC=%{num_connects}\n",
        &other,
    ])
    .ok("conditional GETs");
    assert_eq!(
        run.stdout(),
        "CODE=304 NC=1 SIZE=0\nCODE=304 NC=0 SIZE=0\nsmall file 4\nCODE=200 NC=0\n"
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn a_hundred_requests_share_one_connection() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let url = format!(
        "http://127.0.0.1:{}/s/[1-{SMALL}].txt?t=hundred",
        proxy.addr.port()
    );
    let run = curl(&["-w", "CODE=%{http_code} NC=%{num_connects}\n", &url]).ok("100 GETs");
    let out = run.stdout();
    let mut expected = String::new();
    for i in 1..=SMALL {
        expected.push_str(&small_content(i));
        expected.push_str(&format!("CODE=200 NC={}\n", u8::from(i == 1)));
    }
    assert_eq!(out, expected, "100 answers, in order, one connect");
    // The proxy kept one backend connection too: nginx saw one connection, ranks 1..=100.
    let lines = within(Duration::from_secs(10), "nginx to log 100 requests", {
        move || loop {
            let lines = nginx().access_log_tagged("hundred");
            if lines.len() >= SMALL {
                return lines;
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let conns: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(conns.len(), 1, "nginx saw several connections:\n{lines:#?}");
    let ranks: Vec<usize> = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ranks, (1..=SMALL).collect::<Vec<_>>());
    eprintln!("100 requests in {:?}", run.took);
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn pipelined_requests_are_answered_in_order() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let mut batch = String::new();
    for i in [5, 1, 9] {
        batch.push_str(&format!("GET /s/{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    batch.push_str("HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    batch.push_str("GET /s/2.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut client = proxy.connect();
    client.write_all(batch.as_bytes()).unwrap();
    let got = within(
        Duration::from_secs(20),
        "five pipelined answers",
        move || read_to_end(&mut client).expect("read until the close"),
    );
    let text = String::from_utf8_lossy(&got);
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .collect();
    assert_eq!(
        bodies,
        [
            "small file 5\n",
            "small file 1\n",
            "small file 9\n",
            "",
            "small file 2\n"
        ],
        "{text}"
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn the_error_behavior_answers_a_50x_with_a_body() {
    let server = nginx();
    let mut proxy = http_proxy(
        &server.backend(),
        &["--behavior", "100:error", "--seed", "3"],
    );
    let url = format!("http://127.0.0.1:{}/s/1.txt?t=error", proxy.addr.port());
    let mut codes = BTreeSet::new();
    for _ in 0..12 {
        let run = curl(&[
            "-D",
            "-",
            "-w",
            "\nCODE=%{http_code} SIZE=%{size_download}\n",
            &url,
        ])
        .ok("a failed call is still an HTTP answer");
        let out = run.stdout();
        let (_, tail) = out.rsplit_once("CODE=").unwrap();
        let (code, size) = tail.trim().split_once(" SIZE=").unwrap();
        let code: u16 = code.parse().unwrap();
        assert!((500..=503).contains(&code), "{out}");
        assert!(size.parse::<u64>().unwrap() > 0, "an error body: {out}");
        assert!(out.contains("Content-Type: text/html\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(out.contains("<html>"), "{out}");
        codes.insert(code);
    }
    assert!(codes.len() >= 2, "random statuses, got only {codes:?}");
    // The request never reached nginx.
    thread::sleep(Duration::from_millis(100));
    assert!(
        server.access_log_tagged("error").is_empty(),
        "nginx saw requests: {:?}",
        server.access_log_tagged("error")
    );
    assert_proxy_survived(&mut proxy, "error replies");
}

// ---------------------------------------------------------------------------------------
// A small HTTP server for what nginx does not send.

/// A request as the test server read it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request head; `None` at end of input.
fn read_request_head(r: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Some((line.trim_end().to_string(), headers))
}

/// Decodes a chunked body (for the test server's uploads).
fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
        if n == 0 {
            loop {
                let mut t = String::new();
                r.read_line(&mut t).unwrap();
                if t.trim().is_empty() {
                    return body;
                }
            }
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(&mut body[start..]).unwrap();
        let mut crlf = String::new();
        r.read_line(&mut crlf).unwrap();
    }
}

/// The trailer-bearing chunked answer of `/chunked`, byte for byte.
const CHUNKED_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
    Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
    6;ext=\"one\"\r\nhello \r\n\
    7 ; second\r\nchunked\r\n\
    1\r\n!\r\n\
    0;end\r\nX-Checksum: 1234\r\n\r\n";

/// A backend speaking HTTP/1.1 with keep-alive: `/chunked`, `/continue` (a `100` first),
/// `/upload` (answers the body's length), `/upgrade` (a `101`, then echoes raw bytes). Every
/// request it reads is reported on the receiver.
fn test_server() -> (Backend, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = Backend::start(move |stream| {
        let tx = tx.lock().unwrap().clone();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        while let Some((line, headers)) = read_request_head(&mut r) {
            let mut seen = Seen {
                line,
                headers,
                body: Vec::new(),
            };
            if seen
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                seen.body = read_chunked(&mut r);
            } else if let Some(n) = seen.header("content-length") {
                seen.body = vec![0; n.parse().unwrap()];
                r.read_exact(&mut seen.body).unwrap();
            }
            let path = seen.line.split(' ').nth(1).unwrap_or("").to_string();
            let _ = tx.send(seen.clone());
            let answer: Vec<u8> = match path.as_str() {
                "/chunked" => CHUNKED_ANSWER.to_vec(),
                "/continue" => b"HTTP/1.1 100 Continue\r\n\r\n\
                    HTTP/1.1 102 Processing\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nafter 1xx"
                    .to_vec(),
                "/upload" => {
                    let text = format!("got {} bytes fnv {:x}", seen.body.len(), fnv(&seen.body));
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    )
                    .into_bytes()
                }
                "/host" => {
                    let host = seen.header("host").unwrap_or("-").to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{host}",
                        host.len()
                    )
                    .into_bytes()
                }
                "/upgrade" => {
                    let _ = w.write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                          Upgrade: echo\r\n\r\nwelcome\n",
                    );
                    // Raw echo from now on, bytes read ahead included.
                    if echo_until_eof(&mut r, &mut w) {
                        let _ = w.shutdown(Shutdown::Write);
                    }
                    return;
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            if w.write_all(&answer).is_err() {
                return;
            }
        }
    });
    (backend, rx)
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn chunked_responses_with_trailers_go_through_verbatim() {
    let (backend, _rx) = test_server();
    let proxy = http_proxy(&backend.arg(), &[]);
    // Byte for byte, trailers included, and the connection stays usable.
    let mut client = proxy.connect();
    let got = within(Duration::from_secs(20), "two chunked answers", move || {
        let req = b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n";
        client.write_all(req).unwrap();
        let first = read_exactly(&mut client, CHUNKED_ANSWER.len()).unwrap();
        client.write_all(req).unwrap();
        let second = read_exactly(&mut client, CHUNKED_ANSWER.len()).unwrap();
        (first, second)
    });
    assert_eq!(
        String::from_utf8_lossy(&got.0),
        String::from_utf8_lossy(CHUNKED_ANSWER)
    );
    assert_eq!(got.0, got.1);
    // curl decodes it, and sees the trailer.
    let url = format!("http://127.0.0.1:{}/chunked", proxy.addr.port());
    let body = scratch("chunked-body.txt");
    let run = curl(&["-D", "-", "-o", body.to_str().unwrap(), &url]).ok("curl on chunked");
    let headers = run.stdout();
    assert_eq!(std::fs::read_to_string(&body).unwrap(), "hello chunked!");
    let _ = std::fs::remove_file(&body);
    assert!(
        headers.contains("X-Checksum: 1234"),
        "trailer lost:\n{headers}"
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn interim_1xx_responses_reach_the_client() {
    let (backend, _rx) = test_server();
    let proxy = http_proxy(&backend.arg(), &[]);
    let url = format!("http://127.0.0.1:{}/continue", proxy.addr.port());
    let run =
        curl(&["-w", "\nCODE=%{http_code} NC=%{num_connects}\n", &url, &url]).ok("1xx then 200");
    assert_eq!(
        run.stdout(),
        "after 1xx\nCODE=200 NC=1\nafter 1xx\nCODE=200 NC=0\n"
    );
    // A raw client sees the interim heads before the final one.
    let mut client = proxy.connect();
    client
        .write_all(b"GET /continue HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = within(Duration::from_secs(20), "the answer", move || {
        read_to_end(&mut client).unwrap()
    });
    assert!(
        got.starts_with(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn expect_100_continue_uploads_are_not_held_back() {
    let (backend, rx) = test_server();
    let proxy = http_proxy(&backend.arg(), &[]);
    let file = scratch("upload.bin");
    let data = random_bytes(99, 3 << 20);
    std::fs::write(&file, &data).unwrap();
    let upload = format!("@{}", file.display());
    let url = format!("http://127.0.0.1:{}/upload", proxy.addr.port());
    // The backend never sends 100 Continue; curl would wait 30 s for it unless the proxy
    // answers at once. A plain upload, then a chunked one, with Expect too.
    for chunked in [false, true] {
        let mut args = if chunked {
            vec!["-H", "Transfer-Encoding: chunked"]
        } else {
            vec![]
        };
        args.extend([
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "30",
            "--data-binary",
            &upload,
            "-w",
            "\nCODE=%{http_code}",
            &url,
        ]);
        let run = curl(&args).ok(if chunked {
            "a chunked upload"
        } else {
            "an upload with Expect: 100-continue"
        });
        assert_eq!(
            run.stdout(),
            format!("got {} bytes fnv {:x}\nCODE=200", data.len(), fnv(&data))
        );
        assert!(
            run.took < Duration::from_secs(10),
            "curl waited for 100 Continue: {:?}",
            run.took
        );
        let seen = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        if chunked {
            assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
        } else {
            assert_eq!(seen.header("expect"), None, "Expect reached the backend");
            assert_eq!(seen.body.len(), data.len());
        }
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn switching_protocols_turns_the_connection_into_a_tunnel() {
    let (backend, _rx) = test_server();
    let proxy = http_proxy(&backend.arg(), &[]);
    let mut client = proxy.connect();
    within(Duration::from_secs(20), "an upgraded echo", move || {
        client
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .unwrap();
        let mut r = BufReader::new(client.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let mut welcome = String::new();
        r.read_line(&mut welcome).unwrap();
        assert_eq!(welcome, "welcome\n");
        // Not HTTP any more: raw bytes, even ones the parser would refuse, come back.
        let raw: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let writer = {
            let mut c = client.try_clone().unwrap();
            let raw = raw.clone();
            thread::spawn(move || {
                c.write_all(b"GET nonsense\r\n\r\n\x00\xff").unwrap();
                c.write_all(&raw).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        let mut want = b"GET nonsense\r\n\r\n\x00\xff".to_vec();
        want.extend_from_slice(&raw);
        assert_eq!(back.len(), want.len());
        assert!(back == want, "the tunnel changed bytes");
    });
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn overwrite_host_header_sends_the_backend_address() {
    let (backend, _rx) = test_server();
    for (flags, want) in [
        (vec![], "front.example".to_string()),
        (vec!["--protocol-http-overwrite-host-header"], backend.arg()),
    ] {
        let proxy = http_proxy(&backend.arg(), &flags);
        let url = format!("http://127.0.0.1:{}/host", proxy.addr.port());
        let run = curl(&["-H", "Host: front.example", &url]).ok("the host echo");
        assert_eq!(run.stdout(), want, "{flags:?}");
    }
}

/// Writes `bytes` on a fresh connection to `addr` and reads everything until the connection
/// closes, the `Date` line left out.
fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let (addr, bytes) = (addr.to_string(), bytes.to_vec());
    let got = within(Duration::from_secs(30), "a raw exchange", move || {
        let mut s = connect(addr.as_str());
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    String::from_utf8_lossy(&got)
        .split("\r\n")
        .filter(|l| !l.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn garbage_gets_what_nginx_itself_answers() {
    let server = nginx();
    let mut proxy = http_proxy(&server.backend(), &[]);
    let long_header = format!(
        "GET /s/1.txt HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "v".repeat(10_000)
    );
    let many_fields: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let many =
        format!("GET /s/1.txt HTTP/1.1\r\nHost: x\r\n{many_fields}Connection: close\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a TLS hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2.0 in a request line",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "a header line without a colon, which nginx ignores",
            b"GET /s/1.txt HTTP/1.1\r\nHost: x\r\nnonsense\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("a header line past 8 KiB", long_header.into_bytes()),
        (
            "an encoding nginx does not know",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
        ),
        ("150 header fields", many.into_bytes()),
    ];
    for (what, bytes) in &cases {
        let want = raw_exchange(&server.backend(), bytes);
        let got = raw_exchange(&proxy.addr.to_string(), bytes);
        assert_eq!(got, want, "{what}");
        assert!(
            want.starts_with("HTTP/1.1 "),
            "{what}: nginx answered {want:?}"
        );
    }
    assert_proxy_survived(&mut proxy, "garbage");
    let url = format!("http://127.0.0.1:{}/s/1.txt", proxy.addr.port());
    assert_eq!(curl(&[&url]).ok("after garbage").stdout(), small_content(1));
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn an_upload_nginx_refuses_gets_its_answer() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let file = scratch("too-big.bin");
    std::fs::write(&file, random_bytes(5, 3 << 20)).unwrap();
    let upload = format!("@{}", file.display());
    // nginx refuses a body over client_max_body_size (1 MiB) with 413 before reading it.
    let url = format!("http://127.0.0.1:{}/s/1.txt", proxy.addr.port());
    for expect in ["Expect: 100-continue", "Expect:"] {
        let run = curl(&[
            "-H",
            expect,
            "--data-binary",
            &upload,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .ok(expect);
        assert_eq!(run.stdout(), "413", "{expect}");
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn an_early_413_reaches_the_client_before_its_upload_is_done() {
    let server = nginx();
    let proxy = http_proxy(&server.backend(), &[]);
    let mut client = proxy.connect();
    let status = within(Duration::from_secs(30), "the early answer", move || {
        // 50 MiB announced; nginx refuses more than 1 MiB as soon as it has the head.
        client
            .write_all(
                b"POST /s/1.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\
                  Expect: 100-continue\r\n\r\n",
            )
            .unwrap();
        let mut r = std::io::BufReader::new(client.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
        r.read_line(&mut line).unwrap();
        // 2 MiB of the body, then the client waits for the answer, as curl does once one came.
        let piece = vec![b'u'; 64 * 1024];
        for _ in 0..32 {
            if client.write_all(&piece).is_err() {
                break;
            }
        }
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        status
    });
    assert!(status.starts_with("HTTP/1.1 413"), "{status:?}");
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn reuse_socket_hands_the_backend_connection_to_the_next_client() {
    let server = nginx();
    let proxy = http_proxy(
        &server.backend(),
        &["--protocol-http-reuse-socket", "--log-level", "debug"],
    );
    let url = format!("http://127.0.0.1:{}/s/[1-3].txt?t=reuse", proxy.addr.port());
    for round in 1..=3 {
        curl(&["-o", "/dev/null", &url]).ok("three GETs");
        // The next client comes once this one's backend connection is back in the pool.
        let log_path = proxy.log_path.clone();
        within(
            Duration::from_secs(10),
            "the pool to get it back",
            move || {
                poll_log(&log_path, |log| {
                    log.matches("returns its backend connection to the pool")
                        .count()
                        >= round
                })
            },
        );
    }
    let lines = server.access_log_tagged("reuse");
    let conns: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(lines.len(), 9, "{lines:#?}");
    assert_eq!(
        conns.len(),
        1,
        "three clients, one backend connection: {lines:#?}"
    );
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn delay_and_failing_behaviors_as_curl_sees_them() {
    let server = nginx();
    let url = |p: &ProxyProcess| format!("http://127.0.0.1:{}/s/[1-5].txt", p.addr.port());
    // delay: every call of a keep-alive series is late, the answers are right.
    let proxy = http_proxy(
        &server.backend(),
        &["--behavior", "100:delay", "--behavior-delay-sleep", "0.2"],
    );
    let run = curl(&["-w", "NC=%{num_connects}\n", &url(&proxy)]).ok("delayed GETs");
    assert_eq!(run.stdout().matches("small file").count(), 5);
    assert_eq!(run.stdout().matches("NC=1").count(), 1);
    assert!(run.took >= Duration::from_secs(1), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(5), "{:?}", run.took);
    // blackout and abort: no answer at all (curl 52: empty reply).
    for behavior in ["100:blackout", "100:abort"] {
        let mut proxy = http_proxy(&server.backend(), &["--behavior", behavior]);
        let run = curl(&[&url(&proxy)]);
        assert_eq!(run.out.status.code(), Some(52), "{behavior}: {:?}", run.out);
        assert_proxy_survived(&mut proxy, behavior);
    }
    // hang: nothing comes back until the client gives up (curl 28: timeout).
    let mut proxy = http_proxy(&server.backend(), &["--behavior", "100:hang"]);
    let one = format!("http://127.0.0.1:{}/s/1.txt", proxy.addr.port());
    let run = curl(&["--max-time", "1", &one]);
    assert_eq!(run.out.status.code(), Some(28), "hang: {:?}", run.out);
    assert_proxy_survived(&mut proxy, "hang");
}

#[test]
#[ignore = "needs nginx and curl: make test-real"]
fn limit_data_cuts_a_body_and_curl_reports_the_data_outstanding() {
    let server = nginx();
    let proxy = http_proxy(
        &server.backend(),
        &[
            "--behavior",
            "limit_data",
            "--behavior-limit-data-bytes",
            "1000",
        ],
    );
    let url = format!("http://127.0.0.1:{}/big.bin", proxy.addr.port());
    let out = scratch("cut.bin");
    let run = curl(&["-o", out.to_str().unwrap(), "-w", "%{size_download}", &url]);
    let _ = std::fs::remove_file(&out);
    // curl's "Transfer closed with N bytes remaining to read" is its exit status 18.
    assert_eq!(run.out.status.code(), Some(18), "{}", run.stderr());
    assert!(
        run.stderr().contains("remaining to read"),
        "{}",
        run.stderr()
    );
    let got: usize = run.stdout().trim().parse().expect("curl's size_download");
    assert!(
        got < 1000,
        "the head and part of the body: {got} bytes of body"
    );
}
