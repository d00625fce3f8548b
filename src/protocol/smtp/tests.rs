use super::super::wire::testing::{kind, reply_in, request_in, Parsed};
use super::*;
use crate::net::HostPort;
use crate::opts::Values;

/// Reads one request from `input` on a new session.
fn request(input: &[u8]) -> Parsed {
    request_in(&mut SmtpSession::default(), input)
}

/// One command and its reply on session `s`; the reply must be all of `answer`.
fn call(s: &mut SmtpSession, cmd: &[u8], answer: &[u8]) -> (Request, Response) {
    let (req, fwd, rest) = request_in(s, cmd).unwrap().unwrap();
    assert_eq!(fwd, cmd);
    assert!(rest.is_empty());
    let (resp, fwd, rest) = reply_in(s, &req, answer).unwrap();
    assert_eq!(fwd, answer);
    assert!(rest.is_empty());
    (req, resp)
}

#[test]
fn greeting_and_multi_line_replies() {
    let mut s = SmtpSession::default();
    assert!(s.server_speaks_first());
    let greeting = b"220-mx.example.org ESMTP\r\n220-more\r\n220 ready\r\nrest";
    let (resp, fwd, rest) = reply_in(&mut s, &Request::greeting(), greeting).unwrap();
    assert_eq!(fwd, &greeting[..greeting.len() - 4]);
    assert_eq!(rest, b"rest");
    assert!(!resp.tunnel && !resp.close);
    let (req, _) = call(
        &mut s,
        b"EHLO client.example.org\r\n",
        b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
    );
    assert_eq!(req.name, "EHLO");
    assert!(req.expects_response && !req.close);
    call(&mut s, b"noop\r\n", b"250\r\n");
    call(&mut s, b"HELO x\n", b"250 ok\n");
}

#[test]
fn a_mail_transaction() {
    let mut s = SmtpSession::default();
    reply_in(&mut s, &Request::greeting(), b"220 hi\r\n").unwrap();
    call(
        &mut s,
        b"MAIL FROM:<a@example.org>\r\n",
        b"250 2.1.0 Ok\r\n",
    );
    call(&mut s, b"RCPT TO:<b@example.org>\r\n", b"250 2.1.5 Ok\r\n");
    let (req, _) = call(
        &mut s,
        b"DATA\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
    );
    assert_eq!(req.name, "DATA");
    // The message: dot-stuffed lines pass as they are; a dot line ends it.
    let message = b"Subject: hi\r\n\r\n..leading dot\r\n.x\r\nline\n.\r\nstill body\r\n\r\n.\r\n";
    let mut input = message.to_vec();
    input.extend_from_slice(b"QUIT\r\n");
    let (req, fwd, rest) = request_in(&mut s, &input).unwrap().unwrap();
    assert_eq!(req.name, "message");
    assert!(req.expects_response);
    assert_eq!(fwd, message);
    assert_eq!(rest, b"QUIT\r\n");
    reply_in(&mut s, &req, b"250 2.0.0 Ok: queued\r\n").unwrap();
    // Then commands again.
    let (req, _) = call(&mut s, b"QUIT\r\n", b"221 2.0.0 Bye\r\n");
    assert!(req.close);
}

#[test]
fn messages() {
    let body = |input: &[u8]| {
        let mut s = SmtpSession {
            next: Next::Message,
            ..SmtpSession::default()
        };
        request_in(&mut s, input)
    };
    let (_, fwd, rest) = body(b".\r\nNOOP\r\n").unwrap().unwrap();
    assert_eq!(fwd, b".\r\n");
    assert_eq!(rest, b"NOOP\r\n");
    assert!(body(b"").unwrap().is_none());
    assert_eq!(kind(body(b"line\r\n")), io::ErrorKind::UnexpectedEof);
    assert_eq!(kind(body(b"line\r\n.")), io::ErrorKind::UnexpectedEof);
    // Binary content (8BITMIME) passes.
    let (_, fwd, _) = body(b"\x00\xff\x1b\r\n.\r\n").unwrap().unwrap();
    assert_eq!(fwd, b"\x00\xff\x1b\r\n.\r\n");
    // A 354 to anything but DATA does not start a message.
    let mut s = SmtpSession::default();
    call(&mut s, b"NOOP\r\n", b"354 what\r\n");
    let (req, _, _) = request_in(&mut s, b"NOOP\r\n").unwrap().unwrap();
    assert_eq!(req.name, "NOOP");
    // A refused DATA neither.
    call(
        &mut s,
        b"DATA\r\n",
        b"554 5.5.1 Error: no valid recipients\r\n",
    );
    let (req, _, _) = request_in(&mut s, b"RSET\r\n").unwrap().unwrap();
    assert_eq!(req.name, "RSET");
}

