//! The command line as a user meets it: `--help`, `--version`, bad input and exit statuses.

use crate::support::*;

#[test]
fn help_and_version_exit_zero() {
    let out = run_vaurien(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--behavior-delay-sleep SECONDS"), "{help}");
    let out = run_vaurien(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("vaurien "));
}
