//! Against an object signed by the kernel's own `sign-file` (testdata/signing).

use super::*;

fn testdata(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/signing");
    std::fs::read(dir.join(name)).unwrap()
}

fn trusted() -> Keyring {
    Keyring::scan(&testdata("signing-cert.der"))
}

fn signed() -> Vec<u8> {
    testdata("signed.o")
}

/// Where the PKCS#7 message starts in `image`.
fn pkcs7_start(image: &[u8]) -> usize {
    let body = image.len() - MARKER.len();
    let t = &image[body - TRAILER..body];
    let sig_len = u32::from_be_bytes([t[8], t[9], t[10], t[11]]) as usize;
    body - TRAILER - sig_len
}

fn refused_with(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Refused { insmod, .. } => Some(insmod),
        _ => None,
    }
}

#[test]
fn a_module_signed_by_sign_file_verifies_against_its_key() {
    assert_eq!(
        check(&signed(), &trusted()),
        Outcome::Valid {
            signer: "CN=modscope test signing key".into()
        }
    );
    assert_eq!(
        check(&testdata("unsigned.o"), &trusted()),
        Outcome::Unsigned
    );
}

#[test]
fn a_key_the_kernel_does_not_hold_is_unknown_not_invalid() {
    let other = Keyring::scan(&testdata("other-cert.der"));
    match check(&signed(), &other) {
        Outcome::UnknownKey { signer } => {
            assert!(signer.contains("modscope test signing key"), "{signer}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_changed_byte_in_the_module_is_rejected_as_the_loader_does() {
    let mut image = signed();
    image[0x40] ^= 1; // in the object, before the signature
    let outcome = check(&image, &trusted());
    assert_eq!(refused_with(&outcome), Some(EKEYREJECTED), "{outcome:?}");
}

#[test]
fn a_damaged_signature_value_is_rejected_too() {
    let mut image = signed();
    // The RSA value is the last OCTET STRING of the message: its last byte
    // lies just before the trailer.
    let at = image.len() - MARKER.len() - TRAILER - 1;
    image[at] ^= 0x55;
    let outcome = check(&image, &trusted());
    assert_eq!(refused_with(&outcome), Some(EKEYREJECTED), "{outcome:?}");
    let Outcome::Refused { why, .. } = outcome else {
        unreachable!()
    };
    assert!(why.contains("damaged"), "{why}");
}

#[test]
fn a_message_that_does_not_decode_is_a_bad_message() {
    let mut image = signed();
    let start = pkcs7_start(&image);
    image[start + 1] = 0x85; // a length form DER has no room for
    let outcome = check(&image, &trusted());
    assert_eq!(refused_with(&outcome), Some(EBADMSG), "{outcome:?}");
}

#[test]
fn the_trailer_is_checked_as_mod_check_sig_does() {
    let trailer_at = |image: &[u8]| image.len() - MARKER.len() - TRAILER;
    // A length past the file.
    let mut image = signed();
    let t = trailer_at(&image);
    image[t + 8..t + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(refused_with(&check(&image, &trusted())), Some(EBADMSG));
    // Not PKCS#7: crypto the loader does not know; loads with a taint.
    let mut image = signed();
    let t = trailer_at(&image);
    image[t + 2] = 1;
    assert!(matches!(
        check(&image, &trusted()),
        Outcome::UnsupportedCrypto { .. }
    ));
    // PKCS#7 with a non-zero signer length.
    let mut image = signed();
    let t = trailer_at(&image);
    image[t + 3] = 4;
    assert_eq!(refused_with(&check(&image, &trusted())), Some(EBADMSG));
    // Only the marker.
    assert_eq!(refused_with(&check(MARKER, &trusted())), Some(EBADMSG));
}

#[test]
fn any_single_byte_flip_in_the_signature_never_verifies() {
    let image = signed();
    let start = pkcs7_start(&image);
    // What the loader does not read either: SignedData.digestAlgorithms
    // (the SET after the version; it reads each signer's own digest
    // algorithm) and the rsaEncryption parameters (a NULL).
    let digest_algorithms = start + 26..start + 26 + 15;
    let rsa_parameters = start + 153..start + 155;
    assert_eq!(image[digest_algorithms.start], 0x31, "a SET starts there");
    assert_eq!(image[rsa_parameters.clone()], [5, 0], "a NULL lies there");
    let read = |at: &usize| !digest_algorithms.contains(at) && !rsa_parameters.contains(at);
    for at in (start..image.len()).step_by(3).filter(read) {
        let mut damaged = image.clone();
        damaged[at] ^= 0x01;
        let outcome = check(&damaged, &trusted());
        assert!(
            !matches!(outcome, Outcome::Valid { .. }),
            "flipping byte {at} still verifies"
        );
    }
}

#[test]
fn an_ecdsa_p384_signature_verifies_and_a_change_is_rejected() {
    let keys = Keyring::scan(&testdata("ecdsa-cert.der"));
    let mut image = testdata("signed-ecdsa.o");
    assert_eq!(
        check(&image, &keys),
        Outcome::Valid {
            signer: "CN=modscope test ecdsa key".into()
        }
    );
    image[0x40] ^= 1;
    assert_eq!(refused_with(&check(&image, &keys)), Some(EKEYREJECTED));
    // The RSA key's signature against the ECDSA keyring: an unknown key.
    assert!(matches!(
        check(&signed(), &keys),
        Outcome::UnknownKey { .. }
    ));
}
