//! Toxiproxy's API on the control server, beside the original routes (their paths do not
//! meet): proxies, their toxics, reset and version, with Toxiproxy's statuses, shapes,
//! defaults, merge rules and error body `{"error": "...", "status": N}`, over every proxy of
//! the process ([`super::ProxyDirectory`]).

use serde_json::{json, Map, Value as Json};
use tiny_http::Method;

use super::{Answer, ControlState, ProxyRef};
use crate::hub::{Live, Toxic, Toxics};

/// The version Toxiproxy clients are told: the API of Toxiproxy 2.12.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// Whether `path` is one of Toxiproxy's.
pub fn owns(path: &str) -> bool {
    path == "/version"
        || path == "/reset"
        || path == "/populate"
        || path == "/proxies"
        || path.starts_with("/proxies/")
}

/// The methods `path` (one of Toxiproxy's) answers, for a 405's `Allow`.
pub fn allowed(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => "GET",
        ["reset"] | ["populate"] => "POST",
        ["proxies"] | ["proxies", _, "toxics"] => "GET, POST",
        _ => "GET, POST, PATCH, DELETE",
    }
}

/// Why listening on `at` failed, in Go's words where Toxiproxy's clients may match them
/// (`listen tcp 127.0.0.1:3310: bind: address already in use`).
pub(crate) fn listen_failure(at: impl std::fmt::Display, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::AddrInUse => "bind: address already in use".to_string(),
        ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".to_string(),
        ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("listen tcp {at}: {why}")
}

/// `answer` in Toxiproxy's error shape, if it is an error in the original's
/// (`{"errors": [{"description"}]}`); else as it is.
pub fn in_its_shape(answer: Answer) -> Answer {
    match answer.body["errors"][0]["description"].as_str() {
        Some(description) if answer.status >= 400 => error(answer.status, description),
        _ => answer,
    }
}

/// Toxiproxy's error answer.
fn error(status: u16, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({"error": message.into(), "status": status}),
    }
}

fn ok(body: Json) -> Answer {
    Answer { status: 200, body }
}

/// An answer with no body.
fn no_content() -> Answer {
    Answer {
        status: 204,
        body: Json::Null,
    }
}

/// Answers one of Toxiproxy's routes.
pub fn route(state: &ControlState, method: &Method, path: &str, body: &[u8]) -> Answer {
    // Names are decoded as Go's router decodes them: `/proxies/my%20db` is `my db`.
    let decoded: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|part| super::percent_decoded(part, false))
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let proxy = |name: &str| state.proxies.as_ref().and_then(|d| d.get(name));
    match (parts.as_slice(), method) {
        (["version"], Method::Get) => ok(json!({ "version": TOXIPROXY_VERSION })),
        (["reset"], Method::Post) => reset(state),
        (["populate"], Method::Post) => populate(state, body),
        (["proxies"], Method::Get) => ok(all_proxies(state)),
        (["proxies"], Method::Post) => create_proxy(state, body),
        (["proxies", name, ..], _) if proxy(name).is_none() => error(404, "proxy not found"),
        (["proxies", name], Method::Get) => with(proxy(name), |p| ok(proxy_json(name, &p))),
        (["proxies", name], Method::Post | Method::Patch) => {
            with(proxy(name), |p| update_proxy(name, &p, body))
        }
        (["proxies", name], Method::Delete) => {
            match state.proxies.as_ref().is_some_and(|d| d.delete(name)) {
                true => no_content(),
                false => error(404, "proxy not found"),
            }
        }
        (["proxies", name, "toxics"], Method::Get) => {
            with(proxy(name), |p| ok(toxics_json(&p.hub.current().toxics)))
        }
        (["proxies", name, "toxics"], Method::Post) => {
            with(proxy(name), |p| add_toxic(state, &p, body))
        }
        (["proxies", name, "toxics", toxic], Method::Get) => {
            with(proxy(name), |p| match p.hub.current().toxics.get(toxic) {
                Some(t) => ok(toxic_json(t)),
                None => error(404, "toxic not found"),
            })
        }
        (["proxies", name, "toxics", toxic], Method::Post | Method::Patch) => {
            with(proxy(name), |p| update_toxic(state, &p, toxic, body))
        }
        (["proxies", name, "toxics", toxic], Method::Delete) => {
            with(proxy(name), |p| remove_toxic(&p, toxic))
        }
        (["version" | "reset" | "populate" | "proxies"], _)
        | (["proxies", _] | ["proxies", _, "toxics"] | ["proxies", _, "toxics", _], _) => {
            error(405, format!("{method} is not allowed on {path}"))
        }
        _ => error(404, "not found"),
    }
}

