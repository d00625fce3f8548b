//! `vaurien`, the chaos TCP proxy.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vaurien::main_with(vaurien::Registry::builtin(), &args));
}
