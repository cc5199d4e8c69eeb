//! A module's appended signature, checked as the loader checks it
//! (kernel/module/signing.c, crypto/asymmetric_keys/pkcs7_*.c of 6.1–6.12):
//!
//! `[module][PKCS#7 SignedData][struct module_signature]["~Module signature appended~\n"]`
//!
//! `struct module_signature` is 12 bytes: algo, hash, id_type (2: PKCS#7),
//! signer_len, key_id_len, 3 bytes of padding, and the PKCS#7 length
//! (big-endian u32); for PKCS#7 all but id_type and the length are zero.
//! The SignedData is detached (the module is the content), has no
//! authenticated attributes, and names its signer by issuer and serial
//! number; the signer must be a key the kernel trusts directly.
//!
//! The loader's answer decides what [`Outcome`] says: a missing signature
//! (ENODATA), an unknown key (ENOKEY) or crypto the kernel lacks (ENOPKG)
//! load with taint E unless signatures are enforced; any other failure
//! (EBADMSG, EKEYREJECTED, EINVAL) refuses the module even without
//! `MODULE_SIG_FORCE`. `insmod -f` never checks the signature: a forced
//! load is a "mangled" module, treated as unsigned.

use cms::{
    content_info::ContentInfo,
    signed_data::{SignedData, SignerIdentifier, SignerInfo},
};
use const_oid::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rsa::{RsaPublicKey, traits::PublicKeyParts as _};
use sha2::Digest as _;

use super::keyring::{Keyring, SignerId};

pub const MARKER: &[u8] = b"~Module signature appended~\n";
const TRAILER: usize = 12;
const PKEY_ID_PKCS7: u8 = 2;

/// kmod's words for the errnos the loader refuses a signature with.
pub const EBADMSG: &str = "Bad message";
pub const EKEYREJECTED: &str = "Key was rejected by service";
pub const EINVAL: &str = "Invalid argument";

/// What the loader makes of a module's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No signature (ENODATA): loads with taint E unless enforced.
    Unsigned,
    /// Verified against a key the kernel trusts.
    Valid { signer: String },
    /// Signed by a key the kernel does not hold (ENOKEY): loads with taint
    /// E unless enforced.
    UnknownKey { signer: String },
    /// Crypto the kernel does not support (ENOPKG): loads with taint E
    /// unless enforced.
    UnsupportedCrypto { why: String },
    /// Present but does not verify: the loader refuses the module with
    /// `insmod` (kmod's message for the errno), with or without
    /// `MODULE_SIG_FORCE`.
    Refused { insmod: &'static str, why: String },
    /// modscope cannot tell what the loader would say (ECDSA, a BER
    /// encoding, a certificate chain inside the signature).
    NotChecked { why: String },
}

/// The parts of a signed image, split by the trailer.
struct Appended<'a> {
    content: &'a [u8],
    pkcs7: &'a [u8],
}

/// Splits off the signature as `mod_verify_sig` does.
fn split(image: &[u8]) -> Result<Option<Appended<'_>>, Outcome> {
    let Some(body) = image.strip_suffix(MARKER) else {
        return Ok(None);
    };
    let refused = |why: String| Outcome::Refused {
        insmod: EBADMSG,
        why,
    };
    if body.len() <= TRAILER {
        return Err(refused("the signature trailer is cut short".into()));
    }
    let (rest, trailer) = body.split_at(body.len() - TRAILER);
    let sig_len = u32::from_be_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]) as usize;
    if sig_len >= body.len() - TRAILER {
        return Err(refused(format!(
            "the trailer claims a {sig_len}-byte signature in a {}-byte file",
            image.len()
        )));
    }
    if trailer[2] != PKEY_ID_PKCS7 {
        return Err(Outcome::UnsupportedCrypto {
            why: format!("not a PKCS#7 signature (id_type {})", trailer[2]),
        });
    }
    if trailer[..2].iter().chain(&trailer[3..8]).any(|&b| b != 0) {
        return Err(refused(
            "the PKCS#7 signature info has unexpected non-zero parameters".into(),
        ));
    }
    let (content, pkcs7) = rest.split_at(rest.len() - sig_len);
    Ok(Some(Appended { content, pkcs7 }))
}

/// The loader's verdict on `image`'s signature, against `keyring`.
pub fn check(image: &[u8], keyring: &Keyring) -> Outcome {
    match split(image) {
        Ok(None) => Outcome::Unsigned,
        Ok(Some(appended)) => verify(&appended, keyring),
        Err(outcome) => outcome,
    }
}

fn verify(appended: &Appended<'_>, keyring: &Keyring) -> Outcome {
    let signed = match signed_data(appended.pkcs7) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let certificates_inside = signed.certificates.is_some();
    let mut outcome = Outcome::UnknownKey {
        signer: "no signer at all".into(),
    };
    for info in signed.signer_infos.0.iter() {
        match verify_signer(info, appended.content, keyring) {
            // The loader keeps looking past an unknown key.
            Outcome::UnknownKey { signer } if certificates_inside => {
                outcome = Outcome::NotChecked {
                    why: format!(
                        "signed by {signer} through certificates carried in the signature, \
                         whose chain modscope does not verify"
                    ),
                }
            }
            unknown @ (Outcome::UnknownKey { .. } | Outcome::UnsupportedCrypto { .. }) => {
                if matches!(outcome, Outcome::UnknownKey { .. }) {
                    outcome = unknown;
                }
            }
            decided => return decided,
        }
    }
    outcome
}

