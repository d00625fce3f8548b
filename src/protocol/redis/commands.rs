//! What a command means to the driver: the commands that turn the connection into a tunnel
//! or leave state on the backend connection, and the name and request of a command.

use super::*;

/// Commands after which the connection becomes a byte tunnel.
pub(super) const TUNNEL_COMMANDS: &[&[u8]] = &[
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
    b"SYNC",
    b"PSYNC",
];
/// `CLIENT` subcommands after which the connection becomes a byte tunnel.
pub(super) const TUNNEL_CLIENT_SUBCOMMANDS: &[&[u8]] = &[b"REPLY", b"TRACKING"];
/// Commands that leave state on the backend connection a later client must not inherit.
pub(super) const STATEFUL_COMMANDS: &[&[u8]] = &[
    b"SELECT",
    b"HELLO",
    b"AUTH",
    b"READONLY",
    b"READWRITE",
    b"ASKING",
];
/// `CLIENT` subcommands that leave state on the backend connection.
pub(super) const STATEFUL_CLIENT_SUBCOMMANDS: &[&[u8]] = &[
    b"SETNAME",
    b"SETINFO",
    b"NO-EVICT",
    b"NO-TOUCH",
    b"CACHING",
    b"TRACKING",
    b"REPLY",
];
/// The first two arguments of a RESP command head (those held whole in it), and how many
/// there are.
pub(super) fn first_args(head: &[u8]) -> ([&[u8]; 2], usize) {
    let mut args: [&[u8]; 2] = [&[], &[]];
    let mut found = 0;
    let Some(nl) = head.iter().position(|&b| b == b'\n') else {
        return (args, found);
    };
    let mut rest = &head[nl + 1..];
    while found < args.len() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        if nl < 2 {
            break;
        }
        let Ok(Len::N(n)) = parse_len(&rest[1..nl - 1], "") else {
            break;
        };
        let body = &rest[nl + 1..];
        let Some(arg) = body.get(..n as usize) else {
            break;
        };
        args[found] = arg;
        found += 1;
        rest = &body[(n as usize + 2).min(body.len())..];
    }
    (args, found)
}
/// Longer than every command and subcommand name the driver looks for.
pub(super) const UPPER_MAX: usize = 24;
/// `arg` in upper case, written to `buf`; empty when missing or longer than any name looked
/// for (so it matches none), without allocating.
pub(super) fn upper<'b>(arg: Option<&&[u8]>, buf: &'b mut [u8; UPPER_MAX]) -> &'b [u8] {
    match arg {
        Some(arg) if arg.len() <= UPPER_MAX => {
            let upper = &mut buf[..arg.len()];
            upper.copy_from_slice(arg);
            upper.make_ascii_uppercase();
            upper
        }
        _ => &[],
    }
}
/// A command name fit for logs: upper case, printable ASCII, at most 32 bytes.
pub(super) fn display_name(arg: &[u8]) -> Name {
    let mut upper = [b'?'; Name::MAX];
    let len = arg.len().clamp(1, Name::MAX);
    for (to, &b) in upper.iter_mut().zip(arg) {
        if b.is_ascii_graphic() {
            *to = b.to_ascii_uppercase();
        }
    }
    Name::new(std::str::from_utf8(&upper[..len]).unwrap_or("?"))
}
/// The request for a command whose first arguments are `args` (empty when the command name
/// was too long to be held in the head).
pub(super) fn request_for(args: &[&[u8]], body: Body) -> Request {
    let (mut first, mut second) = ([0u8; UPPER_MAX], [0u8; UPPER_MAX]);
    let command = upper(args.first(), &mut first);
    let tunnel = TUNNEL_COMMANDS.contains(&command)
        || (command == b"CLIENT"
            && TUNNEL_CLIENT_SUBCOMMANDS.contains(&upper(args.get(1), &mut second)));
    Request {
        name: display_name(args.first().copied().unwrap_or_default()),
        expects_response: true,
        body,
        tunnel,
        close: command == b"QUIT",
        ..Request::default()
    }
}
