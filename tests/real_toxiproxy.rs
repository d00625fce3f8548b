//! Toxiproxy's own clients driving the drop-in (`vaurien --toxiproxy`) unchanged: the Python
//! client `toxiproxy-python` 0.1.1 from PyPI and the Node client `toxiproxy-node-client` 4.1.0
//! from npm. Each creates a proxy, adds a latency toxic and feels it, lists toxics, disables
//! it (connection refused) and enables it, populates, resets and deletes.
//!
//! `#[ignore]`d: `make test-real` runs them; `.ci/run` installs the Python client, and
//! `make test-real` the Node one (`npm ci` in tests/node).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The drop-in on 127.0.0.1, any port, with no proxy: it and its API's address.
fn drop_in() -> (Killed, std::net::SocketAddr) {
    toxiproxy_server(
        Path::new(vaurien_bin()),
        &["--toxiproxy", "-host", "127.0.0.1", "-port", "0"],
    )
}

/// The client's whole session; prints what it saw, one fact a line.
const SESSION: &str = r#"
import socket, sys, time
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import ProxyExists, NotFound

api_host, api_port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = Toxiproxy()
server.update_api_consumer(api_host, api_port)
assert server.running()
print("version", server.version().decode().strip())

proxy = server.create(upstream=upstream, name="py_echo")
host, port = proxy.listen.rsplit(":", 1)

def echo():
    s = socket.create_connection((host, int(port)), timeout=5)
    started = time.time()
    s.sendall(b"ping")
    data = s.recv(16)
    s.close()
    return data, time.time() - started

data, took = echo()
print("plain", data.decode(), took < 0.2)
proxy.add_toxic(type="latency", attributes={"latency": 300})
print("toxics", sorted(proxy.toxics()))
data, took = echo()
print("with latency", data.decode(), took >= 0.3)
with proxy.down():
    try:
        socket.create_connection((host, int(port)), timeout=2)
        print("down", "connected")
    except ConnectionRefusedError:
        print("down", "refused")
data, took = echo()
print("up again", data.decode(), took >= 0.3)
try:
    server.create(upstream=upstream, name="py_echo")
except ProxyExists:
    print("exists", "ProxyExists")
server.populate([{"name": "py_other", "upstream": upstream, "listen": "127.0.0.1:0"}])
print("proxies", sorted(server.proxies()))
print("reset", server.reset())
print("toxics after reset", sorted(proxy.toxics()))
try:
    proxy.destroy_toxic("nope")
except NotFound:
    print("missing toxic", "NotFound")
print("destroyed", proxy.destroy(), server.get_proxy("py_echo") is None)
server.get_proxy("py_other").destroy()
"#;

#[test]
#[ignore = "needs toxiproxy-python: make test-real"]
fn toxiproxys_python_client_drives_the_drop_in_unchanged() {
    let echo = Backend::echo();
    let (_server, http) = drop_in();
    let out = python(
        SESSION,
        &[http.ip().to_string(), http.port().to_string(), echo.arg()],
        "toxiproxy",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"version {"version":"2.12.0"}"#,
            "plain ping True",
            "toxics ['latency_downstream']",
            "with latency ping True",
            "down refused",
            "up again ping True",
            "exists ProxyExists",
            "proxies ['py_echo', 'py_other']",
            "reset True",
            "toxics after reset []",
            "missing toxic NotFound",
            "destroyed True True",
        ],
        "{out}"
    );
}

#[test]
#[ignore = "needs Node.js and toxiproxy-node-client: make test-real"]
fn toxiproxys_node_client_drives_the_drop_in_unchanged() {
    let node = need_tool(&["node", "nodejs"], "nodejs and npm").unwrap_or_else(|e| panic!("{e}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/toxiproxy-node-client").is_dir(),
        "toxiproxy-node-client is missing: npm ci --prefix tests/node (make test-real does it)"
    );
    let echo = Backend::echo();
    let (_server, http) = drop_in();
    let mut cmd = Command::new(node);
    cmd.current_dir(&dir)
        .arg("session.js")
        .arg(format!("http://{http}"))
        .arg(echo.arg());
    let run = run_tool(cmd, None, Duration::from_secs(60));
    assert!(
        run.out.status.success(),
        "node client failed: {}",
        run.stderr()
    );
    let out = String::from_utf8_lossy(&run.out.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"version {"version":"2.12.0"}"#,
            "created node_echo true true",
            "plain ping true",
            "toxic slow latency downstream 300",
            "with latency ping true",
            "got toxic 300 1",
            "updated 100",
            r#"toxics ["slow"]"#,
            "disabled false ECONNREFUSED",
            "enabled true true ping true",
            "duplicate Request failed with status code 409",
            r#"populated ["node_echo","node_other"]"#,
            "identical proxy kept its toxics true",
            r#"all ["node_echo","node_other"]"#,
            "after reset true []",
            "fast again ping true",
            "removed Request failed with status code 404",
        ],
        "{out}"
    );
}
