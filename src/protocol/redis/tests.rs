use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
use super::*;
use crate::net::HostPort;
use crate::opts::Values;
use std::io::BufReader;

#[test]
fn a_call_allocates_nothing_once_the_session_is_warm() {
    let mut session = RedisSession::default();
    let mut head = Vec::with_capacity(256);
    let call = |session: &mut RedisSession, head: &mut Vec<u8>| {
        head.clear();
        let req = session
            .read_request(&mut &b"*2\r\n$3\r\nget\r\n$3\r\nkey\r\n"[..], head)
            .unwrap()
            .unwrap();
        head.clear();
        let reply = b"*2\r\n$5\r\nhello\r\n:1\r\n";
        session.read_response(&req, &mut &reply[..], head).unwrap();
        assert_eq!(&head[..], reply);
    };
    let (cold, warm) = crate::sys::alloc_count::cold_then_warm(|| call(&mut session, &mut head));
    assert!(cold > 0, "the first call sets up the parse stack");
    assert_eq!(warm, 0, "allocations in 100 GET calls");
}

/// Reads one request from `input` on a new session, as the driver does (head, then body).
fn request(input: &[u8]) -> Parsed {
    request_in(&mut RedisSession::default(), input)
}

/// Reads one reply from `input`; returns the bytes forwarded and the input left.
fn reply(input: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
    reply_in(&mut RedisSession::default(), &Request::default(), input)
        .map(|(_, fwd, rest)| (fwd, rest))
}

/// The same through a reader that hands out one byte at a time.
fn reply_bytewise(input: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = RedisSession::default();
    let mut r = BufReader::with_capacity(1, input);
    let mut head = Vec::new();
    let resp = s.read_response(&Request::default(), &mut r, &mut head)?;
    s.copy_body(resp.body, &mut r, &mut head)?;
    Ok(head)
}

/// Asserts `msg` is read as exactly one whole reply, also when followed by more.
fn whole_reply(msg: &[u8]) {
    assert_eq!(reply(msg).unwrap(), (msg.to_vec(), vec![]), "{}", show(msg));
    let mut two = msg.to_vec();
    two.extend_from_slice(b"+NEXT\r\n");
    assert_eq!(
        reply(&two).unwrap(),
        (msg.to_vec(), b"+NEXT\r\n".to_vec()),
        "{}",
        show(msg)
    );
    assert_eq!(reply_bytewise(msg).unwrap(), msg, "{}", show(msg));
}

fn bad_reply(msg: &[u8]) {
    assert_eq!(
        kind(reply(msg)),
        io::ErrorKind::InvalidData,
        "{}",
        show(msg)
    );
}

fn truncated_reply(msg: &[u8]) {
    assert_eq!(
        kind(reply(msg)),
        io::ErrorKind::UnexpectedEof,
        "{}",
        show(msg)
    );
}

#[test]
fn resp2_scalars() {
    for msg in [
        &b"+OK\r\n"[..],
        b"+\r\n",
        b"-ERR unknown command 'FOO'\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b":0\r\n",
        b":-42\r\n",
        b":9223372036854775807\r\n",
        b"$5\r\nhello\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"$4\r\na\r\nb\r\n",
        b"$3\r\n\x00\xff\n\r\n",
    ] {
        whole_reply(msg);
    }
}

#[test]
fn resp2_arrays_and_nulls() {
    for msg in [
        &b"*0\r\n"[..],
        b"*-1\r\n",
        b"*2\r\n$3\r\nfoo\r\n$-1\r\n",
        b"*3\r\n:1\r\n:2\r\n:3\r\n",
        b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
        b"*1\r\n*1\r\n*1\r\n*0\r\n",
        b"*3\r\n$1\r\na\r\n*-1\r\n$1\r\nb\r\n",
    ] {
        whole_reply(msg);
    }
}

