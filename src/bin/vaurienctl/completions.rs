//! `vaurienctl --completions SHELL`: its flags and commands as the completion scripts of
//! [`vaurien::config::completions`] want them; the same words as `--help`, which a test checks.

use vaurien::config::completions::{Command, Flag, Program, Takes};
use vaurien::Registry;

fn value(name: &str) -> Takes {
    Takes::Value(name.to_string())
}

fn command(name: &str, help: &str, flags: Vec<Flag>) -> Command {
    Command {
        flags,
        ..Command::new(name, help)
    }
}

/// vaurienctl's flags, commands (the original ones and Toxiproxy CLI's) and their flags.
pub fn program() -> Program {
    let registry = Registry::builtin();
    let behaviors = registry.behavior_names();
    let mut types = behaviors.clone();
    types.push("noop".to_string());
    let toxic_name = || Flag::new("toxicName", value("NAME"), "the toxic's name").short('n');
    let toxicity = || {
        Flag::new(
            "toxicity",
            value("TOXICITY"),
            "share of connections, 0 to 1",
        )
    };
    let tox = || Flag::new("tox", value("TOXICITY"), "share of connections, 0 to 1");
    let attribute = || Flag::new("attribute", value("KEY=VALUE"), "an attribute").short('a');
    let toxic = Command {
        subcommands: vec![
            command(
                "add",
                "add a toxic",
                vec![
                    toxic_name(),
                    Flag::new("type", Takes::OneOf(types), "the toxic's type").short('t'),
                    tox(),
                    toxicity(),
                    attribute(),
                    Flag::new("upstream", Takes::Nothing, "on the upstream stream").short('u'),
                    Flag::new(
                        "downstream",
                        Takes::Nothing,
                        "on the downstream stream (default)",
                    )
                    .short('d'),
                ],
            ),
            command(
                "update",
                "change a toxic's toxicity and attributes",
                vec![toxic_name(), tox(), toxicity(), attribute()],
            ),
            command("remove", "remove a toxic", vec![toxic_name()]),
        ],
        ..Command::new("toxic", "add, update or remove a toxic")
    };
    let set_behavior = Command {
        words: Takes::Mix(behaviors),
        ..Command::new("set-behavior", "set a behavior or mix, with options")
    };
    Program {
        name: "vaurienctl".to_string(),
        flags: vec![
            Flag::new("host", value("URL"), "control API address"),
            Flag::new("http-host", value("HOST"), "control API host"),
            Flag::new("http-port", value("PORT"), "control API port"),
            Flag::new(
                "token",
                value("TOKEN"),
                "send 'Authorization: Bearer TOKEN'",
            ),
            Flag::new(
                "proxy",
                value("NAME"),
                "the proxy the original commands act on",
            ),
            Flag::new(
                "completions",
                Takes::OneOf(vec!["bash".into(), "zsh".into(), "fish".into()]),
                "print the completion script of a shell and exit",
            ),
            Flag::new("help", Takes::Nothing, "print the help").short('h'),
            Flag::new("version", Takes::Nothing, "print the version").short('V'),
        ],
        commands: vec![
            Command::new("list-behaviors", "print the behaviors the proxy knows"),
            Command::new("get-behavior", "print the current behavior mix"),
            set_behavior,
            Command::new("get-backend", "print the backend address"),
            Command::new("set-backend", "send new connections to HOST:PORT"),
            Command::new("stats", "print the proxy's counters as JSON"),
            Command::new("down", "take the proxy down"),
            Command::new("up", "bring it back up"),
            command(
                "wait",
                "wait until the proxy answers",
                vec![Flag::new("timeout", value("SECONDS"), "how long at most")],
            ),
            Command::new("list", "the proxies: listen, upstream, enabled, toxics"),
            Command::new("inspect", "a proxy and its toxics"),
            Command::new("toggle", "enable a disabled proxy, disable an enabled one"),
            command(
                "create",
                "start another proxy in the running process",
                vec![
                    Flag::new("listen", value("LISTEN"), "its address").short('l'),
                    Flag::new("upstream", value("UPSTREAM"), "its backend").short('u'),
                ],
            ),
            Command::new("delete", "stop and delete a proxy"),
            toxic,
        ],
    }
}
