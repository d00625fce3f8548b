#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs from real traffic: what redis-cli, curl and smtplib
send, and what redis-server, memcached, nginx and aiosmtpd answer.

    python3 tests/fuzz/capture-seeds.py      # from the checkout; needs the four servers

Every server is started here on a free 127.0.0.1 port and stopped by its pid. Each seed is
a selector byte (which mode or request a target takes), a buffer-size byte, then the bytes
captured. Seeds are small on purpose: libFuzzer mutates from them.
"""

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{cmd[0]} did not start")


def exchange(port, data, quiet=0.3):
    """Sends `data`, returns everything answered until the server is quiet or closes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    s.settimeout(quiet)
    got = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    s.close()
    return got


def seed(target, name, selector, payload, cap=7):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(bytes([selector, cap]) + payload)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis():
    port = free_port()
    start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no"], port)
    sessions = {
        "strings": [resp("SET", "k", "v"), resp("GET", "k"), resp("INCR", "n"), resp("GET", "nope")],
        "lists": [resp("RPUSH", "l", "a", "b", "c"), resp("LRANGE", "l", 0, -1), resp("LPOP", "l")],
        "hashes": [resp("HSET", "h", "f", "1", "g", "2"), resp("HGETALL", "h")],
        "resp3": [resp("HELLO", "3"), resp("HGETALL", "h"), resp("SMEMBERS", "nope"),
                  resp("ZADD", "z", "1.5", "m"), resp("ZSCORE", "z", "m")],
        "errors": [resp("GET"), resp("LPUSH", "k", "x"), b"PING\r\n"],
        "inline": [b"SET a \"quoted value\"\r\n", b"GET a\r\n", b"PING\r\n"],
        "pipeline": [resp("PING") * 5 + resp("ECHO", "x" * 300)],
        "eval": [resp("EVAL", "return {1, {2, {3}}, 'x'}", 0)],
    }
    for name, commands in sessions.items():
        data = b"".join(commands)
        seed("redis", f"request-{name}", 0, data)
        seed("redis", f"reply-{name}", 1, exchange(port, data))


def memcache():
    port = free_port()
    start(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "nobody"], port)
    sessions = [
        ("storage", 0, b"set k 0 0 5\r\nhello\r\nadd k 0 0 1\r\nx\r\nappend k 0 0 3\r\n!!!\r\n"),
        ("get", 0, b"set a 1 0 2\r\nhi\r\nget a b\r\ngets a\r\n"),
        ("counters", 0, b"set n 0 0 1\r\n5\r\nincr n 3\r\ndecr n 1\r\ntouch n 10\r\ndelete n\r\n"),
        ("meta", 0, b"ms m 2 T0\r\nhi\r\nmg m v f\r\nmg m q v\r\nmn\r\nmd m q\r\nmn\r\n"),
        ("stats", 0, b"stats\r\nstats slabs\r\nversion\r\nverbosity 1\r\n"),
    ]
    for name, _, data in sessions:
        seed("memcache", f"request-{name}", 0, data)
    # Replies, each to the command the target's selector names (see memcache.rs).
    exchange(port, b"set k 0 0 5\r\nhello\r\nset a 0 0 1\r\nb\r\nset b 0 0 1\r\nc\r\n")
    replies = [
        (1, "get", b"get k\r\n"),
        (3, "gets", b"gets a b c\r\n"),
        (5, "set", b"set k 0 0 1\r\nx\r\n"),
        (7, "stats", b"stats\r\n"),
        (9, "mg", b"mg k v\r\n"),
        (11, "mn", b"mg k q v\r\nmg nope q v\r\nmn\r\n"),
        (13, "metadump", b"lru_crawler metadump all\r\n"),
        (19, "delete", b"delete k\r\n"),
    ]
    for selector, name, data in replies:
        # For "mn", the quiet commands' replies and MN form the reply the target reads.
        seed("memcache", f"reply-{name}", selector, exchange(port, data))


