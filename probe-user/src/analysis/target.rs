//! The kernel a module is checked against: its release, `.config`,
//! `Module.symvers` and BTF, found where Debian (and most distributions)
//! install them, or given explicitly.

use std::path::{Path, PathBuf};

use btf_rs::Btf;

use super::{kconfig::KernelConfig, kernel_btf, symvers::Symvers, vermagic::Vermagic};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("no {what} for kernel {release}: looked in {looked}; pass {flag}")]
    NotFound {
        what: &'static str,
        release: String,
        looked: String,
        flag: &'static str,
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

/// Where to look; `None` means "the usual place for the release".
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    pub release: Option<String>,
    pub config: Option<PathBuf>,
    pub symvers: Option<PathBuf>,
    pub btf: Option<PathBuf>,
    /// Root under which /boot, /lib/modules, /proc and /sys are found (tests).
    pub root: Option<PathBuf>,
}

pub struct TargetKernel {
    pub release: String,
    pub config: KernelConfig,
    pub config_path: String,
    pub symvers: Symvers,
    pub symvers_path: String,
    pub btf: Result<Btf, String>,
    pub btf_path: String,
    pub vermagic: Vermagic,
    /// `sizeof(struct module)` from BTF.
    pub struct_module_size: Option<u64>,
}

fn running_release(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn read_text(what: &'static str, path: &Path) -> Result<String, TargetError> {
    let bytes = std::fs::read(path).map_err(|source| TargetError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        let text = super::ko_file::decompress(bytes).map_err(|e| TargetError::Read {
            what,
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        return Ok(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
        flag: "--config",
    })?;
    let config = KernelConfig::parse(&read_text("kernel config", &config_path)?);
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
            flag: "--symvers (or install the kernel's headers package)",
        })?;
    let symvers = Symvers::parse(&read_text("Module.symvers", &symvers_path)?);
    check_damage(
        "Module.symvers",
        &symvers_path,
        &symvers.malformed,
        symvers.len(),
    )?;

    let (btf, btf_path) = load_btf(spec, &root, &release, is_running);
    let struct_module_size = btf
        .as_ref()
        .ok()
        .and_then(|b| crate::btf_layout::struct_size(b, "module"));
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
        btf_path,
        vermagic,
        struct_module_size,
    })
}

fn load_btf(
    spec: &TargetSpec,
    root: &Path,
    release: &str,
    is_running: bool,
) -> (Result<Btf, String>, String) {
    let from_file = |p: &Path| Btf::from_file(p).map_err(|e| format!("{}: {e}", p.display()));
    if let Some(p) = &spec.btf {
        return (from_file(p), p.display().to_string());
    }
    let sys = root.join("sys/kernel/btf/vmlinux");
    if is_running && sys.exists() {
        return (from_file(&sys), sys.display().to_string());
    }
    let image = root.join(format!("boot/vmlinuz-{release}"));
    let btf = kernel_btf::extract_cached(&image, &kernel_btf::default_cache_dir())
        .map_err(|e| e.to_string())
        .and_then(|bytes| Btf::from_bytes(&bytes).map_err(|e| format!("{}: {e}", image.display())));
    (btf, image.display().to_string())
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
