//! A client of the control API, over a plain `TcpStream` and serde_json: what `vaurienctl`
//! and Rust tests use to drive a running proxy.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Map, Value as Json};

use crate::net::HostPort;

/// Why a control request failed.
#[derive(Debug)]
pub enum ClientError {
    /// The API could not be reached or the exchange broke.
    Io(std::io::Error),
    /// The API did not answer within the client's timeout.
    TimedOut(Duration),
    /// The API answered an error status, with its JSON body.
    Status(u16, Json),
    /// The answer was not the HTTP/JSON expected.
    BadAnswer(String),
    /// The API's address is not one this client can use (`https://`, no port).
    BadUrl(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::TimedOut(t) => write!(f, "the control API did not answer within {t:?}"),
            ClientError::Status(code, body) => {
                // The original's error shape, or Toxiproxy's.
                let described = body["errors"][0]["description"]
                    .as_str()
                    .or(body["error"].as_str());
                match described {
                    Some(d) => write!(f, "{code}: {d}"),
                    None => write!(f, "{code}: {body}"),
                }
            }
            ClientError::BadAnswer(why) => write!(f, "bad answer: {why}"),
            ClientError::BadUrl(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// `name` as one segment of a path or a query value: every byte but letters, digits and
/// `-_.~` percent-encoded.
pub fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A control API client.
#[derive(Debug, Clone)]
pub struct Client {
    addr: HostPort,
    token: Option<String>,
    timeout: Duration,
    /// The proxy the original routes act on (none: the command line's).
    proxy: Option<String>,
}

impl Client {
    /// A client of the API at `url` (`http://HOST:PORT` or `HOST:PORT`).
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/');
        if rest.contains("://") {
            return Err(ClientError::BadUrl(format!(
                "'{url}': only http:// is supported"
            )));
        }
        let addr = HostPort::parse(rest).map_err(|_| {
            ClientError::BadUrl(format!("'{url}' is not an API address http://HOST:PORT"))
        })?;
        Ok(Client {
            addr,
            token: None,
            timeout: Duration::from_secs(10),
            proxy: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The proxy that behavior, backend, switch and statistics calls act on, by name (none:
    /// the command line's proxy, `vaurien`).
    pub fn with_proxy(mut self, proxy: Option<String>) -> Client {
        self.proxy = proxy;
        self
    }

    /// `path` of an original route, asking for the proxy chosen by [`Client::with_proxy`].
    fn original(&self, path: &str) -> String {
        match &self.proxy {
            None => path.to_string(),
            Some(name) => format!("{path}?proxy={}", escaped(name)),
        }
    }

    /// The connect and read timeout of each request (default: 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// One request; returns the JSON body of a 2xx answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, ClientError> {
        self.exchange(method, path, body).map_err(|e| match e {
            ClientError::Io(e) if crate::net::is_timeout(&e) => ClientError::TimedOut(self.timeout),
            other => other,
        })
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&Json>) -> Result<Json, ClientError> {
        let mut stream = crate::net::connect(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let body = body.map(Json::to_string).unwrap_or_default();
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n{auth}\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        read_answer(&mut stream)
    }

    /// The current mix, e.g. `dummy` or `20:delay,80:dummy`.
    pub fn get_behavior(&self) -> Result<String, ClientError> {
        let body = self.request("GET", &self.original("/behavior"), None)?;
        string_field(&body, "behavior")
    }

    /// Sets a behavior or mix with options (`{"sleep": 2}`).
    pub fn set_behavior(&self, name: &str, options: &Map<String, Json>) -> Result<(), ClientError> {
        let mut body = options.clone();
        body.insert("name".into(), json!(name));
        self.request(
            "PUT",
            &self.original("/behavior"),
            Some(&Json::Object(body)),
        )
        .map(drop)
    }

    /// The behaviors the proxy knows, sorted.
    pub fn list_behaviors(&self) -> Result<Vec<String>, ClientError> {
        let body = self.request("GET", "/behaviors", None)?;
        body["behaviors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .ok_or_else(|| ClientError::BadAnswer(format!("no behaviors in {body}")))
    }

    /// The backend new connections go to.
    pub fn get_backend(&self) -> Result<String, ClientError> {
        let body = self.request("GET", &self.original("/backend"), None)?;
        string_field(&body, "backend")
    }

    /// Sends new connections to `backend` (`HOST:PORT`).
    pub fn set_backend(&self, backend: &str) -> Result<(), ClientError> {
        self.request(
            "PUT",
            &self.original("/backend"),
            Some(&json!({"backend": backend})),
        )
        .map(drop)
    }

    /// The proxy: `{"name", "listen", "backend", "protocol", "behavior", "enabled"}`.
    pub fn proxy(&self) -> Result<Json, ClientError> {
        self.request("GET", &self.original("/proxy"), None)
    }

    /// Takes the proxy down (`false`) or back up on the same address (`true`); the proxy as
    /// it is then.
    pub fn set_enabled(&self, on: bool) -> Result<Json, ClientError> {
        self.request(
            "PUT",
            &self.original("/proxy"),
            Some(&json!({"enabled": on})),
        )
    }

    /// Adds a toxic to `proxy` (Toxiproxy's `POST /proxies/{proxy}/toxics`): `toxic` holds
    /// `type` and, when not the defaults, `name`, `stream`, `toxicity` and `attributes`.
    /// The toxic as the proxy made it.
    pub fn add_toxic(&self, proxy: &str, toxic: &Json) -> Result<Json, ClientError> {
        self.request(
            "POST",
            &format!("/proxies/{}/toxics", escaped(proxy)),
            Some(toxic),
        )
    }

    /// Removes toxic `name` of `proxy`.
    pub fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ClientError> {
        let path = format!("/proxies/{}/toxics/{}", escaped(proxy), escaped(name));
        self.request("DELETE", &path, None).map(drop)
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Result<Json, ClientError> {
        self.request("GET", &self.original("/stats"), None)
    }

    /// Sets `name` with `options` until the guard drops, then puts the previous mix back.
    pub fn with_behavior(
        &self,
        name: &str,
        options: &Map<String, Json>,
    ) -> Result<BehaviorGuard<'_>, ClientError> {
        let previous = self.get_behavior()?;
        self.set_behavior(name, options)?;
        Ok(BehaviorGuard {
            client: self,
            previous,
        })
    }
}

fn string_field(body: &Json, key: &str) -> Result<String, ClientError> {
    body[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::BadAnswer(format!("no {key} in {body}")))
}

fn read_answer(stream: &mut TcpStream) -> Result<Json, ClientError> {
    let mut raw = Vec::new();
    stream.take(16 << 20).read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::BadAnswer("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::BadAnswer(format!("bad status line in {head:?}")))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(n) = length {
        body = &body[..n.min(body.len())];
    }
    let json: Json = if body.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ClientError::BadAnswer(format!("body is not JSON: {e}")))?
    };
    if (200..300).contains(&status) {
        Ok(json)
    } else {
        Err(ClientError::Status(status, json))
    }
}

/// Puts the previous mix back when dropped.
#[derive(Debug)]
pub struct BehaviorGuard<'a> {
    client: &'a Client,
    previous: String,
}

impl BehaviorGuard<'_> {
    /// The mix that comes back when the guard drops.
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for BehaviorGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.client.set_behavior(&self.previous, &Map::new()) {
            log::warn!("could not put behavior '{}' back: {e}", self.previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(Client::new("http://localhost:8080").is_ok());
        assert!(Client::new("localhost:8080/").is_ok());
        for bad in ["https://localhost:8080", "localhost"] {
            match Client::new(bad) {
                Err(ClientError::BadUrl(why)) => assert!(why.contains(bad), "{why}"),
                other => panic!("{bad}: {:?}", other.map(|_| ())),
            }
        }
    }
}
