//! Wake-ups by key, for long polls: a waiter takes the key's `Notify`, whoever changes what it
//! waits for wakes the key. Only keys with a live waiter are held (the map keeps weak
//! references and drops dead ones as it goes), so its size is bounded by the waiters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The waiters of one process, by key.
#[derive(Debug, Default)]
pub struct Wakers {
    keys: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Wakers {
    /// The `Notify` of `key`, made when no waiter holds it. Hold it while waiting.
    pub fn waiter(&self, key: &str) -> Arc<Notify> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = keys.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        // Dropped waiters leave dead entries: sweep them when the map grows past its live part.
        if keys.len() >= 64 && keys.len().is_power_of_two() {
            keys.retain(|_, weak| weak.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        keys.insert(key.to_string(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes the waiter of `key`, if there is one (it keeps the wake-up when it is not waiting
    /// at this moment).
    pub fn wake(&self, key: &str) {
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(notify) = keys.get(key).and_then(Weak::upgrade) {
            notify.notify_one();
        }
    }

    /// Wakes every waiter (after a gap in what this process heard).
    pub fn wake_all(&self) {
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for notify in keys.values().filter_map(Weak::upgrade) {
            notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_the_waiter_of_its_key_only_and_is_kept_until_it_waits() {
        let wakers = Wakers::default();
        let a = wakers.waiter("a");
        let b = wakers.waiter("b");
        wakers.wake("a");
        tokio::time::timeout(Duration::from_secs(1), a.notified())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), b.notified())
                .await
                .is_err()
        );
        // Everyone waiting wakes on `wake_all`.
        wakers.wake_all();
        for waiter in [&a, &b] {
            tokio::time::timeout(Duration::from_secs(1), waiter.notified())
                .await
                .unwrap();
        }
        // A key nobody waits on holds nothing.
        wakers.wake("c");
        drop(b);
        assert!(Arc::ptr_eq(&wakers.waiter("a"), &a));
    }
}
