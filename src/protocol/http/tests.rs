use super::*;
use std::io::{BufReader, Cursor, Read};

/// A reader over `bytes` with a tiny buffer, so that every boundary gets crossed.
fn reader(bytes: &[u8]) -> BufReader<Cursor<Vec<u8>>> {
    BufReader::with_capacity(7, Cursor::new(bytes.to_vec()))
}

fn session() -> HttpSession {
    HttpSession::new(None)
}

fn request(bytes: &[u8]) -> io::Result<Option<(Request, Vec<u8>)>> {
    request_with(&mut session(), bytes)
}

fn request_with(s: &mut HttpSession, bytes: &[u8]) -> io::Result<Option<(Request, Vec<u8>)>> {
    let mut r = reader(bytes);
    let mut head = Vec::new();
    Ok(s.read_request(&mut r, &mut head)?.map(|req| (req, head)))
}

fn req_ok(bytes: &[u8]) -> (Request, Vec<u8>) {
    req_ok_with(&mut session(), bytes)
}

fn req_ok_with(s: &mut HttpSession, bytes: &[u8]) -> (Request, Vec<u8>) {
    request_with(s, bytes).expect("parses").expect("a request")
}

fn req_err(bytes: &[u8]) -> io::Error {
    request(bytes).expect_err("must fail")
}

/// A session that just read a request with `req`'s method, as the driver's is when the
/// response comes: the session keeps what the response depends on.
fn session_after(req: &Request) -> HttpSession {
    let mut s = session();
    let raw = format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", req.name);
    req_ok_with(&mut s, raw.as_bytes());
    s
}

fn response_to(req: &Request, bytes: &[u8]) -> io::Result<(Response, Vec<u8>, Vec<u8>)> {
    let mut s = session_after(req);
    let mut r = reader(bytes);
    let mut head = Vec::new();
    let resp = s.read_response(req, &mut r, &mut head)?;
    let mut body = Vec::new();
    s.copy_body(resp.body, &mut r, &mut body)?;
    Ok((resp, head, body))
}

fn get() -> Request {
    req_ok(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").0
}

fn resp_ok(req: &Request, bytes: &[u8]) -> (Response, Vec<u8>, Vec<u8>) {
    response_to(req, bytes).expect("response parses")
}

fn chunked(bytes: &[u8]) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
    let mut r = reader(bytes);
    let mut out = Vec::new();
    let res = session().copy_body(Body::Chunked, &mut r, &mut out);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    (res, out, rest)
}

fn assert_invalid(e: &io::Error, needle: &str) {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(
        e.to_string().contains(needle),
        "{e:?} should say {needle:?}"
    );
}

/// Responses and bodies.
mod responses;