#[test]
fn a_message_of_any_size_is_streamed_past_its_head() {
    // 70 MiB of message, long lines (8BITMIME) and a dot-line cut by nothing, then QUIT.
    let mut big = Vec::with_capacity(71 << 20);
    big.extend_from_slice(&[b'y'; 200_000]);
    big.extend_from_slice(b"\r\n..stuffed\r\n");
    while big.len() <= 70 << 20 {
        big.extend_from_slice(&[b'x'; 998]);
        big.extend_from_slice(b"\r\n");
    }
    let message_len = big.len() + 3;
    big.extend_from_slice(b".\r\nQUIT\r\n");
    let mut s = SmtpSession {
        next: Next::Message,
        ..SmtpSession::default()
    };
    let mut r = &big[..];
    let mut head = Vec::new();
    let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
    assert_eq!(req.name, "message");
    assert_eq!(req.body, Body::Delimited);
    assert!(
        head.len() <= MESSAGE_HEAD + MESSAGE_PIECE,
        "head of {}",
        head.len()
    );
    let mut body = Vec::new();
    s.copy_body(req.body, &mut r, &mut body).unwrap();
    assert_eq!(head.len() + body.len(), message_len);
    head.extend_from_slice(&body);
    assert_eq!(head, &big[..message_len]);
    assert_eq!(r, b"QUIT\r\n");
    // Cut short while streamed: an end of input, after what was read went on.
    let mut s = SmtpSession {
        next: Next::Message,
        ..SmtpSession::default()
    };
    let cut = &big[..10 << 20];
    let mut r = cut;
    let mut head = Vec::new();
    let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
    let mut body = Vec::new();
    let e = s.copy_body(req.body, &mut r, &mut body).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(head.len() + body.len(), cut.len());
}

#[test]
fn the_dot_line_is_found_on_every_piece_boundary() {
    for pad in 0..8 {
        let mut msg = vec![b'a'; MESSAGE_HEAD - 3 + pad];
        msg.extend_from_slice(b"\r\n.\r\n");
        let mut s = SmtpSession {
            next: Next::Message,
            ..SmtpSession::default()
        };
        let mut r = &msg[..];
        let mut head = Vec::new();
        let req = s.read_request(&mut r, &mut head).unwrap().unwrap();
        s.copy_body(req.body, &mut r, &mut head).unwrap();
        assert_eq!(head, msg, "pad {pad}");
    }
}

