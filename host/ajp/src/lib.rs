//! AJP/1.3 for keel: the protocol between a proxy and Tomcat's AJP connector.
//!
//! * The sans-IO codec: [`ForwardRequest`] (encode), [`encode_body_chunk`], [`encode_cping`],
//!   [`decode()`] for what the container answers ([`Frame`]), [`PacketSize`], and the
//!   container's side in [`container`] (for tests and the test server).
//! * [`client`]: a tokio client with a connection pool per member, CPING, streaming bodies
//!   both ways and errors that say whether a retry is safe.
//! * `test_server` (feature `test-support`): a small scriptable AJP container.
//!
//! Protocol facts come from tomcat-connectors `xdocs/ajp/ajpv13a.xml`, Tomcat
//! `java/org/apache/coyote/ajp/{Constants,AjpProcessor}.java` and httpd
//! `modules/proxy/{ajp_header.c,mod_proxy_ajp.c}`.

mod body;
pub mod client;
pub mod container;
mod decode;
mod error;
mod forward;
pub mod header_codes;
pub mod method;
mod reader;
#[cfg(feature = "test-support")]
pub mod test_server;
mod wire;

pub use body::{CPING_PACKET, END_OF_BODY, encode_body_chunk, encode_cping};
pub use decode::{Frame, ResponseHead, decode, packet_len};
pub use error::{DecodeError, EncodeError};
pub use forward::{
    ATTR_LOCAL_ADDR, ATTR_REMOTE_PORT, ATTR_SSL_PROTOCOL, ForwardRequest, TlsAttributes,
};
pub use wire::PacketSize;
