//! The man page stays in step with the binary: every flag of `--help` is documented, the
//! generated option lists equal what `vaurien::config::doc` writes from the declarations, and groff
//! renders the page without a warning.
//!
//! `VAURIEN_BLESS=1` (what `make man` sets) rewrites the generated regions instead of failing.

use std::path::PathBuf;
use std::process::Command;

use vaurien::config::doc;
use vaurien::Registry;

use crate::support::*;

fn man_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/vaurien.1")
}

fn read_man() -> String {
    let path = man_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The generated regions: (name, what `vaurien::config::doc` writes for it).
fn regions() -> Vec<(&'static str, String)> {
    let registry = Registry::builtin();
    vec![
        ("options", doc::man_options()),
        ("behaviors", doc::man_behaviors(&registry)),
        ("protocols", doc::man_protocols(&registry)),
    ]
}

fn begin_marker(name: &str) -> String {
    format!(".\\\" BEGIN GENERATED {name}\n")
}

fn end_marker(name: &str) -> String {
    format!(".\\\" END GENERATED {name}\n")
}

/// The byte range of region `name`'s content (between its two marker lines) in `page`.
fn region_range(page: &str, name: &str) -> std::ops::Range<usize> {
    let begin = begin_marker(name);
    let end = end_marker(name);
    let start = page
        .find(&begin)
        .unwrap_or_else(|| panic!("man/vaurien.1 lacks the line {:?}", begin.trim_end()))
        + begin.len();
    let stop = page[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("man/vaurien.1 lacks the line {:?}", end.trim_end()))
        + start;
    assert_eq!(
        page.matches(&begin).count(),
        1,
        "{:?} appears more than once",
        begin.trim_end()
    );
    start..stop
}

/// `--flag` as the man page writes it: every dash escaped.
fn roff_flag(flag: &str) -> String {
    flag.replace('-', "\\-")
}

/// Every `--flag` word of `text` (letters, digits and dashes after two dashes).
pub(crate) fn flags_in(text: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(after.len());
        let word = after[..len].trim_end_matches('-');
        if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
            flags.push(format!("--{word}"));
        }
        rest = &after[len..];
    }
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_help_flag_is_in_the_man_page() {
    let out = run_vaurien(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "vaurien --help failed");
    let help = String::from_utf8(out.stdout).expect("--help is UTF-8");
    let flags = flags_in(&help);
    assert!(
        flags.len() > 20,
        "found only {flags:?} in --help; is the parser right?"
    );
    let page = read_man();
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !page.contains(&roff_flag(f)))
        .collect();
    assert!(
        missing.is_empty(),
        "man/vaurien.1 does not mention {missing:?} (written \\-\\-flag in roff)"
    );
}

#[test]
fn generated_regions_match_the_declarations() {
    let mut page = read_man();
    let bless = std::env::var("VAURIEN_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, want) in regions() {
        let range = region_range(&page, name);
        if page[range.clone()] != want {
            stale.push(name);
            page.replace_range(range, &want);
        }
    }
    if stale.is_empty() {
        return;
    }
    if bless {
        // Write a whole new file then rename it, so a test reading the page meanwhile sees
        // either the old page or the new one.
        let path = man_path();
        let tmp = path.with_extension(format!("1.tmp{}", std::process::id()));
        std::fs::write(&tmp, &page).expect("write the man page");
        std::fs::rename(&tmp, &path).expect("replace the man page");
        eprintln!("rewrote the generated regions {stale:?} of man/vaurien.1");
    } else {
        panic!(
            "the generated regions {stale:?} of man/vaurien.1 differ from the option \
             declarations; run `make man` to rewrite them"
        );
    }
}

#[test]
fn groff_renders_the_page_without_warnings() {
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(man_path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run groff ({e}); install groff (apt-get install groff) to check the man page")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert!(stderr.is_empty(), "groff warns:\n{stderr}");
    assert!(stdout.is_empty(), "groff -z printed:\n{stdout}");
}

#[test]
fn the_page_is_ascii() {
    let page = read_man();
    if let Some((n, line)) = page.lines().enumerate().find(|(_, l)| !l.is_ascii()) {
        panic!("man/vaurien.1:{}: not ASCII: {line}", n + 1);
    }
}

#[test]
fn flag_words_are_found() {
    assert_eq!(
        flags_in("a --proxy HOST, --http[=BOOL] (--local) --behavior-NAME-OPTION x -- y ---"),
        ["--behavior-NAME-OPTION", "--http", "--local", "--proxy"]
    );
}

#[test]
fn the_readme_and_the_man_page_show_every_behavior_with_an_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    // The behaviors of every mix written after `--behavior ` in the page.
    let man = read_man();
    let man_examples: std::collections::BTreeSet<&str> = man
        .split("\\-\\-behavior ")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| c.is_whitespace() || c == '\\').next())
        .flat_map(|mix| mix.split(','))
        .map(|part| part.rsplit(':').next().unwrap_or(part))
        .collect();
    for b in Registry::builtin().behaviors() {
        let name = b.name.as_ref();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("the README's behavior table has no row for {name}"));
        assert!(
            row.contains(&format!("`--behavior {name}")) || row.contains(&format!(":{name}")),
            "the README's row for {name} has no example: {row}"
        );
        assert!(
            man_examples.contains(name),
            "the man page has no example of {name} (behaviors in its examples: {man_examples:?})"
        );
    }
}
