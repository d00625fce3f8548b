//! How the process allocates: large blocks go back to the system once freed.

/// Makes glibc serve every allocation of 128 KiB or more with its own mapping, returned to
/// the system when freed.
///
/// By default glibc raises that threshold each time such a block is freed, so later large
/// blocks come from the heap of the thread's arena and stay in the process once freed; with a
/// thread per connection there are many arenas. A session that read one large message (an
/// MSET of 60,000 keys) then gave its buffer back still cost its arena that memory: 20 idle
/// redis sessions kept 30 MB. Nothing on the data path allocates that much (stream buffers
/// are 64 KiB and come from a stock), so only large messages pay for a mapping.
pub(crate) fn give_large_frees_back_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any connection.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
