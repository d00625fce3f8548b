//! Shell completions for bash, zsh and fish, written from the same declarations as `--help`:
//! every `--behavior-NAME-OPTION` and `--protocol-NAME-OPTION`, the behavior and protocol
//! names after `--behavior` and `--protocol`, and for `vaurienctl` its commands (the original
//! ones and Toxiproxy CLI's) with their own flags.

use std::fmt::Write;

use crate::opts::OptKind;
use crate::registry::Registry;

/// A shell whose completions can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// bash, through `complete -F`.
    Bash,
    /// zsh, through `compdef` and `_arguments`.
    Zsh,
    /// fish, through `complete -c`.
    Fish,
}

impl Shell {
    /// The shell named `name` (`bash`, `zsh` or `fish`).
    pub fn named(name: &str) -> Option<Shell> {
        match name {
            "bash" => Some(Shell::Bash),
            "zsh" => Some(Shell::Zsh),
            "fish" => Some(Shell::Fish),
            _ => None,
        }
    }
}

/// What follows a flag or a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Takes {
    /// Nothing: the flag is a switch.
    Nothing,
    /// A value the shell cannot guess (a number, an address); named for the help.
    Value(String),
    /// One of these words.
    OneOf(Vec<String>),
    /// A mix of these words (`20:delay,5:error`): each name after a `:` or a `,` completes.
    Mix(Vec<String>),
    /// A file name.
    File,
}

/// One flag: its long name (no dashes), its one-letter form, what it takes, its help.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The long name, without its dashes.
    pub long: String,
    /// The one-letter form, if any (`-h`).
    pub short: Option<char>,
    /// What follows it.
    pub takes: Takes,
    /// One line of help.
    pub help: String,
}

impl Flag {
    /// A flag `--long` taking `takes`.
    pub fn new(long: &str, takes: Takes, help: &str) -> Flag {
        Flag {
            long: long.to_string(),
            short: None,
            takes,
            help: help.to_string(),
        }
    }

    /// The same flag with a one-letter form too.
    pub fn short(mut self, c: char) -> Flag {
        self.short = Some(c);
        self
    }
}

/// A command of a program (or a subcommand of a command): its flags, what its words are.
#[derive(Debug, Clone)]
pub struct Command {
    /// The word that names it.
    pub name: String,
    /// One line of help.
    pub help: String,
    /// The flags it takes after its name.
    pub flags: Vec<Flag>,
    /// Its subcommands (`toxic add`), if any.
    pub subcommands: Vec<Command>,
    /// What its other words are.
    pub words: Takes,
}

impl Command {
    /// A command `name` with no flag and words the shell cannot guess.
    pub fn new(name: &str, help: &str) -> Command {
        Command {
            name: name.to_string(),
            help: help.to_string(),
            flags: Vec::new(),
            subcommands: Vec::new(),
            words: Takes::Nothing,
        }
    }
}

/// A program's flags and commands.
#[derive(Debug, Clone)]
pub struct Program {
    /// Its name, as typed.
    pub name: String,
    /// The flags before any command.
    pub flags: Vec<Flag>,
    /// Its commands (none for `vaurien`).
    pub commands: Vec<Command>,
}

/// `vaurien`'s flags, from the option declarations of `--help`.
pub fn vaurien(registry: &Registry) -> Program {
    let behaviors = registry.behavior_names();
    let protocols: Vec<String> = registry
        .protocols()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    // The 2012 names (`--local`, `--distant`) complete too: `--help` lists them.
    let aliases = crate::config::GLOBAL_OPTIONS
        .iter()
        .flat_map(|spec| spec.aliases.iter().map(|a| (a.to_string(), *spec)));
    let mut flags: Vec<Flag> = crate::config::doc::all_flags(registry)
        .into_iter()
        .chain(aliases)
        .map(|(flag, spec)| {
            let takes = match (spec.name, spec.kind) {
                (_, OptKind::Bool) => Takes::Nothing,
                ("behavior", _) => Takes::Mix(behaviors.clone()),
                ("protocol", _) => Takes::OneOf(protocols.clone()),
                ("log_level", _) => Takes::OneOf(
                    crate::config::settings::LOG_LEVELS
                        .iter()
                        .map(|l| l.to_string())
                        .collect(),
                ),
                ("config" | "log_output" | "pid_file", _) => Takes::File,
                ("stream", _) => Takes::OneOf(
                    ["upstream", "downstream", "both"]
                        .map(String::from)
                        .to_vec(),
                ),
                _ => Takes::Value(crate::config::doc::placeholder(&spec)),
            };
            Flag::new(&flag, takes, spec.help)
        })
        .collect();
    flags.extend([
        Flag::new("help", Takes::Nothing, "print the help and exit").short('h'),
        Flag::new("version", Takes::Nothing, "print the version and exit").short('V'),
        Flag::new(
            "toxiproxy",
            Takes::Nothing,
            "drop-in mode: Toxiproxy's server flags follow",
        ),
        Flag::new(
            "completions",
            Takes::OneOf(vec!["bash".into(), "zsh".into(), "fish".into()]),
            "print the completion script of a shell and exit",
        ),
    ]);
    Program {
        name: "vaurien".to_string(),
        flags,
        commands: Vec::new(),
    }
}

