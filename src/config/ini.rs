//! The INI configuration file: `[vaurien]`, `[behavior:NAME]` (alias `[handler:NAME]`),
//! `[protocol:NAME]`, `[toxic:PROXY:NAME]`, `[statsd]`, `${VAR}` expansion and `extends` in
//! `[DEFAULT]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use configparser::ini::Ini;

use crate::config::{Overrides, GLOBAL_OPTIONS};
use crate::error::Error;
use crate::opts::{find, OptSpec, Value};
use crate::registry::Registry;

/// How deep `extends` may chain before the file is taken for a loop.
const MAX_EXTENDS: usize = 8;

/// `[statsd]` keys and the proxy options they set.
const STATSD_KEYS: &[(&str, &str)] = &[
    ("enabled", "statsd"),
    ("host", "statsd_host"),
    ("port", "statsd_port"),
    ("prefix", "statsd_prefix"),
    ("sample_rate", "statsd_sample_rate"),
];

type Sections = HashMap<String, HashMap<String, Option<String>>>;

/// Reads `path` (and what it extends) into the options it sets.
pub fn load(path: &Path, registry: &Registry) -> Result<Overrides, Error> {
    let sections = read_chain(path, 0)?;
    let file = path.display().to_string();
    interpret(&file, &sections, registry)
}

/// Reads INI `text` as [`load`] reads a file named `file`, without following `extends` (a
/// file's text alone: what the fuzz target of the INI parser feeds).
pub fn from_text(file: &str, text: &str, registry: &Registry) -> Result<Overrides, Error> {
    let sections = parse(file, text.to_string())?;
    interpret(file, &sections, registry)
}

fn parse(file: &str, text: String) -> Result<Sections, Error> {
    let mut ini = Ini::new();
    ini.set_multiline(true);
    ini.read(text)
        .map_err(|e| Error::Config(format!("{file}: {e}")))
}

fn read_one(path: &Path) -> Result<Sections, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
    parse(&path.display().to_string(), text)
}

/// Reads `path` over the files its `[DEFAULT] extends` names, relative to its folder.
fn read_chain(path: &Path, depth: usize) -> Result<Sections, Error> {
    if depth > MAX_EXTENDS {
        return Err(Error::Config(format!(
            "{}: extends nests more than {MAX_EXTENDS} files deep (a loop?)",
            path.display()
        )));
    }
    let mut own = read_one(path)?;
    let extends = own
        .get_mut("default")
        .and_then(|d| d.remove("extends"))
        .flatten();
    let Some(parent) = extends else {
        return Ok(own);
    };
    let parent_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(parent.trim());
    let mut merged = read_chain(&parent_path, depth + 1)?;
    for (section, keys) in own {
        merged.entry(section).or_default().extend(keys);
    }
    Ok(merged)
}

