//! The kernel a module is checked against: its release, `.config`,
//! `Module.symvers` and BTF, found where Debian (and most distributions)
//! install them, or given explicitly.

use std::path::{Path, PathBuf};

use btf_rs::Btf;

use super::{
    input::{self, InputError},
    kconfig::KernelConfig,
    kernel_btf, kernel_image,
    keyring::Keyring,
    symvers::Symvers,
    vermagic::Vermagic,
};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: InputError,
    },
    /// Not found where the release's files usually are; the command line
    /// says which option gives it (`TargetError::missing`).
    #[error("no {what} for kernel {release}: looked in {looked}")]
    NotFound {
        what: &'static str,
        release: String,
        looked: String,
    },
    /// Read, but holding nothing of what such a file holds.
    #[error("{what} {path}: {why}")]
    NotWhatItClaims {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error(
        "{path}: {count} malformed lines (first, line {line}: {text:?}); refusing a {what} this damaged"
    )]
    Damaged {
        what: &'static str,
        path: String,
        count: usize,
        line: usize,
        text: String,
    },
}

impl TargetError {
    /// Which input was not found (the command line names its option).
    pub fn missing(&self) -> Option<&'static str> {
        match self {
            Self::NotFound { what, .. } => Some(what),
            _ => None,
        }
    }
}

/// Where to look; `None` means "the usual place for the release".
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    pub release: Option<String>,
    pub config: Option<PathBuf>,
    pub symvers: Option<PathBuf>,
    pub btf: Option<PathBuf>,
    /// Certificates the target trusts for module signatures (default: those
    /// built into /boot/vmlinuz-RELEASE).
    pub keyring: Option<PathBuf>,
    /// Root under which /boot, /lib/modules, /proc and /sys are found (tests).
    pub root: Option<PathBuf>,
    /// `sizeof(struct module)`, when the caller has read it already (a live
    /// session, from the running kernel's BTF at start): the target's BTF
    /// is then not read, and indexed, for it.
    pub struct_module_size: Option<u64>,
}

pub struct TargetKernel {
    pub release: String,
    pub config: KernelConfig,
    pub config_path: String,
    pub symvers: Symvers,
    pub symvers_path: String,
    btf: std::sync::OnceLock<Result<Btf, String>>,
    pub btf_source: BtfSource,
    pub btf_path: String,
    pub vermagic: Vermagic,
    /// `sizeof(struct module)` from BTF.
    pub struct_module_size: Option<u64>,
    keyring: LazyKeyring,
    keyring_source: KeyringSource,
}

/// The target's keyring, loaded on first use (or why it cannot be).
type LazyKeyring = std::sync::OnceLock<Result<Keyring, String>>;

/// Where a target's trusted certificates come from.
#[derive(Debug, Clone)]
enum KeyringSource {
    File(PathBuf),
    Image(PathBuf),
    None,
}

fn load_keyring(source: &KeyringSource) -> Result<Keyring, String> {
    match source {
        KeyringSource::File(p) => Keyring::from_file(p).map_err(|e| e.to_string()),
        KeyringSource::Image(p) => Keyring::from_kernel_image(p).map_err(|e| e.to_string()),
        KeyringSource::None => Err("no keyring given".into()),
    }
}

