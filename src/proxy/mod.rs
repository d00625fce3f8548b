//! The connection engine: the listener and the workers that take turns accepting, each
//! connection's life (tuning, guards and permits, the driver its protocol picks), the stream
//! pumps, the framed driver, the backend pool and the parked clients.
//!
//! ```text
//! listener ─▶ worker: permit, accept ─▶ connection: tune, pick the driver
//!   stream driver (tcp, mysql): two pumps, read chunk ─▶ mix ─▶ hooks ─▶ deliver
//!   framed driver (http, redis, memcache, smtp): read request ─▶ hooks ─▶ forward ─▶
//!                  read response ─▶ hooks ─▶ write (a transparent mix batches a pipeline)
//! hub ─▶ each connection's subscription, between calls
//! ```

pub(crate) mod backend_pool;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod delivery;
pub(crate) mod framed;
pub(crate) mod guards;
pub(crate) mod parking;
pub(crate) mod server;
pub(crate) mod stream;

pub use server::{Proxy, StopHandle, Switch};
