//! The facts filters read of a TLS listener's own certificate (`connection.*_local_certificate`),
//! read once from its DER when the listener is built.
//!
//! As Envoy gives them (`source/common/tls/connection_info_impl.cc`, `utility.cc`): the subject
//! as BoringSSL prints it with `XN_FLAG_RFC2253` (`getRFC2253NameFromCertificate`), and the
//! first URI and the first DNS subject alternative name (`expr/context.cc`
//! `uriSanLocalCertificate()[0]`, `dnsSansLocalCertificate()[0]`), their bytes as they are.
//! No X.509 crate is in the tree that gives the subject and the URI names (rustls-webpki gives
//! the DNS names only): the walk below reads only these three fields, with keel-wasm's DER
//! reader (`keel_wasm::der`).

use keel_wasm::LocalCertificate;
use keel_wasm::der::{Element, OCTET_STRING, OID, SEQUENCE, SET, element, elements};

/// `extensions [3] EXPLICIT` in `TBSCertificate`.
const EXTENSIONS: u8 = 0xa3;
/// `GeneralName`: `dNSName [2] IA5String`, `uniformResourceIdentifier [6] IA5String`.
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;
/// `id-ce-subjectAltName`, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// What filters read of the certificate `der`; the error names what is not X.509 in it.
pub fn local(der: &[u8]) -> Result<LocalCertificate, String> {
    let not = |what: &str| format!("the certificate is not X.509 DER: {what}");
    let (certificate, _) = element(der)
        .filter(|(e, _)| e.tag == SEQUENCE)
        .ok_or_else(|| not("no Certificate SEQUENCE"))?;
    let tbs = elements(certificate.content)
        .next()
        .filter(|e| e.tag == SEQUENCE)
        .ok_or_else(|| not("no TBSCertificate"))?;
    let mut fields = elements(tbs.content).peekable();
    // version [0] is optional; then serialNumber, signature, issuer, validity, subject.
    if fields.peek().is_some_and(|e| e.tag == 0xa0) {
        fields.next();
    }
    let subject = fields
        .nth(4)
        .filter(|e| e.tag == SEQUENCE)
        .ok_or_else(|| not("no subject Name"))?;
    let mut out = LocalCertificate {
        subject: rfc2253(subject.content).ok_or_else(|| not("a malformed subject Name"))?,
        uri_san: None,
        dns_san: None,
    };
    let names = fields
        .find(|e| e.tag == EXTENSIONS)
        .and_then(|e| elements(e.content).next())
        .into_iter()
        .flat_map(|list| elements(list.content))
        .find_map(|extension| {
            let mut parts = elements(extension.content);
            let oid = parts.next()?;
            if oid.tag != OID || oid.content != SUBJECT_ALT_NAME {
                return None;
            }
            // `critical BOOLEAN` may come before the value.
            let value = parts.find(|e| e.tag == OCTET_STRING)?;
            element(value.content).map(|(names, _)| names.content)
        });
    for name in names.into_iter().flat_map(elements) {
        let slot = match name.tag {
            URI => &mut out.uri_san,
            DNS_NAME => &mut out.dns_san,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(String::from_utf8_lossy(name.content).into_owned());
        }
    }
    Ok(out)
}

/// A `Name` (the content of its RDNSequence) as BoringSSL's `X509_NAME_print_ex` with
/// `XN_FLAG_RFC2253` writes it: the last RDN first, RDNs joined by `,` and the values of one
/// RDN by `+`, short attribute names, values escaped (`crypto/x509/a_strex.c`).
fn rfc2253(name: &[u8]) -> Option<String> {
    let mut attributes = Vec::new();
    for (rdn, set) in elements(name).enumerate() {
        if set.tag != SET {
            return None;
        }
        for pair in elements(set.content) {
            let mut parts = elements(pair.content);
            let (oid, value) = (parts.next()?, parts.next()?);
            if oid.tag != OID {
                return None;
            }
            attributes.push((rdn, oid.content, value));
        }
    }
    let mut out = String::new();
    let mut previous = None;
    for (rdn, oid, value) in attributes.iter().rev() {
        match previous {
            Some(p) if p == *rdn => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        previous = Some(*rdn);
        match short_name(oid) {
            Some(name) => {
                out.push_str(name);
                out.push('=');
                print_value(&mut out, value);
            }
            // `XN_FLAG_DUMP_UNKNOWN_FIELDS`: the dotted OID and the value's DER in hex.
            None => {
                out.push_str(&dotted(oid));
                out.push('=');
                dump(&mut out, value.whole);
            }
        }
    }
    Some(out)
}

/// BoringSSL's short names (`OBJ_nid2sn`) of the attribute types certificates use; another
/// type prints as BoringSSL prints one it does not know.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    let name = match oid {
        [0x55, 0x04, last] => match last {
            3 => "CN",
            4 => "SN",
            5 => "serialNumber",
            6 => "C",
            7 => "L",
            8 => "ST",
            9 => "street",
            10 => "O",
            11 => "OU",
            12 => "title",
            13 => "description",
            15 => "businessCategory",
            17 => "postalCode",
            41 => "name",
            42 => "GN",
            43 => "initials",
            44 => "generationQualifier",
            45 => "x500UniqueIdentifier",
            46 => "dnQualifier",
            65 => "pseudonym",
            72 => "role",
            _ => return None,
        },
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    };
    Some(name)
}

