//! The memcached backend's operations: load, create, save and delete with
//! memcached-session-manager's semantics.
//!
//! * Primary `keel:<id>` on the key's node; backup `keel:bak:<id>` on the next available node
//!   in list order after it. Every write goes to both; a load touches both.
//! * create: a random available primary, then another primary, then the failover nodes (in
//!   list order); `ms … ME` (add), so an id collision is an `NS` and a new id.
//! * load: the primary; on a miss or a failure the backup. A primary that answered but missed
//!   gets the record back from the backup (same key); a primary that is down or failed means
//!   relocation: the record is written to a live node chosen as for create and the key's node
//!   changes.
//! * save: `ms … C<cas>` (or `MR` without a token) on the primary; `EX` is a conflict, a
//!   missing primary with a live backup is restored, a down primary relocates. The CAS check
//!   needs the primary: a save that relocates (primary down) or restores (primary lost the
//!   item) is written without it.
//! * delete: both copies; 503 only if neither node could be reached.

use bytes::{Bytes, BytesMut};

use super::{MemcachedStore, Outcome, backup_key, primary_key, unwrap_envelope};
use crate::meta::{Key, MetaDelete, Response, SetMode};
use crate::session_key::SessionKey;
use crate::store::{Record, StoreError, Written};

/// How many fresh ids a create tries when `ME` finds the id taken.
const ID_ATTEMPTS: usize = 3;

