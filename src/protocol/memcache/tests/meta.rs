//! Meta commands, quiet batches ended by `mn`, and pipelines read one command at a time.

use super::*;

#[test]
fn pipelined_replies_are_read_in_the_shapes_of_their_requests() {
    let mut s = MemcacheSession::default();
    let (get, _) = whole_on(&mut s, b"get a\r\n");
    let (set, _) = whole_on(&mut s, b"set a 0 0 1\r\nx\r\n");
    let (_, owed) = whole_on(&mut s, b"mg a v\r\n");
    assert_eq!(owed, [Shape::Retrieval, Shape::Line, Shape::Meta]);
    let replies = b"VALUE a 0 1\r\nx\r\nEND\r\nSTORED\r\nVA 1\r\nx\r\n";
    let (_, fwd, rest) = reply_in(&mut s, &get, replies).unwrap();
    assert_eq!(fwd, b"VALUE a 0 1\r\nx\r\nEND\r\n");
    let (_, fwd, rest) = reply_in(&mut s, &set, &rest).unwrap();
    assert_eq!(fwd, b"STORED\r\n");
    let (_, fwd, rest) = reply_in(&mut s, &set, &rest).unwrap();
    assert_eq!((&fwd[..], &rest[..]), (&b"VA 1\r\nx\r\n"[..], &b""[..]));
    assert!(s.owed.is_empty());
}

#[test]
fn meta_commands() {
    for (input, name) in [
        (&b"mg foo v f t\r\n"[..], "mg"),
        (b"mg foo\r\n", "mg"),
        (b"md foo\r\n", "md"),
        (b"md foo I T30\r\n", "md"),
        (b"ma foo N0 J13 v\r\n", "ma"),
        (b"ms foo 3 T0 F5\r\nbar\r\n", "ms"),
        (b"ms foo 0\r\n\r\n", "ms"),
        (b"mn\r\n", "mn"),
        (b"me foo\r\n", "me"),
    ] {
        let req = whole(input);
        assert_eq!(req.name, name);
        assert!(req.expects_response && !req.tunnel);
    }
    complete_reply(b"mg foo v\r\n", b"VA 3 f0\r\nbar\r\n");
    complete_reply(b"mg foo v\r\n", b"VA 0\r\n\r\n");
    complete_reply(b"mg foo\r\n", b"HD\r\n");
    complete_reply(b"mg foo k v\r\n", b"EN\r\n");
    complete_reply(b"ms foo 3\r\nbar\r\n", b"HD c123\r\n");
    complete_reply(b"ms foo 3\r\nbar\r\n", b"NS\r\n");
    complete_reply(b"md foo\r\n", b"NF\r\n");
    complete_reply(b"ma foo v\r\n", b"VA 2\r\n13\r\n");
    complete_reply(b"ma foo\r\n", b"EX\r\n");
    complete_reply(b"mn\r\n", b"MN\r\n");
    complete_reply(
        b"me foo\r\n",
        b"ME foo exp=-1 la=2 cas=3 fetch=no cls=1 size=63\r\n",
    );
    complete_reply(b"mg foo\r\n", b"CLIENT_ERROR bad command line format\r\n");
    for bad in [
        &b"VA x\r\n"[..],
        b"VA 3\r\nbarX",
        b"hello\r\n",
        b"H\r\n",
        b"HDX\r\n",
    ] {
        assert!(reply(b"mg foo v\r\n", bad).is_err(), "{}", show(bad));
    }
    for bad in [
        &b"mg\r\n"[..],
        b"ms foo\r\n",
        b"ms foo x\r\n",
        b"ms foo -1\r\n",
        b"ms foo 3\r\nbarX\r\n",
        b"mn x\r\n",
        b"me\r\n",
    ] {
        assert!(request(bad).is_err(), "{}", show(bad));
    }
    // A base64 key may be longer than 250 bytes.
    let mut b64 = b"mg ".to_vec();
    b64.extend_from_slice(&[b'A'; 300]);
    b64.extend_from_slice(b" b v\r\n");
    whole(&b64);
    b64.truncate(b64.len() - 6);
    b64.extend_from_slice(b" v\r\n");
    assert!(request(&b64).is_err());
}

