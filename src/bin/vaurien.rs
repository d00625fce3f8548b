//! `vaurien`, the chaos TCP proxy.

fn main() {
    let mut all = std::env::args();
    let program = all.next().unwrap_or_default();
    let mut args: Vec<String> = all.collect();
    // Run as `toxiproxy-server` (a symlink): Toxiproxy's flags, its config file.
    let name = std::path::Path::new(&program).file_name();
    if name.is_some_and(|n| n == "toxiproxy-server") {
        args.insert(0, "--toxiproxy".to_string());
    }
    std::process::exit(vaurien::main_with(vaurien::Registry::builtin(), &args));
}
