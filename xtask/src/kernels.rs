//! The kernels installed in /boot that the VM suite can boot: each needs
//! its image, its config and its headers (to build the test modules).
//! Versions are read from the machine, never written into the code.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    Generic,
    PreemptRt,
}

#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub image: PathBuf,
    pub build_dir: PathBuf,
    pub flavour: Flavour,
    /// (major, minor) from the release string.
    pub version: (u32, u32),
}

impl Kernel {
    pub fn describe(&self) -> String {
        let flavour = match self.flavour {
            Flavour::Generic => "generic",
            Flavour::PreemptRt => "PREEMPT_RT",
        };
        format!("{} ({flavour})", self.release)
    }
}

fn version_of(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every kernel in `boot` with headers under `modules_root/<release>/build`.
pub fn installed(boot: &Path, modules_root: &Path) -> anyhow::Result<Vec<Kernel>> {
    let mut kernels = Vec::new();
    let entries = std::fs::read_dir(boot).with_context(|| format!("listing {}", boot.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(release) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        let build_dir = modules_root.join(release).join("build");
        let config =
            std::fs::read_to_string(boot.join(format!("config-{release}"))).unwrap_or_default();
        let (Some(version), true) = (version_of(release), build_dir.join("Makefile").exists())
        else {
            continue;
        };
        let flavour = if config.lines().any(|l| l == "CONFIG_PREEMPT_RT=y") {
            Flavour::PreemptRt
        } else {
            Flavour::Generic
        };
        kernels.push(Kernel {
            release: release.to_owned(),
            image: entry.path(),
            build_dir,
            flavour,
            version,
        });
    }
    kernels.sort_by(|a, b| a.version.cmp(&b.version).then(a.release.cmp(&b.release)));
    Ok(kernels)
}

/// The suite's required set: a generic and a PREEMPT_RT kernel of one
/// release before 6.4, and a kernel with the `mem[]` module layout (6.4+).
pub fn required_set(all: &[Kernel]) -> anyhow::Result<Vec<Kernel>> {
    let generic = all
        .iter()
        .rfind(|k| k.flavour == Flavour::Generic && k.version < (6, 4));
    let rt = all
        .iter()
        .rfind(|k| k.flavour == Flavour::PreemptRt && k.version < (6, 4));
    let newer = all
        .iter()
        .rfind(|k| k.flavour == Flavour::Generic && k.version >= (6, 4));
    match (generic, rt, newer) {
        (Some(g), Some(r), Some(n)) => Ok(vec![g.clone(), r.clone(), n.clone()]),
        _ => bail!(
            "the VM suite needs a generic and a PREEMPT_RT kernel before 6.4 and a 6.4+ kernel, each with \
             headers; found {:?}. `cargo xtask setup` installs Debian's linux-image-amd64, \
             linux-image-rt-amd64 and linux-image-6.12-amd64 with their headers",
            all.iter().map(Kernel::describe).collect::<Vec<_>>()
        ),
    }
}

/// The other flavour (generic <-> PREEMPT_RT) of `kernel`'s version.
pub fn sibling<'a>(all: &'a [Kernel], kernel: &Kernel) -> Option<&'a Kernel> {
    all.iter()
        .rfind(|k| k.version == kernel.version && k.flavour != kernel.flavour)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_boot(dir: &Path, kernels: &[(&str, bool, bool)]) {
        for &(release, rt, headers) in kernels {
            std::fs::write(dir.join(format!("vmlinuz-{release}")), "").unwrap();
            let config = if rt {
                "CONFIG_PREEMPT_RT=y\n"
            } else {
                "# CONFIG_PREEMPT_RT is not set\n"
            };
            std::fs::write(dir.join(format!("config-{release}")), config).unwrap();
            if headers {
                let build = dir.join("lib").join(release).join("build");
                std::fs::create_dir_all(&build).unwrap();
                std::fs::write(build.join("Makefile"), "").unwrap();
            }
        }
    }

    #[test]
    fn finds_the_three_flavours_and_skips_kernels_without_headers() {
        let dir = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        fake_boot(
            &dir,
            &[
                ("6.1.0-56-amd64", false, true),
                ("6.1.0-56-rt-amd64", true, true),
                ("6.12.117+deb12-amd64", false, true),
                ("6.1.0-40-amd64", false, false),
            ],
        );
        let all = installed(&dir, &dir.join("lib")).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        let set = required_set(&all).unwrap();
        let releases: Vec<_> = set.iter().map(|k| k.release.as_str()).collect();
        assert_eq!(
            releases,
            [
                "6.1.0-56-amd64",
                "6.1.0-56-rt-amd64",
                "6.12.117+deb12-amd64"
            ]
        );
        assert_eq!(set[1].flavour, Flavour::PreemptRt);
        assert_eq!(set[2].version, (6, 12));
        assert_eq!(
            sibling(&all, &set[0]).map(|k| k.release.as_str()),
            Some("6.1.0-56-rt-amd64")
        );
        assert_eq!(
            sibling(&all, &set[1]).map(|k| k.release.as_str()),
            Some("6.1.0-56-amd64")
        );
        assert!(sibling(&all, &set[2]).is_none());
    }

    #[test]
    fn missing_flavour_names_the_packages() {
        let dir =
            std::env::temp_dir().join(format!("xtask-kernels-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        fake_boot(&dir, &[("6.1.0-56-amd64", false, true)]);
        let err = required_set(&installed(&dir, &dir.join("lib")).unwrap()).unwrap_err();
        assert!(err.to_string().contains("linux-image-rt-amd64"), "{err}");
    }
}
