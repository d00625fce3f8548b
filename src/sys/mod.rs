//! What the engine runs on, below any protocol: the worker threads, the stocks of buffers and
//! pipes, and `splice(2)`.

#[cfg(test)]
pub(crate) mod alloc_count;
pub(crate) mod buffers;
#[cfg(target_os = "linux")]
pub(crate) mod splice;
pub(crate) mod workers;
