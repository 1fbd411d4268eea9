//! `sign` and `verify_signature` (Envoy `source/extensions/common/wasm/foreign.cc`, messages
//! `ext/sign.proto` and `ext/verify_signature.proto`, crypto
//! `source/common/crypto/utility_impl.cc`).
//!
//! As in Envoy: arguments that do not parse, and a key given both as PEM and DER or not at all,
//! are `BadArgument`; anything else answers `Ok` with a result message — `result` true (and the
//! `signature`), or false with Envoy's `error` text: `"<hash> is not supported."` for a hash
//! other than sha1, sha224, sha256, sha384, sha512 (any case), then `"Failed to initialize
//! digest verify."` / `"Invalid key type: private key required for signing operation."` for a
//! key that does not read, and `"Failed to verify digest. Error code: 0"` for a signature that
//! does not match. Signatures are PKCS#1 v1.5 for RSA and ASN.1 DER for ECDSA, as
//! `EVP_DigestSign` makes them.
//!
//! keel's crypto is ring (already in the build through rustls), which does fewer combinations
//! than BoringSSL: RSA verifies with sha1, sha256, sha384, sha512 and signs with sha256,
//! sha384, sha512; ECDSA on P-256 and P-384 verifies with sha256 and sha384 and signs P-256
//! with sha256, P-384 with sha384. Another combination BoringSSL would do (RSA with sha224, P-521,
//! ...) answers `result` false with the error [`UNSUPPORTED`]; Ed25519 fails in Envoy too
//! (`EVP_DigestSignInit` refuses a digest for it) and gets Envoy's init error here.

use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};

use super::keys::{self, Curve, Kind};
use super::wire::{self, Malformed, Writer};
use crate::abi::status;

/// The error for a key and hash BoringSSL would take and ring does not.
pub(super) const UNSUPPORTED: &str = "keel cannot use this hash function with this key type.";

/// The hashes Envoy knows (`UtilityImpl::getHashFunction`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

fn hash(name: &str) -> Option<Hash> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sha1" => Hash::Sha1,
        "sha224" => Hash::Sha224,
        "sha256" => Hash::Sha256,
        "sha384" => Hash::Sha384,
        "sha512" => Hash::Sha512,
        _ => return None,
    })
}

/// `SignArguments` / `VerifySignatureArguments`: the fields both have under the same names.
#[derive(Default)]
struct Arguments<'a> {
    hash_function: &'a str,
    key: &'a [u8],
    key_pem: &'a str,
    signature: &'a [u8],
    text: &'a [u8],
}

/// Field numbers: sign.proto (hash 1, key 2, text 3, pem 4) and verify_signature.proto (hash
/// 1, key 2, signature 3, text 4, pem 5).
fn arguments(message: &[u8], verify: bool) -> Result<Arguments<'_>, Malformed> {
    let mut args = Arguments::default();
    wire::fields(message, |number, value| {
        match (number, verify) {
            (1, _) => args.hash_function = value.as_str()?.unwrap_or(args.hash_function),
            (2, _) => args.key = value.as_bytes().unwrap_or(args.key),
            (3, true) => args.signature = value.as_bytes().unwrap_or(args.signature),
            (3, false) | (4, true) => args.text = value.as_bytes().unwrap_or(args.text),
            (4, false) | (5, true) => args.key_pem = value.as_str()?.unwrap_or(args.key_pem),
            _ => {}
        }
        Ok(())
    })?;
    Ok(args)
}

/// `importPublicKey` / `importPrivateKey` in foreign.cc: exactly one of PEM and DER.
fn one_key<'a>(args: &Arguments<'a>) -> Result<Option<&'a str>, i32> {
    match (args.key_pem.is_empty(), args.key.is_empty()) {
        (false, true) => Ok(Some(args.key_pem)),
        (true, false) => Ok(None),
        _ => Err(status::BAD_ARGUMENT),
    }
}

