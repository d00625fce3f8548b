//! `--help` and the man page's option lists, both written from the option declarations.

use std::fmt::Write;

use crate::config::GLOBAL_OPTIONS;
use crate::opts::{OptKind, OptSpec};
use crate::registry::Registry;

/// The value placeholder of an option in `--help` and the man page.
pub fn placeholder(spec: &OptSpec) -> String {
    match spec.name {
        "proxy" | "backend" => "HOST:PORT",
        "behavior" => "MIX",
        "protocol" => "NAME",
        "config" | "log_output" | "pid_file" => "FILE",
        "log_level" => "LEVEL",
        "http_host" | "statsd_host" => "HOST",
        "http_port" | "statsd_port" => "PORT",
        "http_token" => "TOKEN",
        "statsd_prefix" => "PREFIX",
        "statsd_sample_rate" => "RATE",
        "bufsize" | "buffer" => "BYTES",
        _ => match spec.kind {
            OptKind::Bool => "[=BOOL]",
            OptKind::Int => "N",
            OptKind::Float => "SECONDS",
            OptKind::Str => "TEXT",
        },
    }
    .to_string()
}

fn flag_line(flag: &str, spec: &OptSpec) -> String {
    let meta = placeholder(spec);
    if spec.kind == OptKind::Bool {
        format!("--{flag}{meta}")
    } else {
        format!("--{flag} {meta}")
    }
}

/// Every option flag with its declaration, in `--help` order: proxy options, then each
/// behavior's and each protocol's.
pub fn all_flags(registry: &Registry) -> Vec<(String, OptSpec)> {
    let mut flags: Vec<(String, OptSpec)> =
        GLOBAL_OPTIONS.iter().map(|s| (s.flag_name(), *s)).collect();
    for b in registry.behaviors() {
        flags.extend(
            b.options
                .iter()
                .map(|o| (o.owned_flag("behavior", &b.name), *o)),
        );
    }
    for p in registry.protocols() {
        flags.extend(
            p.options
                .iter()
                .map(|o| (o.owned_flag("protocol", p.name), *o)),
        );
    }
    flags
}

fn push_option(out: &mut String, flag: &str, spec: &OptSpec) {
    let left = flag_line(flag, spec);
    if left.len() < 34 {
        let _ = writeln!(out, "  {left:<34} {}", spec.help_with_default());
    } else {
        let _ = writeln!(out, "  {left}\n  {:<34} {}", "", spec.help_with_default());
    }
}

/// The text of `vaurien --help`.
pub fn help(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Usage: vaurien [OPTIONS]\n\nA chaos TCP proxy: forwards --proxy to --backend and makes calls fail, hang or\n\
         crawl in a percentage mix, per protocol.\n\nOptions:"
    );
    for spec in GLOBAL_OPTIONS {
        push_option(&mut out, &spec.flag_name(), spec);
    }
    let _ = writeln!(out, "  {:<34} print this help and exit", "-h, --help");
    let _ = writeln!(out, "  {:<34} print the version and exit", "-V, --version");
    let _ = writeln!(
        out,
        "  {:<34} print the completion script for bash, zsh or fish and exit",
        "--completions SHELL"
    );
    let _ = writeln!(
        out,
        "  {:<34} drop-in mode, first: Toxiproxy's server flags follow (-host,\n  {:<34} -port, -config, -seed...); the same as running it as toxiproxy-server",
        "--toxiproxy FLAGS...", ""
    );
    let _ = writeln!(out, "\nOld names still accepted: --local (--proxy), --distant (--backend), behaviors\nnormal (dummy) and errors (error), INI sections [handler:NAME].");
    let _ = writeln!(out, "\nBehaviors (options: --behavior-NAME-OPTION VALUE):");
    for b in registry.behaviors() {
        let _ = writeln!(out, "  {:<12} {}", b.name, b.summary);
        for o in b.options {
            push_option(&mut out, &o.owned_flag("behavior", &b.name), o);
        }
    }
    let _ = writeln!(out, "\nProtocols (options: --protocol-NAME-OPTION VALUE):");
    for p in registry.protocols() {
        let _ = writeln!(out, "  {:<12} {}", p.name, p.summary);
        for o in p.options {
            push_option(&mut out, &o.owned_flag("protocol", p.name), o);
        }
    }
    let _ = writeln!(
        out,
        "\nA boolean option is a flag that also takes =true or =false. The command line wins over\n\
         --config. Exit status: 0 after SIGINT or SIGTERM, 1 when the proxy cannot start (address\n\
         in use, bad config file), 2 for a bad command line."
    );
    out
}

fn roff(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\(aq")
}

fn man_option(out: &mut String, flag: &str, spec: &OptSpec) {
    let meta = placeholder(spec);
    let _ = writeln!(out, ".TP");
    if spec.kind == OptKind::Bool {
        let _ = writeln!(out, "\\fB\\-\\-{}\\fR[=\\fIBOOL\\fR]", roff(flag));
    } else {
        let _ = writeln!(out, "\\fB\\-\\-{}\\fR \\fI{}\\fR", roff(flag), roff(&meta));
    }
    let _ = writeln!(out, "{}", roff(&spec.help_with_default()));
}

/// The man page's generated region for the proxy options.
pub fn man_options() -> String {
    let mut out = String::new();
    for spec in GLOBAL_OPTIONS {
        man_option(&mut out, &spec.flag_name(), spec);
    }
    out
}

/// The man page's generated region for behaviors and their options.
pub fn man_behaviors(registry: &Registry) -> String {
    let mut out = String::new();
    for b in registry.behaviors() {
        let _ = writeln!(out, ".SS {}", b.name);
        let _ = writeln!(out, "{}.", roff(b.summary));
        for o in b.options {
            man_option(&mut out, &o.owned_flag("behavior", &b.name), o);
        }
    }
    out
}

/// The man page's generated region for protocols and their options.
pub fn man_protocols(registry: &Registry) -> String {
    let mut out = String::new();
    for p in registry.protocols() {
        let _ = writeln!(out, ".SS {}", p.name);
        let _ = writeln!(out, "{}.", roff(p.summary));
        for o in p.options {
            man_option(&mut out, &o.owned_flag("protocol", p.name), o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_flag_with_its_default() {
        let r = Registry::builtin();
        let h = help(&r);
        for (flag, spec) in all_flags(&r) {
            let line = h
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("--{flag}")))
                .unwrap_or_else(|| panic!("--{flag} missing"));
            let text = format!(
                "{} {}",
                h.lines().nth(line).unwrap(),
                h.lines().nth(line + 1).unwrap_or("")
            );
            assert!(
                text.contains("(default: "),
                "--{flag} lacks its default: {text}"
            );
            let _ = spec;
        }
        assert!(
            h.contains("has no effect"),
            "--sync must say it does nothing"
        );
    }
}
