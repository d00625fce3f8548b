//! The workloads: what each one runs, the commands it prints, and one measurement of it
//! against one target.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::procs::{self, run_tool_ok};
use crate::report::{median, percentile, Sample, Target};
use crate::setup::{self, describe_target, shell_join, shown, start_target, Env, ProxySpec};
use crate::traffic::{self, Server, SinkReport};

const GB: f64 = 1e9;
const GIB: u64 = 1 << 30;

/// Turns the samples of one repetition (every target) into extra samples, e.g. latency
/// added over `direct` in the same repetition.
type Derive = fn(&[(Target, Vec<Sample>)]) -> Vec<(Target, Sample)>;

type Measure = Box<dyn Fn(&Env, Target) -> Result<Vec<Sample>, String>>;

/// One workload: the targets it runs against and how one measurement goes.
pub struct Workload {
    pub name: &'static str,
    pub targets: Vec<Target>,
    /// Repetitions when fixed by the workload itself (a file size does not vary).
    pub reps: Option<usize>,
    /// Why it cannot run here (a tool is missing).
    pub skip: Option<String>,
    pub commands: Vec<String>,
    pub measure: Measure,
    pub derive: Option<Derive>,
}

/// Sizes of everything, full or `--quick`.
struct Sizes {
    bulk_bytes: u64,
    redis_requests: u64,
    wrk_seconds: u64,
    ping_rounds: usize,
    held: [usize; 2],
    ten_k: usize,
    delay_rounds: usize,
    paced_bytes: usize,
    starts: usize,
    /// Proxies of the `proxies` workload, and its seconds of traffic.
    proxies: (usize, u64),
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes {
                bulk_bytes: 64 << 20,
                redis_requests: 20_000,
                wrk_seconds: 2,
                ping_rounds: 2_000,
                held: [100, 500],
                ten_k: 2_000,
                delay_rounds: 10,
                paced_bytes: 1_000_000,
                starts: 5,
                proxies: (20, 2),
            }
        } else {
            Sizes {
                bulk_bytes: 2 * GIB,
                redis_requests: 200_000,
                wrk_seconds: 10,
                ping_rounds: 20_000,
                held: [1_000, 5_000],
                ten_k: 10_000,
                delay_rounds: 50,
                paced_bytes: 3_000_000,
                starts: 20,
                proxies: (100, 10),
            }
        }
    }
}

/// Every workload, in the order they run.
pub fn all(env: &Env) -> Vec<Workload> {
    let s = Sizes::of(env.quick);
    let mut list = vec![
        bulk(env, "bulk-1", 1, s.bulk_bytes),
        bulk(env, "bulk-8", 8, s.bulk_bytes),
        redis(env, "redis", None, s.redis_requests),
        redis(env, "redis-P16", Some(16), s.redis_requests),
        http(env, "http", false, s.wrk_seconds),
        http(env, "churn", true, s.wrk_seconds),
        ping_pong(env, s.ping_rounds),
        memory(env, s.held),
        ten_k(env, s.ten_k),
        delay(env, s.delay_rounds),
        latency(env, s.delay_rounds),
        bandwidth(env, s.paced_bytes),
        binary(env),
        start(env, s.starts),
        crate::many::proxies(env, s.proxies.0, s.proxies.1),
    ];
    for w in &mut list {
        w.targets = env.available(&w.targets);
    }
    list
}

fn proxied(env: &Env, targets: &[Target], spec: &ProxySpec) -> Vec<String> {
    env.available(targets)
        .into_iter()
        .map(|t| describe_target(env, t, spec))
        .collect()
}

// ---------------------------------------------------------------------------------------
// bulk

fn bulk(env: &Env, name: &'static str, streams: u32, total: u64) -> Workload {
    let spec = ProxySpec::new("tcp");
    let mut commands = vec![
        "backend: a sink thread in the bench on 127.0.0.1:BACKEND, verifying every byte"
            .to_string(),
        format!(
            "load: {streams} connection(s) × {} bytes from source threads in the bench, \
             {} KiB writes, a seeded pattern of period 1048573",
            total / u64::from(streams),
            traffic::CHUNK / 1024
        ),
    ];
    commands.extend(proxied(env, &Target::ALL, &spec));
    Workload {
        name,
        targets: Target::ALL.to_vec(),
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| measure_bulk(env, t, &spec, streams, total)),
        derive: None,
    }
}

