//! SMTP: command lines, messages after DATA, BDAT chunks, or replies (multi-line) to the
//! greeting, DATA, STARTTLS or EHLO.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::protocol::smtp::SmtpSession;
use vaurien::protocol::{Framing, Request};
use vaurien_fuzz::{replies, requests, split, Forwarding, Input};

fuzz_target!(|data: &[u8]| {
    let Some((selector, cap, rest)) = split(data) else { return };
    let mut session = SmtpSession::default();
    let mut input = Input::new(rest, cap);
    match selector % 5 {
        0 => {
            requests(&mut session, &mut input, Forwarding::Exact);
        }
        1 => {
            // A message: DATA answered by 354 first.
            let mut head = Vec::new();
            let data = session.read_request(&mut &b"DATA\r\n"[..], &mut head);
            let Ok(Some(req)) = data else { panic!("DATA did not parse") };
            head.clear();
            let go = session.read_response(&req, &mut &b"354 go\r\n"[..], &mut head);
            assert!(go.is_ok());
            requests(&mut session, &mut input, Forwarding::Exact);
        }
        n => {
            let command: &[u8] = [&b"DATA\r\n"[..], b"STARTTLS\r\n", b"EHLO x\r\n"][usize::from(n - 2)];
            let mut head = Vec::new();
            let req = if n == 2 && selector & 0x80 != 0 {
                Request::greeting()
            } else {
                match session.read_request(&mut &command[..], &mut head) {
                    Ok(Some(req)) => req,
                    _ => panic!("a fixed command did not parse"),
                }
            };
            replies(&mut session, &req, &mut input, Forwarding::Exact);
        }
    }
});
