//! The tokens a filter's callouts get, numbered as cpp-host numbers them for Envoy
//! (`include/proxy-wasm/wasm.h` `CalloutType`, `nextHttpCallId`, `nextGrpcCallId`,
//! `nextGrpcStreamId`, `isGrpcCallId`, `isGrpcStreamId`): one sequence per kind and instance,
//! each stepping by 4 from the kind's number, so that a token's two low bits name its kind —
//! http calls 4, 8, 12, …; gRPC calls 5, 9, 13, …; gRPC streams 6, 10, 14, …. The kinds never
//! share a token, and the gRPC hostcalls tell a token of the wrong kind (`BadArgument`) from
//! one of theirs that is gone (`NotFound`), as Envoy's `context.cc` `grpcSend`, `grpcClose`
//! and `grpcCancel` do.

/// What a token was given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    HttpCall = 0,
    GrpcCall = 1,
    GrpcStream = 2,
}

/// The low bits of a token that name its kind (`kCalloutTypeMask`).
const KIND_BITS: u32 = 0x3;
/// The step of each sequence (`kCalloutIncrement`).
const STEP: u32 = 0x4;

/// The kind of `token`; `None` for one no callout can have (low bits 3).
pub(crate) fn kind(token: u32) -> Option<Kind> {
    match token & KIND_BITS {
        0 => Some(Kind::HttpCall),
        1 => Some(Kind::GrpcCall),
        2 => Some(Kind::GrpcStream),
        _ => None,
    }
}

/// The last token of each kind an instance gave (at first the kind's number, so the first
/// token is that plus 4, as in cpp-host; like cpp-host's, a sequence wraps around after 2^30
/// tokens).
#[derive(Debug)]
pub(crate) struct Tokens {
    last: [u32; 3],
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            last: [
                Kind::HttpCall as u32,
                Kind::GrpcCall as u32,
                Kind::GrpcStream as u32,
            ],
        }
    }
}

impl Tokens {
    /// The token the next callout of `kind` gets, without taking it.
    pub fn following(&self, kind: Kind) -> u32 {
        self.last[kind as usize].wrapping_add(STEP)
    }

    /// Takes the next token of `kind`.
    pub fn take(&mut self, kind: Kind) -> u32 {
        let token = self.following(kind);
        self.last[kind as usize] = token;
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cpp-host `wasm.h`: `next_http_call_id_` starts at `HttpCall` (0) and each
    /// `nextHttpCallId` adds `kCalloutIncrement` (4) first; the same for the gRPC kinds.
    #[test]
    fn each_kind_counts_by_four_from_its_own_number() {
        let mut tokens = Tokens::default();
        assert_eq!(tokens.following(Kind::GrpcCall), 5);
        assert_eq!(tokens.take(Kind::HttpCall), 4);
        assert_eq!(tokens.take(Kind::GrpcCall), 5);
        assert_eq!(tokens.take(Kind::GrpcStream), 6);
        assert_eq!(tokens.take(Kind::HttpCall), 8);
        assert_eq!(tokens.take(Kind::GrpcStream), 10);
        assert_eq!(tokens.take(Kind::GrpcCall), 9);
    }

    #[test]
    fn a_token_names_its_kind() {
        assert_eq!(kind(4), Some(Kind::HttpCall));
        assert_eq!(kind(9), Some(Kind::GrpcCall));
        assert_eq!(kind(4242), Some(Kind::GrpcStream));
        assert_eq!(kind(7), None);
        let mut tokens = Tokens::default();
        for kind_of in [Kind::HttpCall, Kind::GrpcCall, Kind::GrpcStream] {
            for _ in 0..3 {
                assert_eq!(kind(tokens.take(kind_of)), Some(kind_of));
            }
        }
    }
}