impl MemcachedStore {
    pub(crate) async fn load(
        &self,
        key: &SessionKey,
        ttl: u64,
    ) -> Result<Option<Record>, StoreError> {
        let p = self.index(key)?;
        let pk = primary_key(key)?;
        let mut primary_failed = true;
        if self.nodes[p].is_available() {
            match self.get(p, &pk, true, ttl).await? {
                Outcome::Answer(Response::Value { data, flags }) => {
                    let cas = Response::Done(flags).cas().unwrap_or(0);
                    let Some((route, state)) = unwrap_envelope(key, &data) else {
                        return Ok(None);
                    };
                    self.touch_backup(p, key, &data, ttl).await?;
                    return Ok(Some(Record {
                        key: key.clone(),
                        cas,
                        route,
                        state,
                    }));
                }
                Outcome::Answer(Response::Miss(_)) => primary_failed = false,
                Outcome::Answer(r) => {
                    self.unexpected(p, &r);
                }
                Outcome::Failed => {}
            }
        }
        // The backup: the primary missed, failed or is down.
        let Some(b) = self.backup_of(p) else {
            return if primary_failed {
                Err(StoreError::Unavailable)
            } else {
                Ok(None)
            };
        };
        let data = match self.get(b, &backup_key(key)?, true, ttl).await? {
            Outcome::Answer(Response::Value { data, .. }) => data,
            Outcome::Answer(Response::Miss(_)) => return Ok(None),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                return self.unreachable_or_miss(primary_failed);
            }
            Outcome::Failed => return self.unreachable_or_miss(primary_failed),
        };
        let Some((route, state)) = unwrap_envelope(key, &data) else {
            return Ok(None);
        };
        if !primary_failed {
            // The primary is up but lost the record (restarted): put it back, same key.
            if let Outcome::Answer(r @ Response::Done(_)) =
                self.set(p, &pk, &data, ttl, SetMode::Set, None).await?
            {
                return Ok(Some(Record {
                    key: key.clone(),
                    cas: r.cas().unwrap_or(0),
                    route,
                    state,
                }));
            }
        }
        let (key, cas) = match self.relocate(key, p, &data, ttl).await? {
            Some(w) => (w.key, w.cas),
            // Nowhere to move it: serve the backup's copy under the old key.
            None => (key.clone(), 0),
        };
        Ok(Some(Record {
            key,
            cas,
            route,
            state,
        }))
    }

    fn unreachable_or_miss(&self, primary_failed: bool) -> Result<Option<Record>, StoreError> {
        // With the primary alive and missing, its miss is the answer; otherwise nobody knows.
        if primary_failed {
            Err(StoreError::Unavailable)
        } else {
            Ok(None)
        }
    }

    /// Touches the backup's TTL after a primary hit; a missing backup (its node changed) is
    /// written again. Best effort.
    async fn touch_backup(
        &self,
        p: usize,
        key: &SessionKey,
        data: &Bytes,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let Some(b) = self.backup_of(p) else {
            return Ok(());
        };
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Miss(_)) => self.write_backup(p, key, data, ttl).await,
            Outcome::Answer(Response::Done(_)) | Outcome::Failed => Ok(()),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                Ok(())
            }
        }
    }

    pub(crate) async fn create(&self, value: &[u8], ttl: u64) -> Result<Written, StoreError> {
        let candidates = self.candidates(None)?;
        for _ in 0..ID_ATTEMPTS {
            let mut collided = false;
            for &c in &candidates {
                let key = SessionKey::generate(self.nodes[c].id())?;
                let pk = primary_key(&key)?;
                match self.set(c, &pk, value, ttl, SetMode::Add, None).await? {
                    Outcome::Answer(r @ Response::Done(_)) => {
                        self.write_backup(c, &key, value, ttl).await?;
                        return Ok(Written {
                            cas: r.cas().unwrap_or(0),
                            key,
                        });
                    }
                    Outcome::Answer(Response::NotStored(_)) => {
                        log::warn!("session store: a new id is taken already; drawing another");
                        collided = true;
                        break;
                    }
                    Outcome::Answer(r) => {
                        self.unexpected(c, &r);
                    }
                    Outcome::Failed => {}
                }
            }
            if !collided {
                break;
            }
        }
        Err(StoreError::Unavailable)
    }

    pub(crate) async fn save(
        &self,
        key: &SessionKey,
        value: &[u8],
        cas: Option<u64>,
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let p = self.index(key)?;
        let pk = primary_key(key)?;
        if self.nodes[p].is_available() {
            let mode = if cas.is_some() {
                SetMode::Set
            } else {
                SetMode::Replace
            };
            match self.set(p, &pk, value, ttl, mode, cas).await? {
                Outcome::Answer(r @ Response::Done(_)) => {
                    self.write_backup(p, key, value, ttl).await?;
                    return Ok(Written {
                        key: key.clone(),
                        cas: r.cas().unwrap_or(0),
                    });
                }
                Outcome::Answer(Response::Exists(_)) => return Err(StoreError::Conflict),
                Outcome::Answer(Response::NotFound(_) | Response::NotStored(_)) => {
                    return self.restore(p, key, value, ttl).await;
                }
                Outcome::Answer(r) => {
                    self.unexpected(p, &r);
                }
                Outcome::Failed => {}
            }
        }
        // The primary is down: the record lives on if its backup does.
        let b = self.backup_of(p).ok_or(StoreError::Unavailable)?;
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Done(_)) => {}
            Outcome::Answer(Response::Miss(_)) => return Err(StoreError::NotFound),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                return Err(StoreError::Unavailable);
            }
            Outcome::Failed => return Err(StoreError::Unavailable),
        }
        self.relocate(key, p, value, ttl)
            .await?
            .ok_or(StoreError::Unavailable)
    }

    /// A save whose primary (alive) does not have the record: if the backup does, the primary
    /// lost it (restart) and gets it back with this save (add mode: a concurrent restore
    /// wins, and this one is a conflict); else the session is gone.
    async fn restore(
        &self,
        p: usize,
        key: &SessionKey,
        value: &[u8],
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let Some(b) = self.backup_of(p) else {
            return Err(StoreError::NotFound);
        };
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Done(_)) => {}
            _ => return Err(StoreError::NotFound),
        }
        match self
            .set(p, &primary_key(key)?, value, ttl, SetMode::Add, None)
            .await?
        {
            Outcome::Answer(r @ Response::Done(_)) => {
                self.write_backup(p, key, value, ttl).await?;
                Ok(Written {
                    key: key.clone(),
                    cas: r.cas().unwrap_or(0),
                })
            }
            Outcome::Answer(Response::NotStored(_)) => Err(StoreError::Conflict),
            Outcome::Answer(r) => {
                self.unexpected(p, &r);
                Err(StoreError::Unavailable)
            }
            Outcome::Failed => Err(StoreError::Unavailable),
        }
    }

    pub(crate) async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let p = self.index(key)?;
        let mut reached = false;
        if self.nodes[p].is_available() {
            reached |= self.delete_one(p, &primary_key(key)?).await?;
        }
        if let Some(b) = self.backup_of(p) {
            reached |= self.delete_one(b, &backup_key(key)?).await?;
        }
        if reached {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    async fn delete_one(&self, i: usize, key: &Key) -> Result<bool, StoreError> {
        let mut cmd = BytesMut::new();
        MetaDelete::new(key).encode(&mut cmd);
        Ok(match self.call(i, cmd).await? {
            Outcome::Answer(Response::Done(_) | Response::NotFound(_)) => true,
            Outcome::Answer(r) => {
                self.unexpected(i, &r);
                false
            }
            Outcome::Failed => false,
        })
    }
}
