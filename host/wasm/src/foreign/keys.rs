//! The keys `sign` and `verify_signature` take, read as Envoy reads them
//! (`source/common/crypto/utility_impl.cc`): a public key is a DER SubjectPublicKeyInfo
//! (`EVP_parse_public_key`) or a PEM `PUBLIC KEY` block (`PEM_read_bio_PUBKEY`); a private key
//! is DER PKCS#8 (`EVP_parse_private_key`) or PEM (`PEM_read_bio_PrivateKey`: PKCS#8 `PRIVATE
//! KEY`, PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`; an encrypted one needs a password
//! Envoy never gives). PEM framing comes from `rustls-pki-types`; the few DER structures around
//! the key are read here. What does not read is `None`, Envoy's null `EVP_PKEY`.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

/// rsaEncryption, id-ecPublicKey, prime256v1 and secp384r1 (the OIDs' DER contents).
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

use crate::der::{BIT_STRING, INTEGER, OCTET_STRING, OID, SEQUENCE};

/// SEC1's `[0] parameters`.
const PARAMETERS: u8 = 0xa0;

/// The curves keel can sign and verify with (ring's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

/// What a key is, as far as keel's crypto (ring) can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Rsa,
    Ec(Curve),
    /// A key BoringSSL reads but ring cannot use (another curve, Ed25519, DSA, ...).
    Other,
}

/// A public key: its kind and the bytes ring verifies with (an RSAPublicKey, an EC point).
pub(super) struct PublicKey {
    pub kind: Kind,
    pub key: Vec<u8>,
}

/// A private key: its kind and its DER, PKCS#8 (PKCS#1 for [`PrivateKey::pkcs1`]).
pub(super) struct PrivateKey {
    pub kind: Kind,
    pub der: Vec<u8>,
    pub pkcs1: bool,
}

/// A public key from a PEM `PUBLIC KEY` block or a DER SubjectPublicKeyInfo.
pub(super) fn public(pem: Option<&str>, der: &[u8]) -> Option<PublicKey> {
    let spki = match pem {
        Some(pem) => SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .ok()?
            .to_vec(),
        None => der.to_vec(),
    };
    let mut input = spki.as_slice();
    let mut spki = expect(&mut input, SEQUENCE)?;
    let (kind, _) = algorithm(&mut spki)?;
    let bits = expect(&mut spki, BIT_STRING)?;
    let (unused, key) = bits.split_first()?;
    (*unused == 0).then(|| PublicKey {
        kind,
        key: key.to_vec(),
    })
}

/// A private key from PEM or DER PKCS#8.
pub(super) fn private(pem: Option<&str>, der: &[u8]) -> Option<PrivateKey> {
    let (der, pkcs1) = match pem {
        Some(pem) => match PrivateKeyDer::from_pem_slice(pem.as_bytes()).ok()? {
            PrivateKeyDer::Pkcs1(key) => (key.secret_pkcs1_der().to_vec(), true),
            PrivateKeyDer::Pkcs8(key) => (key.secret_pkcs8_der().to_vec(), false),
            PrivateKeyDer::Sec1(key) => (sec1_as_pkcs8(key.secret_sec1_der())?, false),
            _ => return None,
        },
        None => (der.to_vec(), false),
    };
    let kind = if pkcs1 {
        Kind::Rsa
    } else {
        let mut input = der.as_slice();
        let mut info = expect(&mut input, SEQUENCE)?;
        expect(&mut info, INTEGER)?;
        algorithm(&mut info)?.0
    };
    Some(PrivateKey { kind, der, pkcs1 })
}

/// An AlgorithmIdentifier: the key's kind, and the curve's OID for an EC key.
fn algorithm<'a>(input: &mut &'a [u8]) -> Option<(Kind, &'a [u8])> {
    let mut id = expect(input, SEQUENCE)?;
    let oid = expect(&mut id, OID)?;
    let kind = match oid {
        RSA => Kind::Rsa,
        EC => {
            let curve = expect(&mut id, OID)?;
            let kind = match curve {
                P256 => Kind::Ec(Curve::P256),
                P384 => Kind::Ec(Curve::P384),
                _ => Kind::Other,
            };
            return Some((kind, curve));
        }
        _ => Kind::Other,
    };
    Some((kind, &[]))
}

/// A SEC1 `ECPrivateKey` wrapped as the PKCS#8 `PrivateKeyInfo` ring reads, with the curve its
/// `[0] parameters` names (OpenSSL always writes them).
fn sec1_as_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let mut input = sec1;
    let mut key = expect(&mut input, SEQUENCE)?;
    expect(&mut key, INTEGER)?;
    expect(&mut key, OCTET_STRING)?;
    let mut parameters = expect(&mut key, PARAMETERS)?;
    let curve = expect(&mut parameters, OID)?;
    let mut algorithm = tlv(OID, EC);
    algorithm.extend(tlv(OID, curve));
    let mut info = tlv(INTEGER, &[0]);
    info.extend(tlv(SEQUENCE, &algorithm));
    info.extend(tlv(OCTET_STRING, sec1));
    Some(tlv(SEQUENCE, &info))
}

/// The contents of the next element, which must have tag `tag` (DER lengths, definite).
fn expect<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    let (element, rest) = crate::der::element(input)?;
    if element.tag != tag {
        return None;
    }
    *input = rest;
    Some(element.content)
}

/// One DER element.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_elements_round_trip_in_both_length_forms() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let contents = vec![7u8; len];
            let element = tlv(OCTET_STRING, &contents);
            let mut input = element.as_slice();
            assert_eq!(expect(&mut input, OCTET_STRING), Some(&contents[..]));
            assert!(input.is_empty());
        }
        let mut input: &[u8] = &[OCTET_STRING, 0x05, 1, 2];
        assert_eq!(expect(&mut input, OCTET_STRING), None, "cut short");
        let mut input: &[u8] = &[OCTET_STRING, 0x80];
        assert_eq!(expect(&mut input, OCTET_STRING), None, "indefinite length");
    }

    #[test]
    fn what_is_not_a_key_reads_as_none() {
        assert!(public(None, b"").is_none());
        assert!(
            public(
                Some("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"),
                b""
            )
            .is_none()
        );
        assert!(private(None, &[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
        assert!(private(Some("not pem"), b"").is_none());
    }
}
