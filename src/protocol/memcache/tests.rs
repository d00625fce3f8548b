use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
use super::*;
use crate::net::HostPort;
use crate::opts::Values;

#[test]
fn a_call_allocates_nothing_once_the_session_is_warm() {
    let mut session = MemcacheSession::default();
    let mut head = Vec::with_capacity(256);
    let call = |session: &mut MemcacheSession, head: &mut Vec<u8>, cmd: &[u8], reply: &[u8]| {
        head.clear();
        let req = session.read_request(&mut &cmd[..], head).unwrap().unwrap();
        head.clear();
        session.read_response(&req, &mut &reply[..], head).unwrap();
        assert_eq!(&head[..], reply);
    };
    let get = (
        &b"get key\r\n"[..],
        &b"VALUE key 0 5\r\nhello\r\nEND\r\n"[..],
    );
    let set = (&b"set key 0 0 5\r\nhello\r\n"[..], &b"STORED\r\n"[..]);
    let (_, warm) = crate::sys::alloc_count::cold_then_warm(|| {
        call(&mut session, &mut head, get.0, get.1);
        call(&mut session, &mut head, set.0, set.1);
    });
    assert_eq!(warm, 0, "allocations in 100 get and 100 set calls");
    // Past the words held on the stack, a long multi-key get still reads.
    let keys: Vec<String> = (0..INLINE_WORDS * 2).map(|i| format!("k{i}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    let req = session
        .read_request(&mut line.as_bytes(), &mut head)
        .unwrap()
        .unwrap();
    assert_eq!(req.name, "get");
    let mut reply = Vec::new();
    for k in &keys {
        reply.extend_from_slice(format!("VALUE {k} 0 1\r\nx\r\n").as_bytes());
    }
    reply.extend_from_slice(b"END\r\n");
    head.clear();
    session
        .read_response(&req, &mut &reply[..], &mut head)
        .unwrap();
    assert_eq!(head, reply);
}

/// Reads one request from `input` on a new session.
fn request(input: &[u8]) -> Parsed {
    request_in(&mut MemcacheSession::default(), input)
}

/// The request parsed from a whole input, which it must use up.
fn whole(input: &[u8]) -> Request {
    let (req, fwd, rest) = request(input).unwrap().unwrap();
    assert_eq!(fwd, input);
    assert!(rest.is_empty(), "left {:?}", show(&rest));
    req
}

/// The request read from a whole `input` on session `s`, and the reply shapes `s` owes then.
fn whole_on(s: &mut MemcacheSession, input: &[u8]) -> (Request, Vec<Shape>) {
    let (req, fwd, rest) = request_in(s, input).unwrap().unwrap();
    assert_eq!(fwd, input);
    assert!(rest.is_empty(), "left {:?}", show(&rest));
    (req, s.owed.iter().copied().collect())
}

/// The reply to the command line `cmd` read from `input`: bytes forwarded, input left.
fn reply(cmd: &[u8], input: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut s = MemcacheSession::default();
    let (req, _, _) = request_in(&mut s, cmd).unwrap().unwrap();
    reply_in(&mut s, &req, input).map(|(_, fwd, rest)| (fwd, rest))
}

/// Asserts the reply to `cmd` is exactly `input` (followed by `next`, left unread).
fn complete_reply(cmd: &[u8], input: &[u8]) {
    let next = b"END\r\n";
    let mut all = input.to_vec();
    all.extend_from_slice(next);
    let (fwd, rest) = reply(cmd, &all).unwrap();
    assert_eq!(show(&fwd), show(input));
    assert_eq!(rest, next);
}

/// Meta commands, quiet batches and pipelines.
mod meta;

#[test]
fn retrieval_commands() {
    for line in [
        &b"get foo\r\n"[..],
        b"gets foo bar baz\r\n",
        b"gat 100 foo\r\n",
        b"gats -1 foo bar\r\n",
        b"get foo\n",
        b"  get   foo  \r\n",
    ] {
        let (req, owed) = whole_on(&mut MemcacheSession::default(), line);
        assert!(req.expects_response && !req.close && !req.tunnel);
        assert_eq!(owed, [Shape::Retrieval]);
    }
    assert_eq!(whole(b"gets a b\r\n").name, "gets");
    complete_reply(b"get foo\r\n", b"END\r\n");
    complete_reply(b"get foo\r\n", b"VALUE foo 0 3\r\nbar\r\nEND\r\n");
    complete_reply(
        b"gets a b c\r\n",
        b"VALUE a 5 2 10\r\nxy\r\nVALUE c 0 0 11\r\n\r\nEND\r\n",
    );
    // Data that looks like protocol is data.
    complete_reply(
        b"get k\r\n",
        b"VALUE k 0 13\r\nEND\r\nVALUE \r\n\r\nEND\r\n",
    );
    // An error ends the reply, even after some values.
    complete_reply(
        b"get k\r\n",
        b"VALUE k 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n",
    );
    complete_reply(b"get k\r\n", b"CLIENT_ERROR bad command line format\r\n");
    complete_reply(b"get k\r\n", b"ERROR\r\n");
}

#[test]
fn retrieval_reply_errors() {
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0 3\r\nbarX\r\nEND\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0 3\r\nba")),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0 -3\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0 999999999999\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"STORED\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"get k\r\n", b"VALUE k 0 1\r\nx\r\n")),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(kind(reply(b"get k\r\n", b"")), io::ErrorKind::UnexpectedEof);
    let long = vec![b'x'; MAX_REPLY_LINE + 1];
    assert_eq!(kind(reply(b"get k\r\n", &long)), io::ErrorKind::InvalidData);
}

