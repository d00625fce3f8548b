//! The control API (`--http`): routes that read and change the live mix and backend. A
//! change is published through the [`Hub`] as a new immutable snapshot; the API never waits
//! on a proxy connection. Its own server ([`Control`]) accepts and reads the requests.

use std::sync::Arc;

use serde_json::{json, Map, Value as Json};
use tiny_http::Method;

mod metrics;
mod server;
pub(crate) mod toxiproxy;

pub use server::{Control, IDLE_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT};
pub(crate) use toxiproxy::listen_failure;

use crate::hub::Hub;
use crate::mix::{BehaviorOptions, Mix};
use crate::net::HostPort;
use crate::registry::Registry;
use crate::stats::Stats;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The proxy as `GET/PUT /proxy` see it: its address and protocol, and the switch that takes
/// it down and up.
pub trait ProxySwitch: Send + Sync {
    /// The address it listens on (the real port when port 0 was asked).
    fn listen(&self) -> std::net::SocketAddr;
    /// The name of its protocol.
    fn protocol(&self) -> &str;
    /// Whether it accepts connections.
    fn enabled(&self) -> bool;
    /// Off: the listener and the open connections close. On: it listens again on the same
    /// address.
    fn set_enabled(&self, on: bool) -> std::io::Result<()>;
    /// Listens on `to` instead (port 0: any), closing the open connections; `false` when
    /// `to` is where it listens already. On failure it stays where it was. By default a
    /// proxy cannot move.
    fn move_to(&self, to: &crate::net::HostPort) -> std::io::Result<bool> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("this proxy cannot move to {to}"),
        ))
    }
    /// Closes the open connections and keeps listening (by default there are none to close).
    fn drop_connections(&self) {}
}

/// One proxy of the process as Toxiproxy's routes see it: its live settings and its switch.
#[derive(Clone)]
pub struct ProxyRef {
    /// Where its changes are published.
    pub hub: Arc<Hub>,
    /// Its address, protocol and enabled switch.
    pub switch: Arc<dyn ProxySwitch>,
    /// Its counters, for `GET /metrics`.
    pub stats: Arc<Stats>,
}

/// The proxies of the process, by name, as Toxiproxy's routes create, list and delete them.
pub trait ProxyDirectory: Send + Sync {
    /// Their names, sorted.
    fn names(&self) -> Vec<String>;
    /// The proxy named `name`.
    fn get(&self, name: &str) -> Option<ProxyRef>;
    /// Starts a proxy `name` listening on `listen` (port 0: any) and forwarding to
    /// `upstream`, with `protocol` (default tcp); down unless `enabled`. On failure, the
    /// status and message Toxiproxy answers (409 for a name taken, 400 for a bad address,
    /// 500 for a listen error).
    fn create(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        protocol: Option<&str>,
        enabled: bool,
    ) -> Result<ProxyRef, (u16, String)>;
    /// Stops and forgets proxy `name`; `false` when there is none.
    fn delete(&self, name: &str) -> bool;
}

/// The name of the command line's proxy, the one the original routes act on by default.
pub const MAIN_PROXY: &str = "vaurien";

/// What the control thread owns.
pub struct ControlState {
    /// Where changes are published.
    pub hub: Arc<Hub>,
    /// Known behaviors.
    pub registry: Registry,
    /// Behavior options from the command line and file; an API change starts from these.
    pub base_options: BehaviorOptions,
    /// Counters for `GET /stats`.
    pub stats: Arc<Stats>,
    /// Required bearer token, if any.
    pub token: Option<String>,
    /// The proxy's switch, for `/proxy` (none: that route answers 404).
    pub proxy: Option<Arc<dyn ProxySwitch>>,
    /// Every proxy of the process, for Toxiproxy's routes (none: they see no proxy).
    pub proxies: Option<Arc<dyn ProxyDirectory>>,
}

/// An API answer: status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Json,
}