fn measure_bulk(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    streams: u32,
    total: u64,
) -> Result<Vec<Sample>, String> {
    let (reports, sink_reports) = mpsc::channel();
    let pattern = env.pattern.clone();
    let sink = Server::start(move |stream| {
        let (pattern, reports) = (pattern.clone(), reports.clone());
        traffic::spawn_small(move || traffic::sink(stream, &pattern, &reports));
    })?;
    let running = start_target(env, target, sink.port, spec)?;
    let cpu_before = running.cpu()?;
    let limit = Duration::from_secs(30 + total / 20_000_000);
    let start = Instant::now();
    let sources = spawn_sources(env, running.port, streams, total / u64::from(streams));
    let last = await_verified(&sink_reports, &sources, streams, start + limit)?;
    let cpu_after = running.cpu()?;
    for _ in 0..streams {
        match sources.recv_timeout(Duration::from_secs(10)) {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(e))) => return Err(format!("source {i}: {e}")),
            Err(_) => return Err("a source did not finish after the sink closed".to_string()),
        }
    }
    let gb = total as f64 / GB;
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| (a - b) / gb);
    Ok(vec![
        Sample::new("GB/s", gb / (last - start).as_secs_f64()).cpu(cpu, "s/GB")
    ])
}

type SourceResult = (u32, Result<(), String>);

/// One source thread per stream, each sending `per_stream` bytes; results on the channel.
fn spawn_sources(
    env: &Env,
    port: u16,
    streams: u32,
    per_stream: u64,
) -> mpsc::Receiver<SourceResult> {
    let (done, results) = mpsc::channel();
    for index in 0..streams {
        let (pattern, done) = (env.pattern.clone(), done.clone());
        let offset = u64::from(index) * per_stream;
        thread::spawn(move || {
            let result = traffic::source(port, index, offset, per_stream, &pattern);
            let _ = done.send((index, result));
        });
    }
    results
}

/// Waits until the sink has verified every stream; returns when the last byte was checked.
fn await_verified(
    sink: &mpsc::Receiver<SinkReport>,
    sources: &mpsc::Receiver<SourceResult>,
    streams: u32,
    deadline: Instant,
) -> Result<Instant, String> {
    let mut verified = 0;
    let mut last = None;
    while verified < streams {
        match sink.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(SinkReport::Probe) => {}
            Ok(SinkReport::Verified(at)) => {
                verified += 1;
                last = last.max(Some(at));
            }
            Ok(SinkReport::Failed(e)) => return Err(e),
            Err(_) => {
                // A source that failed says more than the sink waiting for it.
                let source_error = sources
                    .try_iter()
                    .find_map(|(i, r)| r.err().map(|e| format!("source {i}: {e}")));
                return Err(source_error.unwrap_or(format!(
                    "{verified} of {streams} streams verified before the deadline"
                )));
            }
        }
    }
    last.ok_or_else(|| "no stream to verify".to_string())
}

// ---------------------------------------------------------------------------------------
// redis

fn redis(env: &Env, name: &'static str, pipeline: Option<u32>, requests: u64) -> Workload {
    let spec = ProxySpec::new("redis");
    let skip = match (&env.redis_server, &env.redis_benchmark) {
        (Some(_), Some(_)) => None,
        _ => Some("redis-server or redis-benchmark is not installed".to_string()),
    };
    let tool = shown(&env.redis_benchmark, "redis-benchmark");
    let mut commands = vec![
        setup::describe_redis(env),
        format!(
            "load: {}",
            shell_join(&tool, &redis_benchmark_args(0, requests, pipeline))
                .replace("-p 0", "-p PORT")
        ),
    ];
    commands.extend(proxied(env, &Target::ALL, &spec));
    Workload {
        name,
        targets: Target::ALL.to_vec(),
        reps: None,
        skip,
        commands,
        measure: Box::new(move |env, t| measure_redis(env, t, &spec, pipeline, requests)),
        derive: None,
    }
}