/// The SignedData, as `pkcs7_parse_message` and the module checks of
/// `pkcs7_verify` take it.
fn signed_data(pkcs7: &[u8]) -> Result<SignedData, Outcome> {
    let refused = |insmod, why: String| Outcome::Refused { insmod, why };
    let info = ContentInfo::from_der(pkcs7).map_err(|e| {
        if is_ber(pkcs7) {
            Outcome::NotChecked {
                why: "the signature is BER with indefinite lengths, which modscope does not decode"
                    .into(),
            }
        } else {
            refused(EBADMSG, format!("the PKCS#7 message does not decode: {e}"))
        }
    })?;
    if info.content_type != const_oid::db::rfc5911::ID_SIGNED_DATA {
        return Err(refused(
            EINVAL,
            format!(
                "PKCS#7 content type {} is not signedData",
                info.content_type
            ),
        ));
    }
    let signed: SignedData = info.content.decode_as().map_err(|e| {
        refused(
            EBADMSG,
            format!("the PKCS#7 SignedData does not decode: {e}"),
        )
    })?;
    use cms::content_info::CmsVersion;
    if !matches!(signed.version, CmsVersion::V1 | CmsVersion::V3) {
        return Err(refused(
            EINVAL,
            format!("unsupported SignedData version {}", signed.version as u8),
        ));
    }
    let encap = &signed.encap_content_info;
    if encap.econtent_type != const_oid::db::rfc5911::ID_DATA {
        return Err(refused(
            EKEYREJECTED,
            "invalid module signature: the signed content is not pkcs7-data".into(),
        ));
    }
    if encap.econtent.is_some() {
        return Err(refused(
            EINVAL,
            "the PKCS#7 message carries its content: a module signature is detached".into(),
        ));
    }
    Ok(signed)
}

/// One signer: its digest of `content`, its key in `keyring`, the RSA check.
fn verify_signer(info: &SignerInfo, content: &[u8], keyring: &Keyring) -> Outcome {
    use cms::content_info::CmsVersion;
    // `pkcs7_note_signerinfo_version`: v1 names the signer by issuer and
    // serial, v3 by key identifier.
    let by_serial = matches!(info.sid, SignerIdentifier::IssuerAndSerialNumber(_));
    match (info.version, by_serial) {
        (CmsVersion::V1, true) | (CmsVersion::V3, false) => {}
        (CmsVersion::V1 | CmsVersion::V3, _) => {
            return Outcome::Refused {
                insmod: EBADMSG,
                why: "the SignerInfo's version does not match how it names its signer".into(),
            };
        }
        (v, _) => {
            return Outcome::Refused {
                insmod: EINVAL,
                why: format!("unsupported SignerInfo version {}", v as u8),
            };
        }
    }
    if info.signed_attrs.is_some() {
        return Outcome::Refused {
            insmod: EKEYREJECTED,
            why: "invalid module signature: it has authenticated attributes".into(),
        };
    }
    let hash = match Hash::of(&info.digest_alg.oid) {
        Ok(h) => h,
        Err(outcome) => return outcome,
    };
    let sig_algo = info.signature_algorithm.oid;
    let ecdsa = sig_algo.as_bytes().starts_with(ECDSA_WITH_PREFIX);
    if sig_algo != RSA_ENCRYPTION && !ecdsa {
        return Outcome::UnsupportedCrypto {
            why: format!("signature algorithm {sig_algo}"),
        };
    }
    let (id, signer) = signer_id(&info.sid);
    let Some(key) = keyring.find(&id) else {
        return Outcome::UnknownKey { signer };
    };
    let digest = hash.digest(content);
    let signature = info.signature.as_bytes();
    let verified = match PublicKey::of(&key.public_key_der) {
        Some(PublicKey::Rsa(public)) if !ecdsa => {
            match public.verify(hash.scheme(), &digest, signature) {
                Ok(()) => Ok(()),
                Err(_) => return rsa_failure(&public, signature, &key.subject),
            }
        }
        Some(PublicKey::P256(public)) if ecdsa => p256::ecdsa::Signature::from_der(signature)
            .and_then(|sig| public.verify_prehash(&digest, &sig)),
        Some(PublicKey::P384(public)) if ecdsa => p384::ecdsa::Signature::from_der(signature)
            .and_then(|sig| public.verify_prehash(&digest, &sig)),
        Some(_) => {
            return Outcome::Refused {
                insmod: EKEYREJECTED,
                why: format!(
                    "the signature's algorithm ({sig_algo}) is not that of the key {}",
                    key.subject
                ),
            };
        }
        None => {
            return Outcome::NotChecked {
                why: format!(
                    "the trusted key {} is of a kind modscope does not read",
                    key.subject
                ),
            };
        }
    };
    match verified {
        Ok(()) => Outcome::Valid {
            signer: key.subject.clone(),
        },
        Err(_) => Outcome::Refused {
            insmod: EKEYREJECTED,
            why: format!(
                "the ECDSA signature by {} does not verify: the module changed after it was \
                 signed, or the signature is damaged",
                key.subject
            ),
        },
    }
}

