//! `modscope check`'s verdict on module signatures against the loader's
//! own answer: one of Debian's signed modules (`dummy`), intact and in
//! copies damaged the ways a signature can be, each loaded with and without
//! `-f`; and the taint the kernel sets when it lets a module through
//! without a verified signature.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use vm_tests::*;

const MARKER: usize = 28;
const TRAILER: usize = 12;

/// Debian's signed `dummy` module for the running kernel, decompressed.
fn signed_dummy() -> Option<Vec<u8>> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let dir = PathBuf::from(format!(
        "/lib/modules/{}/kernel/drivers/net",
        release.trim()
    ));
    if Path::new("/sys/module/dummy").exists() {
        eprintln!("dummy is built in or loaded here: nothing to load");
        return None;
    }
    if let Ok(bytes) = std::fs::read(dir.join("dummy.ko")) {
        return Some(bytes);
    }
    let xz = dir.join("dummy.ko.xz");
    let out = Command::new("xz").arg("-dc").arg(&xz).output().ok()?;
    assert!(out.status.success(), "xz -dc {}: {out:?}", xz.display());
    Some(out.stdout)
}

/// Where the PKCS#7 message starts, and the trailer.
fn layout(image: &[u8]) -> (usize, usize) {
    let trailer = image.len() - MARKER - TRAILER;
    let t = &image[trailer..trailer + TRAILER];
    let sig_len = u32::from_be_bytes([t[8], t[9], t[10], t[11]]) as usize;
    (trailer - sig_len, trailer)
}

/// The file offset of the section of type `sh_type` (ELF64, little-endian).
fn section_of_type(image: &[u8], sh_type: u32) -> usize {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shnum) = (u64_at(0x28), u16_at(0x3c));
    (0..shnum)
        .map(|i| shoff + i * 64)
        .find(|&h| u32::from_le_bytes(image[h + 4..h + 8].try_into().unwrap()) == sh_type)
        .map(|h| u64_at(h + 24))
        .expect("the module has that section")
}

fn find(image: &[u8], needle: &[u8]) -> usize {
    image
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present in dummy.ko")
}

/// Re-signs the module's contents with a fresh key the kernel does not hold,
/// using the kernel's own sign-file.
fn resigned_by_a_stranger(image: &[u8], work: &Path) -> Option<Vec<u8>> {
    let (pkcs7, _) = layout(image);
    let sign_file = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("scripts/sign-file"))
        .find(|p| p.exists())?;
    let (key, cert, module) = (work.join("k.pem"), work.join("c.der"), work.join("m.ko"));
    let made = Command::new("openssl")
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-outform", "DER", "-subj", "/CN=stranger", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    assert!(made.status.success(), "openssl: {made:?}");
    std::fs::write(&module, &image[..pkcs7]).unwrap();
    let signed = Command::new(sign_file)
        .arg("sha256")
        .arg(&key)
        .arg(&cert)
        .arg(&module)
        .output()
        .unwrap();
    assert!(signed.status.success(), "sign-file: {signed:?}");
    Some(std::fs::read(&module).unwrap())
}

/// The damaged copies: (case, bytes, whether `-f` is tried too).
fn cases(image: &[u8], work: &Path) -> Vec<(&'static str, Vec<u8>, bool)> {
    let (pkcs7, trailer) = layout(image);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut copy = image.to_vec();
        f(&mut copy);
        copy
    };
    let mut out = vec![
        ("intact", image.to_vec(), true),
        (
            "a .modinfo byte changed",
            edit(&|m| m[find(image, b"alias=rtnl-link-dummy") + 10] ^= 0x20),
            true,
        ),
        // The case: the symbol table overwritten. Not loaded with
        // -f: the loader would read symbols through the damage.
        (
            "200 bytes of the symbol table overwritten",
            edit(&|m| {
                let symtab = section_of_type(image, 2);
                m[symtab + 100..symtab + 300].fill(0x41);
            }),
            false,
        ),
        (
            "the RSA value damaged",
            edit(&|m| m[trailer - 1] ^= 0x55),
            true,
        ),
        (
            "the PKCS#7 message garbled",
            edit(&|m| m[pkcs7 + 1] = 0x85),
            true,
        ),
        (
            "the signature length too large",
            edit(&|m| m[trailer + 8..trailer + 12].copy_from_slice(&u32::MAX.to_be_bytes())),
            true,
        ),
        (
            "not PKCS#7 (id_type 1)",
            edit(&|m| m[trailer + 2] = 1),
            true,
        ),
        ("the signature stripped", image[..pkcs7].to_vec(), true),
    ];
    if let Some(stranger) = resigned_by_a_stranger(image, work) {
        out.push(("signed by a key the kernel does not hold", stranger, true));
    } else {
        eprintln!("no sign-file or openssl here: the unknown-key case is not tried");
    }
    out
}

fn predicted(report: &Value, force: bool) -> Result<(), String> {
    match &report["loader"][if force { "insmod_force" } else { "insmod" }] {
        Value::Null => Ok(()),
        Value::String(e) => Err(e.clone()),
        other => panic!("loader answer {other}"),
    }
}

/// Loads `path`, returns the kernel's answer and the module's taint letters.
fn load_and_taint(path: &Path, force: bool) -> Result<String, String> {
    load_module_file(path, force)?;
    let taint = sys_module("dummy", "taint");
    rmmod("dummy");
    Ok(taint)
}

#[test]
fn signatures_are_judged_as_the_loader_judges_them() {
    let work = std::env::temp_dir().join(format!("modscope-sig-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let Some(image) = signed_dummy() else {
        return;
    };
    assert!(
        image.ends_with(b"~Module signature appended~\n"),
        "Debian signs its modules"
    );
    for (i, (case, bytes, try_force)) in cases(&image, &work).into_iter().enumerate() {
        let dir = work.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dummy.ko");
        std::fs::write(&path, &bytes).unwrap();
        let report = modscope_check(&path);
        let codes: Vec<&str> = report["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["code"].as_str()).collect())
            .unwrap_or_default();
        for force in [false, true].into_iter().filter(|f| !f || try_force) {
            let actual = load_and_taint(&path, force);
            assert_eq!(
                predicted(&report, force),
                actual.as_ref().map(|_| ()).map_err(Clone::clone),
                "{case} (insmod{}): modscope predicted otherwise: {report:#}",
                if force { " -f" } else { "" },
            );
            // Let through without a verified signature: taint E.
            if let Ok(taint) = &actual {
                let verified = codes.contains(&"SIGNATURE_VERIFIED") && !force;
                assert_eq!(
                    !taint.contains('E'),
                    verified,
                    "{case}: taint {taint:?}, {codes:?}"
                );
            }
        }
        eprintln!(
            "{case}: {} {:?} {codes:?}",
            report["verdict"], report["loader"]
        );
        let expected = match case {
            "a .modinfo byte changed" => "SIGNATURE_INVALID",
            "intact" => "SIGNATURE_VERIFIED",
            "the signature stripped" => "UNSIGNED",
            "not PKCS#7 (id_type 1)" | "signed by a key the kernel does not hold" => {
                "SIGNATURE_UNTRUSTED"
            }
            _ => "SIGNATURE_INVALID",
        };
        assert!(
            codes.contains(&expected),
            "{case}: {expected} in {report:#}"
        );
    }
}
