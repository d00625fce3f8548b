//! One client connection: tune its socket, then hand it to its protocol's driver, the framed
//! one or the stream pumps (connecting the backend first for a stream).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::proxy::context::Context;
use crate::proxy::guards::{ConnectionGuards, Permit};
use crate::proxy::stream::{self, Link};

/// One client connection: connect to the backend, then run the protocol.
pub(crate) fn handle(
    ctx: &Arc<Context>,
    id: u64,
    client: TcpStream,
    peer: SocketAddr,
    permit: Permit,
) {
    let open = ctx.stats.open_connection();
    let keep_alive = ctx.protocol.tcp_options().keep_alive;
    crate::net::tune_accepted(&client, keep_alive);
    let backend_addr = ctx.hub.current().backend.clone();
    log::debug!("#{id} {peer} connected; backend {backend_addr}");
    if let Some(framing) = ctx.protocol.framing(&backend_addr) {
        let guards = ConnectionGuards::new(open, permit);
        crate::proxy::framed::serve(ctx, id, peer, client, guards, framing, backend_addr);
        return;
    }
    let backend = match crate::net::connect(&backend_addr, ctx.settings.timeout) {
        Ok(b) => b,
        Err(e) => {
            ctx.warn_backend_failed(id, peer, &backend_addr.to_string(), &e);
            crate::net::reset_on_close(&client);
            return;
        }
    };
    crate::net::tune(&backend, keep_alive);
    let guards = ConnectionGuards::new(open, permit);
    let link = match Link::new(id, peer, client, backend, ctx, guards) {
        Ok(link) => link,
        Err(e) => {
            log::warn!("#{id} {peer}: {e}");
            return;
        }
    };
    stream::serve(link, ctx);
    log::debug!("#{id} {peer} done");
}
