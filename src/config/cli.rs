//! The command line: a getopts table built from the option declarations, the 2012 aliases,
//! and the merge with the INI file.

use getopts::{Fail, Options};

use crate::config::{Config, Overrides, GLOBAL_OPTIONS};
use crate::error::Error;
use crate::opts::{OptKind, OptSpec, Value};
use crate::registry::Registry;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the proxy with this configuration.
    Run(Box<Config>),
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// Print this completion script and exit 0.
    Completions(String),
}

fn declare(opts: &mut Options, flag: &str, spec: &OptSpec) {
    let meta = crate::config::doc::placeholder(spec);
    match spec.kind {
        OptKind::Bool => opts.optflagopt("", flag, spec.help, "BOOL"),
        _ => opts.optopt("", flag, spec.help, &meta),
    };
}

/// The getopts table for `registry`: proxy options, aliases, and one flag per option of each
/// behavior and protocol.
fn table(registry: &Registry) -> Options {
    let mut opts = Options::new();
    for spec in GLOBAL_OPTIONS {
        declare(&mut opts, &spec.flag_name(), spec);
    }
    for spec in GLOBAL_OPTIONS {
        for alias in spec.aliases {
            declare(&mut opts, alias, spec);
        }
    }
    for b in registry.behaviors() {
        for o in b.options {
            declare(&mut opts, &o.owned_flag("behavior", &b.name), o);
        }
    }
    for p in registry.protocols() {
        for o in p.options {
            declare(&mut opts, &o.owned_flag("protocol", p.name), o);
        }
    }
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    opts.optopt(
        "",
        "completions",
        "print a shell's completion script",
        "SHELL",
    );
    opts
}

fn usage(f: Fail) -> Error {
    Error::Usage(match f {
        Fail::UnrecognizedOption(o) => format!("unrecognized option '{}'", dashed(&o)),
        Fail::ArgumentMissing(o) => format!("option '{}' needs a value", dashed(&o)),
        Fail::OptionDuplicated(o) => format!("option '{}' is given more than once", dashed(&o)),
        Fail::UnexpectedArgument(o) => format!("option '{}' takes no value", dashed(&o)),
        Fail::OptionMissing(o) => format!("option '{}' is required", dashed(&o)),
    })
}

fn dashed(name: &str) -> String {
    if name.starts_with('-') {
        name.to_string()
    } else if name.len() == 1 {
        format!("-{name}")
    } else {
        format!("--{name}")
    }
}

/// Reads the value of flag `flag` (declared by `spec`) if it was given.
fn value_of(m: &getopts::Matches, flag: &str, spec: &OptSpec) -> Result<Option<Value>, Error> {
    if !m.opt_present(flag) {
        return Ok(None);
    }
    let text = m.opt_str(flag);
    let value = match (spec.kind, text) {
        (OptKind::Bool, None) => Value::Bool(true),
        (_, Some(t)) => spec
            .parse(&t)
            .map_err(|e| Error::Usage(format!("--{flag}: {e}")))?,
        (_, None) => return Err(Error::Usage(format!("option '--{flag}' needs a value"))),
    };
    Ok(Some(value))
}

