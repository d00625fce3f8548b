use super::*;

#[test]
fn responses_with_length_chunked_or_until_close() {
    let req = get();
    let (resp, head, body) = resp_ok(&req, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA");
    assert_eq!(resp.body, Body::Length(2));
    assert!(!resp.close && !resp.tunnel);
    assert_eq!(head, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(body, b"hi");

    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let (resp, _, body) = resp_ok(&req, raw);
    assert_eq!(resp.body, Body::Chunked);
    assert_eq!(body, b"3\r\nabc\r\n0\r\n\r\n");

    let (resp, _, body) = resp_ok(&req, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it");
    assert_eq!(resp.body, Body::UntilClose);
    assert!(resp.close);
    assert_eq!(body, b"all of it");

    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz";
    let (resp, _, _) = resp_ok(&req, raw);
    assert_eq!(resp.body, Body::UntilClose);
    assert!(resp.close);

    let raw =
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (resp, head, _) = resp_ok(&req, raw);
    assert_eq!(resp.body, Body::Chunked);
    assert!(resp.close);
    assert_eq!(
        head,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn response_connection_rules() {
    let req = get();
    let (resp, _, _) = resp_ok(&req, b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(resp.close);
    let raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    assert!(!resp_ok(&req, raw).0.close);
    let raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert!(resp_ok(&req, raw).0.close);
    let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert!(!resp_ok(&req, raw).0.close);
    // No reason phrase, or an empty one.
    assert!(
        resp_ok(&req, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
            .0
            .body
            == Body::Length(0)
    );
    assert!(
        resp_ok(&req, b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
            .0
            .body
            == Body::Length(0)
    );
}

#[test]
fn bodiless_responses() {
    let head_req = req_ok(b"HEAD /big HTTP/1.1\r\n\r\n").0;
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\nHTTP/1.1 200 OK\r\n";
    let (resp, head, body) = resp_ok(&head_req, raw);
    assert_eq!(resp.body, Body::None);
    assert!(!resp.close);
    assert_eq!(head, b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n");
    assert!(body.is_empty());
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(resp_ok(&head_req, raw).0.body, Body::None);

    let req = get();
    let raw = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n";
    let (resp, _, _) = resp_ok(&req, raw);
    assert_eq!(resp.body, Body::None);
    assert!(!resp.close);
    let (resp, _, _) = resp_ok(&req, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(resp.body, Body::None);
    assert!(
        !resp.close,
        "204 without a length does not read until close"
    );
}

#[test]
fn a_small_body_already_read_goes_out_with_the_head() {
    let mut head = b"H".to_vec();
    let mut from: &[u8] = b"hiNEXT";
    let body = inline_small_body(Body::Length(2), &mut from, &mut head).unwrap();
    assert_eq!(
        (body, &head[..], from),
        (Body::None, &b"Hhi"[..], &b"NEXT"[..])
    );
    // Only what is already read moves; the rest is copied as usual.
    let mut reader = io::BufReader::with_capacity(3, &b"abcdef"[..]);
    let mut head = Vec::new();
    let body = inline_small_body(Body::Length(5), &mut reader, &mut head).unwrap();
    assert_eq!((body, &head[..]), (Body::Length(2), &b"abc"[..]));
    let big = Body::Length(INLINE_BODY + 1);
    let mut head = Vec::new();
    assert_eq!(
        inline_small_body(big, &mut &b"x"[..], &mut head).unwrap(),
        big
    );
    assert!(head.is_empty());
}

#[test]
fn interim_responses_are_forwarded_with_the_final_one() {
    let req = req_ok(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n").0;
    let raw = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (resp, head, body) = resp_ok(&req, raw);
    assert_eq!(resp.body, Body::Length(2));
    assert_eq!(head, &raw[..raw.len() - 2]);
    assert_eq!(body, b"ok");
    let e = response_to(&req, b"HTTP/1.1 100 Continue\r\n\r\n").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn switching_protocols_and_connect_open_a_tunnel() {
    let req = req_ok(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n").0;
    let raw =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw bytes";
    let mut r = reader(raw);
    let mut head = Vec::new();
    let resp = session_after(&req)
        .read_response(&req, &mut r, &mut head)
        .unwrap();
    assert!(resp.tunnel);
    assert_eq!(resp.body, Body::None);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"raw bytes", "tunnel bytes stay unread");

    let connect = req_ok(b"CONNECT h:443 HTTP/1.1\r\n\r\n").0;
    let (resp, _, _) = resp_ok(&connect, b"HTTP/1.1 200 Connection established\r\n\r\n");
    assert!(resp.tunnel);
    let (resp, _, _) = resp_ok(&connect, b"HTTP/1.1 403 No\r\nContent-Length: 0\r\n\r\n");
    assert!(!resp.tunnel);
}

#[test]
fn bad_and_truncated_responses() {
    let req = get();
    let e = response_to(&req, b"").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let e = response_to(&req, b"HTTP/1.1 200 OK\r\nContent-Le").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    let e = response_to(&req, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    for bad in [
        &b"HTTP/1.1 20 OK\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let e = response_to(&req, bad).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::InvalidData,
            "{:?}: {e}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..9 {
        big.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(8000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert_invalid(
        &response_to(&req, &big).unwrap_err(),
        "response head longer than 64 KiB",
    );
}

#[test]
fn chunked_bodies_are_copied_verbatim_with_extensions_and_trailers() {
    let body = b"4;name=value;q=\"a b\"\r\nWiki\r\n\
        5 ; ext\r\npedia\r\n\
        E\r\n in\r\n\r\nchunks.\r\n\
        0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b"NEXT MESSAGE");
    let (res, out, rest) = chunked(&input);
    res.unwrap();
    assert_eq!(out, body);
    assert_eq!(rest, b"NEXT MESSAGE");
    let (res, out, _) = chunked(b"0\r\n\r\n");
    res.unwrap();
    assert_eq!(out, b"0\r\n\r\n");
    let (res, out, _) = chunked(b"a\nabcdefghij\n0\n\n");
    res.unwrap();
    assert_eq!(out, b"a\nabcdefghij\n0\n\n");
    let (res, out, _) = chunked(b"00000000000000010\r\n");
    assert_invalid(&res.unwrap_err(), "chunk size");
    assert_eq!(out, b"00000000000000010\r\n", "what was read goes on");
}

#[test]
fn chunked_bodies_stream_as_they_arrive() {
    // Cut in the middle of the second chunk: what came before has been written already.
    let (res, out, _) = chunked(b"5\r\nhello\r\n8\r\nwor");
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(out, b"5\r\nhello\r\n8\r\nwor");

    // A big chunk is never held whole: writes are as small as the reader's buffer.
    struct Largest(usize, usize);
    impl Write for Largest {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 = self.0.max(b.len());
            self.1 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut input = b"100000\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 0x100000));
    input.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut r = BufReader::with_capacity(4096, Cursor::new(input.clone()));
    let mut w = Largest(0, 0);
    session().copy_body(Body::Chunked, &mut r, &mut w).unwrap();
    assert_eq!(w.1, input.len());
    assert!(w.0 <= 4096, "largest write {}", w.0);
}

#[test]
fn bad_chunked_bodies() {
    for (bad, needle) in [
        (&b"xyz\r\n"[..], "chunk size"),
        (b"\r\n", "chunk size"),
        (b"-1\r\n", "chunk size"),
        (b"0x5\r\nhello\r\n", "chunk size"),
        (b"5\r\nhelloXX0\r\n\r\n", "chunk data"),
        (b"5\r\nhello\rX", "chunk data"),
    ] {
        let (res, _, _) = chunked(bad);
        assert_invalid(&res.unwrap_err(), needle);
    }
    let mut long = b"5;".to_vec();
    long.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE));
    long.extend_from_slice(b"\r\nhello\r\n");
    let (res, _, _) = chunked(&long);
    assert_invalid(&res.unwrap_err(), "chunk-size line longer than 1 KiB");
    let mut trailers = b"0\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        trailers.extend_from_slice(format!("T-{i}: v\r\n").as_bytes());
    }
    trailers.extend_from_slice(b"\r\n");
    let (res, _, _) = chunked(&trailers);
    assert_invalid(&res.unwrap_err(), "trailer fields");
    for cut in [
        &b""[..],
        b"5\r\nhel",
        b"5\r\nhello",
        b"5\r\nhello\r\n",
        b"0\r\nT: 1\r\n",
    ] {
        let (res, _, _) = chunked(cut);
        assert_eq!(
            res.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof,
            "{cut:?}"
        );
    }
}

#[test]
fn other_bodies_are_copied_like_the_default() {
    let mut r = reader(b"0123456789");
    let mut out = Vec::new();
    let mut s = session();
    s.copy_body(Body::Length(4), &mut r, &mut out).unwrap();
    assert_eq!(out, b"0123");
    s.copy_body(Body::None, &mut r, &mut out).unwrap();
    assert_eq!(out, b"0123");
    s.copy_body(Body::UntilClose, &mut r, &mut out).unwrap();
    assert_eq!(out, b"0123456789");
    let e = s.copy_body(Body::Length(1), &mut r, &mut out).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}
