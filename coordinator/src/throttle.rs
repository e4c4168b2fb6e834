//! A failure throttle: after `max` failures of one key within `window`, the key is refused until
//! the window that began with its first failure ends. Used for dashboard sign-in, keyed by the
//! client's address. Memory is bounded: at most `MAX_KEYS` keys are tracked; when full, expired
//! keys are dropped first and then every new key counts against one shared key.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most keys tracked at once.
const MAX_KEYS: usize = 10_000;
/// The key every address shares once the table is full.
const OVERFLOW: &str = "*";

/// Failures counted per key in fixed windows.
#[derive(Debug)]
pub struct Throttle {
    max: u32,
    window: Duration,
    keys: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    /// A throttle that allows `max` failures per key within `window`.
    pub fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` has used its failures and must wait `wait`.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = keys.get(key).or_else(|| {
            (keys.len() >= MAX_KEYS)
                .then(|| keys.get(OVERFLOW))
                .flatten()
        });
        match entry {
            Some((start, count)) if *count >= self.max => {
                let ends = *start + self.window;
                if ends > now { Err(ends - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.window;
        if !keys.contains_key(key) && keys.len() >= MAX_KEYS {
            keys.retain(|_, (start, _)| *start + window > now);
        }
        let key = if keys.contains_key(key) || keys.len() < MAX_KEYS {
            key
        } else {
            OVERFLOW
        };
        let entry = keys.entry(key.to_string()).or_insert((now, 0));
        if entry.0 + window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_failures_until_the_window_ends() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.check("a", t0), Ok(()));
            throttle.fail("a", t0);
        }
        assert_eq!(throttle.check("a", t0), Err(Duration::from_secs(60)));
        assert_eq!(throttle.check("b", t0), Ok(()));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(throttle.check("a", later), Ok(()));
        throttle.fail("a", later);
        assert_eq!(throttle.check("a", later), Ok(()));
    }

    #[test]
    fn a_full_table_counts_new_keys_together() {
        let throttle = Throttle::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for n in 0..MAX_KEYS {
            throttle.fail(&n.to_string(), t0);
        }
        assert_eq!(throttle.check("new", t0), Ok(()));
        throttle.fail("new", t0);
        assert!(throttle.check("newer", t0).is_err());
        // Once the window has passed, the expired keys make room again.
        let later = t0 + Duration::from_secs(61);
        throttle.fail("fresh", later);
        assert!(throttle.check("fresh", later).is_err());
        assert_eq!(throttle.check("other", later), Ok(()));
    }
}
