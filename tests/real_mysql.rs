//! `--protocol mysql` against a real MariaDB server and the real `mariadb` command-line client.
//!
//! Every test here is `#[ignore]`d: `make test` skips them, `make test-real` (see `.ci/run`)
//! runs them. They fail, never skip, when `mariadbd`, `mariadb-install-db` or `mariadb` is
//! missing (Debian: `apt-get install mariadb-server mariadb-client`).
//!
//! The module shares one private server, started by the first test that needs it:
//! `mariadb-install-db` fills a datadir under the temp dir (`vaurien-mariadb-PID-N`, root with an
//! empty password), then `mariadbd --no-defaults` serves it on 127.0.0.1 and a free port, with
//! its socket and pid file in that directory and no binary log. It is ready when its stderr
//! says "ready for connections" (waited for inside `within`, never by sleeping).
//!
//! Clean-up: an `atexit` handler of the test binary sends the server SIGTERM by its pid, waits
//! for it to exit (SIGKILL after 30 s) and removes the directory. If the test binary dies
//! without running `atexit` handlers (a signal), the server still gets SIGTERM: it is spawned
//! with `PR_SET_PDEATHSIG` from a thread that lives as long as the process. Directories left by
//! such a death are removed by the next run once their pid is gone.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::*;

/// The private MariaDB server of this module.
struct MariaDb {
    /// Its port, and its directory (datadir, socket, pid file); stopped (SIGTERM, SIGKILL
    /// after 30 s) and the directory removed when the test binary exits.
    process: ServerProcess,
    /// Everything it wrote on stderr so far.
    log: OutputLog,
}

static SERVER: OnceLock<Result<MariaDb, String>> = OnceLock::new();

/// The module's server, started on first use; panics (fails the test) if it cannot start.
fn server() -> &'static MariaDb {
    shared_server(&SERVER, "MariaDB server", start_server)
}

/// What to install when the server is missing.
const SERVER_PACKAGE: &str = "the Debian package mariadb-server";
/// What to install when the client is missing.
const CLIENT_PACKAGE: &str = "the Debian package mariadb-client";

