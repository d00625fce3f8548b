//! What a proxy starts from: the proxy's option declarations and typed [`Settings`], the
//! command line ([`cli`]), the INI file ([`load`]), `--help` and the man page's generated
//! lists ([`doc`]), merged and checked once into a [`Config`].

pub mod cli;
pub mod completions;
pub mod doc;
mod ini;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use ini::{from_text, load};
pub use settings::{
    parse_log_level, Invalid, Overrides, ProxyDecl, Settings, ToxicDecl, GLOBAL_OPTIONS,
};

use settings::invalid;

use crate::behavior::Behavior;
use crate::error::Error;
use crate::mix::{BehaviorOptions, Mix, MixError};
use crate::opts::{BadOption, Value, Values};
use crate::protocol::Protocol;
use crate::registry::Registry;

/// Everything a proxy starts from, read and checked once: the registry, the settings, every
/// option value, and what start-up runs (the mix with its behaviors, the protocol), built
/// while checking. Read-only: a different configuration is built from its arguments again.
/// A proxy runs the behavior instances built here, so two proxies started from one `Config`
/// share their counters (`error`'s warmup): build one for each.
#[derive(Debug, Clone)]
pub struct Config {
    registry: Registry,
    settings: Settings,
    globals: Values,
    behavior_options: BehaviorOptions,
    protocol_options: BTreeMap<String, Values>,
    mix: Mix,
    protocol: Arc<dyn Protocol>,
    toxics: crate::toxic::Toxics,
    /// The file's other proxies, as declared and as checked (their configuration built
    /// once, toxics included).
    proxies: Vec<(ProxyDecl, Config)>,
}

/// What checking a configuration built: start-up runs these.
struct Checked {
    settings: Settings,
    mix: Mix,
    protocol: Arc<dyn Protocol>,
}

