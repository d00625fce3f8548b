//! Read buffers shared by every stream connection.
//!
//! A pump holds a buffer only while data flows: once a read drained its socket, the buffer
//! goes back here and the pump waits for the next byte without one. So an idle connection
//! costs no buffer memory, whatever `--bufsize` is, and a busy proxy reuses the same few
//! buffers instead of allocating one per chunk.

use crossbeam_channel::{bounded, Receiver, Sender};

/// Buffers kept for reuse at most; more are freed when given back.
const KEPT: usize = 256;

/// At most `kept` things (buffers, pipes) put aside for reuse, shared by every connection.
#[derive(Debug)]
pub(crate) struct Stock<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Stock<T> {
    /// An empty stock that keeps `kept` things at most.
    pub(crate) fn new(kept: usize) -> Stock<T> {
        let (tx, rx) = bounded(kept);
        Stock { tx, rx }
    }

    /// One thing from the stock, if it has any.
    pub(crate) fn take(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Puts a thing back; it is dropped when the stock is full.
    pub(crate) fn give(&self, thing: T) {
        let _ = self.tx.try_send(thing);
    }
}

/// A bounded stock of read buffers of one size.
#[derive(Debug)]
pub struct Buffers {
    stock: Stock<Vec<u8>>,
    size: usize,
}

impl Buffers {
    /// A stock of buffers of `size` bytes.
    pub fn new(size: usize) -> Buffers {
        Buffers {
            stock: Stock::new(KEPT),
            size: size.max(1),
        }
    }

    /// The size of every buffer, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A buffer of `size` zeroed-or-reused bytes: from the stock, or a new one.
    pub fn take(&self) -> Vec<u8> {
        self.stock.take().unwrap_or_else(|| vec![0; self.size])
    }

    /// Gives a buffer back; it is kept when the stock has room.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.size {
            return;
        }
        // Full-length buffers (the common case) need no resize, so no memset.
        buf.resize(self.size, 0);
        self.stock.give(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_full_length_and_the_stock_is_bounded() {
        let buffers = Buffers::new(16);
        let mut a = buffers.take();
        assert_eq!(a.len(), 16);
        a.truncate(3);
        let ptr = a.as_ptr();
        buffers.give(a);
        let b = buffers.take();
        assert_eq!(
            (b.len(), b.as_ptr()),
            (16, ptr),
            "the same buffer, full length"
        );
        buffers.give(Vec::with_capacity(4)); // too small: dropped
        for _ in 0..KEPT + 10 {
            buffers.give(vec![0; 16]);
        }
        assert_eq!(buffers.stock.rx.len(), KEPT);
    }
}
