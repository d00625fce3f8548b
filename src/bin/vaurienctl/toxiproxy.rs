//! Toxiproxy CLI's commands (`toxiproxy-cli`): `list`, `inspect`, `create`, `toggle`,
//! `delete` and `toxic add|update|remove`, with its flags and aliases, through Toxiproxy's
//! routes of the control API. Each prints one short answer; a failure exits 1.

use serde_json::{json, Map, Value as Json};
use vaurien::client::{escaped, Client, ClientError};

/// Runs Toxiproxy command `command` with `args`; `None` when `command` is not one of them.
pub fn run(client: &Client, command: &str, args: &[String]) -> Option<Result<String, String>> {
    let result = match command {
        "list" | "l" | "li" | "ls" => list(client),
        "inspect" | "i" | "ins" => one_name(args, "inspect").and_then(|p| inspect(client, &p)),
        "toggle" | "tog" => one_name(args, "toggle").and_then(|p| toggle(client, &p)),
        "create" | "c" | "new" => create(client, args),
        "delete" | "d" => one_name(args, "delete").and_then(|p| {
            request(client, "DELETE", &format!("/proxies/{}", escaped(&p)), None)
                .map(|_| format!("Deleted proxy {p}"))
        }),
        "toxic" | "t" => toxic(client, args),
        _ => return None,
    };
    Some(result)
}

/// One request; an error answer becomes its message.
fn request(client: &Client, method: &str, path: &str, body: Option<&Json>) -> Result<Json, String> {
    client.request(method, path, body).map_err(|e| match e {
        ClientError::Status(code, body) => match body["error"].as_str() {
            Some(message) => format!("{message} ({code})"),
            None => format!("{code}: {body}"),
        },
        other => other.to_string(),
    })
}

fn one_name(args: &[String], command: &str) -> Result<String, String> {
    match args {
        [name] => Ok(name.clone()),
        _ => Err(format!("{command} needs one proxy NAME")),
    }
}

fn list(client: &Client) -> Result<String, String> {
    let proxies = request(client, "GET", "/proxies", None)?;
    let mut lines = vec!["Name\tListen\tUpstream\tEnabled\tToxics".to_string()];
    for (name, p) in proxies.as_object().into_iter().flatten() {
        lines.push(format!(
            "{name}\t{}\t{}\t{}\t{}",
            p["listen"].as_str().unwrap_or("?"),
            p["upstream"].as_str().unwrap_or("?"),
            p["enabled"],
            p["toxics"].as_array().map_or(0, Vec::len)
        ));
    }
    Ok(lines.join("\n"))
}

fn inspect(client: &Client, proxy: &str) -> Result<String, String> {
    let p = request(client, "GET", &format!("/proxies/{}", escaped(proxy)), None)?;
    let mut lines = vec![format!(
        "{proxy}: listen {}, upstream {}, {}",
        p["listen"].as_str().unwrap_or("?"),
        p["upstream"].as_str().unwrap_or("?"),
        if p["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        }
    )];
    for t in p["toxics"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {}\t{} {}\ttoxicity {}\t{}",
            t["name"].as_str().unwrap_or("?"),
            t["stream"].as_str().unwrap_or("?"),
            t["type"].as_str().unwrap_or("?"),
            t["toxicity"],
            t["attributes"]
        ));
    }
    Ok(lines.join("\n"))
}

fn toggle(client: &Client, proxy: &str) -> Result<String, String> {
    let p = request(client, "GET", &format!("/proxies/{}", escaped(proxy)), None)?;
    let on = p["enabled"] != true;
    let path = format!("/proxies/{}", escaped(proxy));
    request(client, "POST", &path, Some(&json!({ "enabled": on })))?;
    Ok(format!(
        "Proxy {proxy} is now {}",
        if on { "enabled" } else { "disabled" }
    ))
}

/// The value of flag `short`/`long` in `args` (`-n cut`, `--name=cut`), and what is left.
struct Flags {
    pairs: Vec<(String, String)>,
    switches: Vec<String>,
    free: Vec<String>,
}