fn redis_benchmark_args(port: u16, requests: u64, pipeline: Option<u32>) -> Vec<String> {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "ping,set,get",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["-n".to_string(), requests.to_string()]);
    args.extend(["-c", "50"].map(String::from));
    if let Some(p) = pipeline {
        args.extend(["-P".to_string(), p.to_string()]);
    }
    args.push("--csv".to_string());
    args
}

fn measure_redis(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    pipeline: Option<u32>,
    requests: u64,
) -> Result<Vec<Sample>, String> {
    let tool = env
        .redis_benchmark
        .as_ref()
        .ok_or("redis-benchmark is not installed")?;
    let (_redis, backend_port) = setup::start_redis(env)?;
    let running = start_target(env, target, backend_port, spec)?;
    let cpu_before = running.cpu()?;
    let mut cmd = Command::new(tool);
    cmd.args(redis_benchmark_args(running.port, requests, pipeline));
    let limit = Duration::from_secs(if env.quick { 120 } else { 600 });
    let out = run_tool_ok("redis-benchmark", &mut cmd, limit)?;
    let cpu_after = running.cpu()?;
    let rows = parse_redis_csv(&out.stdout).ok_or_else(|| {
        format!(
            "no results in redis-benchmark's output: {}",
            procs::tail(&out.all(), 3)
        )
    })?;
    let ops = (rows.len() as u64 * requests) as f64;
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| (a - b) * 1e6 / ops);
    Ok(rows
        .into_iter()
        .map(|(test, rps)| Sample::new(format!("{test} ops/s"), rps).cpu(cpu, "µs/op (whole run)"))
        .collect())
}

/// (test, requests per second) from `--csv` output. Versions differ: some print a header
/// line, some more columns; progress may be overwritten with carriage returns.
fn parse_redis_csv(text: &str) -> Option<Vec<(String, f64)>> {
    let rows: Vec<(String, f64)> = text
        .split(['\n', '\r'])
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
            let test = fields.next()?;
            let rps = fields.next()?.parse::<f64>().ok()?;
            (!test.is_empty()).then(|| (test.to_string(), rps))
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

// ---------------------------------------------------------------------------------------
// http and churn

fn http(env: &Env, name: &'static str, churn: bool, seconds: u64) -> Workload {
    let spec = ProxySpec::new("http");
    let skip = match (&env.nginx, &env.wrk) {
        (Some(_), Some(_)) => None,
        _ => Some("nginx or wrk is not installed".to_string()),
    };
    let wrk = shown(&env.wrk, "wrk");
    let mut commands = vec![
        setup::describe_nginx(env),
        format!(
            "load: {}",
            shell_join(&wrk, &wrk_args(0, churn, seconds)).replace(":0/", ":PORT/")
        ),
    ];
    commands.extend(proxied(env, &Target::ALL, &spec));
    Workload {
        name,
        targets: Target::ALL.to_vec(),
        reps: None,
        skip,
        commands,
        measure: Box::new(move |env, t| measure_http(env, t, &spec, churn, seconds)),
        derive: None,
    }
}

fn wrk_args(port: u16, churn: bool, seconds: u64) -> Vec<String> {
    let mut args: Vec<String> = ["-t2", "-c64", &format!("-d{seconds}s"), "--latency"]
        .map(String::from)
        .to_vec();
    if churn {
        args.extend(["-H", "Connection: close"].map(String::from));
    }
    args.push(format!("http://127.0.0.1:{port}/1k.bin"));
    args
}

fn measure_http(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    churn: bool,
    seconds: u64,
) -> Result<Vec<Sample>, String> {
    let wrk = env.wrk.as_ref().ok_or("wrk is not installed")?;
    let (_nginx, backend_port) = setup::start_nginx(env)?;
    let running = start_target(env, target, backend_port, spec)?;
    let cpu_before = running.cpu()?;
    let mut cmd = Command::new(wrk);
    cmd.args(wrk_args(running.port, churn, seconds));
    let out = run_tool_ok("wrk", &mut cmd, Duration::from_secs(seconds + 30))?;
    let cpu_after = running.cpu()?;
    let report = parse_wrk(&out.stdout)?;
    if report.non_2xx > 0 {
        return Err(format!(
            "{} of {} responses were not 2xx/3xx",
            report.non_2xx, report.requests
        ));
    }
    if let Some(errors) = &report.socket_errors {
        let text = format!(
            "{} {}: wrk {errors} ({} requests)",
            if churn { "churn" } else { "http" },
            target.name(),
            report.requests
        );
        env.note(text.clone(), text);
    }
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(b, a)| (a - b) * 1e6 / report.requests as f64);
    Ok(if churn {
        vec![
            Sample::new("conn/s", report.rps).cpu(cpu, "µs/conn"),
            Sample::new("p99 ms", report.p99_ms),
        ]
    } else {
        vec![
            Sample::new("req/s", report.rps).cpu(cpu, "µs/req"),
            Sample::new("p50 ms", report.p50_ms),
            Sample::new("p99 ms", report.p99_ms),
        ]
    })
}