/// The completion script of `program` for `shell`.
pub fn script(program: &Program, shell: Shell) -> String {
    match shell {
        Shell::Bash => bash(program),
        Shell::Zsh => zsh(program),
        Shell::Fish => fish(program),
    }
}

/// Single-quoted for a shell (`'` becomes `'\''`).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The words a flag's value is completed from, as one shell word list.
fn values(takes: &Takes) -> Option<String> {
    match takes {
        Takes::OneOf(words) | Takes::Mix(words) => Some(words.join(" ")),
        _ => None,
    }
}

fn flag_words(flags: &[Flag]) -> String {
    let mut words: Vec<String> = Vec::new();
    for f in flags {
        words.push(format!("--{}", f.long));
        if let Some(c) = f.short {
            words.push(format!("-{c}"));
        }
    }
    words.join(" ")
}

/// The function name a program's completions use in bash and zsh.
fn function(program: &Program) -> String {
    format!("_{}", program.name.replace('-', "_"))
}

/// A place in a command line that bash completes: the commands typed so far (`path`, the
/// last of them `name`, after `parent`), the flags taken there, and its next words.
struct Context<'p> {
    parent: String,
    name: String,
    path: String,
    flags: &'p [Flag],
    /// What the context's own words are.
    words: &'p Takes,
    /// The subcommands, else the words the context takes.
    next: Vec<String>,
}

/// The program itself, each command, and each subcommand, in that order.
fn bash_contexts(program: &Program) -> Vec<Context<'_>> {
    fn of<'p>(parent: &str, c: &'p Command, out: &mut Vec<Context<'p>>) {
        let path = match parent {
            "" => c.name.clone(),
            p => format!("{p} {}", c.name),
        };
        let next = match c.subcommands.is_empty() {
            true => values(&c.words).into_iter().collect(),
            false => c.subcommands.iter().map(|s| s.name.clone()).collect(),
        };
        out.push(Context {
            parent: parent.to_string(),
            name: c.name.clone(),
            path: path.clone(),
            flags: &c.flags,
            words: &c.words,
            next,
        });
        for s in &c.subcommands {
            of(&path, s, out);
        }
    }
    let mut out = vec![Context {
        parent: String::new(),
        name: String::new(),
        path: String::new(),
        flags: &program.flags,
        words: &Takes::Nothing,
        next: program.commands.iter().map(|c| c.name.clone()).collect(),
    }];
    for c in &program.commands {
        of("", c, &mut out);
    }
    out
}

