//! The workload identity of an Authorizer API caller's client certificate, named as Envoy names
//! a peer in `source.principal`: the first URI SAN (a SPIFFE ID), else the first DNS SAN, else
//! the subject. The edge hands it to `ask` as `Caller::peer`, and from there it takes the same
//! path as a Check's peer (`identity::resolve`: `mtls.trust_domains`, `Authorization` first,
//! `mtls.type` as the principal's type).
//!
//! Reads only certificates rustls has already verified against `authorizer_api.tls.client_ca_file`
//! (the handshake refuses any other); verifies nothing and decides nothing. A certificate whose
//! names can't be read gives no identity (the caller then needs a token), never a guessed one.

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// The identity of the leaf certificate `der` (the first one the client presented).
pub fn principal(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    // A SAN extension that doesn't parse (or appears twice) is no identity: falling back to the
    // subject would name the caller by something the CA may not have vouched for.
    let names = match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san.0,
        Ok(None) => Vec::new(),
        Err(_) => return None,
    };
    let first = |want: fn(&GeneralName) -> Option<String>| names.iter().find_map(want);
    first(|n| match n {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    })
    .or_else(|| {
        first(|n| match n {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            _ => None,
        })
    })
    .or_else(|| {
        let subject = tbs.subject().to_string();
        (!subject.is_empty()).then_some(subject)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with `sans` (`uri:` or `dns:` prefixed) and common name `cn`.
    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.split_once(':') {
                Some(("uri", v)) => SanType::URI(v.try_into().unwrap()),
                Some(("dns", v)) => SanType::DnsName(v.try_into().unwrap()),
                _ => panic!("{s}"),
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn uri_then_dns_then_subject_as_envoy_names_a_peer() {
        for (cn, sans, expected) in [
            (
                Some("orders"),
                &[
                    "dns:orders.internal",
                    "uri:spiffe://cedargate.test/ns/a/sa/orders",
                    "uri:spiffe://second",
                ][..],
                Some("spiffe://cedargate.test/ns/a/sa/orders"),
            ),
            (
                Some("orders"),
                &["dns:orders.internal"][..],
                Some("orders.internal"),
            ),
            (Some("orders"), &[][..], Some("CN=orders")),
            (None, &[][..], None),
        ] {
            assert_eq!(
                principal(&cert(cn, sans)).as_deref(),
                expected,
                "{cn:?} {sans:?}"
            );
        }
        assert_eq!(principal(b"not a certificate"), None);
    }
}
