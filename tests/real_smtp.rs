//! `--protocol smtp` against a real SMTP server (aiosmtpd) with Python's smtplib as the
//! client, plus raw sockets for garbage and a small test server for `STARTTLS`.
//!
//! The tests that need aiosmtpd are `#[ignore]`d: `make test` skips them, `make test-real`
//! (see `.ci/run`) runs them. They fail, never skip, when `/usr/bin/python3` or aiosmtpd is
//! missing (Debian: `apt-get install python3-aiosmtpd`; Debian's own `/usr/bin/python3` is
//! used, as the `python3` first on `PATH` may lack Debian's packages). The `STARTTLS` test
//! needs nothing and always runs.
//!
//! Each test starts its own server: a small aiosmtpd program on 127.0.0.1 and a free port
//! whose handler prints every message it accepts (`FROM TO,TO SIZE SHA256` of the content) as
//! a line on its standard output. It is ready when it prints `READY` (after aiosmtpd's own
//! start-up check), waited for against a deadline, never by sleeping. It is stopped by its pid
//! (SIGTERM, then SIGKILL) when the test ends, and tied to the test's thread with
//! `PR_SET_PDEATHSIG` so that it cannot outlive a killed test run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::*;

/// The Debian package of the SMTP server.
const AIOSMTPD: &str = "python3-aiosmtpd";

/// The SMTP server: prints `READY`, then `FROM TO,TO... SIZE SHA256` per message accepted.
const SERVER: &str = r#"
import hashlib, sys, threading
from aiosmtpd.controller import Controller

class Recorder:
    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        print(envelope.mail_from, ",".join(envelope.rcpt_tos), len(data),
              hashlib.sha256(data).hexdigest(), flush=True)
        return "250 2.0.0 Ok: queued"

controller = Controller(Recorder(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("READY", flush=True)
threading.Event().wait()
"#;

/// The smtplib client; `argv[3]` picks the session; prints `NAME=JSON` per result.
const CLIENT: &str = r#"
import hashlib, json, smtplib, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg1 = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\n"
        b"first line\r\n.\r\n..two dots\r\n.leading dot\r\n" + b"x" * 990 + b"\r\n"
        b"\r\n.\r\nlast line\r\n")
msg2 = b"Subject: big\r\n\r\n" + b"".join(
    b"line %d " % i + bytes(range(32, 127)) + b"\r\n" for i in range(20000)) + b".\r\n"
r = {"msg1": "%d %s" % (len(msg1), hashlib.sha256(msg1).hexdigest()),
     "msg2": "%d %s" % (len(msg2), hashlib.sha256(msg2).hexdigest())}

def attempt(name, call):
    try:
        r[name] = ["ok", repr(call())]
    except smtplib.SMTPResponseException as e:
        r[name] = [type(e).__name__, e.smtp_code, e.smtp_error.decode()]
    except smtplib.SMTPException as e:
        r[name] = [type(e).__name__]

s = smtplib.SMTP(host, port, timeout=20)
if mode == "send":
    r["send1"] = s.sendmail("a@example.org", ["b@example.org", "c@example.org"], msg1)
    r["noop"] = s.noop()[0]
    r["rset"] = s.rset()[0]
    r["send2"] = s.sendmail("big@example.org", ["d@example.org"], msg2)
    r["quit"] = s.quit()[0]
elif mode == "error":
    r["ehlo"] = s.ehlo()[0]
    r["noop"] = s.noop()[0]
    attempt("sendmail", lambda: s.sendmail("a@example.org", ["b@example.org"], msg1))
    r["rset"] = s.rset()[0]
    r["noop2"] = s.noop()[0]
    s.close()
elif mode == "fail-mail":
    attempt("sendmail", lambda: s.sendmail("a@example.org", ["b@example.org"], msg1))
    r["rset"] = s.rset()[0]
    r["noop"] = s.noop()[0]
    attempt("sendmail2", lambda: s.sendmail("a@example.org", ["b@example.org"], msg1))
    r["quit"] = s.quit()[0]
elif mode == "fail-message":
    attempt("sendmail", lambda: s.sendmail("a@example.org", ["b@example.org"], msg1))
    attempt("noop", lambda: s.noop())
    s.close()
    s = smtplib.SMTP(host, port, timeout=20)
    attempt("sendmail2", lambda: s.sendmail("z@example.org", ["y@example.org"], msg1))
    r["quit"] = s.quit()[0]
for k, v in r.items():
    print(k + "=" + json.dumps(v))
"#;

/// A private aiosmtpd, stopped by its pid when dropped.
struct SmtpServer {
    /// Its port; SIGTERM, then SIGKILL after 5 s.
    process: ServerProcess,
    /// Lines it printed after `READY`: one per message.
    messages: mpsc::Receiver<String>,
    stderr: OutputLog,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        need_python(AIOSMTPD);
        on_a_free_port(|port| {
            let mut cmd = Command::new(PYTHON);
            cmd.arg("-c")
                .arg(SERVER)
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // The parent-death signal fires when this (the test's) thread ends.
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("spawn /usr/bin/python3");
            let messages = lines_of(child.stdout.take().expect("stdout"));
            let stderr = child.stderr.take().expect("stderr");
            let (stderr, ended) = OutputLog::watch(vec![Box::new(stderr)], None);
            let server = SmtpServer {
                process: ServerProcess::new(child, port, Duration::from_secs(5)),
                messages,
                stderr,
            };
            let why = match server.messages.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line == "READY" => return Ok(server),
                Ok(line) => format!("unexpected first line {line:?}"),
                Err(_) => "no READY line within 30 s".to_string(),
            };
            server.process.stop();
            let _ = ended.recv_timeout(Duration::from_secs(5));
            let err = server.stderr.text();
            assert_python_has(AIOSMTPD, &err);
            Err(format!(
                "aiosmtpd did not start on port {port}: {why}\n{err}"
            ))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn addr(&self) -> String {
        self.process.addr()
    }

    /// The next message it accepted, as its JSON line.
    fn message(&self) -> String {
        self.messages
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "the server received no message; its stderr:\n{}",
                    self.stderr.text()
                )
            })
    }

    /// Asserts that no message arrived (after the client is done).
    fn no_more_messages(&self) {
        if let Ok(m) = self.messages.try_recv() {
            panic!("unexpected message {m}");
        }
    }
}