/// bash: a function that finds the command (and subcommand) typed so far, then completes a
/// flag's value, a flag, or the next command word.
fn bash(program: &Program) -> String {
    let mut out = String::new();
    let f = function(program);
    let _ = writeln!(
        out,
        "# bash completion for {0}; generated by `{0} --completions bash`.",
        program.name
    );
    let _ = writeln!(out, "{f}() {{");
    let _ = writeln!(
        out,
        "    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"\""
    );
    let _ = writeln!(
        out,
        "    [ \"$COMP_CWORD\" -gt 0 ] && prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\""
    );
    let _ = writeln!(out, "    local path=\"\" w i");
    // The value of a flag before the command is no command, even if it is spelt like one.
    let valued: Vec<String> = program
        .flags
        .iter()
        .filter(|f| f.takes != Takes::Nothing)
        .flat_map(|f| {
            std::iter::once(format!("--{}", f.long)).chain(f.short.map(|c| format!("-{c}")))
        })
        .collect();
    let _ = writeln!(out, "    for ((i = 1; i < COMP_CWORD; i++)); do");
    let _ = writeln!(out, "        w=\"${{COMP_WORDS[i]}}\"");
    if !valued.is_empty() && !program.commands.is_empty() {
        let _ = writeln!(
            out,
            "        if [ -z \"$path\" ]; then case \"$w\" in {}) i=$((i + 1)); continue ;; esac; fi",
            valued.join("|")
        );
    }
    let contexts = bash_contexts(program);
    let _ = writeln!(out, "        case \"$path $w\" in");
    for c in contexts.iter().skip(1) {
        let _ = writeln!(
            out,
            "            \"{} {}\") path=\"{}\" ;;",
            c.parent, c.name, c.path
        );
    }
    let _ = writeln!(out, "        esac");
    let _ = writeln!(out, "    done");
    // A mix: bash cuts the word at `:`, so the whole word and the one before it come from
    // the line itself.
    let mut mixes: Vec<(String, String)> = Vec::new();
    for c in &contexts {
        for flag in c.flags {
            if let Takes::Mix(words) = &flag.takes {
                mixes.push((format!("\"{}|--{}\"", c.path, flag.long), words.join(" ")));
            }
        }
    }
    for c in &contexts {
        if let Takes::Mix(words) = c.words {
            mixes.push((format!("\"{}|{}\"", c.path, c.name), words.join(" ")));
        }
    }
    if !mixes.is_empty() {
        let _ = writeln!(
            out,
            "    local line=\"${{COMP_LINE:0:COMP_POINT}}\" full before"
        );
        let _ = writeln!(out, "    full=\"${{line##*[[:space:]]}}\"");
        let _ = writeln!(out, "    before=\"${{line%\"$full\"}}\"");
        let _ = writeln!(
            out,
            "    before=\"${{before%\"${{before##*[![:space:]]}}\"}}\""
        );
        let _ = writeln!(out, "    case \"$path|${{before##*[[:space:]]}}\" in");
        for (pattern, words) in &mixes {
            let _ = writeln!(
                out,
                "        {pattern}) {f}_mix \"$full\" {}; return ;;",
                quoted(words)
            );
        }
        let _ = writeln!(out, "    esac");
    }
    // A flag's value: what the flag takes, in the context typed so far.
    let _ = writeln!(out, "    case \"$path|$prev\" in");
    for c in &contexts {
        let path = &c.path;
        for flag in c.flags {
            let mut names = vec![format!("--{}", flag.long)];
            if let Some(c) = flag.short {
                names.push(format!("-{c}"));
            }
            let patterns: Vec<String> = names.iter().map(|n| format!("\"{path}|{n}\"")).collect();
            let action = match &flag.takes {
                Takes::Nothing => continue,
                Takes::File => "COMPREPLY=($(compgen -f -- \"$cur\")); return".to_string(),
                Takes::Value(_) => "COMPREPLY=(); return".to_string(),
                Takes::OneOf(_) | Takes::Mix(_) => format!(
                    "COMPREPLY=($(compgen -W {} -- \"$cur\")); return",
                    quoted(&values(&flag.takes).unwrap_or_default())
                ),
            };
            let _ = writeln!(out, "        {}) {action} ;;", patterns.join("|"));
        }
    }
    let _ = writeln!(out, "    esac");
    // A flag, or the next word of the context.
    let _ = writeln!(out, "    case \"$path\" in");
    for c in &contexts {
        let _ = writeln!(out, "        \"{}\")", c.path);
        let _ = writeln!(out, "            if [[ \"$cur\" == -* ]]; then");
        let _ = writeln!(
            out,
            "                COMPREPLY=($(compgen -W {} -- \"$cur\"))",
            quoted(&flag_words(c.flags))
        );
        let _ = writeln!(out, "            else");
        let _ = writeln!(
            out,
            "                COMPREPLY=($(compgen -W {} -- \"$cur\"))",
            quoted(&c.next.join(" "))
        );
        let _ = writeln!(out, "            fi ;;");
    }
    let _ = writeln!(out, "    esac");
    let _ = writeln!(out, "}}");
    // The part of a mix bash replaces is what follows the word's last `:`; a name there
    // may follow a `,` too.
    let _ = writeln!(out, "{f}_mix() {{");
    let _ = writeln!(out, "    local region=\"${{1##*:}}\" head=\"\"");
    let _ = writeln!(
        out,
        "    [[ \"$region\" == *,* ]] && head=\"${{region%,*}},\""
    );
    let _ = writeln!(
        out,
        "    COMPREPLY=($(compgen -P \"$head\" -W \"$2\" -- \"${{region##*,}}\"))"
    );
    // No space after a name: a `,` and the next entry may follow.
    let _ = writeln!(out, "    compopt -o nospace 2>/dev/null || true");
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "complete -F {f} {}", program.name);
    out
}

