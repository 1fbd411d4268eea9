//! keel's session store.
//!
//! * [`meta`]: the memcached meta protocol, sans-IO (encode commands, decode responses).
//! * [`node`]: the tokio transport to one memcached node (pool, timeouts, dead marking).
//! * [`clock`]: the injectable clock.

pub mod clock;
pub mod meta;
pub mod node;