fn running_release(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A text input, read within `limit` and decompressed (`.gz`) within it too.
fn read_text(what: &'static str, path: &Path, limit: u64) -> Result<String, TargetError> {
    let failed = |source| TargetError::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let mut bytes = input::read_bounded(path, limit, what).map_err(failed)?;
    if path.extension().is_some_and(|e| e == "gz") {
        bytes = super::ko_file::decompress_bounded(bytes, limit, false).map_err(|e| {
            failed(match e {
                super::ko_file::KoError::Input(i) => i,
                other => InputError::Io(std::io::Error::other(other.to_string())),
            })
        })?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A config, read and parsed; one without a single option is not a config.
fn read_config(path: &Path) -> Result<KernelConfig, TargetError> {
    let config = KernelConfig::parse(&read_text("kernel config", path, input::limit::CONFIG)?);
    if config.is_empty() {
        return Err(TargetError::NotWhatItClaims {
            what: "kernel config",
            path: path.display().to_string(),
            why: "no CONFIG_ option in it: not a kernel .config".into(),
        });
    }
    Ok(config)
}

/// Module.symvers, read and parsed; every kernel exports symbols, so an
/// empty one is not the kernel's.
fn read_symvers(path: &Path) -> Result<Symvers, TargetError> {
    let symvers = Symvers::parse(&read_text("Module.symvers", path, input::limit::SYMVERS)?);
    if symvers.is_empty() {
        return Err(TargetError::NotWhatItClaims {
            what: "Module.symvers",
            path: path.display().to_string(),
            why: "no exported symbol in it: every kernel exports thousands".into(),
        });
    }
    Ok(symvers)
}

/// The running kernel's configuration (`/proc/config.gz`, else
/// `/boot/config-<release>`) and where it was read, if either is there.
/// The config at `explicit` (`--config`: an error when it cannot be read),
/// else the running kernel's (`running_config`).
pub fn config_for(
    explicit: Option<&Path>,
    release: &str,
) -> Result<Option<(String, KernelConfig)>, TargetError> {
    match explicit {
        Some(p) => Ok(Some((p.display().to_string(), read_config(p)?))),
        None => Ok(running_config(release)),
    }
}

pub fn running_config(release: &str) -> Option<(String, KernelConfig)> {
    [
        PathBuf::from("/proc/config.gz"),
        PathBuf::from(format!("/boot/config-{release}")),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .find_map(|p| Some((p.display().to_string(), read_config(&p).ok()?)))
}

/// More than this share of malformed lines means the file is not what it claims to be.
fn check_damage(
    what: &'static str,
    path: &Path,
    malformed: &[(usize, String)],
    good: usize,
) -> Result<(), TargetError> {
    if let Some((line, text)) = malformed.first()
        && malformed.len() > good / 10
    {
        return Err(TargetError::Damaged {
            what,
            path: path.display().to_string(),
            count: malformed.len(),
            line: *line,
            text: text.chars().take(80).collect(),
        });
    }
    Ok(())
}

pub fn resolve(spec: &TargetSpec) -> Result<TargetKernel, TargetError> {
    let root = spec.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let running = running_release(&root);
    let release = spec
        .release
        .clone()
        .or_else(|| running.clone())
        .unwrap_or_default();
    let is_running = running.as_deref() == Some(release.as_str());

    let config_candidates: Vec<PathBuf> = match &spec.config {
        Some(p) => vec![p.clone()],
        None if is_running => vec![
            root.join("proc/config.gz"),
            root.join(format!("boot/config-{release}")),
        ],
        None => vec![root.join(format!("boot/config-{release}"))],
    };
    let config_path = first_existing(&config_candidates).ok_or_else(|| TargetError::NotFound {
        what: "kernel config",
        release: release.clone(),
        looked: join(&config_candidates),
    })?;
    let config = read_config(&config_path)?;
    check_damage(
        "kernel config",
        &config_path,
        &config.malformed,
        config.len(),
    )?;

    let symvers_candidates: Vec<PathBuf> = match &spec.symvers {
        Some(p) => vec![p.clone()],
        None => vec![
            root.join(format!("lib/modules/{release}/build/Module.symvers")),
            root.join(format!("usr/src/linux-headers-{release}/Module.symvers")),
        ],
    };
    let symvers_path =
        first_existing(&symvers_candidates).ok_or_else(|| TargetError::NotFound {
            what: "Module.symvers",
            release: release.clone(),
            looked: join(&symvers_candidates),
        })?;
    let symvers = read_symvers(&symvers_path)?;
    check_damage(
        "Module.symvers",
        &symvers_path,
        &symvers.malformed,
        symvers.len(),
    )?;

    let btf_source = btf_source(spec, &root, &release, is_running);
    let btf_path = btf_source.path.display().to_string();
    let btf = std::sync::OnceLock::new();
    if spec.btf.is_some() {
        // Given explicitly, a BTF that does not load is an error, not a
        // check quietly skipped.
        if let Err(why) = btf.get_or_init(|| load_btf(&btf_source)) {
            return Err(TargetError::NotWhatItClaims {
                what: "BTF",
                path: btf_path,
                why: why.clone(),
            });
        }
    }
    let struct_module_size = spec
        .struct_module_size
        .or_else(|| struct_module_size(&btf_source, &btf));
    let (keyring_source, keyring) = keyring(spec, &root, &release)?;
    let randstruct_hash =
        std::fs::read_to_string(symvers_path.with_file_name("include/generated/randstruct_hash.h"))
            .ok()
            .and_then(|t| t.split('"').nth(1).map(str::to_owned));
    let vermagic = Vermagic::for_kernel(&release, &config, randstruct_hash.as_deref());
    Ok(TargetKernel {
        release,
        config,
        config_path: config_path.display().to_string(),
        symvers,
        symvers_path: symvers_path.display().to_string(),
        btf,
        btf_source,
        btf_path,
        vermagic,
        struct_module_size,
        keyring,
        keyring_source,
    })
}

/// The target's keyring: `--keyring`, loaded now (a file that holds no
/// certificate is an error), or the kernel image's, loaded when a signed
/// module needs it.
fn keyring(
    spec: &TargetSpec,
    root: &Path,
    release: &str,
) -> Result<(KeyringSource, LazyKeyring), TargetError> {
    let lock = std::sync::OnceLock::new();
    let Some(path) = &spec.keyring else {
        let image = root.join(format!("boot/vmlinuz-{release}"));
        return Ok((KeyringSource::Image(image), lock));
    };
    let source = KeyringSource::File(path.clone());
    if let Err(why) = lock.get_or_init(|| load_keyring(&source)) {
        return Err(TargetError::NotWhatItClaims {
            what: "keyring",
            path: path.display().to_string(),
            why: why.clone(),
        });
    }
    Ok((source, lock))
}

/// Where a target's BTF comes from: a raw BTF file, or a kernel image to
/// take it out of.
#[derive(Debug, Clone)]
pub struct BtfSource {
    pub path: PathBuf,
    pub in_image: bool,
}

fn btf_source(spec: &TargetSpec, root: &Path, release: &str, is_running: bool) -> BtfSource {
    if let Some(p) = &spec.btf {
        return BtfSource {
            path: p.clone(),
            in_image: false,
        };
    }
    let sys = root.join("sys/kernel/btf/vmlinux");
    if is_running && sys.exists() {
        return BtfSource {
            path: sys,
            in_image: false,
        };
    }
    BtfSource {
        path: root.join(format!("boot/vmlinuz-{release}")),
        in_image: true,
    }
}

fn load_btf(source: &BtfSource) -> Result<Btf, String> {
    let shown = source.path.display();
    if source.in_image {
        let bytes = kernel_btf::extract_cached(&source.path, &kernel_image::default_cache_dir())
            .map_err(|e| e.to_string())?;
        Btf::from_bytes(&bytes).map_err(|e| format!("{shown}: {e}"))
    } else {
        // A raw BTF file or an ELF with .BTF; else perhaps a kernel image.
        crate::btf::open(&source.path).or_else(|e| {
            let bytes =
                kernel_btf::extract_cached(&source.path, &kernel_image::default_cache_dir())
                    .map_err(|_| e.to_string())?;
            Btf::from_bytes(&bytes).map_err(|e| format!("{shown}: {e}"))
        })
    }
}

/// `sizeof(struct module)`, remembered per BTF source (path, size, mtime):
/// parsing a whole vmlinux BTF costs more than checking thousands of modules.
fn struct_module_size(
    source: &BtfSource,
    btf: &std::sync::OnceLock<Result<Btf, String>>,
) -> Option<u64> {
    let cache = kernel_image::cache_key(&source.path)
        .map(|k| kernel_image::default_cache_dir().join(format!("{k}.struct-module-size")));
    if let Some(size) = cache
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse().ok())
    {
        return Some(size);
    }
    let size = btf
        .get_or_init(|| load_btf(source))
        .as_ref()
        .ok()
        .and_then(|b| crate::btf::struct_size(b, "module"))?;
    if let Some(path) = cache {
        let _ = std::fs::create_dir_all(kernel_image::default_cache_dir())
            .and_then(|()| std::fs::write(path, size.to_string()));
    }
    Some(size)
}

impl TargetKernel {
    /// A target assembled from parts already in hand (tests, `diff` inputs).
    pub fn from_parts(
        release: &str,
        config: KernelConfig,
        symvers: Symvers,
        btf: Result<Btf, String>,
        struct_module_size: Option<u64>,
    ) -> Self {
        let vermagic = Vermagic::for_kernel(release, &config, None);
        Self {
            release: release.to_owned(),
            config,
            config_path: "(given)".into(),
            symvers,
            symvers_path: "(given)".into(),
            btf: std::sync::OnceLock::from(btf),
            btf_source: BtfSource {
                path: "(given)".into(),
                in_image: false,
            },
            btf_path: "(given)".into(),
            vermagic,
            struct_module_size,
            keyring: std::sync::OnceLock::new(),
            keyring_source: KeyringSource::None,
        }
    }

    /// The certificates the target trusts for module signatures, read on
    /// first use.
    pub fn keyring(&self) -> Result<&Keyring, &str> {
        self.keyring
            .get_or_init(|| load_keyring(&self.keyring_source))
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether the target's loader checks signatures and modscope has its
    /// keys to check them as it does.
    pub fn verifies_signatures(&self) -> bool {
        self.config.builtin("MODULE_SIG") && self.keyring().is_ok()
    }

    /// Lines of the config or Module.symvers that were skipped as malformed,
    /// one sentence per file.
    pub fn warnings(&self) -> Vec<String> {
        [
            ("config", &self.config_path, &self.config.malformed),
            (
                "Module.symvers",
                &self.symvers_path,
                &self.symvers.malformed,
            ),
        ]
        .into_iter()
        .filter_map(|(what, path, bad)| {
            let (line, text) = bad.first()?;
            Some(format!(
                "{what} {path}: {} malformed line(s) ignored (first, line {line}: {:?})",
                bad.len(),
                text.chars().take(60).collect::<String>()
            ))
        })
        .collect()
    }

    /// The checks this target's inputs cannot support, one sentence each:
    /// listed in the output, never skipped silently.
    pub fn skipped_checks(&self) -> Vec<String> {
        let mut skipped = Vec::new();
        if self.struct_module_size.is_none() {
            skipped.push(match self.btf() {
                Err(e) => format!(
                    "struct module's size (THIS_MODULE_SIZE) and the struct layouts of modules \
                     built for other kernels (BTF_STRUCT_LAYOUT): no BTF: {e}"
                ),
                Ok(_) => format!(
                    "struct module's size (THIS_MODULE_SIZE): the BTF {} has no struct module",
                    self.btf_path
                ),
            });
        }
        if self.config.builtin("MODULE_SIG")
            && let Err(e) = self.keyring()
        {
            skipped.push(format!(
                "module signatures (SIGNATURE_INVALID): no trusted certificates: {e} \
                 (give --keyring FILE)"
            ));
        }
        skipped
    }

    /// The target's BTF, parsed on first use.
    pub fn btf(&self) -> Result<&Btf, &str> {
        self.btf
            .get_or_init(|| load_btf(&self.btf_source))
            .as_ref()
            .map_err(String::as_str)
    }

    /// Drops the parsed BTF (tens of MB for a vmlinux); the next `btf()`
    /// reads it again. For a long-lived holder between uses.
    pub fn release_btf(&mut self) -> bool {
        self.btf.take().is_some()
    }
}

fn first_existing(paths: &[PathBuf]) -> Option<PathBuf> {
    paths.iter().find(|p| p.exists()).cloned()
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Releases installed under `root`/boot that have a config (for `--all-kernels`).
pub fn installed_releases(root: Option<&Path>) -> Vec<String> {
    let boot = root.unwrap_or(Path::new("/")).join("boot");
    let mut out: Vec<String> = std::fs::read_dir(&boot)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("config-")
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}