/// zsh: help text as `_arguments` and `_describe` want it (`[`, `]` and `:` escaped).
fn zsh_help(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace(':', "\\:")
        .replace('\'', "'\\''")
}

/// One `_arguments` spec per flag form.
fn zsh_flag_specs(flags: &[Flag]) -> Vec<String> {
    let mut specs = Vec::new();
    for f in flags {
        let action = match &f.takes {
            Takes::Nothing => String::new(),
            Takes::File => ":file:_files".to_string(),
            Takes::Value(name) => format!(":{}: ", zsh_help(&name.to_ascii_lowercase())),
            Takes::OneOf(words) | Takes::Mix(words) => format!(":value:({})", words.join(" ")),
        };
        let help = zsh_help(&f.help);
        specs.push(format!("'--{}[{help}]{action}'", f.long));
        if let Some(c) = f.short {
            specs.push(format!("'-{c}[{help}]{action}'"));
        }
    }
    specs
}

fn zsh_commands(out: &mut String, indent: &str, what: &str, commands: &[Command]) {
    let _ = writeln!(out, "{indent}local -a {what}");
    let _ = writeln!(out, "{indent}{what}=(");
    for c in commands {
        let _ = writeln!(out, "{indent}    '{}:{}'", c.name, zsh_help(&c.help));
    }
    let _ = writeln!(out, "{indent})");
    let _ = writeln!(out, "{indent}_describe '{what}' {what}");
}

/// The `_arguments` line of a command's own flags and words.
fn zsh_arguments(out: &mut String, indent: &str, c: &Command) {
    let mut specs = zsh_flag_specs(&c.flags);
    match &c.words {
        Takes::OneOf(words) | Takes::Mix(words) => {
            specs.push(format!("'*:value:({})'", words.join(" ")))
        }
        Takes::File => specs.push("'*:file:_files'".to_string()),
        _ => specs.push("'*: :'".to_string()),
    }
    let _ = writeln!(out, "{indent}_arguments {}", specs.join(" "));
}

/// zsh: `_arguments` for the program's flags, then its commands and their flags.
fn zsh(program: &Program) -> String {
    let mut out = String::new();
    let f = function(program);
    let _ = writeln!(out, "#compdef {}", program.name);
    let _ = writeln!(
        out,
        "# zsh completion for {0}; generated by `{0} --completions zsh`.",
        program.name
    );
    let _ = writeln!(out, "{f}() {{");
    let specs = zsh_flag_specs(&program.flags);
    if program.commands.is_empty() {
        let _ = writeln!(out, "    _arguments {}", specs.join(" \\\n        "));
    } else {
        let _ = writeln!(out, "    local curcontext=\"$curcontext\" state line");
        let _ = writeln!(out, "    typeset -A opt_args");
        let _ = writeln!(
            out,
            "    _arguments -C {} \\\n        '1: :->command' '*:: :->args'",
            specs.join(" \\\n        ")
        );
        let _ = writeln!(out, "    case $state in");
        let _ = writeln!(out, "    command)");
        zsh_commands(&mut out, "        ", "commands", &program.commands);
        let _ = writeln!(out, "        ;;");
        let _ = writeln!(out, "    args)");
        let _ = writeln!(out, "        case $line[1] in");
        for c in &program.commands {
            let _ = writeln!(out, "        {})", c.name);
            if c.subcommands.is_empty() {
                zsh_arguments(&mut out, "            ", c);
            } else {
                let _ = writeln!(out, "            if (( CURRENT == 2 )); then");
                zsh_commands(&mut out, "                ", "subcommands", &c.subcommands);
                let _ = writeln!(out, "            else");
                let _ = writeln!(out, "                case $line[2] in");
                for s in &c.subcommands {
                    let _ = writeln!(out, "                {})", s.name);
                    let _ = writeln!(out, "                    shift words; (( CURRENT-- ))");
                    zsh_arguments(&mut out, "                    ", s);
                    let _ = writeln!(out, "                    ;;");
                }
                let _ = writeln!(out, "                esac");
                let _ = writeln!(out, "            fi");
            }
            let _ = writeln!(out, "            ;;");
        }
        let _ = writeln!(out, "        esac");
        let _ = writeln!(out, "        ;;");
        let _ = writeln!(out, "    esac");
    }
    let _ = writeln!(out, "}}");
    // Sourced (`source <(vaurien --completions zsh)`) or autoloaded from $fpath.
    let _ = writeln!(out, "if [ \"$funcstack[1]\" = \"{f}\" ]; then");
    let _ = writeln!(out, "    {f} \"$@\"");
    let _ = writeln!(out, "else");
    let _ = writeln!(out, "    compdef {f} {}", program.name);
    let _ = writeln!(out, "fi");
    out
}

