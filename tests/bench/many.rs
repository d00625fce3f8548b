//! The `proxies` workload: many proxies in one process, each with a toxic, traffic on all of
//! them, and the control API timed meanwhile (SPEC 12: one process serves any number of
//! named proxies).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::procs::{self, start_with_ready_line};
use crate::report::{median, percentile, Sample, Target};
use crate::setup::Env;
use crate::traffic::{self, Server};
use crate::workloads::Workload;

/// The workload with `count` proxies and `seconds` of traffic.
pub fn proxies(env: &Env, count: usize, seconds: u64) -> Workload {
    let vaurien = env.vaurien.display().to_string();
    Workload {
        name: "proxies",
        targets: vec![Target::Vaurien],
        reps: None,
        skip: None,
        commands: vec![
            "backend: an echo server in the bench on 127.0.0.1:BACKEND, a thread per connection"
                .to_string(),
            format!("{vaurien} --toxiproxy -host 127.0.0.1 -port 0 (LOG_LEVEL=error)"),
            format!(
                "POST /populate: {count} proxies on 127.0.0.1:0 to the backend, each with a \
                 latency toxic of 1 ms (downstream)"
            ),
            format!(
                "load: one client connection per proxy, each a thread doing 64-byte echoes \
                 for {seconds} s; meanwhile the API is asked in turn GET /proxies, GET \
                 /metrics, POST a toxic on one proxy, DELETE it (each request timed, on a \
                 new connection)"
            ),
        ],
        measure: Box::new(move |env, _| measure(env, count, seconds)),
        derive: None,
    }
}

fn measure(env: &Env, count: usize, seconds: u64) -> Result<Vec<Sample>, String> {
    let backend = Server::threaded(traffic::echo)?;
    let mut cmd = Command::new(&env.vaurien);
    cmd.args(["--toxiproxy", "-host", "127.0.0.1", "-port", "0"])
        .env("LOG_LEVEL", "error");
    let (proc, line, _) = start_with_ready_line(
        "vaurien",
        &mut cmd,
        &env.file("vaurien-proxies", "log"),
        "vaurien listening ",
        false,
    )?;
    let api: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no http= address in {line:?}"))?;
    let pid = proc.pid();
    let status = |what: &str| -> Result<(f64, f64), String> {
        let rss = procs::rss_kib(pid)? as f64;
        let threads = procs::threads(pid).ok_or(format!("no thread count {what}"))? as f64;
        Ok((rss, threads))
    };
    let (rss_empty, threads_empty) = status("at start")?;
    let entries: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"name":"p{i}","listen":"127.0.0.1:0","upstream":"127.0.0.1:{}","toxics":[{{"type":"latency","attributes":{{"latency":1}}}}]}}"#,
                backend.port
            )
        })
        .collect();
    let started = Instant::now();
    let (code, body) = call(
        api,
        "POST",
        "/populate",
        &format!("[{}]", entries.join(",")),
    )?;
    let populate_ms = started.elapsed().as_secs_f64() * 1e3;
    if code != 201 {
        return Err(format!("populate answered {code}: {body}"));
    }
    let listens = listen_ports(&body, count)?;
    let (rss_idle, threads_idle) = status("with the proxies idle")?;

    let stop = Arc::new(AtomicBool::new(false));
    let exchanges = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(count);
    for port in listens {
        let (stop, exchanges, failures) = (stop.clone(), exchanges.clone(), failures.clone());
        let client = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || echo_until(port, &stop, &exchanges, &failures))
            .map_err(|e| format!("client thread: {e}"))?;
        clients.push(client);
    }
    let traffic_started = Instant::now();
    let mut api_ms = Vec::new();
    let mut round = 0usize;
    let mut under_load = None;
    while traffic_started.elapsed() < Duration::from_secs(seconds) {
        let proxy = format!("p{}", round % count);
        let toxics = format!("/proxies/{proxy}/toxics");
        let steps: [(&str, String, &str, u16); 4] = [
            ("GET", "/proxies".to_string(), "", 200),
            ("GET", "/metrics".to_string(), "", 200),
            (
                "POST",
                toxics.clone(),
                r#"{"name":"extra","type":"bandwidth","attributes":{"rate":100000}}"#,
                200,
            ),
            ("DELETE", format!("{toxics}/extra"), "", 204),
        ];
        for (method, path, body, expected) in steps {
            let t = Instant::now();
            let (code, answer) = call(api, method, &path, body)?;
            api_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if code != expected {
                return Err(format!("{method} {path} answered {code}: {answer}"));
            }
        }
        round += 1;
        if under_load.is_none() && traffic_started.elapsed() >= Duration::from_secs(seconds) / 2 {
            under_load = Some(status("under traffic")?);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let took = traffic_started.elapsed().as_secs_f64();
    api_ms.sort_by(f64::total_cmp);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} client connection(s) failed"));
    }
    let (rss_load, threads_load) = under_load.ok_or("the traffic ended before its middle")?;
    let n = count as f64;
    Ok(vec![
        Sample::new("proxies", n),
        Sample::new("populate ms", populate_ms),
        Sample::new("RSS 0 proxies KiB", rss_empty),
        Sample::new(format!("RSS {count} idle KiB"), rss_idle),
        Sample::new("KiB/proxy idle", (rss_idle - rss_empty) / n),
        Sample::new("threads 0 proxies", threads_empty),
        Sample::new(format!("threads {count} idle"), threads_idle),
        Sample::new(format!("RSS {count} busy KiB"), rss_load),
        Sample::new(format!("threads {count} busy"), threads_load),
        Sample::new("echoes/s", exchanges.load(Ordering::Relaxed) as f64 / took),
        Sample::new("API p50 ms", median(&api_ms)),
        Sample::new("API p99 ms", percentile(&api_ms, 99.0).unwrap_or(0.0)),
        Sample::new("API max ms", api_ms.last().copied().unwrap_or(0.0)),
    ])
}

/// The listen ports of populate's answer, `count` of them.
fn listen_ports(body: &str, count: usize) -> Result<Vec<u16>, String> {
    let answer: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("populate's answer: {e}"))?;
    let ports: Vec<u16> = answer["proxies"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| p["listen"].as_str()?.parse::<SocketAddr>().ok())
                .map(|a| a.port())
                .collect()
        })
        .unwrap_or_default();
    if ports.len() != count {
        return Err(format!(
            "populate answered {} proxies of {count}",
            ports.len()
        ));
    }
    Ok(ports)
}

/// 64-byte echoes through the proxy on `port` until `stop`, counted; a failure is counted
/// once and ends the client.
fn echo_until(port: u16, stop: &AtomicBool, exchanges: &AtomicU64, failures: &AtomicU64) {
    let run = || -> std::io::Result<()> {
        let mut s = traffic::connect(port, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let out = [0x5au8; 64];
        let mut back = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            s.write_all(&out)?;
            s.read_exact(&mut back)?;
            if back != out {
                return Err(std::io::Error::other("the echo differs"));
            }
            exchanges.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    if run().is_err() {
        failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// One API request on a new connection (10 s at most): the status and the body.
fn call(api: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let what = format!("{method} {path}");
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(10))
        .map_err(|e| format!("{what}: connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("{what}: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("{what}: write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{what}: read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{what}: no status in {raw:?}"))?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}