struct WrkReport {
    rps: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: Option<String>,
}

fn parse_wrk(text: &str) -> Result<WrkReport, String> {
    let mut rps = None;
    let mut requests = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = duration_ms(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = duration_ms(v.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(u64::MAX);
        } else if line.starts_with("Socket errors:") {
            socket_errors = Some(line.to_string());
        }
    }
    let missing = |what: &str| format!("no {what} in wrk's output: {}", procs::tail(text, 3));
    let requests: u64 = requests.ok_or_else(|| missing("request count"))?;
    if requests == 0 {
        return Err("wrk completed no request".to_string());
    }
    Ok(WrkReport {
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        requests,
        p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
    })
}

/// wrk's durations ("812.00us", "1.23ms", "2.00s", "1.50m") in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    let scale = match &text[split..] {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(value * scale)
}

// ---------------------------------------------------------------------------------------
// ping-pong

fn ping_pong(env: &Env, rounds: usize) -> Workload {
    let spec = ProxySpec::new("tcp");
    let mut commands = vec![
        "backend: an echo thread in the bench on 127.0.0.1:BACKEND".to_string(),
        format!(
            "load: one connection (TCP_NODELAY), 100 untimed then {rounds} timed 1-byte round trips"
        ),
    ];
    commands.extend(proxied(env, &Target::ALL, &spec));
    Workload {
        name: "ping-pong",
        targets: Target::ALL.to_vec(),
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| {
            let times = round_trips(env, t, &spec, 100, rounds)?;
            Ok(vec![
                Sample::new("p50 µs", micros(percentile(&times, 50.0))),
                Sample::new("p99 µs", micros(percentile(&times, 99.0))),
            ])
        }),
        derive: Some(added_over_direct),
    }
}

/// Sorted round-trip times through `target` to a fresh echo server.
fn round_trips(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    warmup: usize,
    rounds: usize,
) -> Result<Vec<Duration>, String> {
    let echo = Server::threaded(traffic::echo)?;
    let running = start_target(env, target, echo.port, spec)?;
    let mut times = traffic::ping_pong(running.port, warmup, rounds)?;
    times.sort();
    Ok(times)
}

