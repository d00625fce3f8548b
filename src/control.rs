//! The control API (`--http`): a tiny_http thread that reads and changes the live mix and
//! backend. A change is published through the [`Hub`] as a new immutable snapshot; the API
//! never waits on a connection.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Map, Value as Json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::error::Error;
use crate::hub::{Hub, Live};
use crate::mix::{BehaviorOptions, Mix};
use crate::registry::Registry;
use crate::settings::HostPort;
use crate::stats::Stats;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

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
}

/// A running control API.
pub struct Control {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Control {
    /// Binds `addr` and serves the API on a thread of its own.
    pub fn start(addr: &HostPort, state: ControlState) -> Result<Control, Error> {
        let listener = crate::net::listen(addr, 128)
            .map_err(|e| Error::Start(format!("cannot listen on {addr} (control API): {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Start(e.to_string()))?;
        let server = Arc::new(
            Server::from_listener(listener, None)
                .map_err(|e| Error::Start(format!("control API on {addr}: {e}")))?,
        );
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("vaurien-control".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    handle(&state, request);
                }
            })
            .map_err(|e| Error::Start(format!("cannot start the control thread: {e}")))?;
        Ok(Control {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
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
fn error(status: u16, location: &str, name: &str, description: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({"status": "error", "errors": [{"location": location, "name": name, "description": description.into()}]}),
    }
}

fn handle(state: &ControlState, mut request: Request) {
    let method = request.method().clone();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let authorized = state.token.as_ref().is_none_or(|token| {
        let wanted = format!("Bearer {token}");
        request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Authorization") && h.value.as_str() == wanted)
    });
    let answer = if !authorized {
        error(
            401,
            "header",
            "Authorization",
            "a valid 'Authorization: Bearer TOKEN' header is required",
        )
    } else {
        match read_body(&mut request) {
            Ok(body) => route(state, &method, &path, &body),
            Err(answer) => answer,
        }
    };
    if answer.status >= 400 {
        log::info!(
            "control: {method} {path} -> {} {}",
            answer.status,
            answer.body
        );
    } else if method != Method::Get {
        log::info!("control: {method} {path} -> {}", answer.status);
    }
    let mut response =
        Response::from_string(answer.body.to_string()).with_status_code(answer.status);
    if let Ok(h) = Header::from_bytes("Content-Type", "application/json") {
        response.add_header(h);
    }
    if answer.status == 405 {
        let allow = if path == "/behaviors" || path == "/stats" {
            "GET"
        } else {
            "GET, PUT"
        };
        if let Ok(h) = Header::from_bytes("Allow", allow) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("control: answer lost: {e}");
    }
}

fn read_body(request: &mut Request) -> Result<Vec<u8>, Answer> {
    let too_large = || {
        error(
            413,
            "body",
            "",
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    match request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
    {
        Ok(_) if body.len() > MAX_BODY => Err(too_large()),
        Ok(_) => Ok(body),
        Err(e) => Err(error(400, "body", "", format!("cannot read the body: {e}"))),
    }
}

/// Answers one request; pure apart from publishing changes to the hub.
pub fn route(state: &ControlState, method: &Method, path: &str, body: &[u8]) -> Answer {
    let path = path.trim_end_matches('/');
    match (path, method) {
        ("/behavior", Method::Get) => ok(json!({"behavior": state.hub.current().mix.to_string()})),
        ("/behavior", Method::Put) => put_behavior(state, body),
        ("/behaviors", Method::Get) => ok(json!({"behaviors": state.registry.behavior_names()})),
        ("/backend", Method::Get) => {
            ok(json!({"backend": state.hub.current().backend.to_string()}))
        }
        ("/backend", Method::Put) => put_backend(state, body),
        ("/stats", Method::Get) => ok(stats_json(state)),
        ("/behavior" | "/behaviors" | "/backend" | "/stats", _) => error(
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

fn put_behavior(state: &ControlState, body: &[u8]) -> Answer {
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
    let mix = match Mix::parse(&name, &state.registry, &state.base_options) {
        Ok(m) => m,
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
        for entry in mix.entries() {
            let Some(spec) = state.registry.behavior(&entry.name) else {
                continue;
            };
            let Some(opt) = crate::opts::find(spec.options, key) else {
                continue;
            };
            match opt.from_json(value) {
                Ok(v) => {
                    options
                        .entry(entry.name.clone())
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
    let mix = match Mix::parse(&name, &state.registry, &options) {
        Ok(m) => m,
        Err(crate::mix::MixError::BadOptions(b, why)) => {
            let key = fields
                .keys()
                .find(|k| why.contains(k.as_str()))
                .cloned()
                .unwrap_or_default();
            return error(400, "body", &key, format!("behavior '{b}': {why}"));
        }
        Err(e) => return error(400, "body", "name", e.to_string()),
    };
    let mix = mix.count_into(&state.stats);
    let backend = state.hub.current().backend.clone();
    log::info!("behavior changed to {mix}");
    state.hub.publish(Live { mix, backend });
    ok(json!({"status": "ok"}))
}

fn put_backend(state: &ControlState, body: &[u8]) -> Answer {
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
    let current = state.hub.current();
    log::info!("backend changed to {backend}");
    state.hub.publish(Live {
        mix: current.mix.clone(),
        backend,
    });
    ok(json!({"status": "ok"}))
}

fn stats_json(state: &ControlState) -> Json {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &state.stats;
    let calls: Map<String, Json> = s.calls().into_iter().map(|(k, v)| (k, json!(v))).collect();
    json!({
        "connections": {"open": s.connections_open.load(Relaxed), "total": s.connections_total.load(Relaxed), "parked": s.connections_parked.load(Relaxed)},
        "bytes": {"to_backend": s.bytes_to_backend.load(Relaxed), "to_client": s.bytes_to_client.load(Relaxed)},
        "calls": calls,
        "backend_errors": s.backend_errors.load(Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ControlState {
        let registry = Registry::builtin();
        let config = crate::settings::Config::defaults(registry.clone()).unwrap();
        let mix = config.mix().unwrap();
        ControlState {
            hub: Hub::new(Live {
                mix,
                backend: HostPort::parse("localhost:80").unwrap(),
            }),
            registry,
            base_options: config.behavior_options,
            stats: Arc::new(Stats::default()),
            token: None,
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