/// `verify_signature`: a `VerifySignatureResult` (result 1, error 2).
pub(super) fn verify(message: &[u8]) -> Result<Vec<u8>, i32> {
    let args = arguments(message, true).map_err(|Malformed| status::BAD_ARGUMENT)?;
    let pem = one_key(&args)?;
    let outcome = verified(&args, pem);
    let mut out = Writer::default();
    out.bool(1, outcome.is_ok());
    out.bytes(2, outcome.err().unwrap_or_default().as_bytes());
    Ok(out.finish())
}

fn verified(args: &Arguments<'_>, pem: Option<&str>) -> Result<(), String> {
    let hash = hash(args.hash_function)
        .ok_or_else(|| format!("{} is not supported.", args.hash_function))?;
    let key = keys::public(pem, args.key)
        .filter(|key| key.kind != Kind::Other)
        .ok_or("Failed to initialize digest verify.")?;
    let algorithm: &dyn sig::VerificationAlgorithm = match (key.kind, hash) {
        (Kind::Rsa, Hash::Sha1) => &sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (Kind::Rsa, Hash::Sha256) => &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        (Kind::Rsa, Hash::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (Kind::Rsa, Hash::Sha512) => &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        (Kind::Ec(Curve::P256), Hash::Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
        (Kind::Ec(Curve::P256), Hash::Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
        (Kind::Ec(Curve::P384), Hash::Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
        (Kind::Ec(Curve::P384), Hash::Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
        _ => return Err(UNSUPPORTED.to_owned()),
    };
    UnparsedPublicKey::new(algorithm, &key.key)
        .verify(args.text, args.signature)
        // EVP_DigestVerify answers 0 for a signature that does not match.
        .map_err(|_| "Failed to verify digest. Error code: 0".to_owned())
}

/// `sign`: a `SignResult` (result 1, signature 2, error 3).
pub(super) fn sign(message: &[u8]) -> Result<Vec<u8>, i32> {
    let args = arguments(message, false).map_err(|Malformed| status::BAD_ARGUMENT)?;
    let pem = one_key(&args)?;
    let mut out = Writer::default();
    match signed(&args, pem) {
        Ok(signature) => {
            out.bool(1, true);
            out.bytes(2, &signature);
        }
        Err(error) => out.bytes(3, error.as_bytes()),
    }
    Ok(out.finish())
}

fn signed(args: &Arguments<'_>, pem: Option<&str>) -> Result<Vec<u8>, String> {
    let hash = hash(args.hash_function)
        .ok_or_else(|| format!("{} is not supported.", args.hash_function))?;
    let key = keys::private(pem, args.key)
        .ok_or("Invalid key type: private key required for signing operation.")?;
    let corrupt = || "Invalid private key: key data is corrupted or malformed.".to_owned();
    let rng = SystemRandom::new();
    match key.kind {
        Kind::Rsa => {
            let padding: &dyn sig::RsaEncoding = match hash {
                Hash::Sha256 => &sig::RSA_PKCS1_SHA256,
                Hash::Sha384 => &sig::RSA_PKCS1_SHA384,
                Hash::Sha512 => &sig::RSA_PKCS1_SHA512,
                Hash::Sha1 | Hash::Sha224 => return Err(UNSUPPORTED.to_owned()),
            };
            let pair = if key.pkcs1 {
                RsaKeyPair::from_der(&key.der)
            } else {
                RsaKeyPair::from_pkcs8(&key.der)
            }
            .map_err(|_| corrupt())?;
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, args.text, &mut signature)
                .map_err(|_| corrupt())?;
            Ok(signature)
        }
        Kind::Ec(curve) => {
            let algorithm = match (curve, hash) {
                (Curve::P256, Hash::Sha256) => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                (Curve::P384, Hash::Sha384) => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                _ => return Err(UNSUPPORTED.to_owned()),
            };
            let pair =
                EcdsaKeyPair::from_pkcs8(algorithm, &key.der, &rng).map_err(|_| corrupt())?;
            let signature = pair.sign(&rng, args.text).map_err(|_| corrupt())?;
            Ok(signature.as_ref().to_vec())
        }
        Kind::Other => Err(corrupt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u32, &[u8])]) -> Vec<u8> {
        let mut w = Writer::default();
        for (number, value) in fields {
            w.bytes(*number, value);
        }
        w.finish()
    }

    /// A `SignResult` (result 1, signature 2, error 3) or, with `verify`, a
    /// `VerifySignatureResult` (result 1, error 2), read back.
    fn read(message: &[u8], verify: bool) -> (bool, Vec<u8>, String) {
        let (mut ok, mut signature, mut error) = (false, Vec::new(), String::new());
        wire::fields(message, |number, value| {
            let text = || value.as_str().ok().flatten().unwrap_or_default().to_owned();
            match (number, verify) {
                (1, _) => ok = value.as_bool().unwrap_or(false),
                (2, false) => signature = value.as_bytes().unwrap_or_default().to_vec(),
                (2, true) | (3, false) => error = text(),
                _ => {}
            }
            Ok(())
        })
        .unwrap();
        (ok, signature, error)
    }

    fn result(message: &[u8]) -> (bool, Vec<u8>, String) {
        read(message, false)
    }

    fn verdict(message: &[u8]) -> (bool, String) {
        let (ok, _, error) = read(message, true);
        (ok, error)
    }

    /// A P-256 key pair made by ring, as PKCS#8 and SubjectPublicKeyInfo DER.
    fn p256() -> (Vec<u8>, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng).unwrap();
        use ring::signature::KeyPair;
        // SubjectPublicKeyInfo { { id-ecPublicKey, prime256v1 }, BIT STRING point }.
        let point = pair.public_key().as_ref();
        let mut spki = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07];
        spki.extend_from_slice(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08]);
        spki.extend_from_slice(&[
            0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ]);
        spki.extend_from_slice(point);
        (pkcs8, spki)
    }

    #[test]
    fn an_ecdsa_signature_made_here_verifies_and_a_changed_text_does_not() {
        let (pkcs8, spki) = p256();
        let signed = sign(&message(&[(1, b"SHA256"), (2, &pkcs8), (3, b"hello")])).unwrap();
        let (ok, signature, error) = result(&signed);
        assert!(ok, "{error}");
        let check = |text: &[u8]| {
            let answer = verify(&message(&[
                (1, b"sha256"),
                (2, &spki),
                (3, &signature),
                (4, text),
            ]))
            .unwrap();
            verdict(&answer)
        };
        assert_eq!(check(b"hello"), (true, String::new()));
        assert_eq!(
            check(b"hellO"),
            (false, "Failed to verify digest. Error code: 0".into())
        );
    }

    /// foreign.cc: both key forms, or none, is BadArgument; arguments that do not parse too.
    #[test]
    fn two_keys_no_key_and_garbage_are_bad_arguments() {
        let both = message(&[(1, b"sha256"), (2, b"der"), (5, b"pem")]);
        assert_eq!(verify(&both), Err(status::BAD_ARGUMENT));
        let both = message(&[(1, b"sha256"), (2, b"der"), (4, b"pem")]);
        assert_eq!(sign(&both), Err(status::BAD_ARGUMENT));
        assert_eq!(
            verify(&message(&[(1, b"sha256")])),
            Err(status::BAD_ARGUMENT)
        );
        assert_eq!(sign(b"x"), Err(status::BAD_ARGUMENT));
        assert_eq!(verify(b"x"), Err(status::BAD_ARGUMENT));
    }

    /// utility_impl.cc: the hash is checked before the key, then the key.
    #[test]
    fn envoys_errors_in_envoys_order() {
        let unknown = message(&[(1, b"md5"), (2, b"not a key")]);
        assert_eq!(
            verdict(&verify(&unknown).unwrap()),
            (false, "md5 is not supported.".into())
        );
        assert_eq!(
            result(&sign(&unknown).unwrap()),
            (false, vec![], "md5 is not supported.".into())
        );
        let bad_key = message(&[(1, b"sha256"), (2, b"not a key")]);
        assert_eq!(
            verdict(&verify(&bad_key).unwrap()).1,
            "Failed to initialize digest verify."
        );
        assert_eq!(
            result(&sign(&bad_key).unwrap()).2,
            "Invalid key type: private key required for signing operation."
        );
    }

    /// `testdata/README.md` says how OpenSSL made these.
    const TEXT: &[u8] = include_bytes!("testdata/text.txt");
    const RSA_PEM: &[u8] = include_bytes!("testdata/rsa.pem");
    const RSA_DER: &[u8] = include_bytes!("testdata/rsa.der");
    const RSA_PKCS1_PEM: &[u8] = include_bytes!("testdata/rsa.pkcs1.pem");
    const RSA_PUB_PEM: &[u8] = include_bytes!("testdata/rsa.pub.pem");
    const RSA_PUB_DER: &[u8] = include_bytes!("testdata/rsa.pub.der");
    const RSA_SIG: &[u8] = include_bytes!("testdata/rsa.sha256.sig");
    const EC_PEM: &[u8] = include_bytes!("testdata/ec.pem");
    const EC_PUB_PEM: &[u8] = include_bytes!("testdata/ec.pub.pem");
    const EC_SIG: &[u8] = include_bytes!("testdata/ec.sha256.sig");

    fn verify_with(key: (u32, &[u8]), signature: &[u8]) -> (bool, String) {
        let answer = verify(&message(&[(1, b"sha256"), key, (3, signature), (4, TEXT)])).unwrap();
        verdict(&answer)
    }

    fn tampered(signature: &[u8]) -> Vec<u8> {
        let mut out = signature.to_vec();
        let last = out.len() - 1;
        out[last] ^= 1;
        out
    }

    /// `openssl dgst -sha256 -sign` signatures verify with the PEM and the DER public key, and
    /// one flipped bit does not.
    #[test]
    fn openssl_signatures_verify_and_tampered_ones_do_not() {
        let failed = (false, "Failed to verify digest. Error code: 0".to_owned());
        for key in [(5, RSA_PUB_PEM), (2, RSA_PUB_DER)] {
            assert_eq!(verify_with(key, RSA_SIG), (true, String::new()));
            assert_eq!(verify_with(key, &tampered(RSA_SIG)), failed);
        }
        assert_eq!(verify_with((5, EC_PUB_PEM), EC_SIG), (true, String::new()));
        assert_eq!(verify_with((5, EC_PUB_PEM), &tampered(EC_SIG)), failed);
        // The RSA key's signature under the EC key: no match either.
        assert_eq!(verify_with((5, EC_PUB_PEM), RSA_SIG), failed);
    }

    /// RSA PKCS#1 v1.5 is deterministic: keel's signature is OpenSSL's, byte for byte, from
    /// each form of the private key (PKCS#8 PEM and DER, PKCS#1 PEM); an ECDSA signature from
    /// the SEC1 key verifies with its public key.
    #[test]
    fn keel_signs_as_openssl_does() {
        for key in [(4, RSA_PEM), (2, RSA_DER), (4, RSA_PKCS1_PEM)] {
            let (ok, signature, error) =
                result(&sign(&message(&[(1, b"sha256"), key, (3, TEXT)])).unwrap());
            assert!(ok, "field {}: {error}", key.0);
            assert_eq!(signature, RSA_SIG);
        }
        let (ok, signature, error) =
            result(&sign(&message(&[(1, b"sha256"), (4, EC_PEM), (3, TEXT)])).unwrap());
        assert!(ok, "{error}");
        assert_eq!(
            verify_with((5, EC_PUB_PEM), &signature),
            (true, String::new())
        );
    }

    /// Combinations BoringSSL does and ring does not answer `result` false with keel's error.
    #[test]
    fn what_ring_cannot_do_says_so() {
        let rsa_sha224 = message(&[(1, b"sha224"), (4, RSA_PEM), (3, TEXT)]);
        assert_eq!(
            result(&sign(&rsa_sha224).unwrap()),
            (false, vec![], UNSUPPORTED.into())
        );
        let ec_sha512 = message(&[(1, b"sha512"), (5, EC_PUB_PEM), (3, EC_SIG), (4, TEXT)]);
        assert_eq!(
            verdict(&verify(&ec_sha512).unwrap()),
            (false, UNSUPPORTED.into())
        );
    }
}
