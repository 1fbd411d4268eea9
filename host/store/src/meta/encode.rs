//! Encoding the meta commands the store sends: `mg`, `ms`, `md` and `mn`. Every command is
//! built from a checked [`Key`] and numbers, so nothing a client sends can add a flag or a
//! command: the only free-form bytes are `ms`'s data block, which is length-prefixed.

use bytes::{BufMut, BytesMut};

use crate::meta::key::Key;

/// The largest TTL memcached takes as relative seconds (30 days); larger values are unix
/// times ("Expiration times" in protocol.txt).
pub const MAX_RELATIVE_TTL: u64 = 60 * 60 * 24 * 30;

/// An expiration as sent in a `T` flag: relative seconds up to 30 days, else a unix time.
/// `0` means "never expires".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(u32);

impl Expiry {
    /// The expiration for an idle timeout of `ttl` seconds: `ttl` itself up to 30 days, else
    /// `unix_now + ttl` (memcached reads larger values as absolute times). Capped at
    /// `i32::MAX`, the largest time memcached parses.
    pub fn from_ttl(ttl: u64, unix_now: u64) -> Self {
        let value = if ttl <= MAX_RELATIVE_TTL {
            ttl
        } else {
            unix_now.saturating_add(ttl)
        };
        Expiry(u32::try_from(value.min(i32::MAX as u64)).unwrap_or(i32::MAX as u32))
    }

    /// The value of the `T` flag.
    pub fn value(self) -> u32 {
        self.0
    }
}

/// `mg <key> <flags>*`: a read, optionally touching the TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet<'a> {
    /// The key.
    pub key: &'a Key,
    /// `v`: return the value (answer `VA`, else `HD`).
    pub value: bool,
    /// `c`: return the item's CAS token.
    pub cas: bool,
    /// `t`: return the TTL left (before a touch in the same command).
    pub ttl_left: bool,
    /// `T<ttl>`: set the TTL (touch) on a hit.
    pub touch: Option<Expiry>,
    /// `k`: return the key.
    pub return_key: bool,
    /// `O<n>`: an opaque number echoed back.
    pub opaque: Option<u32>,
    /// `q`: no `EN` on a miss.
    pub quiet: bool,
}

impl<'a> MetaGet<'a> {
    /// A get of `key` without flags (answers `HD` or `EN`).
    pub fn new(key: &'a Key) -> Self {
        MetaGet {
            key,
            value: false,
            cas: false,
            ttl_left: false,
            touch: None,
            return_key: false,
            opaque: None,
            quiet: false,
        }
    }

    /// Appends the command line to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(b"mg ");
        buf.put_slice(self.key.as_str().as_bytes());
        flag(buf, self.value, "v");
        flag(buf, self.cas, "c");
        flag(buf, self.ttl_left, "t");
        if let Some(t) = self.touch {
            put_num(buf, "T", u64::from(t.value()));
        }
        flag(buf, self.return_key, "k");
        if let Some(o) = self.opaque {
            put_num(buf, "O", u64::from(o));
        }
        flag(buf, self.quiet, "q");
        buf.put_slice(b"\r\n");
    }
}

/// The `M` mode of `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Store whatever is there (no `M` flag).
    Set,
    /// `ME`: store only if the key is absent (`NS` otherwise).
    Add,
    /// `MR`: store only if the key is present (`NS` otherwise).
    Replace,
}

/// `ms <key> <datalen> <flags>*\r\n<data>\r\n`: a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet<'a> {
    /// The key.
    pub key: &'a Key,
    /// The data block.
    pub data: &'a [u8],
    /// `T<ttl>`.
    pub ttl: Expiry,
    /// `C<cas>`: store only if the item's CAS token is this (`EX` if not, `NF` if absent).
    pub compare_cas: Option<u64>,
    /// The mode.
    pub mode: SetMode,
    /// `c`: return the new CAS token.
    pub return_cas: bool,
    /// `O<n>`.
    pub opaque: Option<u32>,
    /// `q`: no `HD` on success.
    pub quiet: bool,
}

impl<'a> MetaSet<'a> {
    /// A plain set of `data` under `key` with `ttl`, returning the new CAS token.
    pub fn new(key: &'a Key, data: &'a [u8], ttl: Expiry) -> Self {
        MetaSet {
            key,
            data,
            ttl,
            compare_cas: None,
            mode: SetMode::Set,
            return_cas: true,
            opaque: None,
            quiet: false,
        }
    }

    /// Appends the command line and the data block to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.key.as_str().len() + self.data.len() + 64);
        buf.put_slice(b"ms ");
        buf.put_slice(self.key.as_str().as_bytes());
        put_num(buf, "", self.data.len() as u64);
        put_num(buf, "T", u64::from(self.ttl.value()));
        if let Some(c) = self.compare_cas {
            put_num(buf, "C", c);
        }
        match self.mode {
            SetMode::Set => {}
            SetMode::Add => buf.put_slice(b" ME"),
            SetMode::Replace => buf.put_slice(b" MR"),
        }
        flag(buf, self.return_cas, "c");
        if let Some(o) = self.opaque {
            put_num(buf, "O", u64::from(o));
        }
        flag(buf, self.quiet, "q");
        buf.put_slice(b"\r\n");
        buf.put_slice(self.data);
        buf.put_slice(b"\r\n");
    }
}

/// `md <key> <flags>*`: a delete (`HD`, or `NF` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete<'a> {
    /// The key.
    pub key: &'a Key,
    /// `O<n>`.
    pub opaque: Option<u32>,
    /// `q`: no `HD` on success.
    pub quiet: bool,
}

impl<'a> MetaDelete<'a> {
    /// A delete of `key`.
    pub fn new(key: &'a Key) -> Self {
        MetaDelete {
            key,
            opaque: None,
            quiet: false,
        }
    }

    /// Appends the command line to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(b"md ");
        buf.put_slice(self.key.as_str().as_bytes());
        if let Some(o) = self.opaque {
            put_num(buf, "O", u64::from(o));
        }
        flag(buf, self.quiet, "q");
        buf.put_slice(b"\r\n");
    }
}

/// Appends `mn\r\n` (answered by `MN`: ends a batch of quiet commands).
pub fn encode_noop(buf: &mut BytesMut) {
    buf.put_slice(b"mn\r\n");
}

fn flag(buf: &mut BytesMut, on: bool, f: &str) {
    if on {
        buf.put_u8(b' ');
        buf.put_slice(f.as_bytes());
    }
}

fn put_num(buf: &mut BytesMut, f: &str, n: u64) {
    buf.put_u8(b' ');
    buf.put_slice(f.as_bytes());
    buf.put_slice(n.to_string().as_bytes());
}