def http():
    port = free_port()
    root = tempfile.mkdtemp(prefix="vaurien-seeds-nginx-")
    os.makedirs(os.path.join(root, "www"))
    with open(os.path.join(root, "www", "index.html"), "w") as f:
        f.write("<html><body>hello</body></html>\n")
    with open(os.path.join(root, "www", "big.txt"), "w") as f:
        f.write("x" * 3000 + "\n")
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off; master_process off; pid {root}/nginx.pid; error_log {root}/error.log;
events {{}}
http {{
  access_log off; client_body_temp_path {root}; proxy_temp_path {root};
  fastcgi_temp_path {root}; uwsgi_temp_path {root}; scgi_temp_path {root};
  server {{
    listen 127.0.0.1:{port}; root {root}/www; gzip on; gzip_min_length 10;
    location /chunked {{ gzip on; gzip_types *; default_type text/plain; return 200 "chunky"; }}
  }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    start([nginx, "-c", conf, "-p", root], port)
    # What curl sends, captured by a listener that answers nothing.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    lport = listener.getsockname()[1]
    captured = []

    def accept():
        conn, _ = listener.accept()
        conn.settimeout(1)
        data = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        captured.append(data)
        conn.close()

    for name, args in [
        ("get", []),
        ("post", ["--data-binary", "a=1&b=2"]),
        ("chunked", ["-H", "Transfer-Encoding: chunked", "--data-binary", "part"]),
        ("continue", ["-H", "Expect: 100-continue", "--data-binary", "x" * 2000]),
    ]:
        t = threading.Thread(target=accept)
        t.start()
        subprocess.run(["curl", "-s", "-m", "2", *args, f"http://127.0.0.1:{lport}/path?q=1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t.join()
        seed("http_request", f"curl-{name}", 0, captured[-1])
    seed("http_request", "pipeline", 0,
         b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /big.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    # What nginx answers.
    for selector, name, request in [
        (0, "index", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        (0, "gzip-chunked", b"GET /chunked HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"),
        (0, "not-found", b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        (1, "head", b"HEAD /big.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        (3, "http10", b"GET /big.txt HTTP/1.0\r\n\r\n"),
        (0, "bad-request", b"nonsense\r\n\r\n"),
    ]:
        seed("http_response", name, selector, exchange(port, request))
    shutil.rmtree(root, ignore_errors=True)


def smtp():
    port = free_port()
    start(["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"], port)
    # What smtplib sends, through a recording relay.
    relay = socket.socket()
    relay.bind(("127.0.0.1", 0))
    relay.listen(1)
    rport = relay.getsockname()[1]
    sent, answered = [], []

    def run_relay():
        client, _ = relay.accept()
        server = socket.create_connection(("127.0.0.1", port))

        def pump(src, dst, log):
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                log.append(data)
                dst.sendall(data)

        up = threading.Thread(target=pump, args=(client, server, sent))
        up.start()
        pump(server, client, answered)
        up.join()

    t = threading.Thread(target=run_relay)
    t.start()
    with smtplib.SMTP("127.0.0.1", rport, timeout=10) as s:
        s.sendmail("a@example.org", ["b@example.org"],
                   "Subject: seed\r\n\r\nHello,\r\n.leading dot\r\nbye\r\n")
    t.join()
    commands = b"".join(sent)
    replies = b"".join(answered)
    seed("smtp", "session-commands", 0, commands)
    seed("smtp", "message", 1, commands[commands.index(b"Subject"):])
    seed("smtp", "greeting", 2 | 0x80, replies[:replies.index(b"\r\n") + 2])
    seed("smtp", "ehlo-reply", 4, replies[replies.index(b"\r\n") + 2:])
    seed("smtp", "data-reply", 2, b"354 End data with <CR><LF>.<CR><LF>\r\n")


def texts():
    readme_ini = open(os.path.join(HERE, "..", "..", "README.md")).read()
    start_ini = readme_ini.index("```ini") + len("```ini\n")
    write_plain("ini", "readme", readme_ini[start_ini:readme_ini.index("```", start_ini)].encode())
    write_plain("ini", "handler", b"[vaurien]\nprotocol = redis\n[handler:flaky]\ncallable = error\nwarmup = 2\n")
    for i, spec in enumerate(["dummy", "20:delay,5:error", "10:flaky, 90:normal", "100:hang", "50:abort,50:blackout"]):
        write_plain("mix", f"mix-{i}", spec.encode())
    for i, (selector, value) in enumerate([(10, "2.5"), (0x80 | 40, "1e3"), (41, "true"), (60, "65536")]):
        write_plain("option_values", f"value-{i}", bytes([selector]) + value.encode())
    for i, (selector, body) in enumerate([
        (0, '{"name": "delay", "sleep": 2}'), (0, '{"name": "20:delay,5:error"}'),
        (4, '{"backend": "127.0.0.1:6379"}'), (1, ""), (0, '{"sleep": 1}'),
    ]):
        write_plain("api_bodies", f"body-{i}", bytes([selector]) + body.encode())


def write_plain(target, name, payload):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(payload)


try:
    redis()
    memcache()
    http()
    smtp()
    texts()
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
print("seeds written to", SEEDS)