#[test]
fn exec_replies_with_nested_arrays() {
    // MULTI; SET; INCR; LRANGE; HGETALL; GET missing; failing command; EXEC
    let exec = b"*6\r\n+OK\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*4\r\n$1\r\nf\r\n$1\r\nv\r\n\
$1\r\ng\r\n$1\r\nw\r\n$-1\r\n-WRONGTYPE Operation against a key\r\n";
    whole_reply(exec);
    whole_reply(b"*-1\r\n"); // EXEC after a WATCHed key changed
                             // XREAD: array of [stream, array of [id, array of fields]]
    whole_reply(b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

#[test]
fn resp3_types() {
    for msg in [
        &b"_\r\n"[..],
        b",3.14\r\n",
        b",-1.5e10\r\n",
        b",inf\r\n",
        b",-inf\r\n",
        b",nan\r\n",
        b"#t\r\n",
        b"#f\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"(-1\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        b"%0\r\n",
        b"~3\r\n+a\r\n+b\r\n#t\r\n",
        b"*2\r\n%1\r\n$1\r\nk\r\n~1\r\n_\r\n,1.0\r\n",
        // HELLO 3
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
    ] {
        whole_reply(msg);
    }
}

#[test]
fn attributes_belong_to_the_reply_they_precede() {
    let msg = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
*2\r\n:2039123\r\n:9543892\r\n";
    whole_reply(msg);
    // inside an aggregate, too
    whole_reply(b"*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n");
    whole_reply(b"|0\r\n+OK\r\n");
}

#[test]
fn a_push_before_a_reply_travels_with_it() {
    let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    let mut msg = push.to_vec();
    msg.extend_from_slice(b"$1\r\nv\r\n");
    whole_reply(&msg);
    // a push nested in an aggregate is an ordinary element
    whole_reply(b"*1\r\n>1\r\n+x\r\n");
}

#[test]
fn streamed_strings_and_aggregates() {
    whole_reply(b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n");
    whole_reply(b"*?\r\n:1\r\n:2\r\n.\r\n");
    whole_reply(b"%?\r\n+a\r\n:1\r\n.\r\n");
    whole_reply(b"*?\r\n*?\r\n.\r\n$?\r\n;0\r\n.\r\n");
    bad_reply(b"$?\r\n;x\r\n");
    bad_reply(b"$?\r\n+no\r\n");
    bad_reply(b"*?\r\n.x\r\n");
}

#[test]
fn malformed_replies_are_invalid_data() {
    for msg in [
        &b"?what\r\n"[..],
        b"hello\r\n",
        b"\r\n",
        b"+OK\n",
        b":12a\r\n",
        b":\r\n",
        b"#x\r\n",
        b"_x\r\n",
        b",abc\r\n",
        b"(12x\r\n",
        b"$-2\r\n",
        b"$abc\r\n",
        b"$\r\n",
        b"$+5\r\nhello\r\n",
        b"*-2\r\n",
        b"*x\r\n",
        b"*1\r\n\r\n",
        b"%-5\r\n",
        b";3\r\nabc\r\n",
        b".\r\n",
    ] {
        bad_reply(msg);
    }
}

#[test]
fn truncated_replies_are_unexpected_eof() {
    for msg in [
        &b""[..],
        b"+OK",
        b"+OK\r",
        b"$5\r\nhel",
        b"$5\r\nhello",
        b"$5\r\nhello\r",
        b"*2\r\n:1\r\n",
        b"*2\r\n*2\r\n:1\r\n",
        b"|1\r\n+a\r\n+b\r\n",
        b">1\r\n+a\r\n",
        b"$100000\r\nabc",
    ] {
        truncated_reply(msg);
    }
}

#[test]
fn the_two_bytes_after_a_bulk_string_are_not_checked_as_the_server_does_not() {
    let (fwd, rest) = reply(b"$5\r\nhelloXY+NEXT\r\n").unwrap();
    assert_eq!(
        (&fwd[..], &rest[..]),
        (&b"$5\r\nhelloXY"[..], &b"+NEXT\r\n"[..])
    );
    let (req, fwd, rest) = request(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(req.name, "PING");
    assert_eq!(fwd, b"*1\r\n$4\r\nPINGxx");
    assert_eq!(rest, b"*1\r\n$4\r\nPING\r\n");
}

#[test]
fn oversized_lengths_and_lines() {
    // A reply's bulk string of any length is streamed (the server's limit is settable).
    let mut s = RedisSession::default();
    let mut head = Vec::new();
    let resp = s
        .read_response(&Request::default(), &mut &b"$536870913\r\n"[..], &mut head)
        .unwrap();
    assert_eq!(resp.body, Body::Length(536_870_915));
    bad_reply(b"$99999999999999999999\r\n");
    bad_reply(b"*1099511627777\r\n");
    let mut long = b"+".to_vec();
    long.resize(MAX_LINE + 10, b'a');
    long.extend_from_slice(b"\r\n");
    bad_reply(&long);
    // a line just under the limit is fine
    let mut ok = b"+".to_vec();
    ok.resize(MAX_LINE - 2, b'a');
    ok.extend_from_slice(b"\r\n");
    whole_reply(&ok);
}

#[test]
fn nesting_goes_past_the_servers_own() {
    // A Lua table nested deeper than the server converts: 7,995 levels, then the error
    // it puts at the bottom (what redis 7 sends for a table nested 10,000 deep).
    let mut lua = b"*1\r\n".repeat(7995);
    lua.extend_from_slice(b"-ERR reached lua stack limit\r\n");
    whole_reply(&lua);
    // One-element chains cost nothing however deep; other nesting is bounded.
    let mut chain = b"*1\r\n".repeat(MAX_DEPTH * 2);
    chain.extend_from_slice(b":1\r\n");
    whole_reply(&chain);
    let nested = |depth: usize| {
        let mut m = b"*2\r\n".repeat(depth);
        m.extend_from_slice(&b":1\r\n".repeat(depth + 1));
        m
    };
    whole_reply(&nested(MAX_DEPTH));
    bad_reply(&nested(MAX_DEPTH + 2));
    // depth is not the element count: a long flat array is fine
    let mut flat = b"*1000\r\n".to_vec();
    flat.extend_from_slice(&b":7\r\n".repeat(1000));
    whole_reply(&flat);
}

#[test]
fn long_bulk_strings_are_streamed() {
    let value = vec![b'x'; 3 * STREAM_BULK as usize];
    let mut msg = format!("${}\r\n", value.len()).into_bytes();
    msg.extend_from_slice(&value);
    msg.extend_from_slice(b"\r\n");
    let mut s = RedisSession::default();
    let mut r = &msg[..];
    let mut head = Vec::new();
    let resp = s
        .read_response(&Request::default(), &mut r, &mut head)
        .unwrap();
    assert_eq!(head, format!("${}\r\n", value.len()).as_bytes());
    assert_eq!(resp.body, Body::Length(value.len() as u64 + 2));
    whole_reply(&msg);

    // MGET with a long value between short ones, and a long value not ended by CRLF
    let mut mget = b"*3\r\n$1\r\na\r\n".to_vec();
    mget.extend_from_slice(&msg);
    mget.extend_from_slice(b"$-1\r\n");
    whole_reply(&mget);
    let mut odd = msg[..msg.len() - 2].to_vec();
    odd.extend_from_slice(b"XX");
    whole_reply(&odd);
    truncated_reply(&msg[..msg.len() - 10]);
}

#[test]
fn a_huge_reply_is_not_held_whole() {
    // 200,000 elements of 10 bytes: more than MAX_HEAD
    let n = 200_000;
    let mut msg = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        msg.extend_from_slice(format!("$4\r\n{:04}\r\n", i % 10_000).as_bytes());
    }
    let mut s = RedisSession::default();
    let mut r = &msg[..];
    let mut head = Vec::new();
    let resp = s
        .read_response(&Request::default(), &mut r, &mut head)
        .unwrap();
    assert!(head.len() <= MAX_HEAD + MAX_LINE, "head of {}", head.len());
    assert_eq!(resp.body, Body::Length(0));
    s.copy_body(resp.body, &mut r, &mut head).unwrap();
    assert_eq!(head, msg);
    assert!(r.is_empty());
}

#[test]
fn resp_commands() {
    let set = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    let (req, fwd, rest) = request(set).unwrap().unwrap();
    assert_eq!(req.name, "SET");
    assert!(req.expects_response && !req.tunnel && !req.close);
    assert_eq!(req.body, Body::None);
    assert_eq!((fwd.as_slice(), rest.as_slice()), (&set[..], &b""[..]));

    let (req, _, _) = request(b"*1\r\n$4\r\nping\r\n").unwrap().unwrap();
    assert_eq!(req.name, "PING");
    let (req, _, _) = request(b"*2\r\n$5\r\nhello\r\n$1\r\n3\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(req.name, "HELLO");
    assert!(!req.tunnel && !req.close);
    let (req, _, _) = request(b"*1\r\n$5\r\nRESET\r\n").unwrap().unwrap();
    assert!(!req.tunnel && !req.close);
    // binary arguments are forwarded as they are
    let bin = b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\x00\xff\r\n";
    let (req, fwd, _) = request(bin).unwrap().unwrap();
    assert_eq!((req.name.as_str(), fwd.as_slice()), ("ECHO", &bin[..]));
}

#[test]
fn tunnel_and_quit_commands() {
    for (cmd, tunnel, close) in [
        (&b"*2\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n"[..], true, false),
        (b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nc*\r\n", true, false),
        (b"*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nch\r\n", true, false),
        (b"*1\r\n$11\r\nUNSUBSCRIBE\r\n", true, false),
        (b"*1\r\n$7\r\nMONITOR\r\n", true, false),
        (b"*2\r\n$6\r\nCLIENT\r\n$5\r\nreply\r\n", true, false),
        (
            b"*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n",
            true,
            false,
        ),
        (b"*2\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n", false, false),
        (b"*1\r\n$4\r\nQUIT\r\n", false, true),
        (b"subscribe ch1 ch2\r\n", true, false),
        (b"\"MONITOR\"\n", true, false),
        (b"quit\r\n", false, true),
    ] {
        let (req, fwd, _) = request(cmd).unwrap().unwrap();
        assert_eq!((req.tunnel, req.close), (tunnel, close), "{}", show(cmd));
        assert!(req.expects_response);
        assert_eq!(fwd, cmd);
    }
}

#[test]
fn inline_commands() {
    let (req, fwd, rest) = request(b"set k \"a b\\x41\"\r\nGET k\n").unwrap().unwrap();
    assert_eq!(req.name, "SET");
    assert_eq!(fwd, b"set k \"a b\\x41\"\r\n");
    assert_eq!(rest, b"GET k\n");
    let (req, fwd, rest) = request(&rest).unwrap().unwrap();
    assert_eq!(
        (req.name.as_str(), fwd.as_slice()),
        ("GET", &b"GET k\n"[..])
    );
    assert!(rest.is_empty());
    // blank lines and empty arrays, which the server skips, go with the next command
    let input = b"\r\n  \r\n\n*0\r\n*-1\r\nPING\r\n";
    let (req, fwd, _) = request(input).unwrap().unwrap();
    assert_eq!((req.name.as_str(), fwd.as_slice()), ("PING", &input[..]));
    let endless = b"\r\n".repeat(MAX_LINE);
    assert_eq!(kind(request(&endless)), io::ErrorKind::InvalidData);
    assert!(request(b"\r\n\r\n").unwrap().is_none());
    assert_eq!(
        split_args(b"a \"b c\" 'd\\'e' \"\\n\\x41\\q\"").unwrap(),
        vec![
            b"a".to_vec(),
            b"b c".to_vec(),
            b"d'e".to_vec(),
            b"\nAq".to_vec()
        ]
    );
    assert_eq!(split_args(b"  ").unwrap(), Vec::<Vec<u8>>::new());
    assert!(split_args(b"\"abc").is_none());
    assert!(split_args(b"'abc").is_none());
    assert!(split_args(b"\"a\"b").is_none());
    assert_eq!(
        kind(request(b"set k \"unbalanced\r\n")),
        io::ErrorKind::InvalidData
    );
    let mut long = vec![b'a'; MAX_LINE + 1];
    long.push(b'\n');
    assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
}

#[test]
fn pipelined_commands_back_to_back() {
    let cmds: &[&[u8]] = &[
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n",
        b"PING\r\n",
        b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n",
        b"*1\r\n$4\r\nEXEC\r\n",
        b"*1\r\n$4\r\nQUIT\r\n",
    ];
    let input = cmds.concat();
    let mut s = RedisSession::default();
    let mut r = BufReader::with_capacity(7, &input[..]);
    let mut names = Vec::new();
    for cmd in cmds {
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        s.copy_body(req.body, &mut r, &mut head).unwrap();
        assert_eq!(head, *cmd);
        names.push(req.name);
    }
    assert_eq!(names, ["SET", "PING", "INCR", "EXEC", "QUIT"]);
    assert!(s.read_request(&mut r, &mut Vec::new()).unwrap().is_none());

    // replies back to back
    let replies: &[&[u8]] = &[
        b"+OK\r\n",
        b"+PONG\r\n",
        b":2\r\n",
        b"*1\r\n:2\r\n",
        b"+OK\r\n",
    ];
    let input = replies.concat();
    let mut r = BufReader::with_capacity(3, &input[..]);
    for want in replies {
        let mut head = Vec::new();
        let resp = s
            .read_response(&Request::default(), &mut r, &mut head)
            .unwrap();
        s.copy_body(resp.body, &mut r, &mut head).unwrap();
        assert_eq!(head, *want);
    }
}

#[test]
fn malformed_and_truncated_commands() {
    for (cmd, want) in [
        (
            &b"*2\r\n$3\r\nGET\r\n:1\r\n"[..],
            io::ErrorKind::InvalidData,
        ),
        (b"*1\r\n+PING\r\n", io::ErrorKind::InvalidData),
        (b"*1\r\n$-1\r\n", io::ErrorKind::InvalidData),
        (b"*1\r\n$?\r\n", io::ErrorKind::InvalidData),
        (b"*?\r\n", io::ErrorKind::InvalidData),
        (b"*abc\r\n", io::ErrorKind::InvalidData),
        (b"*+5\r\n", io::ErrorKind::InvalidData),
        (b"*007\r\n", io::ErrorKind::InvalidData),
        (b"*-0\r\n", io::ErrorKind::InvalidData),
        (b"*2147483648\r\n", io::ErrorKind::InvalidData),
        (b"*1\r\n$536870913\r\n", io::ErrorKind::InvalidData),
        (b"*1\r\n$-5\r\n", io::ErrorKind::InvalidData),
        (b"*1\r\n$04\r\nPING\r\n", io::ErrorKind::InvalidData),
        (b"PI\x00NG\r\n", io::ErrorKind::InvalidData),
        (b"*1\n$4\nPING\n", io::ErrorKind::InvalidData),
        (b"*2\r\n$3\r\nGET\r\n", io::ErrorKind::UnexpectedEof),
        (b"*1\r\n$4\r\nPI", io::ErrorKind::UnexpectedEof),
        (b"*1", io::ErrorKind::UnexpectedEof),
        (b"PING", io::ErrorKind::UnexpectedEof),
    ] {
        assert_eq!(kind(request(cmd)), want, "{}", show(cmd));
    }
    assert!(request(b"").unwrap().is_none());
    // Counts of zero or less are empty commands the server skips without a reply.
    for empty in [&b"*0\r\n"[..], b"*-1\r\n", b"*-10\r\n"] {
        let mut input = empty.to_vec();
        input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let (req, fwd, rest) = request(&input).unwrap().unwrap();
        assert_eq!(req.name, "PING", "after {}", show(empty));
        assert_eq!(fwd, input, "forwarded with the command after it");
        assert!(rest.is_empty());
    }
}

#[test]
fn a_command_that_cannot_be_read_keeps_every_byte_it_consumed() {
    let mut long = vec![b'a'; MAX_LINE + 100];
    long.extend_from_slice(b"\r\n");
    for input in [
        &b"*1\r\nfoo\r\n"[..],
        b"*1\r\n$abc\r\n",
        b"SET \"a b\r\n",
        &long,
    ] {
        let mut s = RedisSession::default();
        let mut r = input;
        let mut head = Vec::new();
        let e = s.read_request(&mut r, &mut head).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let consumed = input.len() - r.len();
        assert_eq!(head, &input[..consumed], "{}", show(input));
    }
}

#[test]
fn a_long_argument_is_streamed_and_can_be_dropped() {
    let value = vec![b'v'; 200_000];
    let mut cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n".to_vec();
    cmd.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    cmd.extend_from_slice(&value);
    cmd.extend_from_slice(b"\r\n");
    let mut input = cmd.clone();
    input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");

    let mut s = RedisSession::default();
    let mut r = &input[..];
    let mut head = Vec::new();
    let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
    assert_eq!(req.name, "SET");
    assert_eq!(req.body, Body::Length(value.len() as u64 + 2));
    assert!(head.len() < 100);
    let mut body = Vec::new();
    s.copy_body(req.body, &mut r, &mut body).unwrap();
    head.extend_from_slice(&body);
    assert_eq!(head, cmd);

    // the error behavior drops the body; the next command is read cleanly
    let mut r = &input[..];
    let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
    s.copy_body(req.body, &mut r, &mut io::sink()).unwrap();
    let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
    assert_eq!((req.name.as_str(), req.body), ("PING", Body::None));

    // MSET with many arguments past the head limit
    let n = 150_000;
    let mut mset = format!("*{}\r\n$4\r\nMSET\r\n", 2 * n + 1).into_bytes();
    for i in 0..n {
        mset.extend_from_slice(format!("$7\r\nk{i:06}\r\n$1\r\nv\r\n").as_bytes());
    }
    let (req, fwd, rest) = request(&mset).unwrap().unwrap();
    assert_eq!(req.name, "MSET");
    assert_eq!(req.body, Body::Length(0));
    assert!(fwd == mset && rest.is_empty());
}

#[test]
fn error_reply_keeps_the_connection() {
    let mut s = RedisSession::default();
    let (req, _, _) = request(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n").unwrap().unwrap();
    let e = s.error_reply(&req, &mut fastrand::Rng::with_seed(1));
    assert!(!e.close);
    assert!(e.bytes.starts_with(b"-ERR vaurien: "));
    // it is itself one well-formed reply
    whole_reply(&e.bytes);
    // a command name with odd bytes cannot break the reply line
    let (req, _, _) = request(b"*1\r\n$3\r\na\r\n\r\n").unwrap().unwrap();
    let e = s.error_reply(&req, &mut fastrand::Rng::with_seed(1));
    whole_reply(&e.bytes);
}

#[test]
fn state_left_on_the_backend_connection_is_followed() {
    let mut s = RedisSession::default();
    let send = |s: &mut RedisSession, cmd: &[u8]| {
        let mut r = cmd;
        s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
        s.backend_reusable()
    };
    assert!(send(&mut s, b"GET k\r\n"));
    assert!(send(&mut s, b"CLIENT LIST\r\n"));
    assert!(!send(&mut s, b"*1\r\n$5\r\nMULTI\r\n"));
    assert!(!send(&mut s, b"SET k v\r\n"));
    assert!(send(&mut s, b"exec\r\n"));
    assert!(!send(&mut s, b"WATCH k\r\n"));
    assert!(send(&mut s, b"UNWATCH\r\n"));
    assert!(!send(&mut s, b"*2\r\n$6\r\nselect\r\n$1\r\n3\r\n"));
    assert!(!send(&mut s, b"GET k\r\n"));
    assert!(send(&mut s, b"RESET\r\n"));
    assert!(!send(&mut s, b"HELLO 3\r\n"));
    assert!(send(&mut s, b"reset\r\n"));
    assert!(!send(&mut s, b"client setname x\r\n"));
}

#[test]
fn spec_builds_a_framed_protocol() {
    let spec = spec();
    assert_eq!(spec.name, "redis");
    let p = (spec.build)(&Values::defaults(spec.options)).unwrap();
    assert_eq!(p.name(), "redis");
    assert!(!p.tcp_options().keep_alive);
    let backend = HostPort::parse("localhost:6379").unwrap();
    assert!(p.framing(&backend).is_some());
}