#[test]
fn a_call_allocates_nothing_once_the_session_is_warm() {
    let request = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
        User-Agent: wrk/4.2.0\r\nAccept: */*\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\n\
        Date: Mon, 06 Jan 2025 10:00:00 GMT\r\nContent-Type: application/octet-stream\r\n\
        Content-Length: 1024\r\nLast-Modified: Mon, 06 Jan 2025 09:00:00 GMT\r\n\
        Connection: keep-alive\r\nETag: \"677b9c10-400\"\r\nAccept-Ranges: bytes\r\n\r\n";
    let mut session = session();
    let mut head = Vec::with_capacity(1024);
    let call = |session: &mut HttpSession, head: &mut Vec<u8>| {
        head.clear();
        let req = session
            .read_request(&mut &request[..], head)
            .unwrap()
            .unwrap();
        assert_eq!(
            (req.name, req.body, req.close),
            ("GET".into(), Body::None, false)
        );
        assert_eq!(&head[..], request);
        head.clear();
        let resp = session
            .read_response(&req, &mut &response[..], head)
            .unwrap();
        assert_eq!((resp.body, resp.close), (Body::Length(1024), false));
        assert_eq!(&head[..], response);
    };
    let (cold, warm) = crate::sys::alloc_count::cold_then_warm(|| call(&mut session, &mut head));
    assert!(cold > 0, "the first call sets up the head buffers");
    assert_eq!(warm, 0, "allocations in 100 GET calls");
    // A big head's buffer is not kept once a normal head follows.
    let cookie = format!("Cookie: {}\r\n", "c".repeat(8000));
    let big = format!("GET / HTTP/1.1\r\n{}\r\n", cookie.repeat(4));
    req_ok_with(&mut session, big.as_bytes());
    assert!(session.head.raw.capacity() > KEEP_HEAD);
    call(&mut session, &mut head);
    assert!(session.head.raw.capacity() <= KEEP_HEAD);
}

#[test]
fn a_simple_get_is_forwarded_verbatim() {
    let raw = b"GET /a?b=c HTTP/1.1\r\nHost: example.org\r\nX-Odd:  spaced \r\n\r\n";
    let (req, head) = req_ok(raw);
    assert_eq!(head, raw);
    assert_eq!(req.name, "GET");
    assert!(req.expects_response);
    assert_eq!(req.body, Body::None);
    assert!(!req.close && !req.tunnel);
    assert!(req.early_reply.is_empty());
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let raw = b"GET / HTTP/1.1\nHost: x\n\n";
    let (req, head) = req_ok(raw);
    assert_eq!(head, raw);
    assert_eq!(req.body, Body::None);
}

#[test]
fn connection_close_rules() {
    assert!(req_ok(b"GET / HTTP/1.0\r\n\r\n").0.close);
    assert!(
        !req_ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .0
            .close
    );
    assert!(!req_ok(b"GET / HTTP/1.1\r\n\r\n").0.close);
    assert!(
        req_ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .0
            .close
    );
    assert!(
        req_ok(b"GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n")
            .0
            .close
    );
    assert!(
        req_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
            .0
            .close
    );
    // HTTP/1.2 and later minors are read as 1.1.
    assert!(!req_ok(b"GET / HTTP/1.2\r\n\r\n").0.close);
}

#[test]
fn content_length_bodies() {
    let (req, _) = req_ok(b"POST /f HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(req.body, Body::Length(5));
    assert_eq!(req.name, "POST");
    let (req, _) = req_ok(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(req.body, Body::Length(5));
    let (req, _) = req_ok(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(req.body, Body::None);
    let (req, _) = req_ok(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(req.body, Body::Length(u64::MAX));
}

#[test]
fn bad_content_lengths_are_refused() {
    let e = req_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    assert_invalid(&e, "two different Content-Length");
    assert_invalid(
        &req_err(b"POST / HTTP/1.1\r\nContent-Length: 5, 7\r\n\r\n"),
        "different",
    );
    for bad in [
        "-1",
        "abc",
        "+5",
        "0x10",
        "",
        "1 2",
        "99999999999999999999999",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
        assert_invalid(&req_err(raw.as_bytes()), "Content-Length");
    }
}

#[test]
fn chunked_wins_over_content_length_which_is_dropped() {
    let raw =
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (req, head) = req_ok(raw);
    assert_eq!(req.body, Body::Chunked);
    assert!(
        req.close,
        "a smuggling-shaped request closes after its call"
    );
    assert_eq!(
        head,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (req, head) = req_ok(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
    assert_eq!(req.body, Body::Chunked);
    assert!(!req.close);
    assert_eq!(
        head,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
    );
    let e = req_err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_invalid(&e, "does not end with chunked");
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let raw = b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc";
    let (req, head) = req_ok(raw);
    assert_eq!(req.early_reply, CONTINUE);
    assert_eq!(
        head,
        b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
    );
    // Without a body, or from an HTTP/1.0 client, the header goes through untouched.
    let raw = b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
    let (req, head) = req_ok(raw);
    assert!(req.early_reply.is_empty());
    assert_eq!(head, raw);
    let raw = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    let (req, head) = req_ok(raw);
    assert!(req.early_reply.is_empty());
    assert_eq!(head, raw);
    let raw = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(req_ok(raw).0.early_reply, CONTINUE);
}

#[test]
fn host_is_rewritten_only_when_asked() {
    let raw = b"GET / HTTP/1.1\r\nhost: front.example\r\nAccept: */*\r\n\r\n";
    assert_eq!(req_ok(raw).1, raw);
    let mut s = HttpSession::new(Some("10.0.0.1:8080".into()));
    let (_, head) = request_with(&mut s, raw).unwrap().unwrap();
    assert_eq!(
        head,
        b"GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nAccept: */*\r\n\r\n"
    );
    let (_, head) = request_with(&mut s, b"GET / HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head, b"GET / HTTP/1.0\r\nHost: 10.0.0.1:8080\r\n\r\n");
    let hp = HostPort::parse("[::1]:81").unwrap();
    let mut s = HttpSession::new(Some(hp.to_string()));
    let (_, head) = request_with(&mut s, raw).unwrap().unwrap();
    assert_eq!(
        head,
        b"GET / HTTP/1.1\r\nHost: [::1]:81\r\nAccept: */*\r\n\r\n"
    );
}

#[test]
fn head_upgrade_and_connect_are_remembered_for_their_response() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let mut s = session();
    let (head, _) = req_ok_with(&mut s, b"HEAD / HTTP/1.1\r\n\r\n");
    let resp = s
        .read_response(&head, &mut &ok[..], &mut Vec::new())
        .unwrap();
    assert_eq!(resp.body, Body::None, "no body after a HEAD");
    let raw = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (req, _) = req_ok_with(&mut s, raw);
    assert!(!req.tunnel, "only a 101 answer opens the tunnel");
    let resp = s
        .read_response(&req, &mut &ok[..], &mut Vec::new())
        .unwrap();
    assert_eq!((resp.body, resp.tunnel), (Body::Length(5), false));
    let (req, _) = req_ok_with(&mut s, b"CONNECT example.org:443 HTTP/1.1\r\n\r\n");
    let resp = s
        .read_response(&req, &mut &ok[..], &mut Vec::new())
        .unwrap();
    assert!(resp.tunnel, "a 2xx to CONNECT opens the tunnel");
}

