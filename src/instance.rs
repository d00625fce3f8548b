//! [`Vaurien`]: a proxy running in-process, with its control API when asked; what the binary
//! runs and what a Rust test starts on port 0.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::Config;
use crate::control::{Control, ControlState, ProxySwitch};
use crate::error::Error;
use crate::hub::Hub;
use crate::net::HostPort;
use crate::proxy::{Proxy, StopHandle, Switch};
use crate::stats::Stats;

/// How long stopping waits for open connections to finish.
const DRAIN: Duration = Duration::from_millis(500);

/// A running proxy; stops when dropped.
pub struct Vaurien {
    proxy_addr: SocketAddr,
    control: Option<Control>,
    stopper: StopHandle,
    accept_thread: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    hub: Arc<Hub>,
    token: Option<String>,
    switch: Arc<ProxyOf>,
}

/// The running proxy as the control API switches it.
struct ProxyOf {
    switch: Switch,
    protocol: String,
}

impl ProxySwitch for ProxyOf {
    fn listen(&self) -> SocketAddr {
        self.switch.addr()
    }
    fn protocol(&self) -> &str {
        &self.protocol
    }
    fn enabled(&self) -> bool {
        self.switch.enabled()
    }
    fn set_enabled(&self, on: bool) -> std::io::Result<()> {
        self.switch.set_enabled(on)
    }
}

impl Vaurien {
    /// Binds the proxy (and the control API with `--http`) and starts accepting.
    pub fn start(config: &Config) -> Result<Vaurien, Error> {
        let s = &config.settings();
        let proxy = Proxy::bind(config)?;
        let proxy_addr = proxy
            .local_addr()
            .map_err(|e| Error::Start(e.to_string()))?;
        let switch = Arc::new(ProxyOf {
            switch: proxy.switch(),
            protocol: config.protocol().name().to_string(),
        });
        let control = if s.http {
            let at = HostPort {
                host: s.http_host.clone(),
                port: s.http_port,
            };
            let state = ControlState {
                hub: proxy.hub(),
                registry: config.registry().clone(),
                base_options: config.behavior_options().clone(),
                stats: proxy.stats(),
                token: s.http_token.clone(),
                proxy: Some(switch.clone() as Arc<dyn ProxySwitch>),
            };
            Some(Control::start(&at, state)?)
        } else {
            None
        };
        let stopper = proxy.stop_handle();
        let (stats, hub) = (proxy.stats(), proxy.hub());
        // This thread starts the first accepting worker and waits for the stop.
        let accept_thread = std::thread::Builder::new()
            .name("vaurien-accept".into())
            .spawn(move || proxy.run())
            .map_err(|e| Error::Start(format!("cannot start the accept thread: {e}")))?;
        Ok(Vaurien {
            proxy_addr,
            control,
            stopper,
            accept_thread: Some(accept_thread),
            stats,
            hub,
            token: s.http_token.clone(),
            switch,
        })
    }

    /// Takes the proxy down (`false`: its listener and open connections close) or back up
    /// on the same address (`true`), as `PUT /proxy` does.
    pub fn set_enabled(&self, on: bool) -> Result<(), Error> {
        self.switch
            .set_enabled(on)
            .map_err(|e| Error::Start(format!("cannot listen on {} again: {e}", self.proxy_addr)))
    }

    /// Whether the proxy accepts connections (see [`Vaurien::set_enabled`]).
    pub fn enabled(&self) -> bool {
        self.switch.enabled()
    }

    /// Where clients connect.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the control API listens (with `--http`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(Control::addr)
    }

    /// A client of this proxy's control API (with `--http`).
    pub fn client(&self) -> Option<Client> {
        let addr = self.http_addr()?;
        Client::new(&addr.to_string())
            .ok()
            .map(|c| c.with_token(self.token.clone()))
    }

    /// The proxy's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The hub holding the live mix and backend.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// The `vaurien listening ...` line printed for scripts: the bound addresses.
    pub fn ready_line(&self) -> String {
        match self.http_addr() {
            Some(http) => format!("vaurien listening proxy={} http={http}", self.proxy_addr),
            None => format!("vaurien listening proxy={}", self.proxy_addr),
        }
    }

    /// Stops accepting, closes every connection and the control API, and waits (at most
    /// 0.5 s) for connections to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // `stop` consumes the handle and `Drop` runs after it: drain once.
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.stopper.stop();
        let _ = accept_thread.join();
        if let Some(mut c) = self.control.take() {
            c.stop();
        }
        let deadline = Instant::now() + DRAIN;
        while self.stats.connections_open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Vaurien {
    fn drop(&mut self) {
        self.shutdown();
    }
}