fn apply(values: &mut Values, pairs: &[(&'static str, Value)]) {
    for (k, v) in pairs {
        values.set(k, v.clone());
    }
}

impl Config {
    /// The defaults alone, as a library user starts from.
    pub fn defaults(registry: Registry) -> Result<Config, Error> {
        Config::build(registry, None, Overrides::default())
    }

    /// Merges defaults < `file` < `cli` and checks the result. A problem that the file alone
    /// causes is reported against the file (exit 1), one of the command line as a usage
    /// error (exit 2).
    pub fn build(
        registry: Registry,
        file: Option<(&str, Overrides)>,
        cli: Overrides,
    ) -> Result<Config, Error> {
        let mut registry = registry;
        let empty = Overrides::default();
        let (file_name, file) = match &file {
            Some((name, o)) => (*name, o),
            None => ("", &empty),
        };
        for (name, base) in &file.derived {
            registry = registry
                .derive_behavior(name, base)
                .map_err(|e| Error::Config(format!("{file_name}: [behavior:{name}] base: {e}")))?;
        }
        let mut globals = Values::defaults(crate::config::GLOBAL_OPTIONS);
        apply(&mut globals, &file.globals);
        let mut behavior_options = BehaviorOptions::new();
        let mut protocol_options = BTreeMap::new();
        for b in registry.behaviors() {
            behavior_options.insert(b.name.to_string(), Values::defaults(b.options));
        }
        for p in registry.protocols() {
            protocol_options.insert(p.name.to_string(), Values::defaults(p.options));
        }
        let set_behaviors = |opts: &mut BehaviorOptions, list: &[(String, String, Value)]| {
            for (b, k, v) in list {
                if let Some(values) = registry
                    .behavior(b)
                    .and_then(|s| opts.get_mut(s.name.as_ref()))
                {
                    values.set(k, v.clone());
                }
            }
        };
        let set_protocols = |opts: &mut BTreeMap<String, Values>,
                             list: &[(String, String, Value)]| {
            for (p, k, v) in list {
                if let Some(values) = opts.get_mut(p) {
                    values.set(k, v.clone());
                }
            }
        };
        set_behaviors(&mut behavior_options, &file.behaviors);
        set_protocols(&mut protocol_options, &file.protocols);
        if file_name.is_empty() {
            // Nothing came from a file: every problem is the command line's.
        } else if let Err(e) =
            Config::check(&registry, &globals, &behavior_options, &protocol_options)
        {
            return Err(Error::Config(format!("{file_name}: {}", e.in_file())));
        }
        apply(&mut globals, &cli.globals);
        set_behaviors(&mut behavior_options, &cli.behaviors);
        set_protocols(&mut protocol_options, &cli.protocols);
        let checked = Config::check(&registry, &globals, &behavior_options, &protocol_options)
            .map_err(|e| Error::Usage(e.on_command_line()))?;
        let mut toxics = Config::build_toxics(&registry, file_name, &file.toxics, &file.proxies)?;
        let main = toxics.remove("vaurien").unwrap_or_default();
        Ok(Config {
            registry,
            settings: checked.settings,
            globals,
            behavior_options,
            protocol_options,
            mix: checked.mix,
            protocol: checked.protocol,
            toxics: main,
            proxies: Vec::new(),
        })
        .and_then(|mut c| {
            for decl in &file.proxies {
                let at = format!("{file_name}: [proxy:{}]", decl.name);
                // Built now, so that a mistake stops the start, as in any other section.
                let own = toxics.remove(&decl.name).unwrap_or_default();
                let built = c
                    .for_new_proxy_decl(decl, own)
                    .map_err(|e| Error::Config(format!("{at} {e}")))?;
                c.proxies.push((decl.clone(), built));
            }
            Ok(c)
        })
    }

    /// The file's other proxies (`[proxy:NAME]`), each with its configuration.
    pub(crate) fn other_proxies(&self) -> &[(ProxyDecl, Config)] {
        &self.proxies
    }

    /// The configuration of the declared proxy `decl`, with `toxics`.
    pub(crate) fn for_new_proxy_decl(
        &self,
        decl: &ProxyDecl,
        toxics: crate::toxic::Toxics,
    ) -> Result<Config, String> {
        let listen = match decl.listen.as_str() {
            "" => "127.0.0.1:0",
            l => l,
        };
        let listen = crate::net::HostPort::parse(listen).map_err(|e| format!("listen: {e}"))?;
        let backend =
            crate::net::HostPort::parse(&decl.backend).map_err(|e| format!("backend: {e}"))?;
        let mut c = self.for_new_proxy(listen, backend, decl.protocol.as_deref())?;
        if let Some(spec) = &decl.behavior {
            c.mix = Mix::parse_with(spec, &c.registry, |b| {
                crate::mix::activate_with(&c.behavior_options, b)
            })
            .map_err(|e| format!("behavior: {e}"))?;
            c.settings.behavior = spec.clone();
        }
        c.toxics = toxics;
        Ok(c)
    }

    /// Builds the toxics `file` declares, in order, by proxy: `vaurien` or one of the file's
    /// `[proxy:NAME]`.
    fn build_toxics(
        registry: &Registry,
        file: &str,
        decls: &[ToxicDecl],
        proxies: &[ProxyDecl],
    ) -> Result<BTreeMap<String, crate::toxic::Toxics>, Error> {
        let mut all: BTreeMap<String, crate::toxic::Toxics> = BTreeMap::new();
        for d in decls {
            let at = format!("{file}: [toxic:{}:{}]", d.proxy, d.name);
            if d.proxy != "vaurien" && !proxies.iter().any(|p| p.name == d.proxy) {
                return Err(Error::Config(format!(
                    "{at}: unknown proxy '{}' (vaurien, or one of the file's [proxy:NAME])",
                    d.proxy
                )));
            }
            let toxics = all.entry(d.proxy.clone()).or_default();
            if toxics.get(&d.name).is_some() {
                return Err(Error::Config(format!("{at}: toxic already exists")));
            }
            // A file's keys are checked, as in every other section (the API, like
            // Toxiproxy, ignores attributes a type does not have).
            if let Some(spec) = registry.behavior(&d.kind) {
                if let Some(key) = d
                    .attributes
                    .keys()
                    .find(|k| crate::opts::find(spec.options, k).is_none())
                {
                    return Err(Error::Config(format!("{at} {key}: unknown key")));
                }
            }
            let toxic = crate::toxic::build(
                registry,
                &d.name,
                &d.kind,
                d.stream.as_deref(),
                d.toxicity,
                &d.attributes,
            )
            .map_err(|e| Error::Config(format!("{at} {e}")))?;
            *toxics = toxics.with(toxic);
        }
        Ok(all)
    }

    /// Checks every value: each behavior and the protocol are built once with theirs, and the
    /// mix takes the instances of the behaviors it names.
    fn check(
        registry: &Registry,
        globals: &Values,
        behaviors: &BehaviorOptions,
        protocols: &BTreeMap<String, Values>,
    ) -> Result<Checked, Problem> {
        let settings = Settings::from_values(globals).map_err(Problem::Global)?;
        let proto = registry.protocol(&settings.protocol).ok_or_else(|| {
            Problem::Global(invalid(
                "protocol",
                format!(
                    "unknown protocol '{}' (known: {})",
                    settings.protocol,
                    registry.protocol_names().join(", ")
                ),
            ))
        })?;
        let mut built: BTreeMap<String, Arc<dyn Behavior>> = BTreeMap::new();
        for spec in registry.behaviors() {
            if let Some(values) = behaviors.get(spec.name.as_ref()) {
                let behavior = spec
                    .instantiate(values)
                    .map_err(|e| Problem::Behavior(spec.name.to_string(), e))?;
                built.insert(spec.name.to_string(), behavior);
            }
        }
        let values = protocols
            .get(proto.name)
            .cloned()
            .unwrap_or_else(|| Values::defaults(proto.options));
        let protocol =
            (proto.build)(&values).map_err(|e| Problem::Protocol(proto.name.to_string(), e))?;
        // A behavior named twice in the mix gets a second instance, as the API's mixes do.
        let mix = Mix::parse_with(&settings.behavior, registry, |spec| {
            match built.remove(spec.name.as_ref()) {
                Some(behavior) => Ok(behavior),
                None => crate::mix::activate_with(behaviors, spec),
            }
        })
        .map_err(|e| match e {
            MixError::BadOptions(name, bad) => Problem::Behavior(name, bad),
            e => Problem::Global(invalid("behavior", e.to_string())),
        })?;
        Ok(Checked {
            settings,
            mix,
            protocol,
        })
    }

    /// Known behaviors and protocols, including those the file defined.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Typed proxy settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Raw proxy option values, as the defaults, the file and the command line set them.
    pub fn globals(&self) -> &Values {
        &self.globals
    }

    /// Option values of every behavior (what a mix set through the API starts from).
    pub fn behavior_options(&self) -> &BehaviorOptions {
        &self.behavior_options
    }

    /// Option values of every protocol.
    pub fn protocol_options(&self) -> &BTreeMap<String, Values> {
        &self.protocol_options
    }

    /// The mix the proxy starts with, its behaviors built while checking.
    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// The protocol the proxy serves, built while checking.
    pub fn protocol(&self) -> &Arc<dyn Protocol> {
        &self.protocol
    }

    /// The configuration of another proxy of the same process, created through the API: this
    /// one's settings, listening on `listen`, forwarding to `backend`, with the `dummy` mix,
    /// no toxic, and `protocol` (default tcp, as Toxiproxy's proxies are) with its defaults.
    pub(crate) fn for_new_proxy(
        &self,
        listen: crate::net::HostPort,
        backend: crate::net::HostPort,
        protocol: Option<&str>,
    ) -> Result<Config, String> {
        let name = protocol.unwrap_or("tcp");
        let spec = self.registry.protocol(name).ok_or_else(|| {
            format!(
                "unknown protocol '{name}' (known: {})",
                self.registry.protocol_names().join(", ")
            )
        })?;
        let values = Values::defaults(spec.options);
        let protocol = (spec.build)(&values).map_err(|e| format!("protocol '{name}': {e}"))?;
        let mix = Mix::parse_with("dummy", &self.registry, |b| {
            crate::mix::activate_with(&self.behavior_options, b)
        })
        .map_err(|e| e.to_string())?;
        let mut settings = self.settings.clone();
        settings.proxy = listen;
        settings.backend = backend;
        settings.protocol = name.to_string();
        settings.behavior = "dummy".to_string();
        settings.http = false;
        Ok(Config {
            registry: self.registry.clone(),
            settings,
            globals: self.globals.clone(),
            behavior_options: self.behavior_options.clone(),
            protocol_options: self.protocol_options.clone(),
            mix,
            protocol,
            toxics: crate::toxic::Toxics::default(),
            proxies: Vec::new(),
        })
    }

    /// The toxics the proxy starts with, built while checking.
    pub fn toxics(&self) -> &crate::toxic::Toxics {
        &self.toxics
    }
}

/// Which part of the configuration failed its check.
#[derive(Debug)]
enum Problem {
    Global(Invalid),
    Behavior(String, BadOption),
    Protocol(String, BadOption),
}

impl Problem {
    fn in_file(&self) -> String {
        match self {
            Problem::Global(i) => format!("[vaurien] {}: {}", i.key, i.why),
            Problem::Behavior(b, why) => format!("[behavior:{b}]: {why}"),
            Problem::Protocol(p, why) => format!("[protocol:{p}]: {why}"),
        }
    }

    fn on_command_line(&self) -> String {
        match self {
            Problem::Global(i) => format!("--{}: {}", i.key.replace('_', "-"), i.why),
            Problem::Behavior(b, why) => format!("behavior '{b}': {why}"),
            Problem::Protocol(p, why) => format!("protocol '{p}': {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn global_defaults_parse_and_check() {
        for o in GLOBAL_OPTIONS {
            if !o.default.is_empty() {
                assert!(o.parse(o.default).is_ok(), "{}", o.name);
            }
        }
        let c = Config::defaults(Registry::builtin()).unwrap();
        assert_eq!(c.settings.proxy.to_string(), "localhost:8000");
        assert_eq!(c.settings.timeout, Duration::from_secs(30));
        assert_eq!(c.settings.seed, None);
        assert_eq!(c.mix().to_string(), "dummy");
    }

    #[test]
    fn command_line_wins_over_file_and_errors_name_their_source() {
        let file = Overrides {
            globals: vec![("behavior", Value::Str("20:delay".into()))],
            ..Default::default()
        };
        let cli = Overrides {
            globals: vec![("behavior", Value::Str("30:hang".into()))],
            ..Default::default()
        };
        let c = Config::build(Registry::builtin(), Some(("f.ini", file.clone())), cli).unwrap();
        assert_eq!(c.settings.behavior, "30:hang");
        let bad_file = Overrides {
            globals: vec![("timeout", Value::Float(-1.0))],
            ..Default::default()
        };
        match Config::build(
            Registry::builtin(),
            Some(("f.ini", bad_file)),
            Overrides::default(),
        ) {
            Err(Error::Config(m)) => assert_eq!(
                m,
                "f.ini: [vaurien] timeout: -1 is not a duration in seconds"
            ),
            other => panic!("{other:?}"),
        }
        let bad_cli = Overrides {
            globals: vec![("behavior", Value::Str("150:delay".into()))],
            ..Default::default()
        };
        match Config::build(Registry::builtin(), Some(("f.ini", file)), bad_cli) {
            Err(Error::Usage(m)) => assert!(m.starts_with("--behavior: weight '150'"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
