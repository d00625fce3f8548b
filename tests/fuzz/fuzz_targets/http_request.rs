//! HTTP requests: heads, bodies (length, chunked, trailers), pipelines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::protocol::http::HttpSession;
use vaurien_fuzz::{requests, split, Forwarding, Input};

/// Heads the proxy edits on their way (RFC 9112 §6.1, 100-continue).
const EDITED: Forwarding = Forwarding::ExactUnless(&["expect", "transfer-encoding"]);

fuzz_target!(|data: &[u8]| {
    let Some((_, cap, rest)) = split(data) else { return };
    let mut session = HttpSession::new(None);
    requests(&mut session, &mut Input::new(rest, cap), EDITED);
});