/// Initialises a datadir and starts `mariadbd` on it; retries with another port if the one
/// picked was taken in the meantime.
fn start_server() -> Result<MariaDb, String> {
    let mariadbd = need_tool(&["mariadbd", "mysqld"], SERVER_PACKAGE)?;
    let install_db = need_tool(&["mariadb-install-db", "mysql_install_db"], SERVER_PACKAGE)?;
    need_tool(&["mariadb", "mysql"], CLIENT_PACKAGE)?;

    let dir = fresh_dir("vaurien-mariadb")?;
    let datadir = dir.join("data");
    let root = running_as_root();

    let mut install = Command::new(&install_db);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .args(root.then_some("--user=root"))
        .stdin(Stdio::null());
    let out = within(
        Duration::from_secs(120),
        "mariadb-install-db to finish",
        move || install.output(),
    )
    .map_err(|e| format!("run {}: {e}", install_db.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "{} failed ({}):\n{}{}",
            install_db.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    let started = on_a_free_port(|port| {
        let mut cmd = Command::new(&mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", dir.join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-networking=0"])
            .args(root.then_some("--user=root"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_tied_to_this_process(cmd)
            .map_err(|e| format!("spawn {}: {e}", mariadbd.display()))?;
        // Stderr is drained for the server's whole life; readiness (true) or the end of its
        // output (false) is reported.
        let stderr = child.stderr.take().expect("piped stderr");
        let (log, ready_rx) =
            OutputLog::watch(vec![Box::new(stderr)], Some("ready for connections"));
        let process = ServerProcess::new(child, port, Duration::from_secs(30));
        let ready = catch_unwind(AssertUnwindSafe(|| {
            within(
                Duration::from_secs(60),
                "mariadbd to log 'ready for connections'",
                move || ready_rx.recv().unwrap_or(false),
            )
        }));
        if matches!(ready, Ok(true)) {
            return Ok(MariaDb { process, log });
        }
        drop(process);
        let stderr = log.tail(40);
        Err(match ready {
            Ok(_) => {
                format!("mariadbd exited before it was ready; its stderr ends with:\n{stderr}")
            }
            Err(_) => {
                format!("mariadbd was not ready within 60 s; its stderr ends with:\n{stderr}")
            }
        })
    });
    match started {
        Ok(MariaDb { process, log }) => Ok(MariaDb {
            process: process.with_dir(dir).stop_at_exit(),
            log,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

impl MariaDb {
    /// `host:port` for `--backend`.
    fn backend(&self) -> String {
        self.process.addr()
    }

    /// Panics with the server's recent stderr if it is no longer running.
    fn assert_alive(&self) {
        let status = self.process.try_wait();
        assert!(
            matches!(status, Some(Ok(None))),
            "mariadbd is gone ({status:?}); its stderr ends with:\n{}",
            self.log.tail(40)
        );
    }
}

/// The start of `s`, for failure messages (outputs here reach 400 KB).
fn head(s: &str) -> &str {
    let mut end = s.len().min(600);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `mariadb --protocol=TCP -h 127.0.0.1 -P PORT -u root --connect-timeout=T -e SQL`, the whole
/// run bounded by `limit`.
fn mariadb(port: u16, connect_timeout: u32, sql: &str, limit: Duration) -> Ran {
    let client = need_tool(&["mariadb", "mysql"], CLIENT_PACKAGE).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(client);
    cmd.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
        .arg("-P")
        .arg(port.to_string())
        .args(["-u", "root"])
        .arg(format!("--connect-timeout={connect_timeout}"))
        .arg("-e")
        .arg(sql);
    run_tool(cmd, None, limit)
}

/// Direct to the server.
fn direct(sql: &str) -> Ran {
    mariadb(server().process.port, 5, sql, Duration::from_secs(60))
}

fn mysql_proxy(behavior: &str, extra: &[&str]) -> ProxyProcess {
    let args = [&["--behavior", behavior][..], extra].concat();
    protocol_proxy("mysql", &server().backend(), &args)
}

/// Runs a session through a proxy with `behavior`; the client must fail with one of `expected`
/// in its stderr, and the proxy must survive. Returns how long the client took to give up.
fn assert_session_fails(behavior: &str, connect_timeout: u32, expected: &[&str]) -> Duration {
    let _ = server();
    let mut proxy = mysql_proxy(behavior, &[]);
    let run = mariadb(
        proxy.addr.port(),
        connect_timeout,
        "SELECT 1",
        Duration::from_secs(30),
    );
    let stderr = run.stderr();
    eprintln!("{behavior}: the client said: {}", stderr.trim());
    assert!(
        !run.out.status.success(),
        "{behavior}: the client succeeded through the proxy:\n{}",
        head(&run.stdout())
    );
    assert!(
        expected.iter().any(|e| stderr.contains(e)),
        "{behavior}: the client's error is none of {expected:?}:\n{stderr}"
    );
    assert_proxy_survived(&mut proxy, behavior);
    // The server did not suffer either.
    server().assert_alive();
    direct("SELECT 1").ok("the server after the failed session");
    run.took
}

/// One session's statements: DDL, inserts (one with a 60 KB literal: many chunks towards the
/// server), selects of a few rows, 2000 rows and a 200 KB value (many chunks back).
fn session_sql(body: &str) -> String {
    format!(
        "DROP DATABASE IF EXISTS vaurien_real;\n\
         CREATE DATABASE vaurien_real;\n\
         USE vaurien_real;\n\
         CREATE TABLE pets (id INT PRIMARY KEY, name VARCHAR(40), born DATE) ENGINE=InnoDB;\n\
         INSERT INTO pets VALUES (1,'Fluffy','2019-02-04'),(2,'Claws','2020-03-17'),\
         (3,'Buffy','2018-05-13'),(4,'Fang','2021-08-27');\n\
         CREATE TABLE notes (id INT PRIMARY KEY, body MEDIUMTEXT);\n\
         INSERT INTO notes VALUES (1, '{body}');\n\
         SELECT * FROM pets ORDER BY id;\n\
         SELECT COUNT(*) AS n, MIN(born) AS oldest, MAX(name) AS last FROM pets;\n\
         SELECT id, LENGTH(body) AS len, MD5(body) AS md5 FROM notes;\n\
         SELECT seq, seq * seq AS square FROM seq_1_to_2000;\n\
         SELECT REPEAT('x', 200000) AS big;\n"
    )
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn dummy_session_gives_the_same_output_as_a_direct_one() {
    let body: String = (0..60_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sql = session_sql(&body);
    let direct_run = direct(&sql).ok("direct session");
    let expected = direct_run.stdout();
    // Not vacuous: the direct output has what the statements ask for.
    for wanted in [
        "id\tname\tborn\n1\tFluffy\t2019-02-04\n2\tClaws\t2020-03-17\n",
        "n\toldest\tlast\n4\t2018-05-13\tFluffy\n",
        "\n1\t60000\t",
        "\n1999\t3996001\n2000\t4000000\n",
    ] {
        assert!(
            expected.contains(wanted),
            "{wanted:?} is not in the direct output:\n{}",
            head(&expected)
        );
    }
    assert!(expected.contains(&format!("\nbig\n{}\n", "x".repeat(200_000))));

    let mut proxy = mysql_proxy("100:dummy", &[]);
    let proxied =
        mariadb(proxy.addr.port(), 5, &sql, Duration::from_secs(60)).ok("proxied session");
    let got = proxied.stdout();
    assert_eq!(got.len(), expected.len(), "output sizes differ");
    assert!(
        got == expected,
        "the proxied output differs from the direct one"
    );

    // What the proxied session wrote is in the server.
    let check = direct("SELECT name FROM vaurien_real.pets ORDER BY id").ok("direct check");
    assert_eq!(check.stdout(), "name\nFluffy\nClaws\nBuffy\nFang\n");

    // Several sessions in a row through the same proxy.
    for i in 0..5 {
        let run = mariadb(
            proxy.addr.port(),
            5,
            &format!("SELECT {i} AS i, COUNT(*) AS n FROM vaurien_real.pets"),
            Duration::from_secs(30),
        )
        .ok("a short session");
        assert_eq!(run.stdout(), format!("i\tn\n{i}\t4\n"));
    }
    assert_proxy_survived(&mut proxy, "dummy sessions");
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn blackout_fails_the_client_and_the_proxy_survives() {
    assert_session_fails(
        "100:blackout",
        5,
        &["Lost connection", "closed", "gone away"],
    );
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn abort_fails_the_client_and_the_proxy_survives() {
    assert_session_fails("100:abort", 5, &["Lost connection", "closed", "gone away"]);
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn hang_times_the_client_out_and_the_proxy_survives() {
    // The greeting never comes: the client gives up after its 3 s connect timeout.
    let took = assert_session_fails("100:hang", 3, &["Lost connection", "timed out", "timeout"]);
    assert!(
        took >= Duration::from_millis(2500),
        "the client gave up after {took:?}, before its 3 s timeout: the connection was not held"
    );
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn delay_slows_a_session_that_still_works() {
    // Four packets go to the server one after the other, each waiting for the answer to the
    // previous one: the handshake response and three queries; each is 0.3 s late.
    let sql = "SELECT 1 AS a; SELECT 'two' AS b; \
               SELECT COUNT(*) AS c FROM (SELECT 1 AS n UNION SELECT 2) AS t";
    let direct_run = direct(sql).ok("direct session");
    let proxy = mysql_proxy("100:delay", &["--behavior-delay-sleep", "0.3"]);
    let proxied = mariadb(proxy.addr.port(), 5, sql, Duration::from_secs(60)).ok("delayed session");
    assert_eq!(proxied.stdout(), direct_run.stdout());
    assert_eq!(proxied.stdout(), "a\n1\nb\ntwo\nc\n2\n");
    let (slow, fast) = (proxied.took, direct_run.took);
    assert!(
        slow >= Duration::from_millis(1000) && slow >= fast + Duration::from_millis(800),
        "4 packets 0.3 s late each should add about 1.2 s: direct {fast:?}, delayed {slow:?}"
    );
    assert!(
        slow <= fast + Duration::from_secs(10),
        "the delayed session took far too long: direct {fast:?}, delayed {slow:?}"
    );
}

#[test]
#[ignore = "needs mariadb-server: make test-real"]
fn stay_connected_holds_a_live_session_on_blackout_as_the_blog_shows() {
    use std::io::Write;
    let _ = server();
    let proxy = mysql_proxy(
        "dummy",
        &[
            "--stay-connected",
            "--http",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
        ],
    );
    let http = proxy.http_addr();
    let vaurienctl = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaurienctl"));
        cmd.arg("--host").arg(format!("http://{http}")).args(args);
        run_tool(cmd, None, Duration::from_secs(10)).ok("vaurienctl")
    };
    // A live session: the real client reading its statements from a pipe, one at a time.
    let client = need_tool(&["mariadb", "mysql"], CLIENT_PACKAGE).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(client);
    cmd.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h",
        "127.0.0.1",
        "-u",
        "root",
    ])
    .args(["--batch", "--skip-column-names", "--unbuffered"])
    .arg("-P")
    .arg(proxy.addr.port().to_string())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut session = KillOnDrop(cmd.spawn().expect("start the mariadb client"));
    let mut stdin = session.0.stdin.take().expect("stdin");
    let out = lines_of(session.0.stdout.take().expect("stdout"));
    let err = lines_of(session.0.stderr.take().expect("stderr"));
    writeln!(stdin, "SELECT 'before';").unwrap();
    let first = out.recv_timeout(Duration::from_secs(20));
    assert_eq!(
        first.as_deref(),
        Ok("before"),
        "{:?}",
        err.try_iter().collect::<Vec<_>>()
    );
    // MySQL is "down": with --stay-connected the session hangs instead of losing its server.
    vaurienctl(&["set-behavior", "blackout"]);
    writeln!(stdin, "SELECT 'during';").unwrap();
    let answer = out.recv_timeout(Duration::from_secs(2));
    assert!(
        answer.is_err(),
        "the blacked-out session answered {answer:?}"
    );
    assert!(
        session.0.try_wait().expect("wait").is_none(),
        "the client ended: {:?}",
        err.try_iter().collect::<Vec<_>>()
    );
    let said: Vec<String> = err.try_iter().collect();
    assert!(said.is_empty(), "the client said {said:?}");
    vaurienctl(&["set-behavior", "dummy"]);
}