/// Runs the smtplib client in `mode` against `proxy`; returns its JSON output.
fn client(proxy: &ProxyProcess, mode: &str) -> String {
    let args = [
        proxy.addr.ip().to_string(),
        proxy.addr.port().to_string(),
        mode.to_string(),
    ];
    python(CLIENT, &args, AIOSMTPD)
}

/// The result `key` of the client's output (`key=JSON` lines).
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

/// `SIZE SHA256` of a message the server received (`FROM TO,TO SIZE SHA256`).
fn content(message: &str) -> String {
    message
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// `FROM TO,TO` of a message the server received.
fn envelope(message: &str) -> String {
    message.splitn(3, ' ').take(2).collect::<Vec<_>>().join(" ")
}

fn smtp_proxy(backend: &str, extra: &[&str]) -> ProxyProcess {
    protocol_proxy("smtp", backend, extra)
}

/// Runs the client in `mode` through a proxy whose calls pass, but for one after the first
/// `warmup` (transient, agitate 1); returns the server, the proxy and the client's output.
fn transient_session(warmup: &str, mode: &str) -> (SmtpServer, ProxyProcess, String) {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(
        &server.addr(),
        &[
            "--behavior",
            "100:transient",
            "--behavior-transient-warmup",
            warmup,
            "--behavior-transient-agitate",
            "1",
        ],
    );
    let out = client(&proxy, mode);
    (server, proxy, out)
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn mail_sent_through_the_proxy_arrives_intact() {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(&server.addr(), &[]);
    let out = client(&proxy, "send");
    assert_eq!(field(&out, "send1"), "{}", "{out}");
    assert_eq!(field(&out, "send2"), "{}", "{out}");
    assert_eq!(field(&out, "noop"), "250");
    assert_eq!(field(&out, "rset"), "250");
    assert_eq!(field(&out, "quit"), "221");
    let first = server.message();
    assert_eq!(
        envelope(&first),
        "a@example.org b@example.org,c@example.org"
    );
    let second = server.message();
    assert_eq!(envelope(&second), "big@example.org d@example.org");
    // What the server stored (dot-stuffing undone) is what the client gave smtplib.
    assert_eq!(format!("\"{}\"", content(&first)), field(&out, "msg1"));
    assert_eq!(format!("\"{}\"", content(&second)), field(&out, "msg2"));
    server.no_more_messages();
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn the_error_behavior_answers_451_and_the_session_goes_on() {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(&server.addr(), &["--behavior", "100:error"]);
    let out = client(&proxy, "error");
    assert_eq!(field(&out, "ehlo"), "451", "{out}");
    assert_eq!(field(&out, "noop"), "451", "{out}");
    // smtplib goes on after the failed EHLO; MAIL FROM fails in turn.
    assert_eq!(
        field(&out, "sendmail"),
        "[\"SMTPSenderRefused\", 451, \"4.3.0 vaurien: requested action aborted: local error in \
         processing\"]",
        "{out}"
    );
    // The session is still up: every command gets its (failed) answer.
    assert_eq!(field(&out, "rset"), "451", "{out}");
    assert_eq!(field(&out, "noop2"), "451", "{out}");
    server.no_more_messages();
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn a_refused_mail_from_leaves_the_session_usable() {
    // EHLO passes, MAIL FROM fails, everything after passes.
    let (server, _proxy, out) = transient_session("1", "fail-mail");
    assert!(
        field(&out, "sendmail").starts_with("[\"SMTPSenderRefused\", 451, \"4.3.0 vaurien"),
        "{out}"
    );
    assert_eq!(field(&out, "rset"), "250", "{out}");
    assert_eq!(field(&out, "noop"), "250", "{out}");
    assert_eq!(field(&out, "sendmail2"), "[\"ok\", \"{}\"]", "{out}");
    assert_eq!(field(&out, "quit"), "221", "{out}");
    let got = server.message();
    assert_eq!(format!("\"{}\"", content(&got)), field(&out, "msg1"));
    server.no_more_messages();
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn a_failed_message_closes_the_connection_and_delivers_nothing() {
    // EHLO, MAIL, RCPT and DATA pass; the message fails; everything after passes.
    let (server, _proxy, out) = transient_session("4", "fail-message");
    assert!(
        field(&out, "sendmail").starts_with("[\"SMTPDataError\", 451, \"4.3.0 vaurien"),
        "{out}"
    );
    assert_eq!(field(&out, "noop"), "[\"SMTPServerDisconnected\"]", "{out}");
    assert_eq!(field(&out, "sendmail2"), "[\"ok\", \"{}\"]", "{out}");
    // The first message the server got is the second session's.
    let got = server.message();
    assert_eq!(envelope(&got), "z@example.org y@example.org");
    server.no_more_messages();
}

/// Reads one SMTP reply (all its lines) from `r`.
fn read_reply(r: &mut impl BufRead) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read a reply line");
        assert!(n > 0, "connection closed after {out:?}");
        out.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return out;
        }
    }
}

/// The greeting, then what the server answers to `bytes` and a QUIT, up to its close.
fn session_after_greeting(addr: &str, bytes: &[u8]) -> String {
    let (addr, bytes) = (addr.to_string(), bytes.to_vec());
    within(Duration::from_secs(30), "an SMTP session", move || {
        let s = connect(addr.as_str());
        let mut r = BufReader::new(s.try_clone().unwrap());
        let greeting = read_reply(&mut r);
        assert!(greeting.starts_with("220 "), "{greeting}");
        let _ = (&s).write_all(&bytes);
        let _ = (&s).write_all(b"\r\nQUIT\r\n");
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).into_owned()
    })
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn garbage_gets_what_the_smtp_server_itself_answers() {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(&server.addr(), &[]);
    let addr = proxy.addr.to_string();
    let steady = connect(&addr);
    let mut w = steady.try_clone().unwrap();
    let mut r = BufReader::new(steady);
    assert!(read_reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO steady\r\n").unwrap();
    assert!(read_reply(&mut r).starts_with("250-"));
    let garbage: [&[u8]; 3] = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n",
        b"NOOP\x00\r\n",
        &[b'A'; 20000],
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        let want = session_after_greeting(&server.addr(), bytes);
        let got = session_after_greeting(&addr, bytes);
        assert_eq!(got, want, "garbage #{i}");
        assert!(
            want.contains("221"),
            "garbage #{i}: the server answered {want:?}"
        );
    }
    w.write_all(b"NOOP\r\n").unwrap();
    assert!(read_reply(&mut r).starts_with("250 "));
    w.write_all(b"QUIT\r\n").unwrap();
    assert!(read_reply(&mut r).starts_with("221 "));
}

/// A fake server: greets, offers STARTTLS, answers it with 220, then echoes raw bytes.
fn starttls_backend() -> Backend {
    Backend::start(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let _ = w.write_all(b"220 fake ESMTP\r\n");
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let reply: &[u8] = match line.trim_end().to_ascii_uppercase().as_str() {
                l if l.starts_with("EHLO") => b"250-fake\r\n250 STARTTLS\r\n",
                "STARTTLS" => b"220 2.0.0 Ready to start TLS\r\n",
                _ => b"502 no\r\n",
            };
            let _ = w.write_all(reply);
            if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
                // "TLS": whatever comes is echoed back untouched.
                let _ = w.write_all(r.buffer());
                echo_until_eof(&mut r.into_inner(), &mut w);
                return;
            }
            line.clear();
        }
    })
}

