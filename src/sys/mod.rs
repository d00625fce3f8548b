//! What the engine runs on, below any protocol: the worker threads, the stocks of buffers and
//! pipes, `splice(2)`, and the allocator's setting.

#[cfg(test)]
pub(crate) mod alloc_count;
pub(crate) mod buffers;
pub(crate) mod malloc;
#[cfg(target_os = "linux")]
pub(crate) mod splice;
pub(crate) mod workers;
