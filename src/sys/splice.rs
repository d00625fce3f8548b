//! `splice(2)`: moving a stream's bytes socket → pipe → socket inside the kernel, for the
//! chunks of a transparent mix, which no behavior reads. The proxy then copies nothing: the
//! pages the kernel received go out as they are.
//!
//! A pipe, like a read buffer, is held only while data flows: pipes come from a small stock
//! and go back to it once a chunk drained its source, so idle connections hold no file
//! descriptors beyond their two sockets.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::buffers::Stock;

/// Pipes kept for reuse at most (two file descriptors each, within the 128 spare ones
/// `Proxy::bind` asks the open-files limit for).
const KEPT: usize = 32;

/// Bytes a pipe holds by default on Linux: the most one chunk moves.
pub const PIPE_BYTES: usize = 64 * 1024;

/// A pipe, empty between chunks.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is room for the two descriptors pipe2 writes on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }

    /// Moves what `src` has, at most `max` bytes, into the pipe, waiting for data as a read
    /// does (and as long: the socket's read timeout applies). `Ok(0)`: end of stream.
    pub fn fill(&mut self, src: &TcpStream, max: usize) -> io::Result<usize> {
        splice(src.as_raw_fd(), self.write.as_raw_fd(), max.min(PIPE_BYTES))
    }

    /// Reads what the pipe holds into `buf`, which it fills exactly.
    pub fn read_into(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: `buf` is valid for writes of its length, and the fd is owned by `self`.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => buf = &mut buf[n as usize..],
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the `n` bytes the pipe holds to `dst`.
    pub fn drain(&mut self, dst: &TcpStream, mut n: usize) -> io::Result<()> {
        while n > 0 {
            match splice(self.read.as_raw_fd(), dst.as_raw_fd(), n) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(moved) => n -= moved,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (owned by the pipe or
    // borrowed from a live socket); null offsets are what pipes and sockets require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A bounded stock of empty pipes.
#[derive(Debug)]
pub struct Pipes {
    stock: Stock<Pipe>,
}

impl Default for Pipes {
    fn default() -> Pipes {
        Pipes {
            stock: Stock::new(KEPT),
        }
    }
}

impl Pipes {
    /// An empty pipe: from the stock, or a new one (an error when out of descriptors).
    pub fn take(&self) -> io::Result<Pipe> {
        self.stock.take().map_or_else(Pipe::new, Ok)
    }

    /// Gives back a pipe that is empty; kept when the stock has room.
    pub fn give(&self, pipe: Pipe) {
        self.stock.give(pipe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn bytes_go_through_a_pipe_unchanged_and_end_of_stream_shows() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut from = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (src, _) = l.accept().unwrap();
        let dst = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut to, _) = l.accept().unwrap();
        let pipes = Pipes::default();
        let mut pipe = pipes.take().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = std::thread::spawn({
            let data = data.clone();
            move || {
                from.write_all(&data).unwrap();
            }
        });
        let mut moved = 0;
        while moved < data.len() {
            let n = pipe.fill(&src, 1 << 20).unwrap();
            assert!(n > 0 && n <= PIPE_BYTES, "{n} bytes in one chunk");
            pipe.drain(&dst, n).unwrap();
            moved += n;
        }
        writer.join().unwrap();
        assert_eq!(pipe.fill(&src, 10).unwrap(), 0, "end of stream");
        pipes.give(pipe);
        drop(dst);
        let mut got = Vec::new();
        to.read_to_end(&mut got).unwrap();
        assert!(got == data, "the bytes arrive unchanged and in order");
    }
}