#[test]
fn obs_fold_continuation_lines_are_kept() {
    let raw = b"GET / HTTP/1.1\r\nConnection: keep-alive,\r\n close\r\nHost: x\r\n\r\n";
    let (req, head) = req_ok(raw);
    assert!(req.close);
    assert_eq!(head, raw);
    // Folded values are joined by a space; empty continuation lines add nothing.
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip,\r\n\t\r\n  chunked \r\n\r\n";
    assert_eq!(req_ok(raw).0.body, Body::Chunked);
    assert_eq!(req_ok(raw).1, raw);
    let raw = b"POST / HTTP/1.1\r\nContent-Length:\r\n 5\r\n\r\n";
    assert_eq!(req_ok(raw).0.body, Body::Length(5));
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n \r\n\r\n";
    assert_eq!(req_ok(raw).0.body, Body::Length(5));
    assert_invalid(
        &req_err(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\n"),
        "\"1 2\"",
    );
    assert_invalid(
        &req_err(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n"),
        "continuation",
    );
}

#[test]
fn pipelined_requests_are_read_one_by_one() {
    let input = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody\
        \r\n\
        PUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n0\r\nT: 1\r\n\r\n\
        HEAD /4 HTTP/1.1\r\n\r\n\
        GET /5 HTTP/1.0\r\n\r\n";
    let mut s = session();
    let mut r = reader(input);
    let mut seen = Vec::new();
    loop {
        let mut head = Vec::new();
        let Some(req) = s.read_request(&mut r, &mut head).unwrap() else {
            break;
        };
        let mut body = Vec::new();
        s.copy_body(req.body, &mut r, &mut body).unwrap();
        let start = head.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(0);
        let line = head[start..]
            .split(|&b| b == b'\r')
            .next()
            .unwrap()
            .to_vec();
        seen.push((String::from_utf8(line).unwrap(), req.body, body, req.close));
    }
    let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /1 HTTP/1.1",
            "POST /2 HTTP/1.1",
            "PUT /3 HTTP/1.1",
            "HEAD /4 HTTP/1.1",
            "GET /5 HTTP/1.0"
        ]
    );
    assert_eq!(seen[1].2, b"body");
    assert_eq!(seen[2].2, b"2;x=y\r\nab\r\n0\r\nT: 1\r\n\r\n");
    assert_eq!(
        seen.iter().map(|s| s.3).collect::<Vec<_>>(),
        [false, false, false, false, true]
    );
}

#[test]
fn empty_lines_and_clean_eof() {
    assert!(request(b"").unwrap().is_none());
    assert!(request(b"\r\n\r\n\n").unwrap().is_none());
    let (req, head) = req_ok(b"\r\n\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(req.name, "GET");
    assert_eq!(
        head, b"\r\n\nGET / HTTP/1.1\r\n\r\n",
        "empty lines before a request go with it (the backend ignores them)"
    );
    let endless = vec![b'\n'; MAX_HEAD + 10];
    assert_invalid(&req_err(&endless), "empty lines");
}

#[test]
fn truncated_requests_are_unexpected_eof() {
    for cut in [
        &b"GE"[..],
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r",
    ] {
        let e = req_err(cut);
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}: {e}");
    }
}

