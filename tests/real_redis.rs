//! `--protocol redis` against a real `redis-server`, with the real `redis-cli` and
//! `redis-benchmark` as clients.
//!
//! Every test here is `#[ignore]`d: `make test` skips them, `make test-real` (see `.ci/run`)
//! runs them. They fail, never skip, when `redis-server`, `redis-cli` or `redis-benchmark` is
//! missing (Debian: `apt-get install redis-server redis-tools`).
//!
//! Each test starts its own private server (so tests may run in parallel and share no keys):
//! `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no --dir DIR` on a free port,
//! with its working directory under the temp dir (`vaurien-redis-PID-N`). It is ready when its
//! log on stdout says "Ready to accept connections" (waited for inside `within`, never by
//! sleeping). It is stopped by its pid (SIGTERM, SIGKILL after 10 s) when the test's handle
//! drops, panics included; should the test binary die first, the server gets SIGTERM through
//! `PR_SET_PDEATHSIG`. Directories left by such a death are removed by the next run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The path of the redis tool `name`; fails the test if it is missing.
fn redis_tool(name: &str) -> std::path::PathBuf {
    need_tool(&[name], "the Debian packages redis-server and redis-tools")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A private redis-server, stopped by its pid when dropped.
struct RedisServer {
    /// Its port and directory.
    process: ServerProcess,
    /// Everything it logged so far.
    log: OutputLog,
}

impl RedisServer {
    /// Starts a server on a free port (another one if that port was taken meanwhile). The
    /// calling thread must outlive the server: it is the server's parent for
    /// `PR_SET_PDEATHSIG`, which a test thread is.
    fn start() -> RedisServer {
        let bin = redis_tool("redis-server");
        redis_tool("redis-cli");
        let dir = fresh_dir("vaurien-redis").expect("create the redis directory");
        let started = on_a_free_port(|port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--enable-debug-command", "local"])
                .arg("--dir")
                .arg(&dir)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("spawn redis-server");
            // Both outputs are read for as long as the server runs, so that it never blocks
            // on a full pipe; the first line saying it is ready is reported.
            let (log, ready_rx) = OutputLog::watch(
                vec![
                    Box::new(child.stdout.take().expect("stdout")),
                    Box::new(child.stderr.take().expect("stderr")),
                ],
                Some("Ready to accept connections"),
            );
            let process = ServerProcess::new(child, port, Duration::from_secs(10));
            let ready = within(
                Duration::from_secs(30),
                "redis-server to be ready",
                move || ready_rx.recv().unwrap_or(false),
            );
            if ready {
                Ok((process, log))
            } else {
                Err(log.text())
            }
        });
        match started {
            Ok((process, log)) => RedisServer {
                process: process.with_dir(dir),
                log,
            },
            Err(log) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("redis-server did not start; its log:\n{log}");
            }
        }
    }

    fn addr(&self) -> String {
        self.process.addr()
    }

    fn port(&self) -> u16 {
        self.process.port
    }

    fn log(&self) -> String {
        self.log.text()
    }
}

/// `vaurien --protocol redis --backend SERVER --behavior MIX EXTRA...`.
fn redis_proxy(server: &RedisServer, mix: &str, extra: &[&str]) -> ProxyProcess {
    let args = [&["--behavior", mix][..], extra].concat();
    protocol_proxy("redis", &server.addr(), &args)
}

/// Runs `TOOL ARGS` with `stdin`; the whole run is bounded by `limit`, after which the tool
/// is killed and the test fails.
fn run(tool: &str, args: &[String], stdin: &str, limit: Duration) -> Output {
    let mut cmd = Command::new(redis_tool(tool));
    cmd.args(args);
    run_tool(cmd, Some(stdin), limit).out
}

/// `redis-cli -h 127.0.0.1 -p PORT ARGS` with the commands of `script` on its stdin.
fn redis_cli(port: u16, args: &[&str], script: &str) -> Output {
    let mut all = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run("redis-cli", &all, script, Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command in RESP.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads exactly `want.len()` bytes and checks them.
fn expect(s: &mut TcpStream, want: &[u8], what: &str) {
    let got = read_exactly(s, want.len()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(text(&got), text(want), "{what}");
}

/// Reads one line (CRLF included).
fn read_reply_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).expect("read a reply line");
        line.push(byte[0]);
    }
    text(&line)
}