/// Reads `args`: flags in `valued` take a value, the others are switches.
fn flags(args: &[String], valued: &[&str]) -> Result<Flags, String> {
    let mut out = Flags {
        pairs: Vec::new(),
        switches: Vec::new(),
        free: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            out.free.push(a.clone());
            continue;
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag, None),
        };
        if valued.contains(&flag) {
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or(format!("-{flag} needs a value"))?,
            };
            out.pairs.push((flag.to_string(), value));
        } else {
            out.switches.push(flag.to_string());
        }
    }
    Ok(out)
}

impl Flags {
    fn get(&self, names: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, names: &[&str]) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn has(&self, names: &[&str]) -> bool {
        self.switches.iter().any(|s| names.contains(&s.as_str()))
    }
}

fn create(client: &Client, args: &[String]) -> Result<String, String> {
    let f = flags(args, &["l", "listen", "u", "upstream"])?;
    let [name] = f.free.as_slice() else {
        return Err("create needs one proxy NAME".to_string());
    };
    let listen = f.get(&["l", "listen"]).ok_or("create needs -l LISTEN")?;
    let upstream = f
        .get(&["u", "upstream"])
        .ok_or("create needs -u UPSTREAM")?;
    let body = json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true});
    request(client, "POST", "/proxies", Some(&body))?;
    Ok(format!("Created new proxy {name}"))
}

/// `KEY=VALUE` attributes: numbers and booleans as JSON, the rest as text.
fn attributes(pairs: &[&str]) -> Result<Map<String, Json>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or(format!("'{pair}' is not KEY=VALUE"))?;
            let value = match serde_json::from_str::<Json>(v) {
                Ok(j @ (Json::Number(_) | Json::Bool(_))) => j,
                _ => Json::String(v.to_string()),
            };
            Ok((k.to_string(), value))
        })
        .collect()
}

fn toxic(client: &Client, args: &[String]) -> Result<String, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Err("toxic needs add, update or remove".to_string());
    };
    let f = flags(
        rest,
        &[
            "n",
            "toxicName",
            "t",
            "type",
            "tox",
            "toxicity",
            "a",
            "attribute",
        ],
    )?;
    let [proxy] = f.free.as_slice() else {
        return Err(format!("toxic {sub} needs one PROXY"));
    };
    let name = f.get(&["n", "toxicName"]);
    let toxicity = match f.get(&["tox", "toxicity"]) {
        None => None,
        Some(t) => Some(
            t.parse::<f64>()
                .map_err(|_| format!("toxicity '{t}' is not a number"))?,
        ),
    };
    let attrs = attributes(&f.all(&["a", "attribute"]))?;
    let path = format!("/proxies/{}/toxics", escaped(proxy));
    match sub.as_str() {
        "add" | "a" => {
            let kind = f.get(&["t", "type"]).ok_or("toxic add needs -t TYPE")?;
            let stream = match (f.has(&["u", "upstream"]), f.has(&["d", "downstream"])) {
                (true, false) => "upstream",
                (false, _) => "downstream",
                (true, true) => return Err("give -u or -d, not both".to_string()),
            };
            let mut body = json!({"type": kind, "stream": stream, "attributes": attrs});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            body["toxicity"] = json!(toxicity.unwrap_or(1.0));
            let t = request(client, "POST", &path, Some(&body))?;
            Ok(format!(
                "Added {stream} {kind} toxic '{}' on proxy '{proxy}'",
                t["name"].as_str().unwrap_or("?")
            ))
        }
        "update" | "u" => {
            let name = name.ok_or("toxic update needs -n NAME")?;
            let mut body = json!({ "attributes": attrs });
            if let Some(t) = toxicity {
                body["toxicity"] = json!(t);
            }
            request(
                client,
                "PATCH",
                &format!("{path}/{}", escaped(name)),
                Some(&body),
            )?;
            Ok(format!("Updated toxic '{name}' on proxy '{proxy}'"))
        }
        "remove" | "r" | "delete" | "d" => {
            let name = name.ok_or("toxic remove needs -n NAME")?;
            request(client, "DELETE", &format!("{path}/{}", escaped(name)), None)?;
            Ok(format!("Removed toxic '{name}' on proxy '{proxy}'"))
        }
        other => Err(format!(
            "unknown toxic command '{other}' (add, update, remove)"
        )),
    }
}