/// Parses `args` (without the program name) against `registry`, reading `--config` when given.
pub fn parse(args: &[String], registry: Registry) -> Result<Command, Error> {
    let m = table(&registry).parse(args).map_err(usage)?;
    if m.opt_present("help") {
        return Ok(Command::Help(crate::config::doc::help(&registry)));
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }
    if let Some(name) = m.opt_str("completions") {
        use crate::config::completions::{script, vaurien, Shell};
        let shell = Shell::named(&name).ok_or_else(|| {
            Error::Usage(format!("--completions: '{name}' is not bash, zsh or fish"))
        })?;
        return Ok(Command::Completions(script(&vaurien(&registry), shell)));
    }
    if let Some(extra) = m.free.first() {
        return Err(Error::Usage(format!("unexpected argument '{extra}'")));
    }
    let mut cli = Overrides::default();
    for spec in GLOBAL_OPTIONS {
        if let Some(v) = value_of(&m, &spec.flag_name(), spec)? {
            cli.globals.push((spec.name, v));
        }
    }
    for spec in GLOBAL_OPTIONS {
        for alias in spec.aliases {
            if let Some(v) = value_of(&m, alias, spec)? {
                if cli.globals.iter().any(|(k, _)| *k == spec.name) {
                    return Err(Error::Usage(format!(
                        "--{alias} and --{} are the same option; give one",
                        spec.name
                    )));
                }
                cli.globals.push((spec.name, v));
            }
        }
    }
    for b in registry.behaviors() {
        for o in b.options {
            if let Some(v) = value_of(&m, &o.owned_flag("behavior", &b.name), o)? {
                cli.behaviors
                    .push((b.name.to_string(), o.name.to_string(), v));
            }
        }
    }
    for p in registry.protocols() {
        for o in p.options {
            if let Some(v) = value_of(&m, &o.owned_flag("protocol", p.name), o)? {
                cli.protocols
                    .push((p.name.to_string(), o.name.to_string(), v));
            }
        }
    }
    let file = match cli.globals.iter().find(|(k, _)| *k == "config") {
        Some((_, Value::Str(path))) => Some((
            path.clone(),
            crate::config::load(std::path::Path::new(path), &registry)?,
        )),
        _ => None,
    };
    let config = Config::build(
        registry,
        file.as_ref().map(|(p, o)| (p.as_str(), o.clone())),
        cli,
    )?;
    Ok(Command::Run(Box::new(config)))
}

/// Reads a command line into a configuration, as a library user starts a proxy:
/// `config_from_args(&["--backend", "127.0.0.1:6379", "--proxy", "127.0.0.1:0"], Registry::builtin())`.
pub fn config_from_args(args: &[&str], registry: Registry) -> Result<Config, Error> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match parse(&args, registry)? {
        Command::Run(config) => Ok(*config),
        Command::Help(_) | Command::Version | Command::Completions(_) => Err(Error::Usage(
            "--help, --version and --completions do not start a proxy".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, Error> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args, Registry::builtin())? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    fn usage_message(args: &[&str]) -> String {
        match run(args) {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn behavior_and_protocol_flags_reach_their_options() {
        let c = run(&[
            "--behavior",
            "50:delay",
            "--behavior-delay-sleep",
            "0.2",
            "--behavior-delay-before=false",
            "--behavior-error-warmup",
            "3",
            "--protocol-tcp-keep-alive",
            "--seed",
            "7",
        ])
        .unwrap();
        let delay = &c.behavior_options["delay"];
        assert_eq!(delay.float("sleep"), 0.2);
        assert!(!delay.bool("before"));
        assert_eq!(c.behavior_options["error"].int("warmup"), 3);
        assert!(c.protocol_options["tcp"].bool("keep_alive"));
        assert_eq!(c.settings.seed, Some(7));
        assert_eq!(c.mix().to_string(), "50:delay,50:dummy");
    }

    #[test]
    fn old_names_still_work() {
        let c = run(&[
            "--local",
            "127.0.0.1:9000",
            "--distant",
            "127.0.0.1:9001",
            "--behavior",
            "10:errors,20:normal",
        ])
        .unwrap();
        assert_eq!(c.settings.proxy.port, 9000);
        assert_eq!(c.settings.backend.port, 9001);
        assert_eq!(c.mix().to_string(), "10:error,20:dummy,70:dummy");
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        assert_eq!(usage_message(&["--nope"]), "unrecognized option '--nope'");
        assert!(usage_message(&["--behavior", "150:delay"]).contains("weight '150'"));
        assert!(usage_message(&["--behavior", "20:nope"])
            .contains("the 'nope' behavior does not exist"));
        assert!(usage_message(&["--behavior", "x:delay"]).contains("weight 'x'"));
        assert!(usage_message(&["--proxy", "nowhere"])
            .starts_with("--proxy: 'nowhere' is not an address"));
        assert!(
            usage_message(&["--timeout", "soon"]).starts_with("--timeout: 'soon' is not a number")
        );
        assert!(
            usage_message(&["--behavior-delay-sleep", "-1"]).contains("sleep must not be negative")
        );
        assert!(usage_message(&["--protocol", "gopher"]).contains("unknown protocol 'gopher'"));
        assert!(usage_message(&["--http=perhaps"]).contains("not a boolean"));
        assert!(usage_message(&["stray"]).contains("unexpected argument 'stray'"));
        assert!(usage_message(&["--log-level", "loud"]).contains("--log-level"));
    }
}
