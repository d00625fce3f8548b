//! The memcached text protocol: commands with their data blocks, or the reply to one of a
//! set of commands (each reply shape).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaurien::protocol::memcache::MemcacheSession;
use vaurien::protocol::Framing;
use vaurien_fuzz::{replies, requests, split, Forwarding, Input};

const COMMANDS: [&[u8]; 10] = [
    b"get k\r\n",
    b"gets a b c\r\n",
    b"set k 0 0 1\r\nx\r\n",
    b"stats\r\n",
    b"mg k v\r\n",
    b"mn\r\n",
    b"lru_crawler metadump all\r\n",
    b"lru_crawler mgdump all\r\n",
    b"shutdown\r\n",
    b"delete k\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, cap, rest)) = split(data) else { return };
    let mut session = MemcacheSession::default();
    let mut input = Input::new(rest, cap);
    if selector & 1 == 0 {
        requests(&mut session, &mut input, Forwarding::Exact);
        return;
    }
    let command = COMMANDS[usize::from(selector >> 1) % COMMANDS.len()];
    let mut head = Vec::new();
    let Ok(Some(req)) = session.read_request(&mut &command[..], &mut head) else {
        panic!("a fixed command did not parse");
    };
    replies(&mut session, &req, &mut input, Forwarding::Exact);
});
