//! Protocols: how the proxy cuts the traffic of a connection into calls.
//!
//! A byte-stream protocol (`tcp`, `mysql`) forwards a full-duplex stream and treats every
//! chunk read from one side as a call. A framed protocol (`http`, `redis`, `memcache`,
//! `smtp`) gives each connection a [`Framing`] session, whose parsers read requests and
//! responses for the engine's framed driver. A protocol declares its options once, in a
//! [`ProtocolSpec`].

use std::sync::Arc;

pub mod framing;
pub mod http;
pub mod memcache;
pub mod redis;
pub mod smtp;
pub mod spec;
mod wire;

pub use framing::{copy_plain_body, Body, ErrorReply, Framing, Name, Request, Response};
pub use spec::{
    BackendReuse, BuildProtocol, ByteStream, FramedProtocol, KeepAlive, Protocol, ProtocolSpec,
    TcpOptions, TCP_OPTIONS,
};

/// The built-in protocols, in documentation order.
pub fn builtins() -> Vec<ProtocolSpec> {
    vec![
        ProtocolSpec {
            name: "tcp",
            summary: "a full-duplex byte stream; every chunk read from one side is a call",
            options: TCP_OPTIONS,
            build: |v| {
                ByteStream::from_values("tcp", v, KeepAlive::Optional)
                    .map(|p| Arc::new(p) as Arc<dyn Protocol>)
            },
        },
        ProtocolSpec {
            name: "mysql",
            summary: "MySQL/MariaDB: a stream where the server speaks first; keep-alive always on",
            options: TCP_OPTIONS,
            build: |v| {
                ByteStream::from_values("mysql", v, KeepAlive::Always)
                    .map(|p| Arc::new(p) as Arc<dyn Protocol>)
            },
        },
        smtp::spec(),
        http::spec(),
        redis::spec(),
        memcache::spec(),
    ]
}
