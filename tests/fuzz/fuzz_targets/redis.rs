//! RESP: commands (multibulk and inline) or replies of every RESP2 and RESP3 type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::protocol::redis::RedisSession;
use vaurien::protocol::Request;
use vaurien_fuzz::{replies, requests, split, Forwarding, Input};

fuzz_target!(|data: &[u8]| {
    let Some((selector, cap, rest)) = split(data) else { return };
    let mut session = RedisSession::default();
    let mut input = Input::new(rest, cap);
    if selector & 1 == 0 {
        requests(&mut session, &mut input, Forwarding::Exact);
    } else {
        replies(&mut session, &Request::default(), &mut input, Forwarding::Exact);
    }
});
