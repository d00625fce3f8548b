//! Toxics through Toxiproxy's API on the one proxy, `vaurien`: every route's status and body
//! as Toxiproxy answers them, and what a client sees of the toxics they add.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How long one echo through the proxy listening on `addr` takes, on a new connection.
fn echo_time(addr: std::net::SocketAddr) -> Duration {
    let mut client = connect(addr);
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"ping"), b"ping");
    t.elapsed()
}

#[test]
fn toxics_are_added_listed_updated_and_removed_with_toxiproxys_statuses() {
    let echo = Backend::echo();
    let (p, http) = proxy_with_api(&echo);
    let (status, version) = api(http, "GET", "/version", "", "");
    assert_eq!((status, version), (200, json!({"version": "2.12.0"})));
    let (status, proxies) = api(http, "GET", "/proxies", "", "");
    assert_eq!(status, 200);
    let me = &proxies["vaurien"];
    assert_eq!(me["listen"], p.addr.to_string());
    assert_eq!(me["upstream"], echo.arg());
    assert_eq!(me["enabled"], true);
    assert_eq!(me["toxics"], json!([]));
    // A latency toxic with Toxiproxy's defaults: downstream, toxicity 1, named TYPE_STREAM.
    let (status, toxic) = api(
        http,
        "POST",
        "/proxies/vaurien/toxics",
        r#"{"type": "latency", "attributes": {"latency": 300.0}}"#,
        "",
    );
    assert_eq!(status, 200, "{toxic}");
    assert_eq!(toxic["name"], "latency_downstream");
    assert_eq!(toxic["stream"], "downstream");
    assert_eq!(toxic["toxicity"], 1.0);
    assert_eq!(toxic["attributes"], json!({"latency": 300, "jitter": 0}));
    let took = echo_time(p.addr);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Statuses: a duplicate, an unknown type or stream, unknown proxy and toxic.
    for (method, path, body, status, message) in [
        (
            "POST",
            "/proxies/vaurien/toxics",
            r#"{"type": "latency"}"#,
            409,
            "toxic already exists",
        ),
        (
            "POST",
            "/proxies/vaurien/toxics",
            r#"{"type": "nope"}"#,
            400,
            "invalid toxic type",
        ),
        (
            "POST",
            "/proxies/vaurien/toxics",
            r#"{"type": "latency", "name": "x", "stream": "sideways"}"#,
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        ("GET", "/proxies/nope", "", 404, "proxy not found"),
        ("GET", "/proxies/nope/toxics", "", 404, "proxy not found"),
        (
            "GET",
            "/proxies/vaurien/toxics/nope",
            "",
            404,
            "toxic not found",
        ),
        (
            "DELETE",
            "/proxies/vaurien/toxics/nope",
            "",
            404,
            "toxic not found",
        ),
        (
            "POST",
            "/proxies",
            r#"{"name": "vaurien", "upstream": "x:1"}"#,
            409,
            "proxy already exists",
        ),
    ] {
        let (got, answer) = api(http, method, path, body, "");
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        assert_eq!(
            answer,
            json!({"error": message, "status": status}),
            "{method} {path}"
        );
    }
    // A partial update keeps what it does not name.
    let (status, updated) = api(
        http,
        "PATCH",
        "/proxies/vaurien/toxics/latency_downstream",
        r#"{"attributes": {"jitter": 10}}"#,
        "",
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["attributes"], json!({"latency": 300, "jitter": 10}));
    assert_eq!(updated["toxicity"], 1.0);
    // Listed, upstream ones first.
    for body in [
        r#"{"type": "limit_data", "name": "cut", "attributes": {"bytes": 2}}"#,
        r#"{"type": "latency", "name": "up", "stream": "upstream"}"#,
    ] {
        let (status, answer) = api(http, "POST", "/proxies/vaurien/toxics", body, "");
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let (_, list) = api(http, "GET", "/proxies/vaurien/toxics", "", "");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["up", "latency_downstream", "cut"]);
    // The limit cuts the next echo to its first 2 bytes.
    let mut client = p.connect();
    let _ = client.write_all(b"hello");
    let got = within(Duration::from_secs(10), "the cut echo", move || {
        read_to_end(&mut client)
    });
    assert_eq!(got.unwrap_or_default(), b"he");
    let (status, body) = api(http, "DELETE", "/proxies/vaurien/toxics/cut", "", "");
    assert_eq!((status, body), (204, serde_json::Value::Null));
    // Reset: every toxic removed, and the proxy enabled again.
    let (status, _) = api(
        http,
        "POST",
        "/proxies/vaurien",
        r#"{"enabled": false}"#,
        "",
    );
    assert_eq!(status, 200);
    assert!(
        std::net::TcpStream::connect(p.addr).is_err(),
        "disabled: refused"
    );
    let (status, _) = api(http, "POST", "/reset", "", "");
    assert_eq!(status, 204);
    let (_, me) = api(http, "GET", "/proxies/vaurien", "", "");
    assert_eq!(
        (me["enabled"].clone(), me["toxics"].clone()),
        (json!(true), json!([]))
    );
    assert!(echo_time(p.addr) < Duration::from_millis(200));
}

#[test]
fn proxies_are_created_listed_and_deleted_each_with_its_own_toxics() {
    let echo = Backend::echo();
    let (p, http) = proxy_with_api(&echo);
    let body = format!(r#"{{"name": "second", "upstream": "{}"}}"#, echo.arg());
    let (status, second) = api(http, "POST", "/proxies", &body, "");
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["name"], "second");
    assert_eq!(second["enabled"], true);
    assert_eq!(second["protocol"], "tcp");
    let addr: std::net::SocketAddr = second["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .expect("listen resolved, with its real port");
    assert_ne!(addr.port(), 0);
    for (body, status, message) in [
        (body.as_str(), 409, "proxy already exists"),
        (r#"{"name": "x"}"#, 400, "missing required field: upstream"),
        (
            r#"{"upstream": "127.0.0.1:1"}"#,
            400,
            "missing required field: name",
        ),
    ] {
        let (got, answer) = api(http, "POST", "/proxies", body, "");
        assert_eq!(
            (got, answer),
            (status, json!({"error": message, "status": status})),
            "{body}"
        );
    }
    let (_, all) = api(http, "GET", "/proxies", "", "");
    let names: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(names, ["second", "vaurien"]);
    // A toxic on the second proxy only: the first stays fast.
    add_toxic(
        http,
        "second",
        r#"{"type": "latency", "attributes": {"latency": 300}}"#,
    );
    assert!(echo_time(addr) >= Duration::from_millis(300));
    assert!(echo_time(p.addr) < Duration::from_millis(200));
    // Created disabled: refused until enabled.
    let third = format!(
        r#"{{"name": "third", "upstream": "{}", "enabled": false}}"#,
        echo.arg()
    );
    let (status, t) = api(http, "POST", "/proxies", &third, "");
    assert_eq!((status, t["enabled"].clone()), (201, json!(false)));
    let third_addr: std::net::SocketAddr = t["listen"].as_str().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(third_addr).is_err());
    // Reset enables every proxy and removes every toxic.
    let (status, _) = api(http, "POST", "/reset", "", "");
    assert_eq!(status, 204);
    assert!(echo_time(addr) < Duration::from_millis(200));
    assert!(echo_time(third_addr) < Duration::from_millis(200));
    // Deleted: gone from the list, and its port refuses.
    let (status, _) = api(http, "DELETE", "/proxies/second", "", "");
    assert_eq!(status, 204);
    let (status, _) = api(http, "GET", "/proxies/second", "", "");
    assert_eq!(status, 404);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "a deleted proxy's port refuses"
    );
}

#[test]
fn vaurienctl_speaks_toxiproxy_clis_commands() {
    let echo = Backend::echo();
    let (p, http) = proxy_with_api(&echo);
    let url = format!("http://{http}");
    // TOXIPROXY_URL stands for --host, as with toxiproxy-cli.
    let ctl = |args: &[&str]| vaurienctl(args, &[("TOXIPROXY_URL", url.as_str())]);
    let echo_of = |msg: &[u8]| -> Vec<u8> {
        let mut client = p.connect();
        let _ = client.write_all(msg);
        let _ = client.shutdown(std::net::Shutdown::Write);
        within(Duration::from_secs(10), "an echo", move || {
            read_to_end(&mut client)
        })
        .unwrap_or_default()
    };
    let (status, out, err) = ctl(&[
        "toxic",
        "add",
        "-n",
        "cut",
        "-t",
        "limit_data",
        "-a",
        "bytes=2",
        "vaurien",
    ]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(
        out,
        "Added downstream limit_data toxic 'cut' on proxy 'vaurien'"
    );
    assert_eq!(echo_of(b"hello"), b"he");
    let (status, out, _) = ctl(&["inspect", "vaurien"]);
    assert_eq!(status, 0);
    assert!(out.contains("cut\tdownstream limit_data"), "{out}");
    let (status, out, _) = ctl(&["toxic", "update", "-n", "cut", "-a", "bytes=4", "vaurien"]);
    assert_eq!(
        (status, out.as_str()),
        (0, "Updated toxic 'cut' on proxy 'vaurien'")
    );
    assert_eq!(echo_of(b"hello"), b"hell");
    let (status, out, _) = ctl(&["toxic", "remove", "-n", "cut", "vaurien"]);
    assert_eq!(
        (status, out.as_str()),
        (0, "Removed toxic 'cut' on proxy 'vaurien'")
    );
    assert_eq!(echo_of(b"hello"), b"hello");
    let (status, out, _) = ctl(&["list"]);
    assert_eq!(status, 0);
    assert!(
        out.contains(&format!("vaurien\t{}\t{}\ttrue\t0", p.addr, echo.arg())),
        "{out}"
    );
    let (status, out, _) = ctl(&["toggle", "vaurien"]);
    assert_eq!((status, out.as_str()), (0, "Proxy vaurien is now disabled"));
    assert!(std::net::TcpStream::connect(p.addr).is_err());
    let (status, out, _) = ctl(&["tog", "vaurien"]);
    assert_eq!((status, out.as_str()), (0, "Proxy vaurien is now enabled"));
    assert_eq!(echo_of(b"back"), b"back");
    // Failures exit 1 with Toxiproxy's message.
    let (status, _, err) = ctl(&["toxic", "remove", "-n", "cut", "vaurien"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "vaurienctl: toxic not found (404)")
    );
    let (status, _, err) = ctl(&["inspect", "nope"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "vaurienctl: proxy not found (404)")
    );
    let (status, _, err) = ctl(&["toxic", "add", "-t", "nope", "vaurien"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "vaurienctl: invalid toxic type (400)")
    );
}

#[test]
fn vaurienctl_creates_and_deletes_proxies() {
    let echo = Backend::echo();
    let (_p, http) = proxy_with_api(&echo);
    let ctl = |args: &[&str]| vaurienctl_at(http, args);
    let (status, out, err) = ctl(&["create", "-l", "127.0.0.1:0", "-u", &echo.arg(), "extra"]);
    assert_eq!(
        (status, out.as_str()),
        (0, "Created new proxy extra"),
        "{err}"
    );
    let (_, proxy) = api(http, "GET", "/proxies/extra", "", "");
    let addr: std::net::SocketAddr = proxy["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(exchange(&mut connect(addr), b"hi"), b"hi");
    let (status, _, err) = ctl(&["create", "-l", "127.0.0.1:0", "-u", &echo.arg(), "extra"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "vaurienctl: proxy already exists (409)")
    );
    let (status, out, _) = ctl(&["delete", "extra"]);
    assert_eq!((status, out.as_str()), (0, "Deleted proxy extra"));
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn populate_leaves_identical_proxies_and_their_toxics_alone_and_replaces_changed_ones() {
    let echo = Backend::echo();
    let other = Backend::echo();
    let (_p, http) = proxy_with_api(&echo);
    let first = json!([{
        "name": "pop", "upstream": echo.arg(), "listen": "127.0.0.1:0",
        "toxics": [{"type": "latency", "attributes": {"latency": 300}}]
    }]);
    let (status, answer) = api(http, "POST", "/populate", &first.to_string(), "");
    assert_eq!(status, 201, "{answer}");
    let pop = &answer["proxies"][0];
    assert_eq!(pop["toxics"][0]["name"], "latency_downstream");
    let listen = pop["listen"].as_str().unwrap().to_string();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    assert!(echo_time(addr) >= Duration::from_millis(300));
    // The same proxy again (as Toxiproxy's clients send it, wrapped), and a new one.
    let again = json!({"proxies": [
        {"name": "pop", "upstream": echo.arg(), "listen": listen},
        {"name": "pop2", "upstream": echo.arg()},
    ]});
    let (status, answer) = api(http, "POST", "/populate", &again.to_string(), "");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["proxies"][0]["toxics"].as_array().map(Vec::len),
        Some(1),
        "kept"
    );
    assert!(
        echo_time(addr) >= Duration::from_millis(300),
        "the toxic still acts"
    );
    let (_, all) = api(http, "GET", "/proxies", "", "");
    assert!(all["pop2"].is_object(), "{all}");
    // A changed upstream replaces the proxy: its toxics are gone.
    let changed = json!([{"name": "pop", "upstream": other.arg(), "listen": listen}]);
    let (status, answer) = api(http, "POST", "/populate", &changed.to_string(), "");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["proxies"][0]["toxics"], json!([]));
    assert_eq!(answer["proxies"][0]["upstream"], other.arg());
    // Checked before anything changes.
    let bad = json!([{"name": "pop3", "upstream": echo.arg()}, {"upstream": echo.arg()}]);
    let (status, answer) = api(http, "POST", "/populate", &bad.to_string(), "");
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "missing required field: name at proxy 2");
    let (status, _) = api(http, "GET", "/proxies/pop3", "", "");
    assert_eq!(status, 404, "nothing was created");
}

#[test]
fn drop_in_mode_takes_toxiproxys_flags_and_config_file() {
    let echo = Backend::echo();
    let dir = fresh_dir("vaurien-dropin").expect("temp dir");
    let config = dir.join("toxiproxy.json");
    let json = json!([{
        "name": "slow_echo", "listen": "127.0.0.1:0", "upstream": echo.arg(),
        "toxics": [{"type": "latency", "attributes": {"latency": 300}}]
    }]);
    std::fs::write(&config, json.to_string()).unwrap();
    // Run as toxiproxy-server, through a symlink, with Go's flag forms.
    let link = dir.join("toxiproxy-server");
    std::os::unix::fs::symlink(vaurien_bin(), &link).unwrap();
    let (server, http) = toxiproxy_server(
        &link,
        &[
            "-host=127.0.0.1",
            "--port",
            "0",
            "-config",
            config.to_str().unwrap(),
            "-seed",
            "7",
        ],
    );
    let (status, version) = api(http, "GET", "/version", "", "");
    assert_eq!((status, version), (200, json!({"version": "2.12.0"})));
    let (_, all) = api(http, "GET", "/proxies", "", "");
    let names: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(names, ["slow_echo"], "only the file's proxies: {all}");
    let addr: std::net::SocketAddr = all["slow_echo"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut client = connect(addr);
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"ping"), b"ping");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "the first connection is already slow"
    );
    drop(server);
    // -version, and Go's own words for a flag it does not know (exit 2).
    let out = std::process::Command::new(&link)
        .arg("-version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("toxiproxy-server version 2.12.0\n"));
    let out = std::process::Command::new(vaurien_bin())
        .args(["--toxiproxy", "-nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag provided but not defined: -nope"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ini_file_with_two_proxies_and_a_toxic_on_the_second_slows_only_the_second() {
    let echo = Backend::echo();
    let dir = fresh_dir("vaurien-two-proxies").expect("temp dir");
    let ini = dir.join("two.ini");
    std::fs::write(
        &ini,
        format!(
            "[vaurien]\nbackend = {0}\n\n[proxy:second]\nlisten = 127.0.0.1:0\nupstream = {0}\nbehavior = dummy\n\n\
             [toxic:second:slow]\ntype = latency\nlatency = 300\n",
            echo.arg()
        ),
    )
    .unwrap();
    let p = ProxyProcess::start(&[
        "--config",
        ini.to_str().unwrap(),
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ]);
    let (_, all) = api(p.http_addr(), "GET", "/proxies", "", "");
    let second: std::net::SocketAddr = all["second"]["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no second proxy in {all}"));
    assert_eq!(all["second"]["toxics"][0]["name"], "slow");
    assert!(
        echo_time(second) >= Duration::from_millis(300),
        "the second is slow"
    );
    assert!(
        echo_time(p.addr) < Duration::from_millis(200),
        "the first is not"
    );
    // Mistakes in the section name the file, the section and the key.
    for (text, needle) in [
        (
            "[proxy:x]\nlisten = 127.0.0.1:0\n",
            "[proxy:x]: 'backend' is missing",
        ),
        (
            "[proxy:x]\nbackend = 127.0.0.1:1\nlisen = 1\n",
            "[proxy:x] lisen: unknown key",
        ),
        (
            "[proxy:x]\nbackend = 127.0.0.1:1\nbehavior = 150:delay\n",
            "[proxy:x] behavior:",
        ),
        (
            "[proxy:x]\nbackend = 127.0.0.1:1\nprotocol = gopher\n",
            "unknown protocol 'gopher'",
        ),
    ] {
        let bad = dir.join("bad.ini");
        std::fs::write(&bad, text).unwrap();
        let out = run_vaurien(&["--config", bad.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_drop_ins_seed_replays_which_connections_draw_a_toxicity_half_toxic() {
    const CONNECTIONS: usize = 60;
    let echo = Backend::echo();
    let dir = fresh_dir("vaurien-dropin-seed").expect("temp dir");
    let config = dir.join("toxiproxy.json");
    let json = json!([{
        "name": "half", "listen": "127.0.0.1:0", "upstream": echo.arg(),
        "toxics": [{"type": "latency", "toxicity": 0.5, "attributes": {"latency": 50}}]
    }]);
    std::fs::write(&config, json.to_string()).unwrap();
    let slow_ones = || -> Vec<usize> {
        let (_server, http) = toxiproxy_server(
            std::path::Path::new(vaurien_bin()),
            &[
                "--toxiproxy",
                "-host=127.0.0.1",
                "-port=0",
                "-seed=7",
                "-config",
                config.to_str().unwrap(),
            ],
        );
        let (_, proxy) = api(http, "GET", "/proxies/half", "", "");
        let addr: std::net::SocketAddr = proxy["listen"].as_str().unwrap().parse().unwrap();
        (0..CONNECTIONS)
            .filter(|_| {
                let mut client = connect(addr);
                let t = Instant::now();
                assert_eq!(exchange(&mut client, b"a"), b"a");
                t.elapsed() >= Duration::from_millis(50)
            })
            .collect()
    };
    let first = slow_ones();
    assert!(
        (CONNECTIONS / 4..=3 * CONNECTIONS / 4).contains(&first.len()),
        "{} of {CONNECTIONS} connections drew a toxicity 0.5 toxic",
        first.len()
    );
    assert_eq!(first, slow_ones(), "-seed 7 drew other connections");
    let _ = std::fs::remove_dir_all(&dir);
}