/// The default tests of redis-benchmark, in the order it runs them.
const BENCHMARK_TESTS: &[&str] = &[
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

/// Runs `redis-benchmark -q -n N EXTRA` against `port`; checks that every default test
/// reports its requests per second, and returns those lines.
fn benchmark(port: u16, n: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "-n"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(n.to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let started = Instant::now();
    let out = run("redis-benchmark", &args, "", Duration::from_secs(300));
    let took = started.elapsed();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Progress lines end with CR; the final result of each test with LF.
    let results: Vec<String> = stdout
        .split('\n')
        .map(|l| l.rsplit('\r').next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    for line in &results {
        assert!(
            line.contains("requests per second") && !line.to_lowercase().contains("error"),
            "redis-benchmark {args:?}: unexpected line {line:?}\n{stdout}\n{stderr}"
        );
    }
    let names: Vec<&str> = results
        .iter()
        .map(|l| l.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        names, BENCHMARK_TESTS,
        "redis-benchmark {args:?}:\n{stdout}"
    );
    assert!(
        !stderr.to_lowercase().contains("error"),
        "redis-benchmark {args:?}: {stderr}"
    );
    eprintln!("redis-benchmark {} took {took:?}", args.join(" "));
    results
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn redis_benchmark_default_tests_pass_through_the_proxy() {
    let server = RedisServer::start();
    let mut proxy = redis_proxy(&server, "100:dummy", &[]);
    let port = proxy.addr.port();
    // 20,000 requests per test against a debug build of the proxy: about 18 s on two cores,
    // then about 14 s with 16 commands pipelined per client.
    for extra in [&[][..], &["-P", "16"]] {
        for line in benchmark(port, 20_000, extra) {
            eprintln!("  via vaurien {extra:?}: {line}");
        }
    }
    assert!(proxy.is_running(), "vaurien exited:\n{}", proxy.log());
    let log = proxy.log();
    assert!(
        !log.contains("WARN") && !log.contains("panicked"),
        "vaurien logged warnings during the benchmark:\n{log}"
    );
}

/// Commands for `redis-cli`, one a line: every RESP2 reply type, nested replies (MULTI/EXEC,
/// Lua tables, XRANGE), nulls and errors. Starts from an empty database so that two runs
/// answer alike.
const SCRIPT: &str = r#"FLUSHALL
PING
SET greeting "hello world"
GET greeting
GET missing
SET bin "a\x00\xff\r\nb"
GET bin
RPUSH list a b c "d e" ""
LRANGE list 0 -1
LRANGE missing 0 -1
HSET hash f1 v1 f2 v2 f3 ""
HGETALL hash
HGET hash nope
MGET greeting missing list nope bin
INCR counter
INCRBY counter 41
INCRBYFLOAT fl 1.5
SADD set x y z
SCARD set
ZADD z 1 a 2.5 b
ZRANGE z 0 -1 WITHSCORES
ZSCORE z b
XADD s 1-1 f v g w
XADD s 2-1 f x
XRANGE s - +
XREAD COUNT 10 STREAMS s 0
EVAL "return {1,{2,{3,'x',{}}},redis.status_reply('fine'),false,'s'}" 0
EVAL "return redis.error_reply('MYERR custom')" 0
MULTI
SET k1 v1
INCR counter
LRANGE list 0 1
HGETALL hash
GET missing
LPUSH greeting x
XRANGE s - +
EXEC
WATCH greeting
MULTI
EXEC
LPUSH greeting x
NOSUCHCOMMAND a b
GET
TYPE list
EXISTS missing greeting
DEL greeting
GET greeting
ECHO "line1\nline2"
"#;

/// RESP3 replies of every type: maps, sets, doubles, booleans, big numbers, verbatim
/// strings, attributes, pushes and nulls (`DEBUG PROTOCOL`, enabled for local clients).
const SCRIPT_RESP3: &str = r#"FLUSHALL
HSET hash f1 v1 f2 v2
HGETALL hash
SADD set only
SMEMBERS set
ZADD z 2.5 a
ZSCORE z a
ZRANGE z 0 -1 WITHSCORES
GET missing
DEBUG PROTOCOL string
DEBUG PROTOCOL integer
DEBUG PROTOCOL double
DEBUG PROTOCOL null
DEBUG PROTOCOL array
DEBUG PROTOCOL set
DEBUG PROTOCOL map
DEBUG PROTOCOL push
DEBUG PROTOCOL verbatim
DEBUG PROTOCOL true
DEBUG PROTOCOL false
EVAL "redis.setresp(3); return redis.call('HGETALL', KEYS[1])" 1 hash
EVAL "return {double=3.5}" 0
MULTI
HGETALL hash
SMEMBERS set
ZSCORE z a
EXEC
PING
"#;

#[test]
#[ignore = "needs redis-server: make test-real"]
fn redis_cli_sees_the_same_replies_through_the_proxy() {
    let server = RedisServer::start();
    let mut proxy = redis_proxy(&server, "100:dummy", &[]);
    for (args, script) in [
        (&["--no-raw"][..], SCRIPT),
        (&["--raw"], SCRIPT),
        (&["-3", "--no-raw"], SCRIPT_RESP3),
        (&["-3", "--raw"], SCRIPT_RESP3),
    ] {
        let direct = redis_cli(server.port(), args, script);
        let proxied = redis_cli(proxy.addr.port(), args, script);
        let (direct_out, proxied_out) = (text(&direct.stdout), text(&proxied.stdout));
        assert!(
            direct_out.lines().count() > 40,
            "redis-cli {args:?} direct gave too little:\n{direct_out}\n{}",
            text(&direct.stderr)
        );
        assert_eq!(
            proxied_out, direct_out,
            "redis-cli {args:?}: through the proxy (left) and direct (right) differ"
        );
        assert_eq!(text(&proxied.stderr), text(&direct.stderr));
        assert_eq!(proxied.status.code(), direct.status.code());
    }
    // The replies did carry the types the script asks for.
    let resp3 = text(&redis_cli(proxy.addr.port(), &["-3", "--no-raw"], SCRIPT_RESP3).stdout);
    for shown in ["=>", "(double) 2.5", "(true)", "(false)", "(nil)"] {
        assert!(resp3.contains(shown), "no {shown:?} in:\n{resp3}");
    }
    let resp2 = text(&redis_cli(proxy.addr.port(), &["--no-raw"], SCRIPT).stdout);
    for shown in [
        "(nil)",
        "(error) WRONGTYPE",
        "(error) MYERR custom",
        "(integer) 42",
        "(empty array)",
        "      3) (empty array)",
        "   2) 1) 1) \"1-1\"",
    ] {
        assert!(resp2.contains(shown), "no {shown:?} in:\n{resp2}");
    }
    assert!(proxy.is_running());
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

/// Writes `commands` at once on a fresh connection to `addr`, ending with QUIT, and reads
/// everything until the connection closes; the client id in a HELLO reply is blanked.
fn transcript(addr: SocketAddr, commands: &[Vec<u8>]) -> Vec<u8> {
    let mut all = commands.concat();
    all.extend_from_slice(&command(&["QUIT"]));
    within(
        Duration::from_secs(30),
        "a pipelined transcript",
        move || {
            let mut s = connect(addr);
            s.write_all(&all).expect("write the commands");
            let mut got = read_to_end(&mut s).expect("read the replies");
            let marker = b"$2\r\nid\r\n:";
            if let Some(at) = got.windows(marker.len()).position(|w| w == marker) {
                let from = at + marker.len();
                let end = from + got[from..].iter().position(|&b| b == b'\r').unwrap_or(0);
                got.splice(from..end, *b"ID");
            }
            got
        },
    )
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn pipelined_resp3_bytes_are_forwarded_untouched() {
    let server = RedisServer::start();
    let proxy = redis_proxy(&server, "100:dummy", &[]);
    let mut commands = vec![
        command(&["HELLO", "3"]),
        command(&["FLUSHALL"]),
        command(&["HSET", "h", "a", "1", "b", "2"]),
        command(&["HGETALL", "h"]),
        command(&["SADD", "s", "x"]),
        command(&["SMEMBERS", "s"]),
        b"PING inline\r\n".to_vec(),
        b"\r\n".to_vec(),
        command(&["MULTI"]),
        command(&["HGETALL", "h"]),
        command(&["ZADD", "z", "1.5", "m"]),
        command(&["ZSCORE", "z", "m"]),
        command(&["EXEC"]),
        command(&["SET", "big", &"v".repeat(300_000)]),
        command(&["GET", "big"]),
        command(&["MGET", "h", "big", "nope"]),
    ];
    for kind in [
        "string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push",
        "verbatim", "true", "false",
    ] {
        commands.push(command(&["DEBUG", "PROTOCOL", kind]));
    }
    let direct = transcript(server.addr().parse().unwrap(), &commands);
    let proxied = transcript(proxy.addr, &commands);
    assert_eq!(
        proxied.len(),
        direct.len(),
        "through the proxy:\n{}\ndirect:\n{}",
        text(&proxied[..proxied.len().min(2000)]),
        text(&direct[..direct.len().min(2000)])
    );
    if let Some(at) = (0..direct.len()).find(|&i| proxied[i] != direct[i]) {
        let from = at.saturating_sub(200);
        panic!(
            "through the proxy:\n{}\ndirect:\n{}",
            text(&proxied[from..(at + 200).min(direct.len())]),
            text(&direct[from..(at + 200).min(direct.len())])
        );
    }
    for kind in [
        "\r\n%", "\r\n~", "\r\n,", "\r\n(", "\r\n#t", "\r\n_", "\r\n|", "\r\n>", "\r\n=",
    ] {
        assert!(
            text(&direct).contains(kind),
            "no {kind:?} reply in the transcript"
        );
    }
    assert!(direct.ends_with(b"+OK\r\n"), "QUIT answered");
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn error_behavior_answers_err_and_the_connection_goes_on() {
    let server = RedisServer::start();
    let proxy = redis_proxy(
        &server,
        "100:error",
        &["--http", "--http-host", "127.0.0.1", "--http-port", "0"],
    );
    let api = proxy.http_addr().to_string();

    // redis-cli shows the error reply.
    let out = redis_cli(proxy.addr.port(), &["--no-raw"], "SET k v\nGET k\n");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("(error) ERR vaurien:") && stdout.matches("(error)").count() == 2,
        "redis-cli through the error behavior:\n{stdout}{}",
        text(&out.stderr)
    );

    // One raw connection: an error, the behavior back to dummy, then real answers on the
    // same connection.
    let addr = proxy.addr;
    within(
        Duration::from_secs(30),
        "the error then dummy dialogue",
        move || {
            let mut s = connect(addr);
            s.write_all(&command(&["SET", "k", "v"])).unwrap();
            let line = read_reply_line(&mut s);
            assert!(line.starts_with("-ERR vaurien: "), "{line:?}");
            // pipelined commands all get their error, in order
            let two = [command(&["GET", "k"]), command(&["PING"])].concat();
            s.write_all(&two).unwrap();
            assert!(read_reply_line(&mut s).contains("GET"));
            assert!(read_reply_line(&mut s).contains("PING"));

            let client = vaurien::Client::new(&api).expect("API client");
            client
                .set_behavior("dummy", &Default::default())
                .expect("set the behavior back to dummy");

            s.write_all(&command(&["SET", "k", "v"])).unwrap();
            expect(&mut s, b"+OK\r\n", "SET after dummy");
            s.write_all(&command(&["GET", "k"])).unwrap();
            expect(&mut s, b"$1\r\nv\r\n", "GET after dummy");
        },
    );
    // The failed SET never reached the server: the key was set once, by the dummy call.
    let out = redis_cli(server.port(), &[], "INFO commandstats\n");
    let stats = text(&out.stdout);
    assert!(stats.contains("cmdstat_set:calls=1,"), "{stats}");
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn subscribe_and_monitor_become_tunnels() {
    let server = RedisServer::start();
    let proxy = redis_proxy(&server, "100:dummy", &[]);
    let addr = proxy.addr;
    within(
        Duration::from_secs(30),
        "publish, subscribe, monitor",
        move || {
            let mut sub = connect(addr);
            sub.write_all(&command(&["SUBSCRIBE", "news", "sport"]))
                .unwrap();
            expect(
            &mut sub,
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n",
            "subscribe confirmations",
        );
            let mut monitor = connect(addr);
            monitor.write_all(b"MONITOR\r\n").unwrap();
            expect(&mut monitor, b"+OK\r\n", "MONITOR");

            let mut publisher = connect(addr);
            for (channel, message) in [("news", "hello"), ("sport", "goal"), ("news", "again")] {
                publisher
                    .write_all(&command(&["PUBLISH", channel, message]))
                    .unwrap();
                expect(&mut publisher, b":1\r\n", "PUBLISH reaches one subscriber");
                let want = format!(
                    "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{message}\r\n",
                    channel.len(),
                    message.len()
                );
                expect(&mut sub, want.as_bytes(), "the published message");
                let line = read_reply_line(&mut monitor);
                assert!(
                    line.contains(&format!("\"PUBLISH\" \"{channel}\" \"{message}\"")),
                    "{line:?}"
                );
            }
            // The subscriber leaves subscribed mode and is an ordinary client again.
            sub.write_all(&command(&["UNSUBSCRIBE"])).unwrap();
            let mut got = Vec::new();
            while !got.ends_with(b":0\r\n") {
                got.push(read_exactly(&mut sub, 1).unwrap()[0]);
            }
            sub.write_all(&command(&["PING"])).unwrap();
            expect(&mut sub, b"+PONG\r\n", "PING after UNSUBSCRIBE");
        },
    );
    // redis-cli as a subscriber, too
    let sub_out = {
        let port = proxy.addr.port();
        let mut cmd = Command::new(redis_tool("redis-cli"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "SUBSCRIBE",
            "cli",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = KillOnDrop(cmd.spawn().expect("spawn redis-cli SUBSCRIBE"));
        let rx = lines_of(child.0.stdout.take().unwrap());
        let publish_port = proxy.addr.port();
        let got = within(Duration::from_secs(30), "redis-cli SUBSCRIBE", move || {
            let mut lines = Vec::new();
            // "subscribe", "cli", "1": subscribed
            while lines.len() < 3 {
                lines.push(rx.recv().expect("a line from redis-cli"));
            }
            let out = redis_cli(publish_port, &[], "PUBLISH cli from-the-cli\n");
            assert_eq!(text(&out.stdout).trim(), "1");
            while lines.len() < 6 {
                lines.push(rx.recv().expect("a line from redis-cli"));
            }
            lines
        });
        drop(child);
        got
    };
    assert_eq!(
        sub_out,
        ["subscribe", "cli", "1", "message", "cli", "from-the-cli"]
    );
}

/// Writes `bytes` then QUIT on a fresh connection to `addr` and reads everything until the
/// connection closes.
fn raw_transcript(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut all = bytes.to_vec();
    all.extend_from_slice(&command(&["QUIT"]));
    within(Duration::from_secs(30), "a raw transcript", move || {
        let mut s = connect(addr);
        // The server may close before it read everything: a write error is its answer too.
        let _ = s.write_all(&all);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    })
}

/// `EVAL SCRIPT 1 KEY ARGS...` in RESP.
fn eval(script: &str, key: &str, args: &[String]) -> Vec<u8> {
    let mut all = vec!["EVAL", script, "1", key];
    all.extend(args.iter().map(String::as_str));
    command(&all)
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn odd_input_gets_what_redis_itself_answers() {
    let server = RedisServer::start();
    let mut proxy = redis_proxy(&server, "100:dummy", &[]);
    let direct: SocketAddr = server.addr().parse().unwrap();
    // A client that stays connected throughout.
    let mut steady = connect(proxy.addr);
    steady.write_all(&command(&["SET", "steady", "1"])).unwrap();
    expect(&mut steady, b"+OK\r\n", "steady client");

    let ping = command(&["PING"]);
    let with_ping = |first: &[u8]| [first, &ping].concat();
    let nested = "local a = {} local b = a for i = 1, 10000 do local c = {} b[1] = c b = c end \
                  return a";
    let lpush = "redis.call('DEL', KEYS[1]) return redis.call('LPUSH', KEYS[1], unpack(ARGV))";
    let values: Vec<String> = (0..7999).map(|i| format!("v{i}")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "empty multibulk counts",
            with_ping(b"*-10\r\n*0\r\n*-1\r\n"),
        ),
        ("blank lines", with_ping(b"\r\n\n\r\n")),
        (
            "an integer where a bulk string must be",
            b"*2\r\n$3\r\nGET\r\n:1\r\n".to_vec(),
        ),
        ("no '$'", b"*1\r\nfoo\r\n".to_vec()),
        ("a negative bulk length", b"*1\r\n$-5\r\n".to_vec()),
        ("a bad multibulk count", b"*abc\r\n".to_vec()),
        (
            "a count with a leading zero",
            b"*01\r\n$4\r\nPING\r\n".to_vec(),
        ),
        ("unbalanced quotes", b"SET \"a b\r\n".to_vec()),
        ("an inline command past 64 KiB", vec![b'a'; 70 * 1024]),
        (
            "no CRLF after a bulk string",
            with_ping(b"*1\r\n$4\r\nPINGxx"),
        ),
        (
            "a bulk count string past 64 KiB",
            [&b"*1\r\n$"[..], &[b'1'; 70 * 1024]].concat(),
        ),
        ("a Lua reply nested past its stack", eval(nested, "n", &[])),
        ("LPUSH of 7,999 values from Lua", eval(lpush, "q", &values)),
    ];
    for (what, bytes) in &cases {
        let want = raw_transcript(direct, bytes);
        let got = raw_transcript(proxy.addr, bytes);
        assert!(
            got == want,
            "{what}: through the proxy {:?}..., directly {:?}...",
            text(&got[..got.len().min(200)]),
            text(&want[..want.len().min(200)])
        );
    }
    let lua = raw_transcript(proxy.addr, &cases[11].1);
    assert!(
        lua.starts_with(&b"*1\r\n".repeat(7000)) && text(&lua).contains("lua stack limit"),
        "{}",
        text(&lua[lua.len().saturating_sub(200)..])
    );
    assert!(text(&raw_transcript(proxy.addr, &cases[12].1)).starts_with(":7999\r\n"));
    // Others are unaffected: the steady connection and a new client.
    steady.write_all(&command(&["INCR", "steady"])).unwrap();
    expect(
        &mut steady,
        b":2\r\n",
        "the steady client after the odd input",
    );
    let out = redis_cli(proxy.addr.port(), &[], "PING\n");
    assert_eq!(text(&out.stdout).trim(), "PONG");
    assert_proxy_survived(&mut proxy, "odd redis input");
    assert!(server.log().contains("Ready to accept connections"));
    assert!(
        has_line_with(&proxy.log(), &["cannot frame", "goes through untouched"]),
        "{}",
        proxy.log()
    );
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn idle_sessions_give_back_the_buffers_of_their_largest_messages() {
    const SESSIONS: usize = 20;
    let server = RedisServer::start();
    let proxy = redis_proxy(&server, "100:dummy", &[]);
    // An MSET of 60,000 short keys, and the MGET of them: over 1 MiB of head each way.
    let keys: Vec<String> = (0..60_000).map(|i| format!("key{i:06}")).collect();
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.extend([k.as_str(), "v"]);
    }
    let mset = command(&mset);
    let mget = command(
        &[
            &["MGET"][..],
            &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    let mut sessions: Vec<TcpStream> = (0..SESSIONS).map(|_| proxy.connect()).collect();
    for s in &mut sessions {
        s.write_all(&command(&["PING"])).unwrap();
        expect(s, b"+PONG\r\n", "a warm session");
    }
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    let sessions = within(Duration::from_secs(120), "large messages", move || {
        for s in &mut sessions {
            s.write_all(&mset).unwrap();
            expect(s, b"+OK\r\n", "MSET");
            s.write_all(&mget).unwrap();
            let reply = read_exactly(s, 60_000 * 7 + 8).expect("the MGET reply");
            assert!(reply.starts_with(b"*60000\r\n$1\r\nv\r\n"));
        }
        sessions
    });
    let growth = rss_kib(pid).saturating_sub(before);
    assert!(
        growth < 10 * 1024,
        "RSS grew by {growth} KiB with {SESSIONS} idle sessions after large messages"
    );
    drop(sessions);
}

/// One command on a fresh direct connection to `server`, its reply line.
fn direct_command(server: &RedisServer, args: &[&str]) -> String {
    let mut s = connect(server.addr().as_str());
    s.write_all(&command(args)).unwrap();
    read_reply_line(&mut s)
}

/// Waits (at most 10 s) until the server counts `n` clients blocked in a command.
fn wait_blocked_clients(server: &RedisServer, n: usize) {
    let want = format!("blocked_clients:{n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(server.addr().as_str());
        s.write_all(&command(&["INFO", "clients"])).unwrap();
        let header = read_reply_line(&mut s);
        let len: usize = header[1..].trim().parse().expect("a bulk reply");
        let info = text(&read_exactly(&mut s, len + 2).unwrap());
        if info.lines().any(|l| l.trim() == want) {
            return;
        }
        assert!(Instant::now() < deadline, "never {want}:\n{info}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn blocking_commands_wait_past_the_idle_timeout() {
    let server = RedisServer::start();
    let proxy = redis_proxy(&server, "100:dummy", &["--timeout", "1"]);
    let addr = proxy.addr;
    // BLPOP with a timeout of its own, answered by a push 2 s later.
    let waiter = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(&command(&["BLPOP", "jobs", "10"])).unwrap();
        let t = Instant::now();
        let reply = [read_reply_line(&mut s), read_reply_line(&mut s)].concat();
        (reply, t.elapsed())
    });
    wait_blocked_clients(&server, 1);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(direct_command(&server, &["RPUSH", "jobs", "j1"]), ":1\r\n");
    let (reply, took) = waiter.join().expect("the waiting client");
    assert!(reply.starts_with("*2\r\n$4\r\n"), "{reply:?}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    let mut rest = connect(addr);
    rest.write_all(&command(&["LPOP", "jobs"])).unwrap();
    assert_eq!(read_reply_line(&mut rest), "$-1\r\n");
    // XREAD BLOCK that times out on its own after 2.5 s: the server's nil, not a cut.
    within(Duration::from_secs(20), "XREAD BLOCK", move || {
        let mut s = connect(addr);
        s.write_all(&command(&[
            "XREAD", "BLOCK", "2500", "STREAMS", "events", "$",
        ]))
        .unwrap();
        assert_eq!(read_reply_line(&mut s), "*-1\r\n");
        s.write_all(&command(&["PING"])).unwrap();
        assert_eq!(read_reply_line(&mut s), "+PONG\r\n", "still connected");
    });
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn a_client_that_leaves_a_blocking_command_takes_nothing_pushed_after() {
    let server = RedisServer::start();
    // The default --timeout (30 s) would keep the abandoned BLPOP at the server until then.
    let proxy = redis_proxy(&server, "100:dummy", &[]);
    let mut s = proxy.connect();
    s.write_all(&command(&["BLPOP", "queue", "0"])).unwrap();
    wait_blocked_clients(&server, 1);
    drop(s);
    // The proxy notices and passes the close on: the server drops the blocked command.
    wait_blocked_clients(&server, 0);
    assert_eq!(
        direct_command(&server, &["RPUSH", "queue", "precious"]),
        ":1\r\n"
    );
    assert_eq!(direct_command(&server, &["LLEN", "queue"]), ":1\r\n");
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn watch_multi_exec_beside_a_blocked_brpoplpush_matches_a_direct_connection() {
    // What once differed: a BRPOPLPUSH blocked past --timeout was cut by the proxy, the
    // server dropped it, the pushed value stayed in src and the WATCHed dst was never
    // touched, so EXEC succeeded where a direct connection gets nil.
    let run = |addr: String| -> (String, String) {
        let server_addr = addr.clone();
        let blocked = std::thread::spawn(move || {
            let mut a = connect(server_addr.as_str());
            a.write_all(&command(&["BRPOPLPUSH", "src", "dst", "10"]))
                .unwrap();
            [read_reply_line(&mut a), read_reply_line(&mut a)].concat()
        });
        let mut b = connect(addr.as_str());
        b.write_all(&command(&["WATCH", "dst"])).unwrap();
        assert_eq!(read_reply_line(&mut b), "+OK\r\n");
        // A blocks for 3 s, past the proxy's --timeout of 2 s; B is never idle that long.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(1000));
            b.write_all(&command(&["PING"])).unwrap();
            assert_eq!(read_reply_line(&mut b), "+PONG\r\n");
        }
        let mut c = connect(addr.as_str());
        c.write_all(&command(&["LPUSH", "src", "x"])).unwrap();
        assert_eq!(read_reply_line(&mut c), ":1\r\n");
        let moved = blocked.join().expect("the blocked client");
        b.write_all(
            &[
                command(&["MULTI"]),
                command(&["SET", "k", "v"]),
                command(&["EXEC"]),
            ]
            .concat(),
        )
        .unwrap();
        let exec = [
            read_reply_line(&mut b),
            read_reply_line(&mut b),
            read_reply_line(&mut b),
        ]
        .concat();
        c.write_all(&command(&["DEL", "src", "dst", "k"])).unwrap();
        read_reply_line(&mut c);
        (moved, exec)
    };
    let server = RedisServer::start();
    let direct = run(server.addr());
    let proxy = redis_proxy(&server, "100:dummy", &["--timeout", "2"]);
    let through = run(proxy.addr.to_string());
    assert_eq!(
        direct,
        (
            "$1\r\nx\r\n".to_string(),
            "+OK\r\n+QUEUED\r\n*-1\r\n".to_string()
        )
    );
    assert_eq!(through, direct);
}

/// Writes `n` INCR of `key` in one write and reads the `n` replies, one line each.
fn pipelined_incr(addr: SocketAddr, key: &str, n: usize) -> Vec<String> {
    let all = command(&["INCR", key]).repeat(n);
    within(Duration::from_secs(30), "pipelined INCRs", move || {
        let mut s = connect(addr);
        s.write_all(&all).expect("write the commands");
        let mut r = BufReader::new(s);
        (0..n)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).expect("read a reply");
                line
            })
            .collect::<Vec<_>>()
    })
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn a_long_pipeline_is_answered_in_order_batched_or_call_by_call() {
    let server = RedisServer::start();
    // 100:dummy forwards the pipeline in batches.
    let proxy = redis_proxy(&server, "100:dummy", &[]);
    let replies = pipelined_incr(proxy.addr, "batched", 5000);
    let expected: Vec<String> = (1..=5000).map(|i| format!(":{i}\r\n")).collect();
    assert_eq!(replies, expected, "every INCR answered once, in order");
    // A mix with errors goes call by call: the backend counts only what was forwarded.
    let proxy = redis_proxy(&server, "30:error", &["--seed", "3"]);
    let replies = pipelined_incr(proxy.addr, "mixed", 2000);
    let mut forwarded = 0;
    for reply in &replies {
        if reply.starts_with("-ERR vaurien") {
            continue;
        }
        forwarded += 1;
        assert_eq!(reply, &format!(":{forwarded}\r\n"), "replies stay in order");
    }
    assert!(
        (300..1000).contains(&(replies.len() - forwarded)),
        "about 30% of 2000 calls failed, got {}",
        replies.len() - forwarded
    );
    let out = redis_cli(server.port(), &["GET", "mixed"], "");
    assert_eq!(text(&out.stdout).trim(), forwarded.to_string());
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn slicer_fragments_a_reply_that_arrives_whole() {
    let server = RedisServer::start();
    let value = "v".repeat(200);
    direct_command(&server, &["SET", "sliced", &value]);
    let proxy = redis_proxy(
        &server,
        "slicer",
        &[
            "--behavior-slicer-average-size",
            "10",
            "--behavior-slicer-delay",
            "2000",
        ],
    );
    let addr = proxy.addr;
    let want = format!("$200\r\n{value}\r\n").into_bytes();
    let reads = within(Duration::from_secs(30), "a sliced GET", move || {
        let mut s = connect(addr);
        s.write_all(&command(&["GET", "sliced"])).unwrap();
        let mut got = Vec::new();
        let mut reads = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want.len() {
            let n = s.read(&mut buf).expect("the reply");
            assert!(n > 0, "the reply ended after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            reads.push(n);
        }
        assert_eq!(text(&got), text(&want));
        // The connection goes on: the next call is answered too.
        s.write_all(&command(&["PING"])).unwrap();
        let mut pong = Vec::new();
        while pong.len() < 7 {
            let n = s.read(&mut buf).expect("PONG");
            assert!(n > 0);
            pong.extend_from_slice(&buf[..n]);
        }
        assert_eq!(pong, b"+PONG\r\n");
        reads
    });
    assert!(reads.len() >= 15, "{} reads: {reads:?}", reads.len());
    assert!(reads.iter().all(|&n| n <= 10), "{reads:?}");
}

#[test]
#[ignore = "needs redis-server: make test-real"]
fn a_subscription_is_a_stream_whose_messages_latency_set_through_the_api_delays() {
    let server = RedisServer::start();
    let proxy = redis_proxy(
        &server,
        "dummy",
        &["--http", "--http-host", "127.0.0.1", "--http-port", "0"],
    );
    let (addr, http, direct) = (proxy.addr, proxy.http_addr(), server.addr());
    let took = within(Duration::from_secs(30), "published messages", move || {
        let mut sub = connect(addr);
        sub.write_all(&command(&["SUBSCRIBE", "news"])).unwrap();
        expect(
            &mut sub,
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
            "the subscription",
        );
        let mut publisher = connect(direct.as_str());
        let mut publish = |message: &str| {
            publisher
                .write_all(&command(&["PUBLISH", "news", message]))
                .unwrap();
            let sent = Instant::now();
            expect(&mut publisher, b":1\r\n", "PUBLISH reaches the subscriber");
            let want = format!(
                "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${}\r\n{message}\r\n",
                message.len()
            );
            expect(&mut sub, want.as_bytes(), "the published message");
            sent.elapsed()
        };
        let before = publish("fast");
        set_behavior(http, r#"{"name": "latency", "latency": 300}"#);
        let after = publish("slow");
        (before, after)
    });
    assert!(
        took.0 < Duration::from_millis(200),
        "before the change: {:?}",
        took.0
    );
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(1300)).contains(&took.1),
        "with latency 300: {:?}",
        took.1
    );
}