#[test]
fn quiet_batches_end_with_mn() {
    let mut s = MemcacheSession::default();
    let input = b"mg a v q\r\nms b 1 q\r\nx\r\nmd c q\r\nmn\r\n";
    let mut r = &input[..];
    let mut reqs = Vec::new();
    for _ in 0..4 {
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        s.copy_body(req.body, &mut r, &mut head).unwrap();
        reqs.push(req);
    }
    assert!(r.is_empty());
    assert!(reqs[..3].iter().all(|q| !q.expects_response && !q.tunnel));
    assert!(reqs[3].expects_response && !reqs[3].tunnel);
    // The mn call takes every reply of the batch.
    let batch = b"VA 1 ka\r\nx\r\nNS\r\nCLIENT_ERROR bad\r\nMN\r\nEND\r\n";
    let (_, fwd, rest) = reply_in(&mut s, &reqs[3], batch).unwrap();
    assert_eq!(fwd, &batch[..batch.len() - 5]);
    assert_eq!(rest, b"END\r\n");
    // The batch is over: a plain command is a call again.
    let (req, _, _) = request_in(&mut s, b"get a\r\n").unwrap().unwrap();
    assert!(!req.tunnel);
    // Garbage inside a batch reply.
    assert!(reply_in(&mut s, &reqs[3], b"VA 1\r\nx\r\nhello\r\nMN\r\n").is_err());
}

#[test]
fn quiet_commands_not_ended_by_mn_make_a_tunnel() {
    let mut s = MemcacheSession::default();
    let (q, _, _) = request_in(&mut s, b"mg a v q\r\n").unwrap().unwrap();
    assert!(!q.expects_response);
    let (last, _, _) = request_in(&mut s, b"mg b v\r\n").unwrap().unwrap();
    assert!(last.tunnel);

    let mut s = MemcacheSession::default();
    for _ in 0..MAX_QUIET {
        let (q, _, _) = request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
        assert!(!q.tunnel && !q.expects_response);
    }
    let (q, _, _) = request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
    assert!(q.tunnel);

    // quit after quiet commands just closes.
    let mut s = MemcacheSession::default();
    request_in(&mut s, b"md a q\r\n").unwrap().unwrap();
    let (q, _, _) = request_in(&mut s, b"quit\r\n").unwrap().unwrap();
    assert!(q.close && !q.tunnel);
}

#[test]
fn pipelined_commands_are_read_one_at_a_time() {
    let input = b"set a 0 0 1\r\n1\r\nget a\r\ndelete a noreply\r\nget a b\r\nquit\r\n";
    let mut s = MemcacheSession::default();
    let mut r = &input[..];
    let mut names = Vec::new();
    loop {
        let mut head = Vec::new();
        let Some(req) = s.read_request(&mut r, &mut head).unwrap() else {
            break;
        };
        names.push(req.name);
    }
    assert_eq!(names, ["set", "get", "delete", "get", "quit"]);

    let replies = b"STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nEND\r\n";
    let mut r = &replies[..];
    let mut s = MemcacheSession::default();
    let mut out = Vec::new();
    for cmd in [&b"set a 0 0 1\r\n1\r\n"[..], b"get a\r\n", b"get a b\r\n"] {
        let (req, _, _) = request_in(&mut s, cmd).unwrap().unwrap();
        let mut head = Vec::new();
        s.read_response(&req, &mut r, &mut head).unwrap();
        out.push(head);
    }
    assert_eq!(
        out,
        [
            &b"STORED\r\n"[..],
            b"VALUE a 0 1\r\n1\r\nEND\r\n",
            b"END\r\n"
        ]
    );
    assert!(r.is_empty());
}
