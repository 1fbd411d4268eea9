//! The session filter's counters (`proxy_define_metric`), defined once per VM when the plugin is
//! first configured. Envoy shows them as `wasmcustom.session_*`, keel as
//! `keel_wasmcustom_session_*`.

use crate::adapter;
use keel_filter_logic::session::WriteOutcome;

/// A session loaded from the store (its state went to the backend).
pub const LOADED: &str = "session_loaded";
/// A keel id the store did not know (expired, forged): no session, never adopted.
pub const NOT_FOUND: &str = "session_not_found";
/// A new session stored.
pub const CREATED: &str = "session_created";
/// Changed state stored.
pub const SAVED: &str = "session_saved";
/// A response that left a loaded session as it was (no write).
pub const UNCHANGED: &str = "session_unchanged";
/// A session deleted (invalidated by the backend).
pub const DELETED: &str = "session_deleted";
/// A session given a new id.
pub const ROTATED: &str = "session_rotated";
/// A session the store moved to another node (the client got a cookie with the new node).
pub const RELOCATED: &str = "session_relocated";
/// A save refused because another request of the session wrote first (that write is kept).
pub const CAS_CONFLICTS: &str = "session_cas_conflicts";
/// A store call that failed, timed out or was answered 503 (or otherwise unexpectedly).
pub const STORE_UNAVAILABLE: &str = "session_store_unavailable";
/// A state over `max_state_bytes` (from the backend; or refused by the store's own limit).
pub const STATE_TOO_LARGE: &str = "session_state_too_large";
/// A state that is not visible ASCII, or sent in more than one header.
pub const STATE_INVALID: &str = "session_state_invalid";
/// A request whose path matched `ignore_pattern`.
pub const IGNORED: &str = "session_ignored";
/// A request in which the client sent `keel-session*` headers (they were removed).
pub const CLIENT_HEADER_REMOVED: &str = "session_client_header_removed";

/// What a counter counts (its index in [`NAMES`]).
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// [`LOADED`].
    Loaded,
    /// [`NOT_FOUND`].
    NotFound,
    /// [`CREATED`].
    Created,
    /// [`SAVED`].
    Saved,
    /// [`UNCHANGED`].
    Unchanged,
    /// [`DELETED`].
    Deleted,
    /// [`ROTATED`].
    Rotated,
    /// [`RELOCATED`].
    Relocated,
    /// [`CAS_CONFLICTS`].
    CasConflicts,
    /// [`STORE_UNAVAILABLE`].
    StoreUnavailable,
    /// [`STATE_TOO_LARGE`].
    StateTooLarge,
    /// [`STATE_INVALID`].
    StateInvalid,
    /// [`IGNORED`].
    Ignored,
    /// [`CLIENT_HEADER_REMOVED`].
    ClientHeaderRemoved,
}

const NAMES: [&str; 14] = [
    LOADED,
    NOT_FOUND,
    CREATED,
    SAVED,
    UNCHANGED,
    DELETED,
    ROTATED,
    RELOCATED,
    CAS_CONFLICTS,
    STORE_UNAVAILABLE,
    STATE_TOO_LARGE,
    STATE_INVALID,
    IGNORED,
    CLIENT_HEADER_REMOVED,
];

impl Counter {
    /// The counter of a write's outcome (`None`: a 404 to a save, counted by the create that
    /// follows).
    pub fn of_write(outcome: WriteOutcome) -> Option<Self> {
        match outcome {
            WriteOutcome::Created => Some(Counter::Created),
            WriteOutcome::Rotated => Some(Counter::Rotated),
            WriteOutcome::Saved => Some(Counter::Saved),
            WriteOutcome::Deleted => Some(Counter::Deleted),
            WriteOutcome::Conflict => Some(Counter::CasConflicts),
            WriteOutcome::TooLarge => Some(Counter::StateTooLarge),
            WriteOutcome::Failed => Some(Counter::StoreUnavailable),
            WriteOutcome::Gone => None,
        }
    }
}

/// The filter's counters, indexed by [`Counter`].
pub type Counters = adapter::Counters<{ NAMES.len() }>;

/// Defines every counter with the host.
pub fn define() -> Counters {
    Counters::define(NAMES)
}
