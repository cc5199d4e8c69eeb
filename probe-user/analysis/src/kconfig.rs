//! A kernel `.config`: `CONFIG_X=y|m|"str"|123` and `# CONFIG_X is not set`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Option name without the `CONFIG_` prefix → value as written (`y`, `m`, `"…"`, number).
    values: BTreeMap<String, String>,
    /// Lines that were neither an assignment, a "not set" comment, a comment nor blank.
    pub malformed: Vec<(usize, String)>,
}

impl KernelConfig {
    pub fn parse(text: &str) -> Self {
        let mut cfg = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    cfg.values.remove(name);
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            match line.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
                Some((name, value)) if !name.is_empty() && name.bytes().all(is_name_byte) => {
                    cfg.values.insert(name.to_owned(), value.to_owned());
                }
                _ => cfg.malformed.push((i + 1, raw.to_owned())),
            }
        }
        cfg
    }

    /// `y` or `m`.
    pub fn enabled(&self, option: &str) -> bool {
        matches!(self.get(option), Some("y" | "m"))
    }

    pub fn builtin(&self, option: &str) -> bool {
        self.get(option) == Some("y")
    }

    /// The value as written, quotes included for strings.
    pub fn get(&self, option: &str) -> Option<&str> {
        self.values.get(strip(option)).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn strip(option: &str) -> &str {
    option.strip_prefix("CONFIG_").unwrap_or(option)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_not_set() {
        let cfg = KernelConfig::parse(
            "#\n# Automatically generated\nCONFIG_SMP=y\nCONFIG_FUSE_FS=m\n# CONFIG_PREEMPT_RT is not set\n\
             CONFIG_LOCALVERSION=\"-rt\"\nCONFIG_NR_CPUS=64\n",
        );
        assert!(cfg.builtin("SMP"));
        assert!(cfg.enabled("CONFIG_FUSE_FS"));
        assert!(!cfg.builtin("FUSE_FS"));
        assert!(!cfg.enabled("PREEMPT_RT"));
        assert_eq!(cfg.get("LOCALVERSION"), Some("\"-rt\""));
        assert_eq!(cfg.get("NR_CPUS"), Some("64"));
        assert_eq!(cfg.len(), 4);
        assert!(cfg.malformed.is_empty());
    }

    #[test]
    fn garbage_lines_are_kept_with_their_numbers() {
        let cfg = KernelConfig::parse("CONFIG_A=y\nthis is not config\nCONFIG_=y\nCONFIG_B=m\n");
        assert_eq!(cfg.len(), 2);
        assert_eq!(
            cfg.malformed,
            vec![(2, "this is not config".into()), (3, "CONFIG_=y".into())]
        );
    }
}