#[test]
fn starttls_becomes_a_tunnel() {
    let mut s = SmtpSession::default();
    let (_, resp) = call(&mut s, b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n");
    assert!(resp.tunnel);
    let (_, resp) = call(&mut s, b"STARTTLS\r\n", b"454 4.7.0 TLS not available\r\n");
    assert!(!resp.tunnel);
    let (_, resp) = call(&mut s, b"NOOP\r\n", b"220 odd\r\n");
    assert!(!resp.tunnel);
    let (_, resp) = call(&mut s, b"NOOP\r\n", b"421 4.4.2 closing\r\n");
    assert!(resp.close);
}

#[test]
fn auth_continuations() {
    let mut s = SmtpSession::default();
    call(&mut s, b"AUTH LOGIN\r\n", b"334 VXNlcm5hbWU6\r\n");
    let (req, _) = call(&mut s, b"dXNlcg==\r\n", b"334 UGFzc3dvcmQ6\r\n");
    assert_eq!(req.name, "AUTH continuation");
    let (req, _) = call(
        &mut s,
        b"cGFzcw==\r\n",
        b"235 2.7.0 Authentication successful\r\n",
    );
    assert_eq!(req.name, "AUTH continuation");
    let mut rng = fastrand::Rng::with_seed(1);
    assert!(s.error_reply(&req, &mut rng).close);
    let (req, _) = call(&mut s, b"NOOP\r\n", b"250 ok\r\n");
    assert_eq!(req.name, "NOOP");
}

#[test]
fn bdat_carries_its_chunk() {
    let mut s = SmtpSession::default();
    let (req, fwd, rest) = request_in(&mut s, b"BDAT 5 LAST\r\nab\r\ncQUIT\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(req.body, Body::Length(5));
    assert_eq!(fwd, b"BDAT 5 LAST\r\nab\r\nc");
    assert_eq!(rest, b"QUIT\r\n");
    assert_eq!(kind(request(b"BDAT x\r\n")), io::ErrorKind::InvalidData);
    assert_eq!(kind(request(b"BDAT\r\n")), io::ErrorKind::InvalidData);
    // A chunk of any size is copied as it arrives.
    let mut head = Vec::new();
    let req = SmtpSession::default()
        .read_request(&mut &b"BDAT 99999999999\r\n"[..], &mut head)
        .unwrap()
        .unwrap();
    assert_eq!(req.body, Body::Length(99_999_999_999));
    assert_eq!(kind(request(b"BDAT 5\r\nab")), io::ErrorKind::UnexpectedEof);
}

#[test]
fn pipelined_commands() {
    let input = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n";
    let replies = b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n";
    let mut s = SmtpSession::default();
    let (mut r, mut b) = (&input[..], &replies[..]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let req = s.read_request(&mut r, &mut Vec::new()).unwrap().unwrap();
        let mut head = Vec::new();
        s.read_response(&req, &mut b, &mut head).unwrap();
        seen.push((req.name, head));
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[2].1, b"550 no\r\n");
    assert_eq!(s.next, Next::Message);
}

#[test]
fn garbage_and_limits() {
    assert!(request(b"").unwrap().is_none());
    for input in [
        &b"\x00\x01\x02\r\n"[..],
        b"NOOP\x1b[0m\r\n",
        b"\xff\xfe hello\r\n",
        b"MAIL\rFROM:<a@b>\r\n",
    ] {
        assert_eq!(
            kind(request(input)),
            io::ErrorKind::InvalidData,
            "{}",
            show(input)
        );
    }
    assert_eq!(kind(request(b"NOOP")), io::ErrorKind::UnexpectedEof);
    let long = vec![b'A'; MAX_COMMAND + 1];
    assert_eq!(kind(request(&long)), io::ErrorKind::InvalidData);
    // Long AUTH lines are fine.
    let mut auth = b"AUTH XOAUTH2 ".to_vec();
    auth.extend_from_slice(&[b'Q'; 3000]);
    auth.extend_from_slice(b"\r\n");
    assert_eq!(request(&auth).unwrap().unwrap().0.name, "AUTH");
    // Non-ASCII mail addresses (SMTPUTF8) are fine.
    let utf8 = "MAIL FROM:<jöran@example.org> SMTPUTF8\r\n".as_bytes();
    assert_eq!(request(utf8).unwrap().unwrap().1, utf8);

    let greeting = Request::greeting();
    let mut s = SmtpSession::default();
    for bad in [
        &b"hello\r\n"[..],
        b"22\r\n",
        b"2200 x\r\n",
        b"220x\r\n",
        b"120 x\r\n",
        b"620 x\r\n",
        b"\x16\x03\x01\x02\x00\r\n",
    ] {
        assert_eq!(
            kind(reply_in(&mut s, &greeting, bad)),
            io::ErrorKind::InvalidData,
            "{}",
            show(bad)
        );
    }
    assert_eq!(
        kind(reply_in(&mut s, &greeting, b"")),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(
        kind(reply_in(&mut s, &greeting, b"220-a\r\n220-b\r\n")),
        io::ErrorKind::UnexpectedEof
    );
    let long = vec![b'2'; MAX_REPLY_LINE + 1];
    assert_eq!(
        kind(reply_in(&mut s, &greeting, &long)),
        io::ErrorKind::InvalidData
    );
    let many = b"250-x\r\n".repeat(MAX_REPLY_LINES);
    assert_eq!(
        kind(reply_in(&mut s, &greeting, &many)),
        io::ErrorKind::InvalidData
    );
    let mut most = b"250-x\r\n".repeat(MAX_REPLY_LINES - 1);
    most.extend_from_slice(b"250 x\r\n");
    assert_eq!(reply_in(&mut s, &greeting, &most).unwrap().1, most);
}

#[test]
fn error_replies() {
    let mut s = SmtpSession::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let (mail, _, _) = request(b"MAIL FROM:<a@b>\r\n").unwrap().unwrap();
    let reply = s.error_reply(&mail, &mut rng);
    assert_eq!(reply.bytes, ERROR_REPLY);
    assert!(!reply.close);
    let (data, _, _) = request(b"DATA\r\n").unwrap().unwrap();
    assert!(!s.error_reply(&data, &mut rng).close);
    let mut s = SmtpSession {
        next: Next::Message,
        ..SmtpSession::default()
    };
    let (message, _, _) = request_in(&mut s, b"hi\r\n.\r\n").unwrap().unwrap();
    let reply = s.error_reply(&message, &mut rng);
    assert_eq!(reply.bytes, ERROR_REPLY);
    assert!(reply.close);
}

#[test]
fn spec_builds() {
    let spec = spec();
    let proto = (spec.build)(&Values::defaults(spec.options)).unwrap();
    assert_eq!(proto.name(), "smtp");
    assert!(proto.tcp_options().keep_alive);
    assert!(!proto.tcp_options().reuse_socket);
    let backend = HostPort::parse("127.0.0.1:25").unwrap();
    assert!(proto.framing(&backend).unwrap().server_speaks_first());
}