fn micros(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn millis(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// The value of `metric` measured for `target` in one repetition.
fn value_of(rep: &[(Target, Vec<Sample>)], target: Target, metric: &str) -> Option<f64> {
    rep.iter()
        .filter(|(t, _)| *t == target)
        .flat_map(|(_, samples)| samples)
        .find(|s| s.metric == metric)
        .map(|s| s.value)
}

/// Latency each proxy adds over `direct` in the same repetition.
fn added_over_direct(rep: &[(Target, Vec<Sample>)]) -> Vec<(Target, Sample)> {
    let mut out = Vec::new();
    for (target, _) in rep.iter().filter(|(t, _)| *t != Target::Direct) {
        for metric in ["p50 µs", "p99 µs"] {
            let (Some(direct), Some(proxy)) = (
                value_of(rep, Target::Direct, metric),
                value_of(rep, *target, metric),
            ) else {
                continue;
            };
            out.push((
                *target,
                Sample::new(format!("added {metric}"), proxy - direct),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// memory and 10k

fn memory(env: &Env, held: [usize; 2]) -> Workload {
    let max = (held[1] + 1000).to_string();
    let spec = ProxySpec::new("tcp").with(&["--stay-connected", "--max-connections", &max]);
    let targets = [Target::Vaurien, Target::VaurienTcp, Target::Haproxy];
    let mut commands = vec![
        "backend: an echo server in the bench on 127.0.0.1:BACKEND, echoing the first byte \
         of each connection and holding it open"
            .to_string(),
        format!(
            "load: VmRSS of the idle proxy, then with {} and {} connections held open \
             (one byte echoed through each, the backend having counted them all)",
            held[0], held[1]
        ),
    ];
    commands.extend(proxied(env, &targets, &spec));
    Workload {
        name: "memory",
        targets: targets.to_vec(),
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| measure_memory(env, t, &spec, held)),
        derive: None,
    }
}

fn measure_memory(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    held: [usize; 2],
) -> Result<Vec<Sample>, String> {
    let (backend, accepted) = traffic::holding_echo_server()?;
    let running = start_target(env, target, backend.port, spec)?;
    let pid = running.pid().ok_or("memory needs a proxy process")?;
    let idle = procs::rss_kib(pid)? as f64;
    let mut samples = vec![Sample::new("RSS idle KiB", idle)];
    let mut conns = Vec::with_capacity(held[1]);
    for n in held {
        while conns.len() < n {
            let stream = traffic::open_echoed(running.port, Duration::from_secs(5))
                .map_err(|e| format!("connection {}: {e}", conns.len() + 1))?;
            conns.push(stream);
        }
        wait_for_count(&accepted, n, Duration::from_secs(10))?;
        let rss = procs::rss_kib(pid)? as f64;
        samples.push(Sample::new(format!("RSS {n} conns KiB"), rss));
        samples.push(Sample::new(
            format!("KiB/conn @{n}"),
            (rss - idle) / n as f64,
        ));
    }
    Ok(samples)
}

/// Polls until the backend has counted `n` connections.
fn wait_for_count(count: &AtomicUsize, n: usize, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while count.load(Ordering::Relaxed) < n {
        if start.elapsed() > limit {
            return Err(format!(
                "the backend saw {} of {n} connections after {limit:?}",
                count.load(Ordering::Relaxed)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn ten_k(env: &Env, n: usize) -> Workload {
    let spec = ProxySpec::new("tcp").with(&["--stay-connected", "--max-connections", "10000"]);
    let mut commands = vec![
        "backend: this bench binary re-run with --serve-echo (a process of its own, for its \
         fds), echoing the first byte of each connection and holding it open"
            .to_string(),
        format!("load: {n} connections opened one after another, one byte echoed through each, all held open"),
    ];
    commands.extend(proxied(env, &[Target::Vaurien], &spec));
    Workload {
        name: "10k",
        targets: vec![Target::Vaurien],
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| measure_ten_k(env, t, &spec, n)),
        derive: None,
    }
}

fn measure_ten_k(
    env: &Env,
    target: Target,
    spec: &ProxySpec,
    n: usize,
) -> Result<Vec<Sample>, String> {
    let (_echo, backend_port) = setup::start_echo_child(env)?;
    let running = start_target(env, target, backend_port, spec)?;
    let mut conns = Vec::with_capacity(n);
    let mut first_error = None;
    let mut failures_in_a_row = 0;
    for i in 1..=n {
        match traffic::open_echoed(running.port, Duration::from_secs(2)) {
            Ok(stream) => {
                conns.push(stream);
                failures_in_a_row = 0;
            }
            Err(e) => {
                first_error.get_or_insert(format!("connection {i}: {e}"));
                failures_in_a_row += 1;
                // Past this the proxy is out of something; waiting on each would take minutes.
                if failures_in_a_row == 20 {
                    break;
                }
            }
        }
        if i % 2000 == 0 {
            eprintln!("    {i} connections tried, {} echoed", conns.len());
        }
    }
    if let Some(e) = first_error {
        let echoed = conns.len();
        env.note(
            format!("10k {} {echoed}", target.name()),
            format!(
                "10k {}: {echoed} of {n} connections echoed; first failure: {e}; the proxy {}; \
                 its last log line{}",
                target.name(),
                resources(running.pid()),
                running.last_log_line()
            ),
        );
    }
    Ok(vec![Sample::new(
        format!("echoed of {n}"),
        conns.len() as f64,
    )])
}

/// What a proxy holds of the limits a connection count can hit, for failure notes.
fn resources(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "is not running".to_string();
    };
    let known = |v: Option<String>| v.unwrap_or_else(|| "?".to_string());
    format!(
        "has {} threads, {} memory mappings (vm.max_map_count {}), an open-files limit of {}",
        known(procs::threads(pid).map(|t| t.to_string())),
        known(procs::mappings(pid).map(|m| m.0.to_string())),
        known(procs::mappings(pid).map(|m| m.1.to_string())),
        known(procs::open_files_limit(pid).map(|l| l.to_string())),
    )
}

// ---------------------------------------------------------------------------------------
// delay

const DELAY_MS: f64 = 100.0;

fn delay(env: &Env, rounds: usize) -> Workload {
    let mut spec = ProxySpec::new("tcp").with(&["--behavior-delay-sleep", "0.1"]);
    spec.behavior = "100:delay";
    added_latency(env, "delay", spec, rounds)
}

/// Toxiproxy's `latency` (100 ms on the response), measured as `delay` is.
fn latency(env: &Env, rounds: usize) -> Workload {
    let mut spec = ProxySpec::new("tcp").with(&["--behavior-latency-latency", "100"]);
    spec.behavior = "100:latency";
    added_latency(env, "latency", spec, rounds)
}

/// Round trips through a proxy adding 100 ms (`spec`), against `direct`.
fn added_latency(env: &Env, name: &'static str, spec: ProxySpec, rounds: usize) -> Workload {
    let mut commands = vec![
        "backend: an echo thread in the bench on 127.0.0.1:BACKEND".to_string(),
        format!(
            "load: one connection, {rounds} timed 1-byte round trips through vaurien (after 1 \
             untimed); direct: 2000 round trips as the baseline"
        ),
        "added = RTT − 100 ms − direct p50 of the same repetition".to_string(),
    ];
    commands.extend(proxied(env, &[Target::Direct, Target::Vaurien], &spec));
    Workload {
        name,
        targets: vec![Target::Direct, Target::Vaurien],
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| {
            let times = if t == Target::Direct {
                round_trips(env, t, &spec, 100, 2000)?
            } else {
                round_trips(env, t, &spec, 1, rounds)?
            };
            let mut samples = vec![Sample::new("RTT p50 ms", millis(percentile(&times, 50.0)))];
            if t != Target::Direct {
                samples.push(Sample::new("RTT p99 ms", millis(percentile(&times, 99.0))));
            }
            Ok(samples)
        }),
        derive: Some(added_delay),
    }
}

fn added_delay(rep: &[(Target, Vec<Sample>)]) -> Vec<(Target, Sample)> {
    let Some(direct) = value_of(rep, Target::Direct, "RTT p50 ms") else {
        return Vec::new();
    };
    [
        ("RTT p50 ms", "added p50 ms"),
        ("RTT p99 ms", "added p99 ms"),
    ]
    .into_iter()
    .filter_map(|(rtt, added)| {
        let v = value_of(rep, Target::Vaurien, rtt)?;
        Some((Target::Vaurien, Sample::new(added, v - DELAY_MS - direct)))
    })
    .collect()
}

// ---------------------------------------------------------------------------------------
// bandwidth

/// The pace asked of `bandwidth`, in KB/s (1 KB = 1000 bytes).
const RATE_KB: f64 = 1000.0;

fn bandwidth(env: &Env, bytes: usize) -> Workload {
    let mut spec = ProxySpec::new("tcp").with(&["--behavior-bandwidth-rate", "1000"]);
    spec.behavior = "100:bandwidth";
    let mut commands = vec![
        format!(
            "backend: a thread in the bench on 127.0.0.1:BACKEND that answers a byte with \
             {bytes} bytes"
        ),
        "load: one connection sends a byte and reads the answer to its end, timed".to_string(),
        "achieved = the rate between the reads that pass 10% and 90% of the bytes (the ends \
         of a paced transfer are a write early or late); longest gap between two reads"
            .to_string(),
    ];
    commands.extend(proxied(env, &[Target::Vaurien], &spec));
    Workload {
        name: "bandwidth",
        targets: vec![Target::Vaurien],
        reps: None,
        skip: None,
        commands,
        measure: Box::new(move |env, t| {
            let server = Server::start(move |stream| answer_a_byte(stream, bytes))?;
            let running = start_target(env, t, server.port, &spec)?;
            let (achieved, gap) = paced_read(running.port, bytes)?;
            Ok(vec![
                Sample::new("achieved KB/s", achieved),
                Sample::new("of rate %", 100.0 * achieved / RATE_KB),
                Sample::new("longest gap ms", gap.as_secs_f64() * 1e3),
            ])
        }),
        derive: None,
    }
}

/// Answers the first byte read on `stream` with `bytes` bytes, on a thread of its own.
fn answer_a_byte(mut stream: std::net::TcpStream, bytes: usize) {
    traffic::spawn_small(move || {
        use std::io::{Read, Write};
        let mut one = [0u8; 1];
        if matches!(stream.read(&mut one), Ok(1)) {
            let _ = stream.write_all(&vec![b'p'; bytes]);
        }
    });
}

/// Sends a byte to 127.0.0.1:`port` and reads `bytes` back: the rate (KB/s) between the
/// reads that pass 10% and 90% of them, and the longest wait between two reads.
fn paced_read(port: u16, bytes: usize) -> Result<(f64, Duration), String> {
    use std::io::{Read, Write};
    let mut s = traffic::connect(port, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    s.write_all(b"?").map_err(|e| format!("write: {e}"))?;
    let start = Instant::now();
    let (mut got, mut last, mut gap) = (0, start, Duration::ZERO);
    let mut reads = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while got < bytes {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("the answer ended after {got} of {bytes} bytes")),
            Ok(n) => {
                got += n;
                let now = Instant::now();
                gap = gap.max(now - last);
                last = now;
                reads.push((now, got));
            }
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
    let passing = |share: usize| {
        reads
            .iter()
            .find(|(_, g)| *g * 100 >= bytes * share)
            .copied()
    };
    let (Some((t10, b10)), Some((t90, b90))) = (passing(10), passing(90)) else {
        return Err("too few reads to time".to_string());
    };
    let secs = (t90 - t10).as_secs_f64();
    Ok(((b90 - b10) as f64 / 1000.0 / secs, gap))
}

// ---------------------------------------------------------------------------------------
// binary and start

fn binary(env: &Env) -> Workload {
    Workload {
        name: "binary",
        targets: vec![Target::Vaurien],
        reps: Some(1),
        skip: None,
        commands: vec![format!("size of {}", env.vaurien.display())],
        measure: Box::new(|env, _| {
            let meta = std::fs::metadata(&env.vaurien)
                .map_err(|e| format!("{}: {e}", env.vaurien.display()))?;
            Ok(vec![Sample::new(
                "size MiB",
                meta.len() as f64 / (1 << 20) as f64,
            )])
        }),
        derive: None,
    }
}

fn start(env: &Env, starts: usize) -> Workload {
    let spec = ProxySpec::new("tcp");
    let args = start_args(&spec);
    Workload {
        name: "start",
        targets: vec![Target::Vaurien],
        reps: None,
        skip: None,
        commands: vec![format!(
            "{} (time from spawn to the ready line, median of {starts} starts)",
            shell_join(&env.vaurien.display().to_string(), &args)
        )],
        measure: Box::new(move |env, _| {
            let mut times = Vec::with_capacity(starts);
            for _ in 0..starts {
                let (_proc, _, took) = setup::start_vaurien(env, &args)?;
                times.push(took.as_secs_f64() * 1e3);
            }
            Ok(vec![Sample::new("start ms", median(&times))])
        }),
        derive: None,
    }
}

/// Vaurien resolves the backend at each connection, so a closed port does for start-up.
fn start_args(spec: &ProxySpec) -> Vec<String> {
    let mut args = vec!["--proxy", "127.0.0.1:0", "--backend", "127.0.0.1:9"];
    args.extend(["--protocol", spec.protocol, "--behavior", spec.behavior]);
    args.extend(["--log-level", "error"]);
    args.into_iter().map(String::from).collect()
}
