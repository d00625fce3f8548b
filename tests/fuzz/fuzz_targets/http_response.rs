//! HTTP responses to a GET, a HEAD, a CONNECT or an HTTP/1.0 request: interim responses,
//! bodies of every framing, upgrades.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::protocol::http::HttpSession;
use vaurien::protocol::Framing;
use vaurien_fuzz::{replies, split, Forwarding, Input};

const REQUESTS: [&[u8]; 4] = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, cap, rest)) = split(data) else { return };
    let mut session = HttpSession::new(None);
    let mut head = Vec::new();
    let request = REQUESTS[usize::from(selector) % REQUESTS.len()];
    let Ok(Some(req)) = session.read_request(&mut &request[..], &mut head) else {
        panic!("a fixed request did not parse");
    };
    let rule = Forwarding::ExactUnless(&["transfer-encoding"]);
    replies(&mut session, &req, &mut Input::new(rest, cap), rule);
});
