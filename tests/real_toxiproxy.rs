//! Toxiproxy's own Python client, `toxiproxy-python` 0.1.1 from PyPI, driving vaurien's
//! Toxiproxy API unchanged: create a proxy, add a latency toxic and feel it, list toxics,
//! disable (connection refused) and enable, populate, reset, delete.
//!
//! `#[ignore]`d: `make test-real` runs it, `.ci/run` installs the client.

use crate::support::*;

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
fn toxiproxys_python_client_drives_the_api_unchanged() {
    let echo = Backend::echo();
    let proxy = ProxyProcess::start(&[
        "--backend",
        &echo.arg(),
        "--http",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
    ]);
    let http = proxy.http_addr();
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
            "proxies ['py_echo', 'py_other', 'vaurien']",
            "reset True",
            "toxics after reset []",
            "missing toxic NotFound",
            "destroyed True True",
        ],
        "{out}"
    );
}
