//! Version magic: `RELEASE SMP preempt mod_unload modversions [RANDSTRUCT_…] `.
//! The kernel compares it with `same_magic()` (kernel/module/version.c):
//! a byte-for-byte compare, except that when the module carries symbol
//! versions (`__versions`) everything up to the first space (the release)
//! is skipped.

use super::kconfig::KernelConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vermagic {
    pub raw: String,
    pub release: String,
    /// The space-separated words after the release, in order.
    pub flags: Vec<String>,
}

/// `MODULE_ARCH_VERMAGIC` (each architecture's asm/module.h): arm64's
/// `aarch64`, x86-64's processor family when one is configured. As the
/// kernel writes them (`modinfo` of a Debian arm64 module ends
/// `modversions aarch64`).
fn arch_vermagic(config: &KernelConfig) -> &'static str {
    if config.builtin("ARM64") {
        // No trailing space: the kernel concatenates the next part.
        return "aarch64";
    }
    for (option, family) in [
        ("MK8", "K8 "),
        ("MPSC", "P4SSE2 "),
        ("MCORE2", "CORE2 "),
        ("MATOM", "ATOM "),
    ] {
        if config.builtin(option) {
            return family;
        }
    }
    ""
}

impl Vermagic {
    pub fn parse(raw: &str) -> Self {
        let mut words = raw.split(' ').filter(|w| !w.is_empty());
        let release = words.next().unwrap_or_default().to_owned();
        Self {
            raw: raw.to_owned(),
            release,
            flags: words.map(str::to_owned).collect(),
        }
    }

    /// What a kernel built from `config` as `release` expects
    /// (include/linux/vermagic.h).
    pub fn for_kernel(release: &str, config: &KernelConfig, randstruct_hash: Option<&str>) -> Self {
        let mut raw = format!("{release} ");
        if config.builtin("SMP") {
            raw.push_str("SMP ");
        }
        if config.builtin("PREEMPT_BUILD") {
            raw.push_str("preempt ");
        } else if config.builtin("PREEMPT_RT") {
            raw.push_str("preempt_rt ");
        }
        if config.builtin("MODULE_UNLOAD") {
            raw.push_str("mod_unload ");
        }
        if config.builtin("MODVERSIONS") {
            raw.push_str("modversions ");
        }
        raw.push_str(arch_vermagic(config));
        if config.builtin("RANDSTRUCT") {
            raw.push_str(&format!(
                "RANDSTRUCT_{} ",
                randstruct_hash.unwrap_or("unknown")
            ));
        }
        Self::parse(&raw)
    }

    /// `same_magic()` as the kernel computes it.
    pub fn same_magic(module: &str, kernel: &str, module_has_crcs: bool) -> bool {
        if module_has_crcs {
            let skip = |s: &str| s.find(' ').map_or("", |i| &s[i..]).to_owned();
            skip(module) == skip(kernel)
        } else {
            module == kernel
        }
    }

    /// Per-field differences, for explanations: (field, module's, kernel's).
    pub fn differences(&self, kernel: &Vermagic) -> Vec<(String, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        if self.release != kernel.release {
            out.push((
                "release".into(),
                Some(self.release.clone()),
                Some(kernel.release.clone()),
            ));
        }
        let field = |w: &str| match w {
            "preempt" | "preempt_rt" => "preempt model".to_owned(),
            w if w.starts_with("RANDSTRUCT_") => "RANDSTRUCT".to_owned(),
            w => w.to_owned(),
        };
        let fields = |v: &Vermagic| {
            v.flags
                .iter()
                .map(|w| (field(w), w.clone()))
                .collect::<Vec<_>>()
        };
        let (mine, theirs) = (fields(self), fields(kernel));
        let mut names: Vec<&String> = Vec::new();
        for (name, _) in mine.iter().chain(&theirs) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let a = mine.iter().find(|(f, _)| f == name).map(|(_, w)| w.clone());
            let b = theirs
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, w)| w.clone());
            if a != b {
                out.push((name.clone(), a, b));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERIC: &str = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";
    const RT: &str = "6.1.0-56-rt-amd64 SMP preempt_rt mod_unload modversions ";

    #[test]
    fn computes_debians_vermagic_from_config() {
        let cfg = KernelConfig::parse(
            "CONFIG_SMP=y\nCONFIG_PREEMPT_BUILD=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\nCONFIG_RANDSTRUCT_NONE=y\n",
        );
        assert_eq!(
            Vermagic::for_kernel("6.1.0-56-amd64", &cfg, None).raw,
            GENERIC
        );
        let rt = KernelConfig::parse(
            "CONFIG_SMP=y\nCONFIG_PREEMPT_RT=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n",
        );
        assert_eq!(Vermagic::for_kernel("6.1.0-56-rt-amd64", &rt, None).raw, RT);
    }

    #[test]
    fn arm64_kernels_expect_the_architecture_in_vermagic() {
        let config = KernelConfig::parse(
            "CONFIG_ARM64=y\nCONFIG_SMP=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n",
        );
        let v = Vermagic::for_kernel("6.1.0-57-arm64", &config, None);
        assert!(
            Vermagic::same_magic(
                "6.1.0-57-arm64 SMP mod_unload modversions aarch64",
                &v.raw,
                true
            ),
            "{v:?}"
        );
    }

    #[test]
    fn same_magic_ignores_the_release_only_with_crcs() {
        let other_release = "6.1.0-99-amd64 SMP preempt mod_unload modversions ";
        assert!(Vermagic::same_magic(other_release, GENERIC, true));
        assert!(!Vermagic::same_magic(other_release, GENERIC, false));
        assert!(
            !Vermagic::same_magic(GENERIC, RT, true),
            "preempt model differs"
        );
    }

    #[test]
    fn differences_name_the_fields() {
        let d = Vermagic::parse(GENERIC).differences(&Vermagic::parse(RT));
        assert_eq!(
            d,
            vec![
                (
                    "release".into(),
                    Some("6.1.0-56-amd64".into()),
                    Some("6.1.0-56-rt-amd64".into())
                ),
                (
                    "preempt model".into(),
                    Some("preempt".into()),
                    Some("preempt_rt".into())
                ),
            ]
        );
        let no_unload = Vermagic::parse("6.1.0-56-amd64 SMP preempt modversions ");
        let d = no_unload.differences(&Vermagic::parse(GENERIC));
        assert_eq!(
            d,
            vec![("mod_unload".into(), None, Some("mod_unload".into()))]
        );
    }
}
