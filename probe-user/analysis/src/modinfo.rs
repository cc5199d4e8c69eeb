//! `.modinfo`: NUL-separated `key=value` strings (name, vermagic, license,
//! depends, srcversion, retpoline, intree, import_ns, …). Keys may repeat.

use std::borrow::Cow;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modinfo<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Modinfo<'a> {
    pub fn parse(section: &'a [u8]) -> Self {
        let entries = section
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let eq = s.iter().position(|&b| b == b'=')?;
                Some((
                    String::from_utf8_lossy(&s[..eq]),
                    String::from_utf8_lossy(&s[eq + 1..]),
                ))
            })
            .collect();
        Self { entries }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// `license_is_gpl_compatible()` from include/linux/license.h.
pub fn license_is_gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_keys_and_padding() {
        let m = Modinfo::parse(
            b"license=GPL\0\0\0import_ns=A\0import_ns=B\0name=x\0vermagic=6.1 SMP \0",
        );
        assert_eq!(m.get("license"), Some("GPL"));
        assert_eq!(m.all("import_ns").collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(m.get("vermagic"), Some("6.1 SMP "));
        assert_eq!(m.get("missing"), None);
    }

    #[test]
    fn gpl_compatibility_follows_the_kernel() {
        assert!(license_is_gpl_compatible("Dual BSD/GPL"));
        assert!(!license_is_gpl_compatible("Proprietary"));
        assert!(
            !license_is_gpl_compatible("GPLv2"),
            "not in the kernel's list"
        );
    }
}