#[test]
fn starttls_turns_the_connection_into_a_tunnel() {
    let backend = starttls_backend();
    let proxy = smtp_proxy(
        &backend.arg(),
        &["--behavior", "100:delay", "--behavior-delay-sleep", "0"],
    );
    let addr = proxy.addr.to_string();
    within(Duration::from_secs(20), "STARTTLS", move || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        assert_eq!(read_reply(&mut r), "220 fake ESMTP\r\n");
        w.write_all(b"EHLO me\r\n").unwrap();
        assert_eq!(read_reply(&mut r), "250-fake\r\n250 STARTTLS\r\n");
        w.write_all(b"STARTTLS\r\n").unwrap();
        assert_eq!(read_reply(&mut r), "220 2.0.0 Ready to start TLS\r\n");
        // Bytes no SMTP framing would accept now go through both ways untouched.
        let hello: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        w.write_all(&hello).unwrap();
        let mut back = vec![0u8; hello.len()];
        r.read_exact(&mut back).unwrap();
        assert_eq!(back, hello);
    });
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

/// Sends `sessions` messages of `mib` MiB through `HOST PORT` with smtplib, one session each,
/// keeps every session open (a NOOP after each message), prints `sent`, and waits for a line
/// on stdin before it quits them.
const BIG_MESSAGES: &str = r#"
import smtplib, sys
host, port, sessions, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = b"x" * 998 + b"\r\n"
body = b"Subject: big\r\n\r\n" + line * (mib * 1048576 // len(line))
open_sessions = []
for i in range(sessions):
    s = smtplib.SMTP(host, port, timeout=60)
    s.sendmail("a@example.org", ["b@example.org"], body)
    assert s.noop()[0] == 250
    open_sessions.append(s)
print("sent", flush=True)
sys.stdin.readline()
for s in open_sessions:
    s.quit()
"#;

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn idle_sessions_keep_nothing_of_the_large_messages_they_sent() {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(&server.addr(), &[]);
    need_python(AIOSMTPD);
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c")
        .arg(BIG_MESSAGES)
        .arg(proxy.addr.ip().to_string())
        .arg(proxy.addr.port().to_string())
        .args(["4", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut sender = KillOnDrop(cmd.spawn().expect("start smtplib"));
    let out = lines_of(sender.0.stdout.take().expect("stdout"));
    let sent = out.recv_timeout(Duration::from_secs(120));
    assert_eq!(
        sent.as_deref(),
        Ok("sent"),
        "the four 20 MiB messages were not all sent"
    );
    // Four sessions, idle, each after a 20 MiB message: they hold none of it.
    let growth = rss_kib(pid).saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "RSS grew by {growth} KiB with four idle sessions"
    );
    let mut stdin = sender.0.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"done\n");
    drop(stdin);
}

#[test]
#[ignore = "needs python3-aiosmtpd: make test-real"]
fn reset_peer_set_in_the_middle_of_a_session_resets_the_client_instead_of_a_reply() {
    let server = SmtpServer::start();
    let proxy = smtp_proxy(
        &server.addr(),
        &["--http", "--http-host", "127.0.0.1", "--http-port", "0"],
    );
    let (addr, http) = (proxy.addr, proxy.http_addr());
    within(
        Duration::from_secs(30),
        "an SMTP session reset",
        move || {
            let s = connect(addr);
            let mut r = BufReader::new(s.try_clone().unwrap());
            assert!(read_reply(&mut r).starts_with("220 "));
            (&s).write_all(b"EHLO client.example\r\n").unwrap();
            assert!(read_reply(&mut r).starts_with("250"));
            set_behavior(http, r#"{"name": "reset_peer", "timeout": 100}"#);
            (&s).write_all(b"MAIL FROM:<a@example.org>\r\n").unwrap();
            let mut line = String::new();
            let err = r.read_line(&mut line).expect_err("a reset, not a reply");
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{err} after {line:?}"
            );
        },
    );
}
