//! The proxies of one process, by name: the command line's is `vaurien`; Toxiproxy's API
//! creates and deletes others. Each has its own listener, backend, protocol, mix, toxics,
//! switch and statistics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Config;
use crate::control::{ProxyDirectory, ProxyRef, ProxySwitch};
use crate::error::Error;
use crate::hub::Hub;
use crate::net::HostPort;
use crate::proxy::{Proxy, StopHandle, Switch};
use crate::stats::Stats;

/// One running proxy as the control API switches it.
pub(crate) struct Switched {
    switch: Switch,
    protocol: String,
}

impl ProxySwitch for Switched {
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
    fn move_to(&self, to: &HostPort) -> std::io::Result<bool> {
        let addrs = crate::net::resolve(to)?;
        if addrs.contains(&self.switch.addr()) {
            return Ok(false);
        }
        self.switch.move_to(addrs[0])?;
        Ok(true)
    }
    fn drop_connections(&self) {
        self.switch.drop_connections()
    }
}

/// A proxy accepting on worker threads of its own.
pub(crate) struct Running {
    pub hub: Arc<Hub>,
    pub stats: Arc<Stats>,
    pub switch: Arc<Switched>,
    stopper: StopHandle,
}

impl Running {
    /// Binds the proxy `config` describes and starts accepting.
    pub fn start(config: &Config) -> Result<Running, Error> {
        let proxy = Proxy::bind(config)?;
        let switch = Arc::new(Switched {
            switch: proxy.switch(),
            protocol: config.protocol().name().to_string(),
        });
        let (stopper, hub, stats) = (proxy.stop_handle(), proxy.hub(), proxy.stats());
        proxy.start_accepting().map_err(|e| {
            Error::Start(format!("cannot start a thread to accept connections: {e}"))
        })?;
        Ok(Running {
            hub,
            stats,
            switch,
            stopper,
        })
    }

    fn handle(&self) -> ProxyRef {
        ProxyRef {
            hub: self.hub.clone(),
            switch: self.switch.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&mut self) {
        self.stopper.stop();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every proxy of the process, by name.
pub(crate) struct Proxies {
    /// What a proxy created through the API starts from.
    base: Config,
    running: Mutex<BTreeMap<String, Running>>,
}

impl Proxies {
    /// The proxies of a process whose command line gave `base`, none running yet.
    pub fn new(base: Config) -> Proxies {
        Proxies {
            base,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the proxies the configuration file declares (`[proxy:NAME]`), with their
    /// toxics.
    pub fn start_declared(&self) -> Result<(), Error> {
        for (decl, config) in self.base.other_proxies() {
            let proxy = Running::start(config)?;
            if !decl.enabled {
                let _ = proxy.switch.set_enabled(false);
            }
            log::info!(
                "proxy {} listening on {}, backend {}",
                decl.name,
                proxy.switch.listen(),
                decl.backend
            );
            self.insert(&decl.name, proxy);
        }
        Ok(())
    }

    /// Adds `proxy` as `name`.
    pub fn insert(&self, name: &str, proxy: Running) {
        self.lock().insert(name.to_string(), proxy);
    }

    /// Stops every proxy.
    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (_, mut p) in all {
            p.stop();
        }
    }

    /// The counters of every proxy.
    pub fn all_stats(&self) -> Vec<Arc<Stats>> {
        self.lock().values().map(|p| p.stats.clone()).collect()
    }
}

/// Why a proxy could not start on `at`, in Go's words where Toxiproxy's clients may match
/// them (`listen tcp 127.0.0.1:3310: bind: address already in use`).
fn listen_error(at: &HostPort, start: Error) -> String {
    let resolved = crate::net::resolve(at)
        .ok()
        .and_then(|a| a.first().copied());
    match (&start, resolved) {
        (Error::Listen { source, .. }, Some(addr)) => crate::control::listen_failure(addr, source),
        _ => format!("listen tcp {at}: {start}"),
    }
}

impl ProxyDirectory for Proxies {
    fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<ProxyRef> {
        self.lock().get(name).map(Running::handle)
    }

    fn create(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        protocol: Option<&str>,
        enabled: bool,
    ) -> Result<ProxyRef, (u16, String)> {
        let mut running = self.lock();
        if running.contains_key(name) {
            return Err((409, "proxy already exists".to_string()));
        }
        let bad = |what: &str, e: String| (400, format!("bad request body: {what}: {e}"));
        let listen_at = HostPort::parse(listen).map_err(|e| bad("listen", e))?;
        let backend = HostPort::parse(upstream).map_err(|e| bad("upstream", e))?;
        let config = self
            .base
            .for_new_proxy(listen_at.clone(), backend, protocol)
            .map_err(|e| bad("protocol", e))?;
        let proxy = Running::start(&config).map_err(|e| (500, listen_error(&listen_at, e)))?;
        if !enabled {
            let _ = proxy.switch.set_enabled(false);
        }
        log::info!(
            "proxy {name} created: {} -> {upstream}",
            proxy.switch.listen()
        );
        let handle = proxy.handle();
        running.insert(name.to_string(), proxy);
        Ok(handle)
    }

    fn delete(&self, name: &str) -> bool {
        let removed = self.lock().remove(name);
        match removed {
            Some(mut p) => {
                p.stop();
                log::info!("proxy {name} deleted");
                true
            }
            None => false,
        }
    }
}
