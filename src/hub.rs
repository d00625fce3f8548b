//! The hub: the one owner of the live settings (mix and backend). A change builds a new
//! immutable [`Live`] snapshot and sends it over a crossbeam channel to every subscribed
//! connection, which picks it up between calls; nothing on the data path takes a lock.
//!
//! A connection needs the newest snapshot, not the history of changes: each subscription's
//! channel holds one snapshot at most, and publishing replaces a snapshot the connection has
//! not taken yet. An idle connection therefore holds two snapshots at most however many
//! changes it sleeps through (an unbounded channel per connection grew by a slot per change:
//! 1,000 idle connections and 20,000 changes took 660 MB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::mix::Mix;
use crate::net::HostPort;
pub use crate::toxic::{Toxic, Toxics};

/// What a connection needs to know at each call.
#[derive(Debug)]
pub struct Live {
    /// The behavior mix drawn from for every call.
    pub mix: Mix,
    /// Where new connections go.
    pub backend: HostPort,
    /// The toxics acting after the mix, in order.
    pub toxics: Toxics,
}

impl Live {
    /// Whether no call is ever touched: the mix is transparent and there is no toxic.
    pub fn is_transparent(&self) -> bool {
        self.mix.is_transparent() && self.toxics.is_empty()
    }
}

/// The hub's end of a subscription's one-slot channel: the sender, and a receiver with
/// which a snapshot the connection did not take yet is taken back and replaced.
#[derive(Debug)]
struct Slot {
    tx: Sender<Arc<Live>>,
    rx: Receiver<Arc<Live>>,
}

impl Slot {
    /// Puts `live` in the slot, replacing what waits there; `false` once the subscription is
    /// gone.
    fn replace(&self, live: &Arc<Live>) -> bool {
        loop {
            match self.tx.try_send(live.clone()) {
                Ok(()) => return true,
                Err(TrySendError::Full(_)) => {
                    // The connection may take the old snapshot meanwhile: either way the slot
                    // has room on the next try.
                    let _ = self.rx.try_recv();
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    current: Arc<Live>,
    subscribers: HashMap<u64, Slot>,
    next_id: u64,
}

/// Fans live-setting changes out to every connection.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
}

impl Hub {
    /// A hub starting with `live`.
    pub fn new(live: Live) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                current: Arc::new(live),
                subscribers: HashMap::new(),
                next_id: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave `Inner` half-written: every change is one assignment.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Live> {
        self.lock().current.clone()
    }

    /// Replaces the live settings; every connection uses them from its next call on.
    pub fn publish(&self, live: Live) {
        let mut inner = self.lock();
        Hub::install(&mut inner, live);
    }

    /// Replaces the live settings with what `change` makes of the current ones, in one step:
    /// two changes at once (a mix and a toxic) never lose one another. Nothing changes when
    /// `change` fails.
    pub fn update<E>(&self, change: impl FnOnce(&Live) -> Result<Live, E>) -> Result<(), E> {
        let mut inner = self.lock();
        let live = change(&inner.current)?;
        Hub::install(&mut inner, live);
        Ok(())
    }

    /// Replaces the mix, keeping the backend and the toxics.
    pub fn set_mix(&self, mix: Mix) {
        let _ = self.update(|current| {
            Ok::<_, ()>(Live {
                mix,
                backend: current.backend.clone(),
                toxics: current.toxics.clone(),
            })
        });
    }

    /// Sends new connections to `backend`, keeping the mix and the toxics.
    pub fn set_backend(&self, backend: HostPort) {
        let _ = self.update(|current| {
            Ok::<_, ()>(Live {
                mix: current.mix.clone(),
                backend,
                toxics: current.toxics.clone(),
            })
        });
    }

    fn install(inner: &mut Inner, live: Live) {
        let live = Arc::new(live);
        inner.current = live.clone();
        inner.subscribers.retain(|_, slot| slot.replace(&live));
    }

    /// Subscribes a connection (or one direction of it) to changes.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = bounded(1);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.insert(id, Slot { tx, rx: rx.clone() });
        Subscription {
            hub: self.clone(),
            id,
            live: inner.current.clone(),
            rx,
        }
    }

    /// How many subscriptions are open (two per stream connection).
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// A connection's view of the live settings; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    live: Arc<Live>,
    rx: Receiver<Arc<Live>>,
}

impl Subscription {
    /// The snapshot taken last, without looking for a newer one (within a call).
    pub fn current(&self) -> &Arc<Live> {
        &self.live
    }

    /// The newest snapshot, taking any pending change (called between calls).
    pub fn live(&mut self) -> &Arc<Live> {
        while let Ok(live) = self.rx.try_recv() {
            self.live = live;
        }
        &self.live
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().subscribers.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::BehaviorOptions;
    use crate::registry::Registry;

    fn live(spec: &str) -> Live {
        Live {
            toxics: Toxics::default(),
            mix: Mix::parse(spec, &Registry::builtin(), &BehaviorOptions::new()).unwrap(),
            backend: HostPort::parse("localhost:1").unwrap(),
        }
    }

    #[test]
    fn subscribers_see_the_newest_snapshot_and_leave_on_drop() {
        let hub = Hub::new(live("dummy"));
        let mut a = hub.subscribe();
        assert_eq!(a.live().mix.to_string(), "dummy");
        hub.publish(live("hang"));
        hub.publish(live("20:delay"));
        assert_eq!(a.live().mix.to_string(), "20:delay,80:dummy");
        let b = hub.subscribe();
        assert_eq!(hub.subscribers(), 2);
        drop(b);
        drop(a);
        assert_eq!(hub.subscribers(), 0);
        assert_eq!(hub.current().mix.to_string(), "20:delay,80:dummy");
    }

    #[test]
    fn an_idle_subscriber_holds_the_newest_snapshot_not_the_history() {
        let hub = Hub::new(live("dummy"));
        let mut idle = hub.subscribe();
        hub.publish(live("hang"));
        let first = Arc::downgrade(&hub.current());
        for _ in 0..20_000 {
            hub.publish(live("20:delay"));
        }
        hub.publish(live("blackout"));
        assert!(
            first.upgrade().is_none(),
            "a snapshot the subscriber never took is still held"
        );
        assert_eq!(idle.live().mix.to_string(), "blackout");
        assert_eq!(idle.rx.len(), 0);
    }
}
