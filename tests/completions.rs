//! Shell completions: every flag of `--help` (and every command of `vaurienctl --help`) is in
//! each script, bash completes what a user types, and zsh and fish load the scripts (where
//! they are installed).

use std::process::Command;
use std::time::Duration;

use crate::man::flags_in;
use crate::support::*;

const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

fn vaurienctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vaurienctl")
}

/// `PROGRAM ARGS`: its standard output; it must succeed.
fn output_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("run it");
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The commands `vaurienctl --help` lists: the first word of each indented line of its
/// command sections.
fn vaurienctl_commands(help: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands") || line.starts_with("Toxiproxy CLI's commands") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        if in_commands && line.starts_with("  ") && !line.starts_with("   ") {
            commands.push(word.to_string());
        }
    }
    commands
}

#[test]
fn every_help_flag_and_command_is_in_each_completion_script() {
    for (program, help) in [
        (vaurien_bin(), output_of(vaurien_bin(), &["--help"])),
        (vaurienctl_bin(), output_of(vaurienctl_bin(), &["--help"])),
    ] {
        // A placeholder such as --behavior-NAME-OPTION is no flag.
        let flags: Vec<String> = flags_in(&help)
            .into_iter()
            .filter(|f| !f.chars().any(|c| c.is_ascii_uppercase()))
            .collect();
        assert!(flags.len() > 5, "{program}: only {flags:?} in --help");
        let mut words = flags;
        if program == vaurienctl_bin() {
            let commands = vaurienctl_commands(&help);
            assert!(commands.len() >= 15, "{commands:?}");
            words.extend(commands);
        }
        for shell in SHELLS {
            let script = output_of(program, &["--completions", shell]);
            // fish names a long flag `-l NAME` and a command `-a NAME`.
            let written = |w: &str| match (shell, w.strip_prefix("--")) {
                ("fish", Some(long)) => format!("-l {long} "),
                ("fish", None) => format!("-a {w} "),
                _ => w.to_string(),
            };
            let missing: Vec<&String> = words
                .iter()
                .filter(|w| !script.contains(&written(w)))
                .collect();
            assert!(
                missing.is_empty(),
                "{program} --completions {shell} lacks {missing:?}"
            );
        }
    }
}

