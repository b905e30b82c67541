//! Channel binding: the `tls-server-end-point` hash (RFC 5929) of the server's certificate, which
//! binds SCRAM authentication to the connection.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The `tls-server-end-point` hash of a DER certificate: its digest with the hash of its signature
/// algorithm, SHA-256 for MD5 and SHA-1 (RFC 5929 section 4.1). `None` for an algorithm without
/// one (RSA-PSS, Ed25519), as the server does, or a certificate that does not parse.
pub(super) fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, .. }, .. }
    let (certificate, _) = der(cert, 0x30)?;
    let (_, after_tbs) = der(certificate, 0x30)?;
    let (algorithm, _) = der(after_tbs, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    enum Hash {
        Sha256,
        Sha384,
        Sha512,
    }
    let hash = match oid {
        [rsa @ .., last] if rsa == RSA => match last {
            // md5, sha1, sha256 (and sha224: the server upgrades it too)
            0x04 | 0x05 | 0x0b | 0x0e => Hash::Sha256,
            0x0c => Hash::Sha384,
            0x0d => Hash::Sha512,
            _ => return None,
        },
        [ecdsa @ .., last] if ecdsa == ECDSA_SHA2 => match last {
            0x01 | 0x02 => Hash::Sha256,
            0x03 => Hash::Sha384,
            0x04 => Hash::Sha512,
            _ => return None,
        },
        _ if oid == ECDSA_SHA1 => Hash::Sha256,
        _ => return None,
    };
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

/// The contents of the DER element at the start of `input` if its tag is `tag`, and what follows it.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[n..])
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    /// A certificate whose signature algorithm is `oid` (DER body), with a stand-in TBS and signature.
    fn cert_with_algorithm(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut alg = vec![0x30, (oid.len() + 4) as u8, 0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        alg.extend_from_slice(&[0x05, 0x00]);
        let sig = [0x03, 0x02, 0x00, 0xff];
        let body: Vec<u8> = [&tbs[..], &alg, &sig].concat();
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn channel_binding_hashes_with_the_signature_algorithms_hash() {
        let rsa = |last| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last];
        let ecdsa = |last| vec![0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last];
        let cases: [(Vec<u8>, Option<usize>); 8] = [
            (rsa(0x0b).to_vec(), Some(32)), // sha256WithRSAEncryption
            (rsa(0x05).to_vec(), Some(32)), // sha1WithRSAEncryption: upgraded to SHA-256
            (rsa(0x0c).to_vec(), Some(48)), // sha384WithRSAEncryption
            (rsa(0x0d).to_vec(), Some(64)), // sha512WithRSAEncryption
            (ecdsa(0x02), Some(32)),        // ecdsa-with-SHA256
            (ecdsa(0x03), Some(48)),        // ecdsa-with-SHA384
            (rsa(0x0a).to_vec(), None),     // RSASSA-PSS: no hash of its own
            (vec![0x2b, 0x65, 0x70], None), // Ed25519
        ];
        for (oid, len) in cases {
            let cert = cert_with_algorithm(&oid);
            let hash = end_point_hash(&cert);
            assert_eq!(hash.as_ref().map(Vec::len), len, "{oid:02x?}");
            if len == Some(32) {
                assert_eq!(hash.unwrap(), Sha256::digest(&cert).to_vec());
            }
        }
        assert_eq!(end_point_hash(&[0x30, 0x05, 0x30]), None, "truncated");
    }

    /// ISRG Root X2, a real certificate signed with ecdsa-with-SHA384.
    const ISRG_ROOT_X2: &str = "\
-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----\n";

    #[test]
    fn channel_binding_of_a_real_certificate() {
        let der = CertificateDer::from_pem_slice(ISRG_ROOT_X2.as_bytes()).unwrap();
        let hash = end_point_hash(&der).expect("ecdsa-with-SHA384 has a hash");
        // `openssl x509 -outform der | sha384sum`
        assert_eq!(
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "52f930bf39fe798dfd994e4f0acd63dd1751f82b4fb8a8e18b3a7f3a342e97f3\
             ff3d323bfcc60097a66afb34088025ca"
        );
    }
}
