//! `--protocol memcache` against a real memcached, driven by a real client (pymemcache) and
//! by hand over raw sockets (meta commands, pipelining, garbage).
//!
//! Every test here is `#[ignore]`d: `make test` skips them, `make test-real` (see `.ci/run`)
//! runs them. They fail, never skip, when memcached, `/usr/bin/python3` or pymemcache is
//! missing (Debian: `apt-get install memcached python3-pymemcache`; Debian's own
//! `/usr/bin/python3` is used, as the `python3` first on `PATH` may lack Debian's packages).
//!
//! Each test starts its own memcached (`-l 127.0.0.1 -p PORT -U 0`, a free port, `-u root`
//! when run as root): ready when it answers `version` (retried against a deadline inside
//! `within`), stopped by its pid (SIGTERM, then SIGKILL) when the test ends, and tied to the
//! test's thread with `PR_SET_PDEATHSIG` so that it cannot outlive a killed test run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The Debian package of the python client.
const PYMEMCACHE: &str = "python3-pymemcache";

/// Starts a private memcached on a free port (another one if that port was taken meanwhile),
/// stopped by its pid (SIGTERM, then SIGKILL after 5 s) when dropped.
fn memcached() -> ServerProcess {
    let bin =
        need_tool(&["memcached"], "the Debian package memcached").unwrap_or_else(|e| panic!("{e}"));
    on_a_free_port(|port| {
        let mut cmd = Command::new(&bin);
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
            .args(["-m", "64", "-t", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        // The parent-death signal fires when this (the test's) thread ends.
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr");
        let (err, ended) = OutputLog::watch(vec![Box::new(stderr)], None);
        let server = ServerProcess::new(child, port, Duration::from_secs(5));
        let answers = move || answers_version(port);
        if wait_ready("memcached to answer version", pid, answers) {
            return Ok(server);
        }
        server.stop();
        let _ = ended.recv_timeout(Duration::from_secs(5));
        Err(format!(
            "memcached did not start on port {port}: {}",
            err.text()
        ))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the memcached on `port` answers `version`.
fn answers_version(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    s.write_all(b"version\r\n").is_ok()
        && BufReader::new(s).read_line(&mut line).is_ok()
        && line.starts_with("VERSION ")
}

fn proxy(backend: &str, extra: &[&str]) -> ProxyProcess {
    protocol_proxy("memcache", backend, extra)
}

/// A raw connection speaking the text protocol.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let s = connect(addr);
        Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    /// Reads lines up to and including one that is `end` or starts with an error word, and
    /// data blocks after `VALUE` or `VA` lines.
    fn reply(&mut self, end: &[&str]) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("read a reply line");
            assert!(n > 0, "connection closed after {out:?}");
            out.push_str(&line);
            let t = line.trim_end();
            let words: Vec<&str> = t.split(' ').collect();
            let block = match words[0] {
                "VALUE" => words.get(3),
                "VA" => words.get(1),
                _ => None,
            };
            if let Some(len) = block {
                let mut data = vec![0u8; len.parse::<usize>().unwrap() + 2];
                self.r.read_exact(&mut data).expect("read a data block");
                out.push_str(&String::from_utf8_lossy(&data));
                if words[0] == "VA" && end.is_empty() {
                    return out;
                }
                continue;
            }
            if end.is_empty()
                || end.contains(&t)
                || t.starts_with("ERROR")
                || t.starts_with("CLIENT_ERROR")
                || t.starts_with("SERVER_ERROR")
            {
                return out;
            }
        }
    }

    /// One command, one reply (`end`: its last line; empty: a single line or VA block).
    fn call(&mut self, cmd: &[u8], end: &[&str]) -> String {
        self.send(cmd);
        self.reply(end)
    }
}

/// The pymemcache session compared direct and through the proxy: every result, by name.
const CLIENT_SESSION: &str = r#"
import hashlib, json, sys
from pymemcache.client.base import Client
host, port, p = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = Client((host, port), connect_timeout=10, timeout=20)
big = bytes(range(256)) * 3500
tricky = b"END\r\nVALUE x 0 1\r\n\r\n.\r\nSTORED\r\n"
r = []
def note(name, v):
    r.append([name, repr(v)])
note("set", c.set(p + "a", b"alpha", noreply=False))
note("get", c.get(p + "a"))
note("missing", c.get(p + "missing"))
note("set_many", c.set_many({p + "b": b"beta", p + "big": big, p + "t": tricky}, noreply=False))
got = c.get_many([p + "a", p + "b", p + "t", p + "nope", p + "big"])
note("get_many", sorted((k[len(p):], hashlib.sha256(v).hexdigest()) for k, v in got.items()))
note("big", hashlib.sha256(c.get(p + "big")).hexdigest() == hashlib.sha256(big).hexdigest())
note("tricky", c.get(p + "t") == tricky)
v, cas = c.gets(p + "a")
note("gets", v)
note("cas_ok", c.cas(p + "a", b"alpha2", cas, noreply=False))
note("cas_stale", c.cas(p + "a", b"alpha3", cas, noreply=False))
note("after_cas", c.get(p + "a"))
note("gets_many", sorted((k[len(p):], v[0]) for k, v in c.gets_many([p + "a", p + "b"]).items()))
note("noreply_set", c.set(p + "n", b"quiet", noreply=True))
note("noreply_delete", c.delete(p + "b", noreply=True))
note("after_noreply", [c.get(p + "n"), c.get(p + "b")])
note("add_existing", c.add(p + "a", b"x", noreply=False))
note("replace_missing", c.replace(p + "zz", b"x", noreply=False))
note("set_i", c.set(p + "i", b"10", noreply=False))
note("incr", c.incr(p + "i", 5))
note("decr", c.decr(p + "i", 20))
note("incr_missing", c.incr(p + "nope", 1))
note("append", c.append(p + "a", b"!", noreply=False))
note("prepend", c.prepend(p + "a", b"<", noreply=False))
note("final", c.get(p + "a"))
note("touch", c.touch(p + "a", 100, noreply=False))
note("touch_missing", c.touch(p + "nope", 100, noreply=False))
note("delete", c.delete(p + "a", noreply=False))
note("delete_missing", c.delete(p + "a", noreply=False))
note("gone", c.get(p + "a"))
note("version", c.version().startswith(b"1."))
note("stats", sorted(k for k in c.stats() if k in (b"pid", b"uptime", b"curr_items")))
note("stats_slabs", len(c.stats("slabs")) > 0)
note("flush_all", c.flush_all(noreply=False))
note("flushed", c.get(p + "i"))
c.quit()
print(json.dumps(r))
"#;

#[test]
#[ignore = "needs memcached: make test-real"]
fn a_real_client_gets_the_same_results_through_the_proxy() {
    let server = memcached();
    let direct = python(
        CLIENT_SESSION,
        &[
            "127.0.0.1".into(),
            server.port.to_string(),
            "direct-".into(),
        ],
        PYMEMCACHE,
    );
    let proxy = proxy(&server.addr(), &[]);
    let through = python(
        CLIENT_SESSION,
        &[
            proxy.addr.ip().to_string(),
            proxy.addr.port().to_string(),
            "proxied-".into(),
        ],
        PYMEMCACHE,
    );
    assert!(direct.contains(r#"["cas_ok", "True"]"#), "{direct}");
    assert!(direct.contains(r#"["big", "True"]"#), "{direct}");
    let direct: Vec<&str> = direct.split("], [").collect();
    let through: Vec<&str> = through.split("], [").collect();
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(d, t, "direct and through the proxy differ");
    }
    assert_eq!(direct.len(), through.len());
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

/// Gets, sets with and without noreply, through a proxy whose calls all fail.
const ERROR_SESSION: &str = r#"
import json, sys
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError
host, port = sys.argv[1], int(sys.argv[2])
c = Client((host, port), connect_timeout=10, timeout=20)
r = []
for name, call in [
    ("get", lambda: c.get("k")),
    ("set", lambda: c.set("k", b"v", noreply=False)),
    ("get_many", lambda: c.get_many(["k", "l"])),
    ("incr", lambda: c.incr("n", 1)),
]:
    try:
        r.append([name, "no error", repr(call())])
    except MemcacheServerError as e:
        r.append([name, type(e).__name__, str(e)])
r.append(["set_noreply", repr(c.set("quiet", b"v", noreply=True))])
print(json.dumps(r))
"#;

#[test]
#[ignore = "needs memcached: make test-real"]
fn the_error_behavior_answers_server_error() {
    let server = memcached();
    let proxy = proxy(&server.addr(), &["--behavior", "100:error"]);
    let out = python(
        ERROR_SESSION,
        &[proxy.addr.ip().to_string(), proxy.addr.port().to_string()],
        PYMEMCACHE,
    );
    for name in ["get", "set", "get_many", "incr"] {
        let want = format!(
            r#"["{name}", "MemcacheServerError", "b'vaurien: injected error on {}'"]"#,
            if name == "get_many" { "get" } else { name }
        );
        assert!(out.contains(&want), "no {want} in {out}");
    }
    // A noreply set that fails is dropped: the client hears nothing, nothing is stored.
    assert!(out.contains(r#"["set_noreply", "True"]"#), "{out}");
    let mut direct = Raw::connect(&server.addr());
    assert_eq!(direct.call(b"get quiet k\r\n", &["END"]), "END\r\n");
}

#[test]
#[ignore = "needs memcached: make test-real"]
fn a_failed_call_leaves_the_connection_usable_and_pipelining_works() {
    let server = memcached();
    let proxy = proxy(
        &server.addr(),
        &[
            "--behavior",
            "100:transient",
            "--behavior-transient-agitate",
            "2",
        ],
    );
    let addr = proxy.addr.to_string();
    within(Duration::from_secs(30), "memcache session", move || {
        let mut c = Raw::connect(&addr);
        assert_eq!(
            c.call(b"set k 0 0 2\r\nhi\r\n", &[]),
            "SERVER_ERROR vaurien: injected error on set\r\n"
        );
        assert_eq!(
            c.call(b"get k\r\n", &["END"]),
            "SERVER_ERROR vaurien: injected error on get\r\n"
        );
        // The failed set never reached memcached; the connection goes on.
        assert_eq!(c.call(b"get k\r\n", &["END"]), "END\r\n");
        // Pipelined commands, one write: replies in order.
        c.send(
            b"set a 0 5 3\r\none\r\nset b 7 0 3 noreply\r\ntwo\r\nget a b c\r\n\
              incr a 1\r\ndelete a\r\ngets b\r\nversion\r\n",
        );
        assert_eq!(c.reply(&[]), "STORED\r\n");
        assert_eq!(
            c.reply(&["END"]),
            "VALUE a 0 3\r\none\r\nVALUE b 7 3\r\ntwo\r\nEND\r\n"
        );
        assert!(c.reply(&[]).starts_with("CLIENT_ERROR"));
        assert_eq!(c.reply(&[]), "DELETED\r\n");
        assert!(c.reply(&["END"]).starts_with("VALUE b 7 3 "));
        assert!(c.reply(&[]).starts_with("VERSION 1."));
        c.send(b"quit\r\n");
        let mut rest = Vec::new();
        c.r.read_to_end(&mut rest).expect("closed after quit");
        assert!(rest.is_empty());
    });
}

/// The same meta-command session, direct or through the proxy.
fn meta_session(addr: &str, p: &str) -> Vec<String> {
    let mut c = Raw::connect(addr);
    let mut out = Vec::new();
    let big = "x".repeat(300_000);
    let cmds: Vec<(String, Vec<&str>)> = vec![
        (format!("ms {p}a 5 T0 F3\r\nalpha\r\n"), vec![]),
        (format!("ms {p}big {} \r\n{big}\r\n", big.len()), vec![]),
        (format!("mg {p}a v f\r\n"), vec![]),
        (format!("mg {p}a\r\n"), vec![]),
        (format!("mg {p}none v\r\n"), vec![]),
        (format!("mg {p}big s\r\n"), vec![]),
        (format!("ma {p}n N0 J13 v\r\n"), vec![]),
        (format!("ma {p}n v\r\n"), vec![]),
        (format!("md {p}n\r\n"), vec![]),
        (format!("md {p}n\r\n"), vec![]),
        // A quiet batch ended by mn: misses say nothing, hits and errors do.
        (
            format!(
                "mg {p}none v q\r\nmg {p}a v q k\r\nms {p}q 1 q\r\nz\r\nmd {p}none q\r\nmn\r\n"
            ),
            vec!["MN"],
        ),
        (format!("mg {p}q v\r\n"), vec![]),
        (format!("gat 100 {p}a {p}q\r\n"), vec!["END"]),
        (format!("gats 100 {p}q\r\n"), vec!["END"]),
        (format!("touch {p}a 10\r\n"), vec![]),
        ("mn\r\n".to_string(), vec![]),
    ];
    for (cmd, end) in cmds {
        c.send(cmd.as_bytes());
        let reply = c.reply(&end);
        // Keys differ by prefix, gats cas values by server history.
        let reply = reply.replace(p, "");
        let reply = if cmd.starts_with("gats") {
            reply.split(' ').take(4).collect::<Vec<_>>().join(" ")
        } else {
            reply
        };
        out.push(reply);
    }
    out
}

#[test]
#[ignore = "needs memcached: make test-real"]
fn meta_commands_and_quiet_batches_go_through() {
    let server = memcached();
    let proxy = proxy(&server.addr(), &[]);
    let (backend, through) = (server.addr(), proxy.addr.to_string());
    let (direct, proxied) = within(Duration::from_secs(30), "meta sessions", move || {
        (
            meta_session(&backend, "D1r3ct_"),
            meta_session(&through, "Pr0xy_"),
        )
    });
    assert_eq!(direct, proxied);
    assert_eq!(direct[2], "VA 5 f3\r\nalpha\r\n");
    assert_eq!(direct[4], "EN\r\n");
    assert!(
        direct[10].contains("alpha\r\n") && direct[10].ends_with("MN\r\n"),
        "{}",
        direct[10]
    );
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

/// Writes `bytes` (then `quit`, when asked) on a fresh connection to `addr` and reads
/// everything until the connection closes.
fn transcript(addr: &str, bytes: &[u8], quit: bool) -> Vec<u8> {
    let mut all = bytes.to_vec();
    if quit {
        all.extend_from_slice(b"quit\r\n");
    }
    let addr = addr.to_string();
    within(Duration::from_secs(30), "a raw transcript", move || {
        let mut s = connect(&addr);
        let _ = s.write_all(&all);
        if !quit {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    })
}

#[test]
#[ignore = "needs memcached: make test-real"]
fn odd_input_gets_what_memcached_itself_answers() {
    let server = memcached();
    let mut proxy = proxy(&server.addr(), &[]);
    let addr = proxy.addr.to_string();
    let mut steady = Raw::connect(&addr);
    assert_eq!(steady.call(b"set s 0 0 1\r\n1\r\n", &[]), "STORED\r\n");
    let long_key = "k".repeat(251);
    let many_keys: String = (0..500).map(|i| format!(" key{i}")).collect();
    // A binary-protocol GET of "k": magic 0x80, opcode 0, key length 1, body length 1.
    let mut binary = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    binary.extend_from_slice(&[0; 12]);
    binary.push(b'k');
    let too_large = [&b"set big 0 0 2000000\r\n"[..], &[b'x'; 2_000_000], b"\r\n"].concat();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("an unknown command", b"foo\r\n".to_vec(), true),
        (
            "a storage line memcached cannot parse",
            b"set k 0 0 blah\r\nhello\r\n".to_vec(),
            true,
        ),
        (
            "a negative data length",
            b"set k 0 0 -1\r\nhello\r\n".to_vec(),
            true,
        ),
        (
            "a bad cas unique",
            b"cas k 0 0 1 notanumber\r\nx\r\n".to_vec(),
            true,
        ),
        (
            "extra words",
            b"set k 0 0 1 extra extra\r\nx\r\n".to_vec(),
            true,
        ),
        (
            "a key past 250 bytes",
            format!("set {long_key} 0 0 1\r\nx\r\n").into_bytes(),
            true,
        ),
        (
            "a data block not ended by CRLF",
            b"set k 0 0 3\r\nabcXY".to_vec(),
            true,
        ),
        (
            "a get of a key past 250 bytes",
            format!("get {long_key}\r\n").into_bytes(),
            true,
        ),
        (
            "a long get line",
            format!("get{many_keys}\r\n").into_bytes(),
            true,
        ),
        (
            "a long line that is not a get",
            format!("touch{many_keys}\r\n").into_bytes(),
            true,
        ),
        (
            "bad numbers",
            b"incr k notanumber\r\ndelete k 5\r\nflush_all abc\r\n".to_vec(),
            true,
        ),
        ("an object too large for the cache", too_large, true),
        ("the binary protocol", binary, false),
    ];
    for (what, bytes, quit) in &cases {
        let want = transcript(&server.addr(), bytes, *quit);
        let got = transcript(&addr, bytes, *quit);
        assert!(
            got == want,
            "{what}: through the proxy {:?}, directly {:?}",
            String::from_utf8_lossy(&got[..got.len().min(300)]),
            String::from_utf8_lossy(&want[..want.len().min(300)])
        );
        assert!(
            !want.is_empty() || *what == "the binary protocol",
            "{what}: no answer"
        );
    }
    assert_eq!(
        steady.call(b"get s\r\n", &["END"]),
        "VALUE s 0 1\r\n1\r\nEND\r\n"
    );
    assert_proxy_survived(&mut proxy, "odd memcache input");
}

#[test]
#[ignore = "needs memcached: make test-real"]
fn bandwidth_paces_a_value_that_arrives_intact() {
    let server = memcached();
    let value = "m".repeat(20_000);
    let mut direct = Raw::connect(&server.addr());
    direct.send(format!("set paced 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
    assert_eq!(direct.reply(&["STORED"]), "STORED\r\n");
    let proxy = proxy(
        &server.addr(),
        &["--behavior", "bandwidth", "--behavior-bandwidth-rate", "10"],
    );
    let addr = proxy.addr.to_string();
    let (reply, took) = within(Duration::from_secs(30), "a paced get", move || {
        let mut raw = Raw::connect(&addr);
        let t = Instant::now();
        raw.send(b"get paced\r\n");
        let reply = raw.reply(&["END"]);
        (reply, t.elapsed())
    });
    assert_eq!(
        reply,
        format!("VALUE paced 0 {}\r\n{value}\r\nEND\r\n", value.len())
    );
    // 20 kB at 10 KB/s: twenty writes of 1000 bytes, a tenth of a second apart.
    assert_delta(
        took,
        Duration::from_secs(2),
        Duration::from_millis(600),
        "20 kB at 10 KB/s",
    );
}