#[test]
fn garbage_requests_are_invalid_data() {
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / http/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
    ] {
        let e = req_err(bad);
        assert_eq!(
            e.kind(),
            io::ErrorKind::InvalidData,
            "{:?}: {e}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn oversized_requests_name_what_was_too_long() {
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', MAX_LINE));
    long_line.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_invalid(&req_err(&long_line), "request line longer than 8 KiB");

    let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long_header.extend(std::iter::repeat_n(b'v', MAX_LINE));
    long_header.extend_from_slice(b"\r\n\r\n");
    assert_invalid(
        &req_err(&long_header),
        "request header line longer than 8 KiB",
    );

    // Just under the line limit is fine.
    let mut fits = b"GET / HTTP/1.1\r\nX: ".to_vec();
    fits.extend(std::iter::repeat_n(b'v', MAX_LINE - 5));
    fits.extend_from_slice(b"\r\n\r\n");
    assert!(request(&fits).unwrap().is_some());

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_invalid(&req_err(&many), "more than 2000 header fields");
    let mut hundred = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        hundred.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    hundred.extend_from_slice(b"\r\n");
    assert!(request(&hundred).unwrap().is_some());

    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    let value = "v".repeat(8000);
    for i in 0..9 {
        big.extend_from_slice(format!("X-{i}: {value}\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert_invalid(&req_err(&big), "request head longer than 64 KiB");
}

fn parse_reply(bytes: &[u8]) -> (u16, Vec<u8>, Vec<u8>) {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = bytes[..split].to_vec();
    let code = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (code, head, bytes[split..].to_vec())
}

#[test]
fn error_replies_are_complete_random_50x_responses() {
    let req = get();
    let mut codes = std::collections::BTreeSet::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..64 {
        let reply = session_after(&req).error_reply(&req, &mut rng);
        assert!(reply.close);
        let (code, head, body) = parse_reply(&reply.bytes);
        codes.insert(code);
        let text = String::from_utf8(head.clone()).unwrap();
        assert!(text.contains("\r\nContent-Type: text/html\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(
            text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{text}"
        );
        assert!(String::from_utf8(body).unwrap().contains("<html>"));
        // The reply is itself a response this parser accepts.
        let (resp, h, b) = resp_ok(&req, &reply.bytes);
        assert!(resp.close);
        assert_eq!(h, head);
        assert_eq!(
            b.len() as u64,
            match resp.body {
                Body::Length(n) => n,
                _ => 0,
            }
        );
    }
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), [500, 501, 502, 503]);
    let same = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        session_after(&req).error_reply(&req, &mut rng).bytes
    };
    assert_eq!(same(42), same(42), "the rng decides");
    let head_req = req_ok(b"HEAD / HTTP/1.1\r\n\r\n").0;
    let reply = session_after(&head_req).error_reply(&head_req, &mut rng);
    let (_, head, body) = parse_reply(&reply.bytes);
    assert!(body.is_empty(), "no body after a HEAD");
    assert!(!String::from_utf8(head)
        .unwrap()
        .contains("Content-Length: 0\r\n"));
}

#[test]
fn the_protocol_declaration() {
    let spec = spec();
    assert_eq!(spec.name, "http");
    let names: Vec<&str> = spec.options.iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "buffer",
            "keep_alive",
            "reuse_socket",
            "overwrite_host_header"
        ]
    );
    let mut values = Values::defaults(spec.options);
    let p = (spec.build)(&values).unwrap();
    assert_eq!(p.name(), "http");
    assert!(!p.tcp_options().reuse_socket);
    let backend = HostPort::parse("127.0.0.1:9").unwrap();
    let mut f = p.framing(&backend).expect("framed");
    let mut head = Vec::new();
    f.read_request(&mut reader(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &mut head)
        .unwrap();
    assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");

    values.set("overwrite_host_header", crate::opts::Value::Bool(true));
    values.set("reuse_socket", crate::opts::Value::Bool(true));
    let p = (spec.build)(&values).unwrap();
    assert!(
        p.tcp_options().reuse_socket,
        "http framing makes reuse safe"
    );
    let mut f = p.framing(&backend).unwrap();
    head.clear();
    f.read_request(&mut reader(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &mut head)
        .unwrap();
    assert_eq!(head, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n");
    assert!(crate::protocol::builtins().iter().any(|s| s.name == "http"));
}
