//! [`Vaurien`]: a proxy running in-process, with its control API when asked; what the binary
//! runs and what a Rust test starts on port 0.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::Config;
use crate::control::{Control, ControlState, ProxyDirectory, ProxySwitch};
use crate::error::Error;
use crate::hub::Hub;
use crate::net::HostPort;
use crate::proxies::{Proxies, Running, Switched};
use crate::stats::Stats;

/// How long stopping waits for open connections to finish.
const DRAIN: Duration = Duration::from_millis(500);

use crate::control::MAIN_PROXY;

/// A running proxy (and those its control API created); stops when dropped.
pub struct Vaurien {
    control: Option<Control>,
    proxies: Arc<Proxies>,
    stats: Arc<Stats>,
    hub: Arc<Hub>,
    token: Option<String>,
    switch: Arc<Switched>,
    stopped: bool,
}

impl Vaurien {
    /// Binds the proxy, named `vaurien` (and the control API with `--http`), and starts
    /// accepting.
    pub fn start(config: &Config) -> Result<Vaurien, Error> {
        let s = &config.settings();
        let main = Running::start(config)?;
        let (stats, hub, switch) = (main.stats.clone(), main.hub.clone(), main.switch.clone());
        let proxies = Arc::new(Proxies::new(config.clone()));
        proxies.insert(MAIN_PROXY, main);
        if let Err(e) = proxies.start_declared() {
            proxies.stop_all();
            return Err(e);
        }
        let control = if s.http {
            let at = HostPort {
                host: s.http_host.clone(),
                port: s.http_port,
            };
            let state = ControlState {
                hub: hub.clone(),
                registry: config.registry().clone(),
                base_options: config.behavior_options().clone(),
                stats: stats.clone(),
                token: s.http_token.clone(),
                proxy: Some(switch.clone() as Arc<dyn ProxySwitch>),
                proxies: Some(proxies.clone() as Arc<dyn ProxyDirectory>),
            };
            match Control::start(&at, state) {
                Ok(c) => Some(c),
                Err(e) => {
                    proxies.stop_all();
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(Vaurien {
            control,
            proxies,
            stats,
            hub,
            token: s.http_token.clone(),
            switch,
            stopped: false,
        })
    }

    /// Takes the proxy down (`false`: its listener and open connections close) or back up
    /// on the same address (`true`), as `PUT /proxy` does.
    pub fn set_enabled(&self, on: bool) -> Result<(), Error> {
        self.switch
            .set_enabled(on)
            .map_err(|e| Error::Start(format!("cannot listen on {} again: {e}", self.proxy_addr())))
    }

    /// Whether the proxy accepts connections (see [`Vaurien::set_enabled`]).
    pub fn enabled(&self) -> bool {
        self.switch.enabled()
    }

    /// Starts another proxy in this process, named `name`, listening on `listen` (port 0:
    /// any) and forwarding to `backend`, with `protocol` (none: tcp) and the `dummy` mix, as
    /// `POST /proxies` does; returns where its clients connect. Its toxics, mix and switch
    /// are then reached through the control API under that name.
    pub fn add_proxy(
        &self,
        name: &str,
        listen: &str,
        backend: &str,
        protocol: Option<&str>,
    ) -> Result<SocketAddr, Error> {
        self.proxies
            .create(name, listen, backend, protocol, true)
            .map(|p| p.switch.listen())
            .map_err(|(_, why)| Error::Start(format!("proxy {name}: {why}")))
    }

    /// Stops the proxy named `name` and forgets it; `false` when there is none, and for
    /// `vaurien`, this handle's own proxy (take it down with [`Vaurien::set_enabled`]).
    pub fn remove_proxy(&self, name: &str) -> bool {
        name != MAIN_PROXY && self.proxies.delete(name)
    }

    /// Where the clients of the proxy named `name` connect.
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.proxies.get(name).map(|p| p.switch.listen())
    }

    /// Where clients connect (where the proxy listens now, should the API have moved it).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.switch.listen()
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
            Some(http) => format!("vaurien listening proxy={} http={http}", self.proxy_addr()),
            None => format!("vaurien listening proxy={}", self.proxy_addr()),
        }
    }

    /// Stops accepting, closes every connection and the control API, and waits (at most
    /// 0.5 s) for connections to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // `stop` consumes the handle and `Drop` runs after it: drain once.
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let stats = self.proxies.all_stats();
        self.proxies.stop_all();
        if let Some(mut c) = self.control.take() {
            c.stop();
        }
        let open = || {
            stats
                .iter()
                .map(|s| s.connections_open.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let deadline = Instant::now() + DRAIN;
        while open() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Vaurien {
    fn drop(&mut self) {
        self.shutdown();
    }
}
