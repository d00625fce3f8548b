//! Sockets: the listener (socket2: reuse-address, backlog), backend connections with a
//! timeout per resolved address, keep-alive, `TCP_NODELAY`, resets, and the open-files limit.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

mod addr;

pub use addr::HostPort;

/// Resolves `addr`, IPv4 addresses first (so `localhost` binds 127.0.0.1).
pub fn resolve(addr: &HostPort) -> io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = (addr.host.as_str(), addr.port).to_socket_addrs()?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", addr.host),
        ));
    }
    Ok(addrs)
}

/// Listens on the first address of `addr` that can be bound.
pub fn listen(addr: &HostPort, backlog: i32) -> io::Result<TcpListener> {
    let mut last = None;
    for a in resolve(addr)? {
        let bound = (|| {
            let socket = Socket::new(Domain::for_address(a), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            if a.is_ipv6() {
                socket.set_only_v6(false).ok();
            }
            // Accepted sockets inherit TCP_NODELAY on Linux: one setsockopt per connection
            // saved (see `tune_accepted`).
            socket.set_nodelay(true)?;
            socket.bind(&a.into())?;
            socket.listen(backlog)?;
            Ok::<_, io::Error>(TcpListener::from(socket))
        })();
        match bound {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address")))
}

/// Connects to the first address of `addr` that answers within `timeout` (zero: no limit).
pub fn connect(addr: &HostPort, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for a in resolve(addr)? {
        let attempt = if timeout.is_zero() {
            TcpStream::connect(a)
        } else {
            connect_within(a, timeout)
        };
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address")))
}

/// Connects within `timeout`: the socket is made non-blocking at creation and blocking once
/// connected, one system call less per connection than `TcpStream::connect_timeout`.
fn connect_within(a: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(a), Type::STREAM.nonblocking(), None)?;
    match socket.connect(&a.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let deadline = std::time::Instant::now() + timeout;
            let mut pollfd = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&socket),
                events: libc::POLLOUT,
                revents: 0,
            };
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection timed out",
                    ));
                }
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: `pollfd` is one valid entry, and the fd is owned by `socket`.
                match unsafe { libc::poll(&mut pollfd, 1, ms) } {
                    1.. => break,
                    0 => {}
                    _ => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            }
            if pollfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(socket
                    .take_error()?
                    .unwrap_or_else(|| io::Error::other("connection failed")));
            }
        }
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from(socket);
    // std switches with one ioctl; socket2 reads and writes the flags with two fcntl.
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// `TCP_NODELAY`, and keep-alive probes when asked.
pub fn tune(stream: &TcpStream, keep_alive: bool) {
    // Without NODELAY, small writes after a delay pick up ~40 ms of Nagle.
    let _ = stream.set_nodelay(true);
    if keep_alive {
        let ka = TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        let _ = SockRef::from(stream).set_tcp_keepalive(&ka);
    }
}

/// `tune` for a socket accepted from a listener made by [`listen`], which passed
/// `TCP_NODELAY` on: only keep-alive is left to set, when asked.
pub fn tune_accepted(stream: &TcpStream, keep_alive: bool) {
    if cfg!(target_os = "linux") {
        if keep_alive {
            tune(stream, true);
        }
    } else {
        tune(stream, keep_alive);
    }
}

/// What is waiting on `stream` right now, without blocking and without a mode switch: the
/// bytes that could be read (`Some(0)`: the peer ended its side), or `None` when nothing is
/// there yet. An error is the socket's (a reset peer).
pub(crate) fn peek_now(stream: &TcpStream) -> io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is a valid one-byte buffer for the duration of the call, and the fd
        // is owned by `stream`, which outlives it.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Makes the coming close of `stream` send a RST instead of a FIN.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Resets the connection of `stream` now: the peer gets a RST (its next read fails with
/// ECONNRESET) and threads blocked on the socket here wake up with an error. On Linux the
/// socket is disconnected in place (`connect` to an `AF_UNSPEC` address), so the RST does not
/// wait for every handle to be dropped; elsewhere its close sends the RST.
pub fn reset_now(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero sockaddr is a valid value; AF_UNSPEC is 0, and the size given
        // is the struct's own. `connect` only reads it, on a descriptor `stream` keeps open.
        let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        // SAFETY: see above; the result is not needed: a socket that is not connected any
        // more has nothing to reset.
        let _ = unsafe { libc::connect(stream.as_raw_fd(), &unspec, len) };
    }
    #[cfg(not(target_os = "linux"))]
    {
        reset_on_close(stream);
        let _ = stream.shutdown(std::net::Shutdown::Read);
    }
}

/// Whether an error is a read timeout (Linux reports those as `WouldBlock`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an accept error means the process is out of a resource (back off and retry).
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Raises the soft open-files limit toward `wanted`; returns the limit in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < wanted {
            let mut raised = lim;
            raised.rlim_cur = wanted.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_on_port_zero_and_connect() {
        let l = listen(&HostPort::parse("127.0.0.1:0").unwrap(), 16).unwrap();
        let port = l.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let c = connect(
            &HostPort::parse(&format!("localhost:{port}")).unwrap(),
            Duration::from_secs(2),
        )
        .unwrap();
        tune(&c, true);
        assert!(c.nodelay().unwrap());
        assert!(SockRef::from(&c).keepalive().unwrap());
        let (accepted, _) = l.accept().unwrap();
        tune_accepted(&accepted, false);
        assert!(accepted.nodelay().unwrap(), "NODELAY, inherited or set");
        assert!(!SockRef::from(&accepted).keepalive().unwrap());
    }

    #[test]
    fn refused_connection_is_an_error() {
        let l = listen(&HostPort::parse("127.0.0.1:0").unwrap(), 16).unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(connect(
            &HostPort::parse(&format!("127.0.0.1:{port}")).unwrap(),
            Duration::from_secs(2)
        )
        .is_err());
    }
}
