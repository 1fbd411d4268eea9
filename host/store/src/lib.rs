//! keel's session store.
//!
//! * [`meta`]: the memcached meta protocol, sans-IO (encode commands, decode responses).

pub mod meta;