fn ok(body: Json) -> Answer {
    Answer { status: 200, body }
}

/// The original's error shape: `{"status": "error", "errors": [{location, name, description}]}`.
pub(crate) fn error(
    status: u16,
    location: &str,
    name: &str,
    description: impl Into<String>,
) -> Answer {
    Answer {
        status,
        body: json!({"status": "error", "errors": [{"location": location, "name": name, "description": description.into()}]}),
    }
}

/// Answers one request to `target` (a path, perhaps with a query); pure apart from
/// publishing changes to the hub and switching the proxy. `GET /metrics`, the one answer in
/// text, is the server's (see [`metrics`]).
pub fn route(state: &ControlState, method: &Method, target: &str, body: &[u8]) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.trim_end_matches('/');
    if toxiproxy::owns(path) {
        return toxiproxy::route(state, method, path, body);
    }
    // Only the routes of one proxy look at `?proxy=`.
    let on = |answer: &dyn Fn(&Target) -> Answer| match Target::of(state, query) {
        Ok(t) => answer(&t),
        Err(a) => a,
    };
    match (path, method) {
        ("/behavior", Method::Get) => {
            on(&|t| ok(json!({"behavior": t.hub.current().mix.to_string()})))
        }
        ("/behavior", Method::Put) => on(&|t| put_behavior(state, t, body)),
        ("/behaviors", Method::Get) if query.split('&').any(|q| q == "details") => {
            ok(behavior_details(&state.registry))
        }
        ("/behaviors", Method::Get) => ok(json!({"behaviors": state.registry.behavior_names()})),
        ("/backend", Method::Get) => {
            on(&|t| ok(json!({"backend": t.hub.current().backend.to_string()})))
        }
        ("/backend", Method::Put) => on(&|t| put_backend(t, body)),
        ("/stats", Method::Get) => on(&|t| ok(stats_json(t))),
        ("/proxy", Method::Get) => on(&proxy_answer),
        ("/proxy", Method::Put) => on(&|t| put_proxy(t, body)),
        ("/behavior" | "/behaviors" | "/backend" | "/stats" | "/proxy" | "/metrics", _) => error(
            405,
            "method",
            "",
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(404, "url", "", format!("no such resource: {path}")),
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Json>, Answer> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(error(400, "body", "", "the body must be a JSON object")),
        Err(e) => Err(error(
            400,
            "body",
            "",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The proxy an original route acts on: the one `?proxy=NAME` names, else the command line's.
struct Target {
    name: String,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    switch: Option<Arc<dyn ProxySwitch>>,
}

impl Target {
    fn of(state: &ControlState, query: &str) -> Result<Target, Answer> {
        let named = query
            .split('&')
            .find_map(|q| q.strip_prefix("proxy="))
            .map(|v| percent_decoded(v, true));
        let Some(name) = named
            .as_deref()
            .filter(|n| *n != MAIN_PROXY || state.proxies.is_some())
        else {
            return Ok(Target {
                name: MAIN_PROXY.to_string(),
                hub: state.hub.clone(),
                stats: state.stats.clone(),
                switch: state.proxy.clone(),
            });
        };
        match state.proxies.as_ref().and_then(|d| d.get(name)) {
            Some(p) => Ok(Target {
                name: name.to_string(),
                hub: p.hub,
                stats: p.stats,
                switch: Some(p.switch),
            }),
            None => Err(error(
                404,
                "querystring",
                "proxy",
                format!("no proxy named '{name}'"),
            )),
        }
    }
}

/// `value` with its `%XX` escapes decoded, and `+` as a space in a query (`plus_is_space`).
pub(crate) fn percent_decoded(value: &str, plus_is_space: bool) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn put_behavior(state: &ControlState, target: &Target, body: &[u8]) -> Answer {
    let fields = match json_object(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let name = match fields.get("name") {
        Some(Json::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
        Some(_) => {
            return error(
                400,
                "body",
                "name",
                "'name' must be a behavior name or a mix such as '20:delay'",
            )
        }
        // The original's answer, word for word: a client may match on it.
        None => return error(400, "body", "", "the value should contain a \"name\" key"),
    };
    let draft = match Mix::read(&name, &state.registry) {
        Ok(d) => d,
        Err(crate::mix::MixError::UnknownBehavior(n, _)) => {
            return error(
                400,
                "body",
                "name",
                format!("the '{n}' behavior does not exist"),
            )
        }
        Err(e) => return error(400, "body", "name", e.to_string()),
    };
    // Options apply to every behavior of the mix that declares them.
    let mut options = state.base_options.clone();
    for (key, value) in fields.iter().filter(|(k, _)| k.as_str() != "name") {
        let mut taken = false;
        for spec in draft.behaviors() {
            let Some(opt) = crate::opts::find(spec.options, key) else {
                continue;
            };
            match opt.from_json(value) {
                Ok(v) => {
                    options
                        .entry(spec.name.to_string())
                        .or_default()
                        .set(opt.name, v);
                    taken = true;
                }
                Err(why) => return error(400, "body", key, format!("{key}: {why}")),
            }
        }
        if !taken {
            return error(
                400,
                "body",
                key,
                format!("'{key}' is not an option of '{name}'"),
            );
        }
    }
    let mix = match draft.activate(|spec| crate::mix::activate_with(&options, spec)) {
        Ok(m) => m,
        Err(crate::mix::MixError::BadOptions(b, bad)) => {
            return error(400, "body", bad.key, format!("behavior '{b}': {bad}"));
        }
        Err(e) => return error(400, "body", "name", e.to_string()),
    };
    let mix = mix.count_into(&target.stats);
    log::info!("{}: behavior changed to {mix}", target.name);
    target.hub.set_mix(mix);
    ok(json!({"status": "ok"}))
}

fn put_backend(target: &Target, body: &[u8]) -> Answer {
    let fields = match json_object(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let backend = match fields.get("backend") {
        Some(Json::String(b)) => match HostPort::parse(b) {
            Ok(hp) => hp,
            Err(why) => return error(400, "body", "backend", why),
        },
        Some(_) => {
            return error(
                400,
                "body",
                "backend",
                "'backend' must be a string HOST:PORT",
            )
        }
        None => return error(400, "body", "backend", "'backend' is missing"),
    };
    log::info!("{}: backend changed to {backend}", target.name);
    target.hub.set_backend(backend);
    ok(json!({"status": "ok"}))
}

/// `GET /behaviors?details`: each behavior with its aliases, summary, the streams it acts on
/// by default (none: it acts on the connection) and its options.
fn behavior_details(registry: &Registry) -> Json {
    let mut specs: Vec<_> = registry.behaviors().iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let details: Vec<Json> = specs
        .into_iter()
        .map(|b| {
            let stream = b
                .options
                .iter()
                .find(|o| o.name == "stream")
                .map(|o| match o.default {
                    "" => "upstream (before is true; false: downstream)",
                    d => d,
                });
            let options: Vec<Json> = b
                .options
                .iter()
                .map(|o| {
                    json!({"name": o.name, "type": o.kind.placeholder().to_lowercase(),
                           "default": o.default, "unit": o.unit, "help": o.help})
                })
                .collect();
            json!({"name": b.name, "aliases": b.aliases, "summary": b.summary,
                   "stream": stream, "options": options})
        })
        .collect();
    json!({ "behaviors": details })
}

/// `GET /proxy`: `{"name", "listen", "backend", "protocol", "behavior", "enabled"}`.
fn proxy_answer(target: &Target) -> Answer {
    let Some(p) = &target.switch else {
        return error(404, "url", "", "no proxy to switch here");
    };
    let live = target.hub.current();
    ok(json!({
        "name": target.name,
        "listen": p.listen().to_string(),
        "backend": live.backend.to_string(),
        "protocol": p.protocol(),
        "behavior": live.mix.to_string(),
        "enabled": p.enabled(),
    }))
}

/// `PUT /proxy {"enabled": false}` takes the proxy down, `true` brings it back up; answers
/// as `GET /proxy`.
fn put_proxy(target: &Target, body: &[u8]) -> Answer {
    let fields = match json_object(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let Some(p) = &target.switch else {
        return error(404, "url", "", "no proxy to switch here");
    };
    if let Some(key) = fields.keys().find(|k| k.as_str() != "enabled") {
        return error(
            400,
            "body",
            key,
            format!("'{key}' cannot be changed here; only 'enabled' can"),
        );
    }
    match fields.get("enabled") {
        Some(Json::Bool(on)) => {
            if let Err(e) = p.set_enabled(*on) {
                return error(500, "body", "enabled", format!("cannot listen again: {e}"));
            }
        }
        Some(_) => return error(400, "body", "enabled", "'enabled' must be true or false"),
        None => return error(400, "body", "enabled", "the body needs an \"enabled\" key"),
    }
    proxy_answer(target)
}

fn stats_json(target: &Target) -> Json {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &target.stats;
    let calls: Map<String, Json> = s.calls().into_iter().map(|(k, v)| (k, json!(v))).collect();
    json!({
        "connections": {"open": s.connections_open.load(Relaxed), "total": s.connections_total.load(Relaxed), "parked": s.connections_parked.load(Relaxed)},
        "bytes": {"to_backend": s.bytes_to_backend.load(Relaxed), "to_client": s.bytes_to_client.load(Relaxed), "from_client": s.bytes_from_client.load(Relaxed), "from_backend": s.bytes_from_backend.load(Relaxed)},
        "calls": calls,
        "backend_errors": s.backend_errors.load(Relaxed),
        "enabled": target.switch.as_ref().is_none_or(|p| p.enabled()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Live;

    pub(crate) fn state() -> ControlState {
        let registry = Registry::builtin();
        let config = crate::config::Config::defaults(registry.clone()).unwrap();
        let mix = config.mix().clone();
        ControlState {
            hub: Hub::new(Live {
                mix,
                backend: HostPort::parse("localhost:80").unwrap(),
                toxics: Default::default(),
            }),
            registry,
            base_options: config.behavior_options().clone(),
            stats: Arc::new(Stats::default()),
            token: None,
            proxy: None,
            proxies: None,
        }
    }

    fn put(s: &ControlState, path: &str, body: &str) -> Answer {
        route(s, &Method::Put, path, body.as_bytes())
    }

    fn assert_error(a: Answer, status: u16, name: &str, description: &str) {
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.body["status"], "error");
        assert_eq!(
            a.body["errors"][0]["location"],
            if status == 404 {
                "url"
            } else if status == 405 {
                "method"
            } else {
                "body"
            }
        );
        assert_eq!(a.body["errors"][0]["name"], name, "{}", a.body);
        let got = a.body["errors"][0]["description"].as_str().unwrap();
        assert!(got.contains(description), "{got:?} lacks {description:?}");
    }

    #[test]
    fn behavior_round_trip_with_options() {
        let s = state();
        assert_eq!(
            route(&s, &Method::Get, "/behavior", b"").body,
            json!({"behavior": "dummy"})
        );
        assert_eq!(
            put(&s, "/behavior", r#"{"sleep": 2, "name": "delay"}"#).body,
            json!({"status": "ok"})
        );
        assert_eq!(
            route(&s, &Method::Get, "/behavior", b"").body,
            json!({"behavior": "delay"})
        );
        assert!(format!("{:?}", s.hub.current().mix).contains("sleep: 2.0"));
        assert_eq!(
            put(&s, "/behavior", r#"{"name": "20:delay,5:error"}"#).status,
            200
        );
        assert_eq!(
            route(&s, &Method::Get, "/behavior", b"").body["behavior"],
            "20:delay,5:error,75:dummy"
        );
        let names = route(&s, &Method::Get, "/behaviors", b"").body;
        assert_eq!(names["behaviors"][0], "abort");
    }

    #[test]
    fn behaviors_with_details_say_which_streams_each_acts_on() {
        let s = state();
        let body = route(&s, &Method::Get, "/behaviors?details", b"").body;
        let find = |name: &str| {
            body["behaviors"]
                .as_array()
                .and_then(|all| all.iter().find(|b| b["name"] == name).cloned())
                .unwrap_or_else(|| panic!("no {name} in {body}"))
        };
        assert_eq!(find("latency")["stream"], "downstream");
        assert_eq!(find("error")["stream"], "downstream");
        assert!(find("delay")["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("upstream")));
        assert_eq!(find("hang")["stream"], Json::Null, "acts on the connection");
        assert_eq!(find("reset_peer")["aliases"], json!(["reset"]));
        let slicer = find("slicer");
        let gap = slicer["options"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == "delay").cloned())
            .expect("slicer's delay");
        assert_eq!(
            (gap["unit"].as_str(), gap["type"].as_str()),
            (Some("microseconds"), Some("n"))
        );
    }

    #[test]
    fn every_error_row_has_the_original_shape() {
        let s = state();
        assert_error(
            put(&s, "/behavior", r#"{"name": "xyz"}"#),
            400,
            "name",
            "the 'xyz' behavior does not exist",
        );
        assert_error(put(&s, "/behavior", "[1, 2]"), 400, "", "JSON object");
        assert_error(put(&s, "/behavior", "not json"), 400, "", "not valid JSON");
        assert_error(
            put(&s, "/behavior", r#"{"sleep": 1}"#),
            400,
            "",
            r#"the value should contain a "name" key"#,
        );
        assert_error(
            put(&s, "/behavior", r#"{"name": "delay", "sleep": "soon"}"#),
            400,
            "sleep",
            "not a number",
        );
        assert_error(
            put(&s, "/behavior", r#"{"name": "delay", "sleep": -1}"#),
            400,
            "sleep",
            "negative",
        );
        // The behavior names the option it refused, whatever else the body sets.
        assert_error(
            put(
                &s,
                "/behavior",
                r#"{"name": "10:delay,10:error", "sleep": 1, "warmup": -1}"#,
            ),
            400,
            "warmup",
            "behavior 'error': warmup must not be negative",
        );
        assert_error(
            put(&s, "/behavior", r#"{"name": "delay", "nap": 1}"#),
            400,
            "nap",
            "not an option",
        );
        assert_error(
            put(&s, "/behavior", r#"{"name": "150:delay"}"#),
            400,
            "name",
            "weight '150'",
        );
        assert_error(
            put(&s, "/backend", r#"{"backend": "nowhere"}"#),
            400,
            "backend",
            "not an address",
        );
        assert_error(put(&s, "/backend", r#"{}"#), 400, "backend", "missing");
        assert_error(
            route(&s, &Method::Get, "/nope", b""),
            404,
            "",
            "no such resource",
        );
        assert_error(
            route(&s, &Method::Delete, "/behavior", b""),
            405,
            "",
            "not allowed",
        );
        assert_eq!(
            route(&s, &Method::Get, "/behavior", b"").body["behavior"],
            "dummy",
            "failed PUTs change nothing"
        );
    }

    #[test]
    fn backend_changes() {
        let s = state();
        assert_eq!(
            put(&s, "/backend", r#"{"backend": "127.0.0.1:9"}"#).status,
            200
        );
        assert_eq!(
            route(&s, &Method::Get, "/backend", b"").body,
            json!({"backend": "127.0.0.1:9"})
        );
    }
}