#[test]
fn storage_commands() {
    for (input, noreply) in [
        (&b"set foo 0 0 3\r\nbar\r\n"[..], false),
        (b"add foo 4294967295 -1 0\r\n\r\n", false),
        (b"replace foo 1 100 5 noreply\r\nab\r\nc\r\n", true),
        (b"append foo 0 0 1\r\nx\r\n", false),
        (b"prepend foo 0 0 1 noreply\r\nx\r\n", true),
        (b"cas foo 0 0 3 12345\r\nbar\r\n", false),
        (b"cas foo 0 0 3 12345 noreply\r\nbar\r\n", true),
        // An extra last word that is not noreply is ignored, as memcached does.
        (b"set foo 0 0 3 whatever\r\nbar\r\n", false),
    ] {
        let req = whole(input);
        assert_eq!(req.expects_response, !noreply, "{}", show(input));
        assert_eq!(req.body, Body::None);
    }
    complete_reply(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    complete_reply(b"cas a 0 0 1 1\r\nx\r\n", b"EXISTS\r\n");
    complete_reply(b"add a 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    complete_reply(
        b"set a 0 0 1\r\nx\r\n",
        b"SERVER_ERROR out of memory storing object\r\n",
    );
}

#[test]
fn storage_errors() {
    for (input, want) in [
        // The data block must end with CRLF.
        (
            &b"set foo 0 0 3\r\nbarX\r\n"[..],
            io::ErrorKind::InvalidData,
        ),
        (b"set foo 0 0 3\r\nbar\nX", io::ErrorKind::InvalidData),
        // Cut short.
        (b"set foo 0 0 3\r\nba", io::ErrorKind::UnexpectedEof),
        (b"set foo 0 0 3\r\n", io::ErrorKind::UnexpectedEof),
        (b"set foo 0 0 3", io::ErrorKind::UnexpectedEof),
        // Bad numbers and word counts, which memcached would not swallow the block for.
        (b"set foo 0 0 -1\r\n\r\n", io::ErrorKind::InvalidData),
        (b"set foo 0 0 x\r\n\r\n", io::ErrorKind::InvalidData),
        (b"set foo x 0 1\r\nx\r\n", io::ErrorKind::InvalidData),
        (
            b"set foo 4294967296 0 1\r\nx\r\n",
            io::ErrorKind::InvalidData,
        ),
        (b"set foo 0 x 1\r\nx\r\n", io::ErrorKind::InvalidData),
        (b"set foo 0 0\r\n", io::ErrorKind::InvalidData),
        (
            b"set foo 0 0 1 noreply extra\r\nx\r\n",
            io::ErrorKind::InvalidData,
        ),
        (b"cas foo 0 0 1\r\nx\r\n", io::ErrorKind::InvalidData),
        (b"cas foo 0 0 1 x\r\nx\r\n", io::ErrorKind::InvalidData),
        // Oversized for memcached's int, and a 64 MiB one, which is streamed.
        (b"set foo 0 0 2147483646\r\n", io::ErrorKind::InvalidData),
        (b"set foo 0 0 67108865\r\n", io::ErrorKind::UnexpectedEof),
        (
            b"set foo 0 0 99999999999999999999999\r\n",
            io::ErrorKind::InvalidData,
        ),
    ] {
        assert_eq!(kind(request(input)), want, "{}", show(input));
    }
    let key = vec![b'k'; MAX_KEY];
    let mut ok = b"set ".to_vec();
    ok.extend_from_slice(&key);
    ok.extend_from_slice(b" 0 0 1\r\nx\r\n");
    whole(&ok);
    let mut long = b"set k".to_vec();
    long.extend_from_slice(&key);
    long.extend_from_slice(b" 0 0 1\r\nx\r\n");
    assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
    let mut get = b"get a ".to_vec();
    get.extend_from_slice(&key);
    get.extend_from_slice(b"k\r\n");
    assert_eq!(kind(request(&get)), io::ErrorKind::InvalidData);
}

#[test]
fn the_binary_protocol_is_not_framed_and_only_starts_a_connection() {
    let get = b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00k";
    assert_eq!(kind(request(get)), io::ErrorKind::InvalidData);
    // Later in a text connection, 0x80 is a byte of a text line: an unknown command.
    let mut s = MemcacheSession::default();
    request_in(&mut s, b"version\r\n").unwrap().unwrap();
    let e = request_in(&mut s, b"\x80x\r\n").unwrap_err();
    assert!(e.to_string().contains("unknown memcache command"), "{e}");
}

#[test]
fn a_command_that_cannot_be_framed_keeps_every_byte_it_consumed() {
    for input in [
        &b"foo\r\n"[..],
        b"set k 0 0 blah\r\nhello\r\n",
        b"set k 0 0 3\r\nabcXY",
        b"cas k 0 0 1 notanumber\r\nx\r\n",
    ] {
        let mut s = MemcacheSession::default();
        let mut r = input;
        let mut head = Vec::new();
        let e = s.read_request(&mut r, &mut head).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{}", show(input));
        let consumed = input.len() - r.len();
        assert_eq!(head, &input[..consumed], "{}", show(input));
    }
}

#[test]
fn large_blocks_are_streamed() {
    let data = vec![b'\n'; 200_000];
    let mut input = b"set big 0 0 200000\r\n".to_vec();
    input.extend_from_slice(&data);
    input.extend_from_slice(b"\r\nget big\r\n");
    let mut s = MemcacheSession::default();
    let mut r = &input[..];
    let mut head = Vec::new();
    let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
    assert_eq!(head, b"set big 0 0 200000\r\n");
    assert_eq!(req.body, Body::Length(200_002));
    let mut body = Vec::new();
    s.copy_body(req.body, &mut r, &mut body).unwrap();
    assert_eq!(body.len(), 200_002);
    assert_eq!(r, b"get big\r\n");

    // A bad end of a streamed block is caught too.
    let mut bad = b"set big 0 0 200000\r\n".to_vec();
    bad.extend_from_slice(&data);
    bad.extend_from_slice(b"XX");
    assert_eq!(kind(request(&bad)), io::ErrorKind::InvalidData);
    bad.truncate(bad.len() - 10);
    assert_eq!(kind(request(&bad)), io::ErrorKind::UnexpectedEof);

    // A reply with a large value, then small ones: head, then the rest as it arrives.
    let mut rep = b"VALUE a 0 3\r\nabc\r\nVALUE big 0 200000\r\n".to_vec();
    rep.extend_from_slice(&data);
    rep.extend_from_slice(b"\r\nVALUE c 0 1\r\nc\r\nEND\r\nNEXT");
    let mut s = MemcacheSession::default();
    let (req, _, _) = request_in(&mut s, b"get a big c\r\n").unwrap().unwrap();
    let mut r = &rep[..];
    let mut head = Vec::new();
    let resp = s.read_response(&req, &mut r, &mut head).unwrap();
    assert_eq!(head, b"VALUE a 0 3\r\nabc\r\nVALUE big 0 200000\r\n");
    assert_eq!(resp.body, Body::Length(200_002));
    s.copy_body(resp.body, &mut r, &mut head).unwrap();
    assert_eq!(head, &rep[..rep.len() - 4]);
    assert_eq!(r, b"NEXT");

    // Many small values: the head stops at 1 MiB, the rest is copied.
    let mut rep = Vec::new();
    for i in 0..40_000 {
        rep.extend_from_slice(format!("VALUE k{i} 0 20\r\n").as_bytes());
        rep.extend_from_slice(&[b'v'; 20]);
        rep.extend_from_slice(b"\r\n");
    }
    rep.extend_from_slice(b"END\r\n");
    let mut s = MemcacheSession::default();
    let (req, _, _) = request_in(&mut s, b"get k\r\n").unwrap().unwrap();
    let mut r = &rep[..];
    let mut head = Vec::new();
    let resp = s.read_response(&req, &mut r, &mut head).unwrap();
    assert!(head.len() <= MAX_HEAD + MAX_REPLY_LINE, "{}", head.len());
    assert!(matches!(resp.body, Body::Length(_)));
    s.copy_body(resp.body, &mut r, &mut head).unwrap();
    assert_eq!(head, rep);
    assert!(r.is_empty());
}

#[test]
fn other_commands() {
    for (input, expects, name) in [
        (&b"delete foo\r\n"[..], true, "delete"),
        (b"delete foo noreply\r\n", false, "delete"),
        (b"delete foo 0\r\n", true, "delete"),
        (b"incr n 1\r\n", true, "incr"),
        (b"decr n 5 noreply\r\n", false, "decr"),
        (b"touch foo 10\r\n", true, "touch"),
        (b"touch foo 10 noreply\r\n", false, "touch"),
        (b"flush_all\r\n", true, "flush_all"),
        (b"flush_all 10\r\n", true, "flush_all"),
        (b"flush_all noreply\r\n", false, "flush_all"),
        (b"flush_all 0 noreply\r\n", false, "flush_all"),
        (b"version\r\n", true, "version"),
        (b"verbosity 1\r\n", true, "verbosity"),
        (b"verbosity 1 noreply\r\n", false, "verbosity"),
        (b"cache_memlimit 100\r\n", true, "cache_memlimit"),
        (b"slabs automove 1\r\n", true, "slabs"),
        (b"lru_crawler crawl all\r\n", true, "lru_crawler"),
        (b"\r\n", true, "(empty)"),
    ] {
        let req = whole(input);
        assert_eq!(req.expects_response, expects, "{}", show(input));
        assert_eq!(req.name, name);
        assert!(!req.close && !req.tunnel);
    }
    let quit = whole(b"quit\r\n");
    assert!(quit.close && !quit.expects_response);
    assert!(whole(b"watch\r\n").tunnel);
    assert!(whole(b"watch fetchers mutations\r\n").tunnel);
    complete_reply(b"delete foo\r\n", b"DELETED\r\n");
    complete_reply(b"incr n 1\r\n", b"42\r\n");
    complete_reply(b"touch foo 1\r\n", b"TOUCHED\r\n");
    complete_reply(b"version\r\n", b"VERSION 1.6.18\r\n");
    complete_reply(b"flush_all\r\n", b"OK\r\n");
    complete_reply(
        b"lru_crawler metadump all\r\n",
        b"key=a exp=-1 la=1 cas=2 fetch=no cls=1 size=63\r\nEND\r\n",
    );
    complete_reply(
        b"lru_crawler metadump all\r\n",
        b"BUSY currently processing\r\n",
    );
    complete_reply(b"lru_crawler mgdump 1\r\n", b"mg a\r\nmg b\r\nEN\r\n");
    for input in [
        &b"delete\r\n"[..],
        b"delete a 0 noreply x\r\n",
        b"incr n\r\n",
        b"touch k\r\n",
        b"version x\r\n",
        b"quit now\r\n",
        b"flush_all 1 2 3\r\n",
        b"verbosity\r\n",
    ] {
        assert_eq!(
            kind(request(input)),
            io::ErrorKind::InvalidData,
            "{}",
            show(input)
        );
    }
}

#[test]
fn stats() {
    let (_, owed) = whole_on(&mut MemcacheSession::default(), b"stats\r\n");
    assert_eq!(owed, [Shape::Stats]);
    complete_reply(b"stats\r\n", b"STAT pid 1\r\nSTAT uptime 10\r\nEND\r\n");
    complete_reply(b"stats items\r\n", b"END\r\n");
    complete_reply(b"stats reset\r\n", b"RESET\r\n");
    complete_reply(b"stats detail on\r\n", b"OK\r\n");
    complete_reply(
        b"stats detail dump\r\n",
        b"PREFIX a get 1 hit 1 set 0 del 0\r\nEND\r\n",
    );
    complete_reply(
        b"stats cachedump 1 1\r\n",
        b"ITEM foo [3 b; 0 s]\r\nEND\r\n",
    );
    complete_reply(b"stats nonsense\r\n", b"ERROR\r\n");
    assert_eq!(
        kind(reply(b"stats\r\n", b"STAT pid 1\r\nHELLO\r\nEND\r\n")),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        kind(reply(b"stats\r\n", b"STAT pid 1\r\n")),
        io::ErrorKind::UnexpectedEof
    );
}

#[test]
fn shutdown_may_close() {
    let mut s = MemcacheSession::default();
    let (req, _, _) = request_in(&mut s, b"shutdown\r\n").unwrap().unwrap();
    let (resp, fwd, _) = reply_in(&mut s, &req, b"").unwrap();
    assert!(resp.close && fwd.is_empty());
    let (resp, fwd, _) = reply_in(&mut s, &req, b"ERROR: shutdown not enabled\r\n").unwrap();
    assert!(!resp.close);
    assert_eq!(fwd, b"ERROR: shutdown not enabled\r\n");
}

#[test]
fn garbage_and_limits() {
    assert!(request(b"").unwrap().is_none());
    for input in [
        &b"\x00\x01\x02\xff\r\n"[..],
        b"hello world\r\n",
        b"GET foo\r\n",
        b"get fo\x01o\r\n",
        b"get foo\rbar\r\n",
        b"*1\r\n$4\r\nPING\r\n",
    ] {
        assert_eq!(
            kind(request(input)),
            io::ErrorKind::InvalidData,
            "{}",
            show(input)
        );
    }
    assert_eq!(kind(request(b"get foo")), io::ErrorKind::UnexpectedEof);
    // A command line is at most 2 KiB, a multi-get line much longer.
    let long = vec![b'a'; 3000];
    assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
    let mut delete = b"delete ".to_vec();
    delete.extend_from_slice(&[b' '; 2100]);
    delete.extend_from_slice(b"a\r\n");
    assert_eq!(kind(request(&delete)), io::ErrorKind::InvalidData);
    let mut get = b"get".to_vec();
    for i in 0..2000 {
        get.extend_from_slice(format!(" key{i}").as_bytes());
    }
    get.extend_from_slice(b"\r\n");
    assert!(get.len() > MAX_LINE);
    assert_eq!(whole(&get).name, "get");
    let mut huge = b"get ".to_vec();
    huge.extend_from_slice(&vec![b'k'; MAX_GET_LINE]);
    assert_eq!(kind(request(&huge)), io::ErrorKind::InvalidData);
}

#[test]
fn error_replies() {
    let mut s = MemcacheSession::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let (get, _) = whole_on(&mut s, b"get a\r\n");
    let reply = s.error_reply(&get, &mut rng);
    assert!(s.owed.is_empty(), "the failed call owes no reply any more");
    assert_eq!(
        reply.bytes,
        b"SERVER_ERROR vaurien: injected error on get\r\n"
    );
    assert!(!reply.close);
    for silent in [
        &b"set a 0 0 1 noreply\r\nx\r\n"[..],
        b"quit\r\n",
        b"incr a 1 noreply\r\n",
    ] {
        let (req, owed) = whole_on(&mut s, silent);
        assert!(owed.is_empty(), "no reply owed to {:?}", show(silent));
        assert!(s.error_reply(&req, &mut rng).bytes.is_empty());
    }
    let (quiet, _) = whole_on(&mut s, b"mg a v q\r\n");
    assert!(s
        .error_reply(&quiet, &mut rng)
        .bytes
        .starts_with(b"SERVER_ERROR vaurien"));
}

#[test]
fn spec_builds() {
    let spec = spec();
    let proto = (spec.build)(&Values::defaults(spec.options)).unwrap();
    assert_eq!(proto.name(), "memcache");
    assert!(!proto.tcp_options().keep_alive);
    let backend = HostPort::parse("127.0.0.1:11211").unwrap();
    assert!(proto.framing(&backend).is_some());
}
