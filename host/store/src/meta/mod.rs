//! The memcached meta protocol, sans-IO: commands encoded into a buffer, responses decoded
//! from whatever bytes have been read so far. No sockets here (the transport is in
//! [`crate::node`]).
//!
//! * [`Key`]: a key the codec accepts (1..=250 bytes of printable ASCII, no space).
//! * [`MetaGet`], [`MetaSet`], [`MetaDelete`], [`encode_noop`]: the commands the store sends.
//! * [`decode()`]: one [`Response`] from the front of a buffer, `Ok(None)` while incomplete.
//!
//! Syntax from memcached 1.6.18 `doc/protocol.txt` ("Meta Commands", "Meta Get", "Meta Set",
//! "Meta Delete", "Meta No-Op", "Expiration times", "Error strings"), checked against the
//! Debian 12 binary: `ms` answers `HD c<cas>` with the `c` flag, `NS`/`EX`/`NF` carry the
//! flags too (`c0`), and `EN` echoes `O` and `k`.

mod decode;
mod encode;
mod error;
mod key;

pub use decode::{DEFAULT_MAX_VALUE, Flag, Limits, Response, decode};
pub use encode::{Expiry, MetaDelete, MetaGet, MetaSet, SetMode, encode_noop};
pub use error::{DecodeError, ErrorReply};
pub use key::{Key, KeyError, MAX_KEY_LEN};