/// An OID in dotted form (`OBJ_obj2txt` with `no_name`).
fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut arc: u64 = 0;
    for byte in oid {
        arc = (arc << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    let mut out = String::new();
    if let Some((first, rest)) = arcs.split_first() {
        let (top, second) = match first {
            0..=39 => (0, *first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        out = format!("{top}.{second}");
        for arc in rest {
            out.push_str(&format!(".{arc}"));
        }
    }
    out
}

/// `#` and the DER in upper-case hex (`ASN1_STRFLGS_DUMP_DER`).
fn dump(out: &mut String, der: &[u8]) {
    out.push('#');
    for byte in der {
        out.push_str(&format!("{byte:02X}"));
    }
}

/// A string value, decoded by its type and escaped per `ASN1_STRFLGS_RFC2253`; a type that is
/// no string is dumped (`ASN1_STRFLGS_DUMP_UNKNOWN`).
fn print_value(out: &mut String, value: &Element<'_>) {
    let bytes = value.content;
    let chars: Vec<u32> = match value.tag {
        // UTF8String
        0x0c => match std::str::from_utf8(bytes) {
            Ok(text) => text.chars().map(u32::from).collect(),
            Err(_) => return dump(out, value.whole),
        },
        // NumericString, PrintableString, T61String, IA5String, UTCTime, GeneralizedTime,
        // VisibleString: one byte a character (Latin-1).
        0x12 | 0x13 | 0x14 | 0x16 | 0x17 | 0x18 | 0x1a => {
            bytes.iter().map(|b| u32::from(*b)).collect()
        }
        // BMPString
        0x1e if bytes.len().is_multiple_of(2) => bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .collect(),
        // UniversalString
        0x1c if bytes.len().is_multiple_of(4) => bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => return dump(out, value.whole),
    };
    let last = chars.len().saturating_sub(1);
    for (i, c) in chars.iter().enumerate() {
        // `ASN1_STRFLGS_UTF8_CONVERT`: each character as UTF-8, each byte escaped on its own.
        let mut utf8 = [0u8; 4];
        let encoded = char::from_u32(*c).map_or(&[][..], |c| c.encode_utf8(&mut utf8).as_bytes());
        let end = encoded.len().saturating_sub(1);
        for (j, byte) in encoded.iter().enumerate() {
            escape(out, *byte, i == 0 && j == 0, i == last && j == end);
        }
    }
}

/// `do_esc_char` with `ESC_MSB`, `ESC_CTRL` and `ESC_2253` (RFC 2253 sections 2.4 and 4).
fn escape(out: &mut String, byte: u8, first: bool, last: bool) {
    let special = matches!(byte, b',' | b'+' | b'<' | b'>' | b';' | b'\\' | b'"')
        || (first && matches!(byte, b' ' | b'#'))
        || (last && byte == b' ');
    if !(0x20..0x7f).contains(&byte) {
        out.push_str(&format!("\\{byte:02X}"));
    } else if special {
        out.push('\\');
        out.push(char::from(byte));
    } else {
        out.push(char::from(byte));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair, SanType};

    fn certificate(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// Envoy's subject is RFC 2253 (`utility.cc` `getRFC2253NameFromCertificate`): the last RDN
    /// first, specials escaped with `\`, a leading `#` or space and a trailing space escaped,
    /// bytes past ASCII escaped as `\XX` of their UTF-8; the first URI and DNS names are taken
    /// (`expr/context.cc` `[0]`).
    #[test]
    fn the_subject_is_rfc2253_and_the_first_names_are_taken() {
        let mut params =
            CertificateParams::new(vec!["b.example".to_string(), "a.example".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://keel/one".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://keel/two".try_into().unwrap()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("DE".try_into().unwrap()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Shop, Inc. <+;\"\\>");
        params
            .distinguished_name
            .push(DnType::CommonName, "#Grüße ");
        let local = local(&certificate(params)).unwrap();
        assert_eq!(
            local.subject,
            "CN=\\#Gr\\C3\\BC\\C3\\9Fe\\ ,O=Shop\\, Inc. \\<\\+\\;\\\"\\\\\\>,C=DE"
        );
        assert_eq!(local.uri_san.as_deref(), Some("spiffe://keel/one"));
        assert_eq!(local.dns_san.as_deref(), Some("b.example"));
    }

    /// Without SANs there is no URI or DNS name (Envoy: `[]` is empty, the property absent);
    /// an attribute BoringSSL does not know prints as its OID and DER.
    #[test]
    fn no_names_and_an_unknown_attribute() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]), "x");
        let local = local(&certificate(params)).unwrap();
        assert_eq!(local.subject, "1.3.6.1.4.1.99999.1=#0C0178");
        assert_eq!((local.uri_san, local.dns_san), (None, None));
    }

    #[test]
    fn what_is_not_x509_is_named() {
        assert_eq!(
            local(b"\x04\x01x").unwrap_err(),
            "the certificate is not X.509 DER: no Certificate SEQUENCE"
        );
    }
}