/// A trusted key modscope verifies with.
enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl PublicKey {
    fn of(spki_der: &[u8]) -> Option<Self> {
        use p256::pkcs8::DecodePublicKey as _;
        RsaPublicKey::from_public_key_der(spki_der)
            .map(Self::Rsa)
            .or_else(|_| p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).map(Self::P256))
            .or_else(|_| p384::ecdsa::VerifyingKey::from_public_key_der(spki_der).map(Self::P384))
            .ok()
    }
}

/// Why an RSA PKCS#1 v1.5 signature failed: a well-padded value over
/// another digest means the module changed after it was signed; a value
/// whose padding does not decode, that the signature itself is damaged.
/// The loader answers EKEYREJECTED to both (seen on Debian's 6.1 in the
/// VM suite: rsa-pkcs1pad's EBADMSG does not reach insmod).
fn rsa_failure(public: &RsaPublicKey, signature: &[u8], signer: &str) -> Outcome {
    let size = public.size();
    let m = rsa::hazmat::rsa_encrypt(public, &rsa::BigUint::from_bytes_be(signature));
    let em = m.map(|m| m.to_bytes_be()).unwrap_or_default();
    // em is the encoded message without its leading zero byte: 01 ff… 00 DigestInfo.
    let padded = signature.len() == size
        && em.len() == size - 1
        && em[0] == 0x01
        && em[1..]
            .iter()
            .position(|&b| b != 0xff)
            .is_some_and(|i| i >= 8 && em[1 + i] == 0);
    if padded {
        Outcome::Refused {
            insmod: EKEYREJECTED,
            why: format!(
                "the signature by {signer} does not match the module's contents: \
                 it was changed after it was signed"
            ),
        }
    } else {
        Outcome::Refused {
            insmod: EKEYREJECTED,
            why: format!("the signature value does not decode with {signer}'s key: it is damaged"),
        }
    }
}

fn signer_id(sid: &SignerIdentifier) -> (SignerId, String) {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => (
            SignerId::IssuerSerial {
                issuer_der: is.issuer.to_der().unwrap_or_default(),
                serial: is.serial_number.as_bytes().to_vec(),
            },
            format!(
                "{} (serial {})",
                is.issuer,
                hex(is.serial_number.as_bytes())
            ),
        ),
        SignerIdentifier::SubjectKeyIdentifier(skid) => {
            let bytes = skid.0.as_bytes().to_vec();
            let shown = format!("the key with identifier {}", hex(&bytes));
            (SignerId::SubjectKeyId(bytes), shown)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// ecdsa-with-SHA* (1.2.840.10045.4.3.x), BER content bytes.
const ECDSA_WITH_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];

/// The digests the kernel signs modules with that modscope verifies.
#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of(oid: &ObjectIdentifier) -> Result<Self, Outcome> {
        Ok(match oid.to_string().as_str() {
            "1.3.14.3.2.26" => Self::Sha1,
            "2.16.840.1.101.3.4.2.4" => Self::Sha224,
            "2.16.840.1.101.3.4.2.1" => Self::Sha256,
            "2.16.840.1.101.3.4.2.2" => Self::Sha384,
            "2.16.840.1.101.3.4.2.3" => Self::Sha512,
            // SHA-3 (6.7+), SM3, Streebog: known to some kernels, not verified here.
            "2.16.840.1.101.3.4.2.8"
            | "2.16.840.1.101.3.4.2.9"
            | "2.16.840.1.101.3.4.2.10"
            | "1.2.156.10197.1.401"
            | "1.2.643.7.1.1.2.2"
            | "1.2.643.7.1.1.2.3" => {
                return Err(Outcome::NotChecked {
                    why: format!("digest {oid}, which modscope does not verify"),
                });
            }
            other => {
                return Err(Outcome::UnsupportedCrypto {
                    why: format!("digest algorithm {other}"),
                });
            }
        })
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha224 => sha2::Sha224::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn scheme(self) -> rsa::Pkcs1v15Sign {
        match self {
            Self::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
            Self::Sha224 => rsa::Pkcs1v15Sign::new::<sha2::Sha224>(),
            Self::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            Self::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            Self::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        }
    }
}

/// Whether `data` looks like BER with indefinite lengths (a constructed
/// tag followed by `80`, and end-of-contents octets at the end), which DER
/// forbids and the kernel's decoder accepts.
fn is_ber(data: &[u8]) -> bool {
    data.ends_with(&[0, 0]) && data.windows(2).any(|w| w[0] & 0x20 != 0 && w[1] == 0x80)
}

#[cfg(test)]
mod tests;