/// The words bash makes of `line` for a completion: split at spaces, then at `:` and `=`
/// (in its `COMP_WORDBREAKS`), which are words of their own; an empty last word after a
/// space.
fn comp_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    for token in line.split_whitespace() {
        let mut word = String::new();
        for c in token.chars() {
            if c == ':' || c == '=' {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                words.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    if line.ends_with(' ') || line.ends_with(':') || line.ends_with('=') {
        words.push(String::new());
    }
    words
}

/// What bash offers for the last word of `line` (a partial word, or empty after a space),
/// with `program`'s script sourced, given the words and line as bash gives them; sorted.
fn bash_offers(program: &str, line: &str) -> Vec<String> {
    let name = std::path::Path::new(program)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let words: String = comp_words(line).iter().map(|w| format!("{w}\n")).collect();
    let script = format!(
        "source <('{program}' --completions bash) || exit 3\n\
         mapfile -t COMP_WORDS < <(printf '%s' \"$WORDS\")\n\
         COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         COMP_LINE=\"$LINE\"; COMP_POINT=${{#LINE}}\n\
         _{name}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("LINE", line)
        .env("WORDS", words);
    let run = run_tool(cmd, None, Duration::from_secs(10));
    assert!(run.out.status.success(), "bash: {}", run.stderr());
    let mut offers: Vec<String> = String::from_utf8_lossy(&run.out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    offers.sort();
    offers
}

#[test]
fn bash_completes_flags_behaviors_and_commands() {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!(
        "source <('{}' --completions bash) && complete -p vaurien",
        vaurien_bin()
    ));
    let run = run_tool(cmd, None, Duration::from_secs(10));
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(
        String::from_utf8_lossy(&run.out.stdout).trim(),
        "complete -F _vaurien vaurien"
    );
    let offers = bash_offers(vaurien_bin(), "vaurien --behavior-d");
    assert!(
        offers.iter().any(|o| o == "--behavior-delay-sleep"),
        "{offers:?}"
    );
    assert!(
        offers.iter().all(|o| o.starts_with("--behavior-d")),
        "{offers:?}"
    );
    let behaviors = bash_offers(vaurien_bin(), "vaurien --behavior ");
    for b in ["delay", "latency", "limit_data", "dummy"] {
        assert!(behaviors.iter().any(|o| o == b), "{b} in {behaviors:?}");
    }
    let protocols = bash_offers(vaurien_bin(), "vaurien --protocol r");
    assert_eq!(protocols, ["redis"]);
    let commands = bash_offers(vaurienctl_bin(), "vaurienctl set-b");
    assert_eq!(commands, ["set-backend", "set-behavior"]);
    let subcommands = bash_offers(vaurienctl_bin(), "vaurienctl toxic ");
    assert_eq!(subcommands, ["add", "remove", "update"]);
    let types = bash_offers(vaurienctl_bin(), "vaurienctl toxic add -n cut -t l");
    assert_eq!(types, ["latency", "limit_data"]);
    let flags = bash_offers(vaurienctl_bin(), "vaurienctl toxic add --tox");
    assert_eq!(flags, ["--tox", "--toxicName", "--toxicity"]);
    let after_proxy = bash_offers(
        vaurienctl_bin(),
        "vaurienctl --proxy replica set-behavior ha",
    );
    assert_eq!(after_proxy, ["hang"]);
    // Mixes: each name after a `:` (bash replaces what follows it) or a `,`.
    assert_eq!(
        bash_offers(vaurien_bin(), "vaurien --behavior 20:de"),
        ["delay"]
    );
    assert_eq!(
        bash_offers(vaurien_bin(), "vaurien --behavior 20:delay,5:er"),
        ["error"]
    );
    assert_eq!(
        bash_offers(vaurien_bin(), "vaurien --behavior 20:delay,bl"),
        ["delay,blackout"]
    );
    assert_eq!(
        bash_offers(vaurienctl_bin(), "vaurienctl set-behavior 30:sl"),
        ["slicer", "slow_close"]
    );
    let after_mix = bash_offers(vaurien_bin(), "vaurien --behavior 20:delay --http-h");
    assert_eq!(after_mix, ["--http-host"]);
    // A flag's value spelt like a command is still the flag's value.
    let named_list = bash_offers(vaurienctl_bin(), "vaurienctl --proxy list set-behavior ha");
    assert_eq!(named_list, ["hang"]);
}

#[test]
fn zsh_and_fish_load_the_scripts_where_installed() {
    for shell in ["zsh", "fish"] {
        let Some(path) = find_tool(&[shell]) else {
            eprintln!("{shell} is not installed: its completions are not loaded here");
            continue;
        };
        for (program, name) in [(vaurien_bin(), "vaurien"), (vaurienctl_bin(), "vaurienctl")] {
            let script = match shell {
                "zsh" => format!(
                    "autoload -U compinit && compinit -u -D && \
                     source <('{program}' --completions zsh) && print -r -- ${{_comps[{name}]}}"
                ),
                _ => format!(
                    "'{program}' --completions fish | source; and \
                     complete -C '{name} --behavior-d'; and complete -C '{name} --proxy x set-b'"
                ),
            };
            // A home of its own: fish writes its configuration there on a first run.
            let home = fresh_dir("vaurien-shell-home").expect("a home directory");
            let mut cmd = Command::new(&path);
            cmd.arg("-c")
                .arg(&script)
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_DATA_HOME", home.join(".local/share"));
            let run = run_tool(cmd, None, Duration::from_secs(20));
            let _ = std::fs::remove_dir_all(&home);
            let stdout = String::from_utf8_lossy(&run.out.stdout).into_owned();
            assert!(
                run.out.status.success() && run.stderr().trim().is_empty(),
                "{shell} -c {script:?}: {} / {stdout}",
                run.stderr()
            );
            let offered = |word: &str| stdout.lines().any(|l| l.starts_with(word));
            match (shell, name) {
                ("zsh", _) => assert_eq!(stdout.trim(), format!("_{name}"), "{shell}"),
                ("fish", "vaurien") => assert!(offered("--behavior-delay-sleep"), "{stdout}"),
                // Commands are offered after a global flag and its value.
                _ => assert!(offered("set-behavior"), "{stdout}"),
            }
        }
    }
}