/// `POST /populate` with an array of proxies (or `{"proxies": [...]}`): each one that differs
/// from the proxy of its name (listen or upstream), or is new, is (re)created, with the
/// toxics it lists (Toxiproxy ignores them); an identical one is left as it is, toxics and
/// all; proxies not named are kept. Every entry is checked before anything changes; a later
/// failure keeps what was done and answers the error with the proxies so far. 201 with
/// `{"proxies": [...]}`.
fn populate(state: &ControlState, body: &[u8]) -> Answer {
    let list = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Array(list)) => list,
        Ok(Json::Object(mut o)) => match o.remove("proxies") {
            Some(Json::Array(list)) => list,
            _ => return error(400, "bad request body: expected an array of proxies"),
        },
        Ok(_) => return error(400, "bad request body: expected an array of proxies"),
        Err(e) => return error(400, format!("bad request body: {e}")),
    };
    for (i, entry) in list.iter().enumerate() {
        for key in ["name", "upstream"] {
            if entry[key].as_str().unwrap_or("").is_empty() {
                return error(
                    400,
                    format!("missing required field: {key} at proxy {}", i + 1),
                );
            }
        }
    }
    let Some(dir) = &state.proxies else {
        return error(500, "no proxy can be created here");
    };
    let mut done = Vec::new();
    let failed = |done: Vec<Json>, status: u16, message: String| Answer {
        status,
        body: json!({"error": message, "status": status, "proxies": done}),
    };
    for entry in &list {
        let text = |key: &str| entry[key].as_str().unwrap_or("");
        let name = text("name");
        let listen = match text("listen") {
            "" => "127.0.0.1:0",
            l => l,
        };
        if let Some(existing) = dir.get(name) {
            let same_listen = crate::net::HostPort::parse(listen)
                .is_ok_and(|hp| hp.port != 0 && hp.port == existing.switch.listen().port());
            let same_upstream = existing.hub.current().backend.to_string() == text("upstream");
            if same_listen && same_upstream {
                done.push(proxy_json(name, &existing));
                continue;
            }
            dir.delete(name);
        }
        let enabled = entry["enabled"].as_bool().unwrap_or(true);
        let protocol = entry["protocol"].as_str();
        let created = match dir.create(name, listen, text("upstream"), protocol, enabled) {
            Ok(p) => p,
            Err((status, message)) => return failed(done, status, message),
        };
        for toxic in entry["toxics"].as_array().into_iter().flatten() {
            let body = toxic.to_string();
            let added = add_toxic(state, &created, body.as_bytes());
            if added.status != 200 {
                let why = added.body["error"]
                    .as_str()
                    .unwrap_or("bad toxic")
                    .to_string();
                return failed(done, added.status, format!("{why} at proxy {name}"));
            }
        }
        done.push(proxy_json(name, &created));
    }
    Answer {
        status: 201,
        body: json!({ "proxies": done }),
    }
}

/// `answer` for the proxy found, 404 when it went meanwhile.
fn with(proxy: Option<ProxyRef>, answer: impl FnOnce(ProxyRef) -> Answer) -> Answer {
    match proxy {
        Some(p) => answer(p),
        None => error(404, "proxy not found"),
    }
}

/// `GET /proxies`: name → proxy.
fn all_proxies(state: &ControlState) -> Json {
    let Some(dir) = &state.proxies else {
        return json!({});
    };
    let all: Map<String, Json> = dir
        .names()
        .into_iter()
        .filter_map(|name| {
            let p = dir.get(&name)?;
            Some((name.clone(), proxy_json(&name, &p)))
        })
        .collect();
    Json::Object(all)
}

/// `POST /proxies`: 201 with the proxy; 400 without a name or upstream, 409 for a name
/// taken, 500 when it cannot listen.
fn create_proxy(state: &ControlState, body: &[u8]) -> Answer {
    let fields = match json_body(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let text = |key: &str| fields.get(key).and_then(Json::as_str).unwrap_or("");
    for key in ["name", "upstream"] {
        if text(key).is_empty() {
            return error(400, format!("missing required field: {key}"));
        }
    }
    let Some(dir) = &state.proxies else {
        return error(500, "no proxy can be created here");
    };
    let listen = match text("listen") {
        "" => "127.0.0.1:0",
        l => l,
    };
    let enabled = fields
        .get("enabled")
        .and_then(Json::as_bool)
        .unwrap_or(true);
    let protocol = fields.get("protocol").and_then(Json::as_str);
    let name = text("name");
    match dir.create(name, listen, text("upstream"), protocol, enabled) {
        Ok(p) => Answer {
            status: 201,
            body: proxy_json(name, &p),
        },
        Err((status, message)) => error(status, message),
    }
}

fn json_body(body: &[u8]) -> Result<Map<String, Json>, Answer> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(other) => Err(error(
            400,
            format!("bad request body: {other} is not an object"),
        )),
        Err(e) => Err(error(400, format!("bad request body: {e}"))),
    }
}

