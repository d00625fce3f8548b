//! A custom behavior plugged into the stock command line.
//!
//! `flip` reverses the bytes of every response chunk going to the client. Run it as
//! `vaurien` with one more behavior:
//!
//! ```text
//! cargo run --example custom_behavior -- --backend 127.0.0.1:6379 --behavior 10:flip
//! ```

use std::sync::Arc;

use vaurien::behavior::{Behavior, BehaviorSpec, Call, Direction, Verdict};
use vaurien::opts::{BadOption, OptSpec, Values};
use vaurien::Registry;

/// Reverses response bytes, for `percent` of the calls it is drawn for.
#[derive(Debug)]
struct Flip {
    only_text: bool,
}

impl Behavior for Flip {
    fn after(&self, call: &mut Call<'_>) -> Verdict {
        if call.direction == Direction::ToClient && (!self.only_text || call.data.is_ascii()) {
            call.data.reverse();
        }
        Verdict::Forward
    }
}

/// Declared once: the option becomes `--behavior-flip-only-text`, an INI key and an API key.
const FLIP_OPTIONS: &[OptSpec] = &[OptSpec::bool(
    "only_text",
    "false",
    "flip only responses that are ASCII text",
)];

fn build(values: &Values) -> Result<Arc<dyn Behavior>, BadOption> {
    Ok(Arc::new(Flip {
        only_text: values.bool("only_text"),
    }))
}

fn main() {
    let registry = Registry::builtin().with_behavior(BehaviorSpec {
        name: "flip".into(),
        aliases: &[],
        summary: "reverses the bytes of each response chunk",
        options: FLIP_OPTIONS,
        build,
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vaurien::main_with(registry, &args));
}
