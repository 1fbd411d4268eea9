//! The in-process store (keel's embedded default, for the demo and a single instance): a map
//! under a mutex with expiry on the store's clock and a CAS counter, with the same answers as
//! the memcached store. One node id, [`super::MEMORY_NODE`]. Lost when keel stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::clock::Clock;
use crate::session_key::SessionKey;
use crate::store::{MEMORY_NODE, Record, StoreError, Written};

/// Expired records are swept from the map once per this many creates.
const SWEEP_EVERY: u64 = 1024;

#[derive(Debug)]
struct Entry {
    route: Option<String>,
    state: Bytes,
    cas: u64,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    last_cas: u64,
    creates: u64,
}

/// The memory backend.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every update is one
        // assignment): go on with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live entry of `key`, removing it if it has expired.
    fn live<'a>(&self, inner: &'a mut Inner, key: &SessionKey) -> Option<&'a mut Entry> {
        let now = self.clock.now();
        if inner.map.get(key.id()).is_some_and(|e| e.expires <= now) {
            inner.map.remove(key.id());
        }
        inner.map.get_mut(key.id())
    }

    pub(crate) fn load(&self, key: &SessionKey, ttl: u64) -> Option<Record> {
        let expires = self.clock.now() + Duration::from_secs(ttl);
        let mut inner = self.lock();
        let e = self.live(&mut inner, key)?;
        e.expires = expires;
        Some(Record {
            key: key.clone(),
            cas: e.cas,
            route: e.route.clone(),
            state: e.state.clone(),
        })
    }

    pub(crate) fn create(
        &self,
        route: Option<&str>,
        state: Bytes,
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.creates += 1;
        if inner.creates.is_multiple_of(SWEEP_EVERY) {
            inner.map.retain(|_, e| e.expires > now);
        }
        let key = loop {
            let key = SessionKey::generate(MEMORY_NODE)?;
            if self.live(&mut inner, &key).is_none() {
                break key;
            }
        };
        inner.last_cas += 1;
        let cas = inner.last_cas;
        inner.map.insert(
            key.id().to_owned(),
            Entry {
                route: route.map(str::to_owned),
                state,
                cas,
                expires: now + Duration::from_secs(ttl),
            },
        );
        Ok(Written { key, cas })
    }

    pub(crate) fn save(
        &self,
        key: &SessionKey,
        route: Option<&str>,
        state: Bytes,
        cas: Option<u64>,
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let expires = self.clock.now() + Duration::from_secs(ttl);
        let mut inner = self.lock();
        let next = inner.last_cas + 1;
        let e = self.live(&mut inner, key).ok_or(StoreError::NotFound)?;
        if cas.is_some_and(|c| c != e.cas) {
            return Err(StoreError::Conflict);
        }
        *e = Entry {
            route: route.map(str::to_owned),
            state,
            cas: next,
            expires,
        };
        inner.last_cas = next;
        Ok(Written {
            key: key.clone(),
            cas: next,
        })
    }

    pub(crate) fn delete(&self, key: &SessionKey) {
        self.lock().map.remove(key.id());
    }
}