/// Expands `${VAR}` from the environment, strips one pair of surrounding quotes, and joins a
/// multi-line value's lines with commas (a list).
fn clean(raw: &str, at: &dyn Fn() -> String) -> Result<String, Error> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config(format!("{}: unclosed '${{'", at())))?;
        let var = &after[..end];
        let value = std::env::var(var).map_err(|_| {
            Error::Config(format!("{}: environment variable '{var}' is not set", at()))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let joined: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let value = joined.join(",");
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    Ok(unquoted.unwrap_or(&value).to_string())
}

fn typed(spec: &OptSpec, raw: &Option<String>, at: &dyn Fn() -> String) -> Result<Value, Error> {
    let text = clean(raw.as_deref().unwrap_or(""), at)?;
    if raw.is_none() && spec.kind == crate::opts::OptKind::Bool {
        return Ok(Value::Bool(true));
    }
    spec.parse(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", at())))
}

fn sorted(map: &HashMap<String, Option<String>>) -> Vec<(&String, &Option<String>)> {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort();
    pairs
}

fn interpret(file: &str, sections: &Sections, registry: &Registry) -> Result<Overrides, Error> {
    let mut out = Overrides::default();
    let mut names: Vec<&String> = sections.keys().collect();
    names.sort();
    let unknown_key =
        |section: &str, key: &str| Error::Config(format!("{file}: [{section}] {key}: unknown key"));
    for section in names {
        let keys = &sections[section];
        if section == "default" {
            if let Some(key) = keys.keys().min() {
                return Err(unknown_key(section, key));
            }
        } else if section == "vaurien" {
            for (key, raw) in sorted(keys) {
                let spec = find(GLOBAL_OPTIONS, key)
                    .filter(|s| s.name != "config")
                    .ok_or_else(|| unknown_key(section, key))?;
                let at = || format!("{file}: [vaurien] {key}");
                out.globals.push((spec.name, typed(spec, raw, &at)?));
            }
        } else if section == "statsd" {
            for (key, raw) in sorted(keys) {
                let target = STATSD_KEYS
                    .iter()
                    .find(|(k, _)| k == key)
                    .ok_or_else(|| unknown_key(section, key))?
                    .1;
                let spec = find(GLOBAL_OPTIONS, target).ok_or_else(|| unknown_key(section, key))?;
                let at = || format!("{file}: [statsd] {key}");
                out.globals.push((spec.name, typed(spec, raw, &at)?));
            }
        } else if let Some(name) = section
            .strip_prefix("behavior:")
            .or_else(|| section.strip_prefix("handler:"))
        {
            let name = name.trim();
            let base_key = ["base", "callable"]
                .into_iter()
                .find(|k| keys.contains_key(*k));
            let options = match (registry.behavior(name), base_key) {
                (Some(spec), None) => spec.options,
                (_, Some(k)) => {
                    let at = || format!("{file}: [{section}] {k}");
                    let base = clean(keys[k].as_deref().unwrap_or(""), &at)?;
                    let spec = registry.behavior(&base).ok_or_else(|| {
                        Error::Config(format!(
                            "{}: the '{base}' behavior does not exist (known: {})",
                            at(),
                            registry.behavior_names().join(", ")
                        ))
                    })?;
                    if registry.behavior(name).is_some() {
                        return Err(Error::Config(format!("{}: '{name}' is a built-in behavior; pick a new name", at())));
                    }
                    out.derived.push((name.to_string(), spec.name.to_string()));
                    spec.options
                }
                (None, None) => {
                    return Err(Error::Config(format!(
                        "{file}: [{section}]: the '{name}' behavior does not exist; a new behavior needs 'base = BEHAVIOR' (known: {})",
                        registry.behavior_names().join(", ")
                    )))
                }
            };
            let canonical = registry
                .behavior(name)
                .map_or(name.to_string(), |s| s.name.to_string());
            for (key, raw) in sorted(keys) {
                if Some(key.as_str()) == base_key {
                    continue;
                }
                let spec = find(options, key).ok_or_else(|| unknown_key(section, key))?;
                let at = || format!("{file}: [{section}] {key}");
                out.behaviors.push((
                    canonical.clone(),
                    spec.name.to_string(),
                    typed(spec, raw, &at)?,
                ));
            }
        } else if let Some(name) = section.strip_prefix("proxy:") {
            out.proxies.push(proxy_section(file, section, name, keys)?);
        } else if let Some(rest) = section.strip_prefix("toxic:") {
            out.toxics.push(toxic_section(file, section, rest, keys)?);
        } else if let Some(name) = section.strip_prefix("protocol:") {
            let name = name.trim();
            let proto = registry.protocol(name).ok_or_else(|| {
                Error::Config(format!(
                    "{file}: [{section}]: unknown protocol '{name}' (known: {})",
                    registry.protocol_names().join(", ")
                ))
            })?;
            for (key, raw) in sorted(keys) {
                let spec = find(proto.options, key).ok_or_else(|| unknown_key(section, key))?;
                let at = || format!("{file}: [{section}] {key}");
                out.protocols.push((
                    proto.name.to_string(),
                    spec.name.to_string(),
                    typed(spec, raw, &at)?,
                ));
            }
        } else {
            return Err(Error::Config(format!(
                "{file}: [{section}]: unknown section (known: vaurien, behavior:NAME, protocol:NAME, proxy:NAME, toxic:PROXY:NAME, statsd)"
            )));
        }
    }
    Ok(out)
}

/// `[proxy:NAME]`: `listen`, `backend` (alias `upstream`), `protocol`, `behavior`, `enabled`.
fn proxy_section(
    file: &str,
    section: &str,
    name: &str,
    keys: &HashMap<String, Option<String>>,
) -> Result<crate::config::ProxyDecl, Error> {
    let text = |key: &str| {
        keys.get(key)
            .cloned()
            .flatten()
            .map(|v| v.trim().to_string())
    };
    if let Some((key, _)) = sorted(keys).into_iter().find(|(k, _)| {
        !matches!(
            k.as_str(),
            "listen" | "backend" | "upstream" | "protocol" | "behavior" | "enabled"
        )
    }) {
        return Err(Error::Config(format!(
            "{file}: [{section}] {key}: unknown key"
        )));
    }
    let backend = text("backend")
        .or_else(|| text("upstream"))
        .ok_or_else(|| {
            Error::Config(format!(
                "{file}: [{section}]: 'backend' is missing (HOST:PORT)"
            ))
        })?;
    let enabled = match text("enabled") {
        None => true,
        Some(v) => crate::opts::parse_bool(&v).ok_or_else(|| {
            Error::Config(format!(
                "{file}: [{section}] enabled: '{v}' is not a boolean"
            ))
        })?,
    };
    let name = name.trim();
    if name == "vaurien" {
        return Err(Error::Config(format!(
            "{file}: [{section}]: vaurien is the proxy of [vaurien]; pick another name"
        )));
    }
    Ok(crate::config::ProxyDecl {
        name: name.to_string(),
        listen: text("listen").unwrap_or_default(),
        backend,
        protocol: text("protocol"),
        behavior: text("behavior"),
        enabled,
    })
}

/// `[toxic:PROXY:NAME]`: `type`, `stream`, `toxicity`, and the type's attributes.
fn toxic_section(
    file: &str,
    section: &str,
    rest: &str,
    keys: &HashMap<String, Option<String>>,
) -> Result<crate::config::ToxicDecl, Error> {
    let Some((proxy, name)) = rest.split_once(':') else {
        return Err(Error::Config(format!(
            "{file}: [{section}]: a toxic section is [toxic:PROXY:NAME]"
        )));
    };
    let text = |key: &str| {
        keys.get(key)
            .cloned()
            .flatten()
            .map(|v| v.trim().to_string())
    };
    let kind = text("type").ok_or_else(|| {
        Error::Config(format!(
            "{file}: [{section}]: 'type' is missing (a behavior name)"
        ))
    })?;
    let toxicity = match text("toxicity") {
        None => None,
        Some(t) => Some(t.parse::<f64>().map_err(|_| {
            Error::Config(format!(
                "{file}: [{section}] toxicity: '{t}' is not a number"
            ))
        })?),
    };
    let attributes = keys
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "type" | "stream" | "toxicity"))
        .map(|(k, v)| {
            let v = v.as_deref().unwrap_or("").trim().to_string();
            (k.clone(), serde_json::Value::String(v))
        })
        .collect();
    Ok(crate::config::ToxicDecl {
        proxy: proxy.trim().to_string(),
        name: name.trim().to_string(),
        kind,
        stream: text("stream"),
        toxicity,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A directory of its own for one test's files, removed when the test ends.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmpdir(tag: &str) -> TempDir {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d =
            std::env::temp_dir().join(format!("vaurien-config-{tag}-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn config_error(text: &str) -> String {
        let dir = tmpdir("err");
        let p = write(&dir, "bad.ini", text);
        match load(&p, &Registry::builtin()).and_then(|o| {
            Config::build(
                Registry::builtin(),
                Some((p.to_str().unwrap(), o)),
                Overrides::default(),
            )
        }) {
            Err(Error::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_loads() {
        let dir = tmpdir("spec");
        std::env::set_var("VAURIEN_TEST_BACKEND_PORT", "8888");
        let base = write(
            &dir,
            "base.ini",
            "[vaurien]\nbufsize = 4096\nbackend = localhost:1\n",
        );
        let _ = base;
        let p = write(
            &dir,
            "spec.ini",
            "[DEFAULT]\nextends = base.ini\n\n[vaurien]\nbackend = localhost:${VAURIEN_TEST_BACKEND_PORT}\nproxy = localhost:8000\n\
             protocol = tcp\nbehavior = 20:delay,\n  5:flaky\nhttp = true\nhttp_port = 8080\nstay_connected = no\nseed = 42\n\n\
             [behavior:delay]\nsleep = 2\n\n[behavior:flaky]        ; a new behavior\nbase = error\nwarmup = 3\n\n\
             [protocol:tcp]\nkeep_alive = true\n\n[handler:hang]\n\n[statsd]\nenabled = true\nport = 8125\nprefix = \"chaos\"\n",
        );
        let o = load(&p, &Registry::builtin()).unwrap();
        let c = Config::build(
            Registry::builtin(),
            Some(("spec.ini", o)),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.settings.backend.to_string(), "localhost:8888");
        assert_eq!(
            c.settings.bufsize, 4096,
            "extends brings the base file's keys"
        );
        assert_eq!(c.settings.seed, Some(42));
        assert!(c.settings.http && c.settings.statsd);
        assert_eq!(c.settings.statsd_prefix, "chaos");
        assert_eq!(c.behavior_options["delay"].float("sleep"), 2.0);
        assert_eq!(c.behavior_options["flaky"].int("warmup"), 3);
        assert!(c.protocol_options["tcp"].bool("keep_alive"));
        assert_eq!(c.mix().to_string(), "20:delay,5:flaky,75:dummy");
    }

    #[test]
    fn mistakes_name_file_section_and_key() {
        assert!(config_error("[vaurien]\nnope = 1\n").ends_with(": [vaurien] nope: unknown key"));
        assert!(config_error("[wat]\n").contains("[wat]: unknown section"));
        assert!(config_error("[behavior:delay]\nsleep = soon\n")
            .ends_with("[behavior:delay] sleep: 'soon' is not a number"));
        assert!(config_error("[behavior:delay]\nslep = 1\n")
            .ends_with("[behavior:delay] slep: unknown key"));
        assert!(
            config_error("[behavior:nope]\nx = 1\n").contains("the 'nope' behavior does not exist")
        );
        assert!(config_error("[behavior:x]\nbase = nope\n")
            .contains("the 'nope' behavior does not exist"));
        assert!(config_error("[vaurien]\nbehavior = 150:delay\n")
            .contains("[vaurien] behavior: weight '150'"));
        assert!(
            config_error("[vaurien]\nbackend = ${VAURIEN_SURELY_UNSET_VAR}\n")
                .contains("'VAURIEN_SURELY_UNSET_VAR' is not set")
        );
        assert!(config_error("[vaurien\nx=1\n").contains("bracket"));
        assert!(config_error("[protocol:gopher]\n").contains("unknown protocol 'gopher'"));
        let missing =
            load(Path::new("/nonexistent/vaurien.ini"), &Registry::builtin()).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("cannot read config file /nonexistent/vaurien.ini"));
    }

    #[test]
    fn extends_loops_are_caught() {
        let dir = tmpdir("loop");
        let p = write(&dir, "a.ini", "[DEFAULT]\nextends = a.ini\n");
        assert!(load(&p, &Registry::builtin())
            .unwrap_err()
            .to_string()
            .contains("loop"));
    }
}