/// A toxic as Toxiproxy shows it.
fn toxic_json(t: &Toxic) -> Json {
    json!({
        "name": t.name,
        "type": t.kind,
        "stream": t.stream.as_str(),
        "toxicity": t.toxicity,
        "attributes": t.attributes,
    })
}

/// The toxics, upstream ones first, as Toxiproxy lists them.
fn toxics_json(toxics: &Toxics) -> Json {
    let up = toxics
        .iter()
        .filter(|t| t.stream.covers(crate::behavior::Direction::ToBackend));
    let down = toxics
        .iter()
        .filter(|t| !t.stream.covers(crate::behavior::Direction::ToBackend));
    Json::Array(up.chain(down).map(|t| toxic_json(t)).collect())
}

/// The proxy as Toxiproxy shows it, with vaurien's `protocol` and `behavior` besides.
fn proxy_json(name: &str, p: &ProxyRef) -> Json {
    let live = p.hub.current();
    json!({
        "name": name,
        "listen": p.switch.listen().to_string(),
        "upstream": live.backend.to_string(),
        "enabled": p.switch.enabled(),
        "toxics": toxics_json(&live.toxics),
        "protocol": p.switch.protocol(),
        "behavior": live.mix.to_string(),
    })
}

/// `POST/PATCH /proxies/NAME`: `listen`, `upstream` and `enabled` are merged onto the
/// proxy. As in Toxiproxy, a changed `listen` or `upstream` restarts it: its connections
/// close, its toxics stay, and a new `listen` is bound (port 0: any).
fn update_proxy(name: &str, p: &ProxyRef, body: &[u8]) -> Answer {
    let fields = match json_body(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let host_port = |key: &str| -> Result<Option<crate::net::HostPort>, Answer> {
        match fields.get(key) {
            None => Ok(None),
            Some(v) => match v.as_str().map(crate::net::HostPort::parse) {
                Some(Ok(hp)) => Ok(Some(hp)),
                _ => Err(error(
                    400,
                    format!("bad request body: {key} {v} is not HOST:PORT"),
                )),
            },
        }
    };
    let (listen, upstream) = match (host_port("listen"), host_port("upstream")) {
        (Ok(l), Ok(u)) => (l, u),
        (Err(a), _) | (_, Err(a)) => return a,
    };
    let enabled = match fields.get("enabled") {
        None => None,
        Some(Json::Bool(on)) => Some(*on),
        Some(other) => {
            return error(
                400,
                format!("bad request body: enabled {other} is not a boolean"),
            )
        }
    };
    // Down first when asked (a new address is then only recorded), the move next (it binds
    // before anything changes, so its failure leaves the proxy as it was), then the rest.
    if enabled == Some(false) {
        if let Err(e) = p.switch.set_enabled(false) {
            return error(500, listen_failure(p.switch.listen(), &e));
        }
    }
    if let Some(to) = listen {
        match p.switch.move_to(&to) {
            Ok(true) => log::info!("{name}: moved to {}", p.switch.listen()),
            Ok(false) => {}
            Err(e) => return error(500, listen_failure(&to, &e)),
        }
    }
    if let Some(backend) = upstream.filter(|u| *u != p.hub.current().backend) {
        log::info!("{name}: backend changed to {backend}");
        p.hub.set_backend(backend);
        p.switch.drop_connections();
    }
    if enabled == Some(true) {
        if let Err(e) = p.switch.set_enabled(true) {
            return error(500, listen_failure(p.switch.listen(), &e));
        }
    }
    ok(proxy_json(name, p))
}

/// Replaces the toxics with what `change` makes of them, in one step.
fn change_toxics(
    p: &ProxyRef,
    change: impl FnOnce(&Toxics) -> Result<Toxics, Answer>,
) -> Result<(), Answer> {
    p.hub.update(|current| {
        Ok(Live {
            mix: current.mix.clone(),
            backend: current.backend.clone(),
            toxics: change(&current.toxics)?,
        })
    })
}

/// Builds a toxic from Toxiproxy's fields.
fn build_toxic(
    state: &ControlState,
    name: &str,
    kind: &str,
    stream: &str,
    toxicity: f64,
    attributes: &Map<String, Json>,
) -> Result<Toxic, Answer> {
    crate::toxic::build(
        &state.registry,
        name,
        kind,
        Some(stream),
        Some(toxicity),
        attributes,
    )
    .map_err(|e| match e.field.as_str() {
        "type" => error(400, "invalid toxic type"),
        "stream" => error(
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        _ => error(400, format!("bad request body: {e}")),
    })
}

/// `POST /proxies/NAME/toxics`: Toxiproxy's defaults (downstream, toxicity 1, name
/// `TYPE_STREAM`); 200 with the toxic.
fn add_toxic(state: &ControlState, p: &ProxyRef, body: &[u8]) -> Answer {
    let fields = match json_body(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let text = |key: &str| fields.get(key).and_then(Json::as_str).unwrap_or("");
    let kind = text("type").to_string();
    let stream = match text("stream") {
        "" => "downstream".to_string(),
        s => s.to_ascii_lowercase(),
    };
    let name = match text("name") {
        "" => format!("{kind}_{stream}"),
        n => n.to_string(),
    };
    let toxicity = match fields.get("toxicity") {
        None => 1.0,
        Some(t) => match t.as_f64() {
            Some(t) => t,
            None => {
                return error(
                    400,
                    format!("bad request body: toxicity {t} is not a number"),
                )
            }
        },
    };
    let attributes = match fields.get("attributes") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(a)) => a.clone(),
        Some(other) => {
            return error(
                400,
                format!("bad request body: attributes {other} is not an object"),
            )
        }
    };
    let toxic = match build_toxic(state, &name, &kind, &stream, toxicity, &attributes) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let shown = toxic_json(&toxic);
    match change_toxics(p, |toxics| {
        if toxics.get(&name).is_some() {
            return Err(error(409, "toxic already exists"));
        }
        Ok(toxics.with(toxic))
    }) {
        Ok(()) => {
            log::info!("toxic {name} added");
            ok(shown)
        }
        Err(a) => a,
    }
}

/// `POST/PATCH /proxies/PROXY/toxics/NAME`: the attributes and toxicity given are merged
/// onto the toxic; its type and stream stay.
fn update_toxic(state: &ControlState, p: &ProxyRef, name: &str, body: &[u8]) -> Answer {
    let fields = match json_body(body) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let mut shown = Json::Null;
    let result = change_toxics(p, |toxics| {
        let Some(old) = toxics.get(name) else {
            return Err(error(404, "toxic not found"));
        };
        let mut attributes = old.attributes.clone();
        if let Some(Json::Object(given)) = fields.get("attributes") {
            attributes.extend(given.clone());
        }
        let toxicity = fields
            .get("toxicity")
            .and_then(Json::as_f64)
            .unwrap_or(old.toxicity);
        let toxic = build_toxic(
            state,
            name,
            &old.kind,
            old.stream.as_str(),
            toxicity,
            &attributes,
        )?;
        shown = toxic_json(&toxic);
        Ok(toxics.with(toxic))
    });
    match result {
        Ok(()) => {
            log::info!("toxic {name} updated");
            ok(shown)
        }
        Err(a) => a,
    }
}

/// `DELETE /proxies/PROXY/toxics/NAME`: 204.
fn remove_toxic(p: &ProxyRef, name: &str) -> Answer {
    let result = change_toxics(p, |toxics| match toxics.get(name) {
        Some(_) => Ok(toxics.without(name)),
        None => Err(error(404, "toxic not found")),
    });
    match result {
        Ok(()) => {
            log::info!("toxic {name} removed");
            no_content()
        }
        Err(a) => a,
    }
}

/// `POST /reset`: every proxy enabled again and every toxic removed; 204.
fn reset(state: &ControlState) -> Answer {
    let Some(dir) = &state.proxies else {
        return no_content();
    };
    for name in dir.names() {
        let Some(p) = dir.get(&name) else { continue };
        if let Err(e) = p.switch.set_enabled(true) {
            return error(500, listen_failure(p.switch.listen(), &e));
        }
        let _ = change_toxics(&p, |_| Ok(Toxics::default()));
    }
    log::info!("reset: every toxic removed, every proxy enabled");
    no_content()
}
