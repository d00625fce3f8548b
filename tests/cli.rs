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

/// Runs vaurien with `args`; asserts the exit status, that stderr is one line containing
/// `needle`, and that nothing was printed on stdout (nothing started listening).
fn refused(args: &[&str], status: i32, needle: &str) {
    let out = run_vaurien(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line expected, got {stderr:?}"
    );
    assert!(
        stderr.starts_with("vaurien: ") && stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} started: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    refused(
        &["--nope"],
        2,
        "unrecognized option '--nope' (see 'vaurien --help')",
    );
    refused(
        &["--behavior", "150:delay"],
        2,
        "--behavior: weight '150' is not an integer from 0 to 100",
    );
    refused(
        &["--behavior", "20:nope"],
        2,
        "the 'nope' behavior does not exist (known: abort, bandwidth, blackout, delay",
    );
    refused(&["--behavior", "x:delay"], 2, "weight 'x'");
    refused(
        &["--behavior", "60:delay,50:hang"],
        2,
        "weights add up to 110, over 100",
    );
    refused(
        &["--proxy", "localhost"],
        2,
        "--proxy: 'localhost' is not an address HOST:PORT",
    );
    refused(&["--backend", "host:99999"], 2, "--backend");
    refused(
        &["--timeout", "soon"],
        2,
        "--timeout: 'soon' is not a number",
    );
    refused(&["--max-connections", "0"], 2, "--max-connections");
    refused(
        &["--behavior-delay-sleep", "-2"],
        2,
        "sleep must not be negative",
    );
}

/// Writes an INI file for a test; the files of a run share a directory, removed by the next.
fn ini(name: &str, text: &str) -> String {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| fresh_dir("vaurien-cli").expect("temp dir"));
    let path = dir.join(format!("{name}.ini"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn bad_config_files_exit_1_naming_file_section_and_key() {
    refused(
        &["--config", "/nonexistent/chaos.ini"],
        1,
        "cannot read config file /nonexistent/chaos.ini",
    );
    let f = ini("malformed", "[vaurien\nbackend = x:1\n");
    refused(&["--config", &f], 1, &f);
    let f = ini("key", "[vaurien]\nbakend = localhost:1\n");
    refused(&["--config", &f], 1, "[vaurien] bakend: unknown key");
    let f = ini("section", "[vaurien]\n[chaos]\nx = 1\n");
    refused(&["--config", &f], 1, "[chaos]: unknown section");
    let f = ini("type", "[behavior:delay]\nsleep = two\n");
    refused(
        &["--config", &f],
        1,
        "[behavior:delay] sleep: 'two' is not a number",
    );
    let f = ini("mix", "[vaurien]\nbehavior = 150:delay\n");
    refused(&["--config", &f], 1, "[vaurien] behavior: weight '150'");
}

#[test]
fn a_port_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refused(&["--proxy", &addr], 1, &format!("cannot listen on {addr}"));
}

#[test]
fn the_command_line_wins_over_the_file() {
    let backend = Backend::echo();
    let f = ini(
        "precedence",
        &format!(
            "[vaurien]\nbackend = {}\nbehavior = blackout\n",
            backend.arg()
        ),
    );
    let v = ProxyProcess::start(&["--config", &f, "--behavior", "dummy"]);
    let mut c = v.connect();
    std::io::Write::write_all(&mut c, b"hi").unwrap();
    let mut buf = [0u8; 2];
    std::io::Read::read_exact(&mut c, &mut buf)
        .expect("dummy from the command line, not blackout from the file");
    assert_eq!(&buf, b"hi");
}

#[test]
fn the_packages_example_ini_starts_a_proxy_with_its_backend_given() {
    let echo = Backend::echo();
    let ini = concat!(env!("CARGO_MANIFEST_DIR"), "/src/dist/vaurien.ini");
    let p = ProxyProcess::start(&[
        "--config",
        ini,
        "--backend",
        &echo.arg(),
        "--http-port",
        "0",
    ]);
    let (status, mix) = api(p.http_addr(), "GET", "/behavior", "", "");
    assert_eq!(
        (status, mix),
        (200, serde_json::json!({"behavior": "20:delay,80:dummy"}))
    );
    let mut client = connect(p.addr);
    assert_eq!(exchange(&mut client, b"through"), b"through");
}

#[test]
fn completions_name_their_shell() {
    for program in [vaurien_bin(), env!("CARGO_BIN_EXE_vaurienctl")] {
        let out = std::process::Command::new(program)
            .args(["--completions", "tcsh"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{program}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("'tcsh' is not bash, zsh or fish"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