/// fish: one `complete` line per flag form and command, with a condition on the command
/// typed so far.
fn fish(program: &Program) -> String {
    let mut out = String::new();
    let name = &program.name;
    let _ = writeln!(
        out,
        "# fish completion for {name}; generated by `{name} --completions fish`."
    );
    let _ = writeln!(out, "complete -c {name} -e");
    let _ = writeln!(out, "complete -c {name} -f");
    // Not `__fish_use_subcommand`: it takes the value of `--proxy NAME` for a command.
    let names: Vec<&str> = program.commands.iter().map(|c| c.name.as_str()).collect();
    let top = match names.is_empty() {
        true => String::new(),
        false => format!("not __fish_seen_subcommand_from {}", names.join(" ")),
    };
    for f in &program.flags {
        fish_flag(&mut out, name, &top, f);
    }
    for c in &program.commands {
        let inside = format!("__fish_seen_subcommand_from {}", c.name);
        fish_command(&mut out, name, &top, &inside, c);
    }
    out
}

/// fish: `command` offered where `offered` holds, its flags and words where `inside` holds,
/// then its subcommands the same way, one level down.
fn fish_command(out: &mut String, program: &str, offered: &str, inside: &str, command: &Command) {
    let _ = writeln!(
        out,
        "complete -c {program} -n {} -a {} -d {}",
        quoted(offered),
        command.name,
        quoted(&command.help)
    );
    for f in &command.flags {
        fish_flag(out, program, inside, f);
    }
    if let Some(words) = values(&command.words) {
        let _ = writeln!(
            out,
            "complete -c {program} -n {} -a {}",
            quoted(inside),
            quoted(&words)
        );
    }
    let subs: Vec<&str> = command
        .subcommands
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for s in &command.subcommands {
        let offered = format!(
            "{inside}; and not __fish_seen_subcommand_from {}",
            subs.join(" ")
        );
        let deeper = format!("{inside}; and __fish_seen_subcommand_from {}", s.name);
        fish_command(out, program, &offered, &deeper, s);
    }
}

/// fish: one `complete` line for flag `f` where `condition` holds (empty: always).
fn fish_flag(out: &mut String, program: &str, condition: &str, f: &Flag) {
    let mut line = format!("complete -c {program}");
    if !condition.is_empty() {
        line.push_str(&format!(" -n {}", quoted(condition)));
    }
    line.push_str(&format!(" -l {}", f.long));
    if let Some(c) = f.short {
        line.push_str(&format!(" -s {c}"));
    }
    match &f.takes {
        Takes::Nothing => {}
        Takes::File => line.push_str(" -r -F"),
        Takes::Value(_) => line.push_str(" -x"),
        Takes::OneOf(words) | Takes::Mix(words) => {
            line.push_str(&format!(" -x -a {}", quoted(&words.join(" "))))
        }
    }
    line.push_str(&format!(" -d {}", quoted(&f.help)));
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_behavior_and_protocol_option_is_completed() {
        let registry = Registry::builtin();
        let program = vaurien(&registry);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(&program, shell);
            for (flag, _) in crate::config::doc::all_flags(&registry) {
                assert!(text.contains(&flag), "{shell:?}: {flag}");
            }
            assert!(text.contains("delay"), "{shell:?}: behavior names");
        }
    }

    #[test]
    fn quotes_survive_in_help_texts() {
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(zsh_help("a [b]: c"), r"a \[b\]\: c");
    }
}
