//! `GET /metrics`: every proxy's counters in Prometheus' text format. Toxiproxy's byte
//! counters come first, with its names and labels, so that its dashboards work unchanged;
//! vaurien's own counters and the process' figures follow.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::ControlState;
use crate::stats::Stats;

/// The content type of the answer (Prometheus' text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One proxy as its samples label it.
struct Labelled {
    name: String,
    listener: String,
    upstream: String,
    enabled: bool,
    toxics: usize,
    stats: Arc<Stats>,
}

/// How one proxy's sample of a family is read.
type Sample = fn(&Labelled) -> u64;

/// The proxies of the process, sorted by name.
fn proxies(state: &ControlState) -> Vec<Labelled> {
    let label = |name: &str, p: &super::ProxyRef| {
        let live = p.hub.current();
        Labelled {
            name: name.to_string(),
            listener: p.switch.listen().to_string(),
            upstream: live.backend.to_string(),
            enabled: p.switch.enabled(),
            toxics: live.toxics.iter().count(),
            stats: p.stats.clone(),
        }
    };
    match &state.proxies {
        Some(directory) => directory
            .names()
            .iter()
            .filter_map(|name| directory.get(name).map(|p| label(name, &p)))
            .collect(),
        // A control server with no directory serves the one proxy of its state.
        None => match &state.proxy {
            Some(switch) => vec![label(
                super::MAIN_PROXY,
                &super::ProxyRef {
                    hub: state.hub.clone(),
                    switch: switch.clone(),
                    stats: state.stats.clone(),
                },
            )],
            None => Vec::new(),
        },
    }
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
fn escaped(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Writes a family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole answer.
pub fn render(state: &ControlState) -> String {
    let proxies = proxies(state);
    let mut out = String::with_capacity(512 + proxies.len() * 1024);
    for (metric, help, [upstream, downstream]) in [
        (
            "toxiproxy_proxy_received_bytes_total",
            "The total number of bytes received on a proxy link in a direction.",
            [
                |s: &Stats| s.bytes_from_client.load(Relaxed),
                |s: &Stats| s.bytes_from_backend.load(Relaxed),
            ],
        ),
        (
            "toxiproxy_proxy_sent_bytes_total",
            "The total number of bytes sent on a proxy link in a direction.",
            [
                |s: &Stats| s.bytes_to_backend.load(Relaxed),
                |s: &Stats| s.bytes_to_client.load(Relaxed),
            ],
        ),
    ] {
        family(&mut out, metric, "counter", help);
        for p in &proxies {
            for (direction, value) in [("downstream", downstream), ("upstream", upstream)] {
                let _ = writeln!(
                    out,
                    "{metric}{{direction=\"{direction}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}} {}",
                    escaped(&p.listener),
                    escaped(&p.name),
                    escaped(&p.upstream),
                    value(&p.stats)
                );
            }
        }
    }
    family(
        &mut out,
        "vaurien_proxy_calls_total",
        "counter",
        "Calls (requests, or chunks of a stream) per behavior of the mix.",
    );
    for p in &proxies {
        for (behavior, n) in p.stats.calls() {
            let _ = writeln!(
                out,
                "vaurien_proxy_calls_total{{behavior=\"{}\",proxy=\"{}\"}} {n}",
                escaped(&behavior),
                escaped(&p.name)
            );
        }
    }
    let per_proxy: [(&str, &str, &str, Sample); 5] = [
        (
            "vaurien_proxy_connections_open",
            "gauge",
            "Client connections open now.",
            |p| p.stats.connections_open.load(Relaxed),
        ),
        (
            "vaurien_proxy_connections_total",
            "counter",
            "Client connections accepted since start.",
            |p| p.stats.connections_total.load(Relaxed),
        ),
        (
            "vaurien_proxy_backend_errors_total",
            "counter",
            "Backend connections that failed.",
            |p| p.stats.backend_errors.load(Relaxed),
        ),
        (
            "vaurien_proxy_enabled",
            "gauge",
            "1 while the proxy accepts connections, 0 while it is down.",
            |p| u64::from(p.enabled),
        ),
        (
            "vaurien_proxy_toxics",
            "gauge",
            "Toxics on the proxy.",
            |p| p.toxics as u64,
        ),
    ];
    for (metric, kind, help, value) in per_proxy {
        family(&mut out, metric, kind, help);
        for p in &proxies {
            let _ = writeln!(
                out,
                "{metric}{{proxy=\"{}\"}} {}",
                escaped(&p.name),
                value(p)
            );
        }
    }
    process(&mut out);
    out
}

/// The process' memory, threads and descriptors, where `/proc` tells them.
fn process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(kib) = field("VmRSS:") {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", kib * 1024);
    }
    if let Some(threads) = field("Threads:") {
        family(out, "process_threads", "gauge", "Threads of the process.");
        let _ = writeln!(out, "process_threads {threads}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", fds.count().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
