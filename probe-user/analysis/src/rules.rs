//! The compatibility rules: one module's facts held against one target
//! kernel, with the loader's own semantics (kernel/module/main.c and
//! version.c of 6.1–6.12). The loader's order matters for what `insmod`
//! prints: signature, `struct module` size, `module_layout` CRC, vermagic,
//! then each undefined symbol in symbol-table order.

use super::{
    feature_symbols,
    ko_file::{Machine, ModuleFacts},
    modinfo::license_is_gpl_compatible,
    signature::Outcome,
    symvers::ExportKind,
    target::TargetKernel,
    verdict::{Code, LoaderAnswer, Reason, Severity},
    vermagic::Vermagic,
};

/// kmod's messages for the errnos the loader returns.
const ENOEXEC: &str = "Invalid module format";
const ENOENT: &str = "Unknown symbol in module";
const EINVAL: &str = "Invalid argument";
use super::signature::EKEYREJECTED;

/// Where the loader stops, with and without `-f`.
#[derive(Default)]
struct Loader {
    plain: Option<&'static str>,
    forced: Option<&'static str>,
}

impl Loader {
    /// A failure that `-f` does not bypass.
    fn hard(&mut self, msg: &'static str) {
        self.plain.get_or_insert(msg);
        self.forced.get_or_insert(msg);
    }
    /// A failure that `-f` bypasses (vermagic, symbol versions).
    fn soft(&mut self, msg: &'static str) {
        self.plain.get_or_insert(msg);
    }
}

/// Whether the target's loader refuses a `.gnu.linkonce.this_module` of the
/// wrong size (`elf_validity_cache_index_mod`). Read from the kernels
/// themselves: Debian's 6.1 image has no such check, its 6.12 image has it;
/// it came with the ELF validation rework of 6.4.
fn loader_compares_this_module_size(release: &str) -> bool {
    let (major, minor) = major_minor(release);
    // An unknown release: assume the newer loader.
    major == 0 || (major, minor) >= (6, 4)
}

/// "6.12.117+deb12-amd64" → (6, 12); (0, 0) when it does not start with a version.
fn major_minor(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Why a module's struct module differs in size from the target's: another
/// kernel version first (struct module changes between releases), else
/// the debug options that change it within one.
fn struct_module_size_cause(built_for: Option<&str>, target: &str) -> String {
    let options = "a debug option that changes struct module's layout (lock debugging, since \
                   it embeds a struct mutex; lockdep, tracing, kprobes, PREEMPT_RT)";
    match built_for {
        Some(built) if major_minor(built) != major_minor(target) => format!(
            "the module was built for {built}, another kernel version than {target}: struct module \
             changes between versions (within one version, {options} is the usual cause)"
        ),
        _ => format!("{options} is the usual cause"),
    }
}

pub fn check(
    facts: &ModuleFacts,
    signature: Option<&Outcome>,
    target: &TargetKernel,
) -> (Vec<Reason>, LoaderAnswer) {
    let license = facts.modinfo.get("license").unwrap_or("");
    let mut c = Checking {
        facts,
        signature,
        target,
        license,
        gpl_ok: license_is_gpl_compatible(license),
        reasons: Vec::new(),
        loader: Loader::default(),
    };
    // The loader's order (see the module's comment).
    c.signature();
    c.architecture();
    c.struct_module_size();
    c.module_layout_crc();
    c.vermagic();
    c.retpoline();
    c.licence_and_tree();
    c.symbol_table();
    c.imports();
    c.build_features();
    (
        c.reasons,
        LoaderAnswer {
            insmod: c.loader.plain.map(str::to_owned),
            insmod_force: c.loader.forced.map(str::to_owned),
        },
    )
}

/// One module held against one target, the reasons found so far, and
/// where the loader stops.
struct Checking<'a> {
    facts: &'a ModuleFacts<'a>,
    /// What the signature check found, when it ran.
    signature: Option<&'a Outcome>,
    target: &'a TargetKernel,
    license: &'a str,
    gpl_ok: bool,
    reasons: Vec<Reason>,
    loader: Loader,
}

impl Checking<'_> {
    /// Step 1, `module_sig_check`: the signature, verified against the
    /// target's trusted keys when they are at hand (`self.signature`).
    fn signature(&mut self) {
        let cfg = &self.target.config;
        if !cfg.builtin("MODULE_SIG") {
            return; // the loader ignores signatures
        }
        let enforced = cfg.builtin("MODULE_SIG_FORCE");
        match self.signature {
            _ if !self.facts.signed => self.unsigned(enforced),
            Some(Outcome::Unsigned) => self.unsigned(enforced),
            // Signed, not verified: the target's skipped checks say why.
            None => {}
            Some(Outcome::Valid { signer }) => self.reasons.push(Reason::new(
                Code::SignatureVerified,
                Severity::Info,
                format!("signed by {signer}, a key the target trusts: the signature verifies"),
            )),
            Some(Outcome::UnknownKey { signer }) => self.untrusted(
                format!("signed by {signer}, a key the target does not hold"),
                enforced,
            ),
            Some(Outcome::UnsupportedCrypto { why }) => self.untrusted(
                format!("signed with {why}, which the target's loader does not support"),
                enforced,
            ),
            Some(Outcome::Refused { insmod, why }) => self.signature_invalid(insmod, why, enforced),
            Some(Outcome::NotChecked { why }) => self.reasons.push(Reason::new(
                Code::SignatureNotChecked,
                Severity::Info,
                format!("signature not verified: {why}"),
            )),
        }
    }

    fn unsigned(&mut self, enforced: bool) {
        if enforced {
            self.loader.hard(EKEYREJECTED);
            self.reasons.push(
                Reason::new(
                    Code::SignatureRequired,
                    Severity::Incompatible,
                    "the module is unsigned and the target enforces signatures (MODULE_SIG_FORCE)",
                )
                .config("MODULE_SIG_FORCE"),
            );
        } else {
            self.reasons.push(
                Reason::new(
                    Code::Unsigned,
                    Severity::Info,
                    "unsigned: loading taints the kernel with E",
                )
                .config("MODULE_SIG"),
            );
        }
    }

    /// ENOKEY and ENOPKG: let through with taint E, unless enforced.
    fn untrusted(&mut self, what: String, enforced: bool) {
        let reason = if enforced {
            self.loader.hard(EKEYREJECTED);
            Reason::new(
                Code::SignatureUntrusted,
                Severity::Incompatible,
                format!("{what}: the target enforces signatures (MODULE_SIG_FORCE) and refuses it"),
            )
            .config("MODULE_SIG_FORCE")
        } else {
            Reason::new(
                Code::SignatureUntrusted,
                Severity::Info,
                format!("{what}: it loads as if unsigned, tainting the kernel with E"),
            )
            .config("MODULE_SIG")
        };
        self.reasons.push(reason);
    }

    /// A signature present that does not verify: refused even without
    /// MODULE_SIG_FORCE; `-f` skips the check and loads it as unsigned.
    fn signature_invalid(&mut self, insmod: &'static str, why: &str, enforced: bool) {
        self.loader.soft(insmod);
        let forced = if enforced {
            self.loader.forced.get_or_insert(EKEYREJECTED);
            "insmod -f skips the check, and MODULE_SIG_FORCE then refuses it as unsigned"
        } else {
            "insmod -f skips the check and loads it as unsigned, tainting E"
        };
        self.reasons.push(Reason::new(
            Code::SignatureInvalid,
            Severity::Incompatible,
            format!("{why}: the loader refuses it even without MODULE_SIG_FORCE; {forced}"),
        ));
    }

    /// Step 2, `elf_check_arch`: the target runs modules of its own
    /// architecture only (read from its config; not checked without one).
    fn architecture(&mut self) {
        let cfg = &self.target.config;
        let target = if cfg.builtin("ARM64") {
            Machine::Aarch64
        } else if cfg.builtin("X86_64") {
            Machine::X86_64
        } else {
            return;
        };
        let built = self.facts.machine;
        if built != target {
            self.loader.hard(ENOEXEC);
            self.reasons.push(Reason::new(
                Code::WrongArchitecture,
                Severity::Incompatible,
                format!(
                    "built for {}, the target kernel is {}: the loader refuses it before \
                     anything else",
                    built.uname(),
                    target.uname()
                ),
            ));
        }
    }

    /// Step 3: The compiled-in struct module must match the kernel's exactly.
    fn struct_module_size(&mut self) {
        let facts = self.facts;
        let target = self.target;
        // 2. The compiled-in struct module must match the kernel's exactly.
        match target.struct_module_size {
            Some(size) if size != facts.this_module_size => {
                let built_for = facts
                    .modinfo
                    .get("vermagic")
                    .and_then(|v| v.split_whitespace().next());
                let cause = struct_module_size_cause(built_for, &target.release);
                let message = if loader_compares_this_module_size(&target.release) {
                    self.loader.hard(ENOEXEC);
                    format!(
                        "the module's compiled struct module is {} bytes, the target's is {size}: the loader rejects it \
                         even with -f; {cause}",
                        facts.this_module_size
                    )
                } else {
                    format!(
                        "the module's compiled struct module is {} bytes, the target's is {size}: this kernel's loader \
                         does not compare them (module_layout's CRC refuses it without -f), so a forced load runs with \
                         every struct module field past the first difference at the wrong offset; {cause}",
                        facts.this_module_size
                    )
                };
                self.reasons.push(
                    Reason::new(Code::ThisModuleSize, Severity::Incompatible, message)
                        .struct_name("module"),
                );
            }
            Some(_) => {}
            None => self.reasons.push(Reason::new(
                Code::BtfUnavailable,
                Severity::Info,
                format!(
                    "no BTF for the target ({}): struct module's size was not checked",
                    target.btf_path
                ),
            )),
        }
    }

    /// Step 4: module_layout's CRC summarises struct module and friends.
    fn module_layout_crc(&mut self) {
        let facts = self.facts;
        let target = self.target;
        // 3. module_layout's CRC summarises struct module and friends.
        if let Some(v) = facts.versions.iter().find(|v| v.name == "module_layout")
            && let Some(export) = target.symvers.get("module_layout")
            && export.crc != v.crc
        {
            self.loader.soft(ENOEXEC);
            self.reasons.push(Reason::new(Code::StructModuleCrc, Severity::Warning, format!(
                "module_layout CRC {:#010x} differs from the target's {:#010x}: struct module or a struct it embeds changed; \
                 the loader refuses without -f",
                v.crc, export.crc)).symbol("module_layout").struct_name("module"));
        }
    }

    /// Step 5: Version magic.
    fn vermagic(&mut self) {
        let facts = self.facts;
        let target = self.target;
        let cfg = &self.target.config;
        // 4. Version magic.
        let kernel_magic = &target.vermagic;
        match facts.modinfo.get("vermagic") {
            None => {
                if cfg.builtin("MODULE_FORCE_LOAD") {
                    self.loader.soft(ENOEXEC);
                } else {
                    self.loader.hard(ENOEXEC);
                }
                self.reasons.push(Reason::new(
                    Code::VermagicMissing,
                    Severity::Warning,
                    "no vermagic in .modinfo: the loader treats it as a forced load",
                ));
            }
            Some(magic) if !Vermagic::same_magic(magic, &kernel_magic.raw, facts.has_versions) => {
                self.loader.soft(ENOEXEC);
                let module_magic = Vermagic::parse(magic);
                for (field, mine, theirs) in module_magic.differences(kernel_magic) {
                    if field == "release" && facts.has_versions {
                        continue; // same_magic skips the release when CRCs exist
                    }
                    // Without CRCs nothing backs a forced load; with them, the per-symbol
                    // checks below decide, and the mismatch itself means "needs -f".
                    let severity = if field == "release" || facts.has_versions {
                        Severity::Warning
                    } else {
                        Severity::Incompatible
                    };
                    let show = |w: &Option<String>| w.clone().unwrap_or_else(|| "(absent)".into());
                    let mut r = Reason::new(
                        Code::VermagicMismatch,
                        severity,
                        format!(
                            "vermagic {field}: module has {}, target has {}; insmod refuses without -f",
                            show(&mine),
                            show(&theirs)
                        ),
                    );
                    if field == "preempt model" {
                        r = r.config(
                            if theirs.as_deref() == Some("preempt_rt")
                                || mine.as_deref() == Some("preempt_rt")
                            {
                                "PREEMPT_RT"
                            } else {
                                "PREEMPT_BUILD"
                            },
                        );
                    }
                    self.reasons.push(r);
                }
            }
            Some(_) => {}
        }
    }

    /// Built with retpolines where the target uses them.
    fn retpoline(&mut self) {
        let facts = self.facts;
        let cfg = &self.target.config;
        if cfg.builtin("RETPOLINE") && facts.modinfo.get("retpoline") != Some("Y") {
            self.reasons.push(Reason::new(Code::RetpolineMissing, Severity::Warning,
                "not built with a retpoline compiler while the target uses retpolines: the kernel warns that the module may be vulnerable to Spectre v2").config("RETPOLINE"));
        }
    }

    /// Step 6: Licence, tree.
    fn licence_and_tree(&mut self) {
        let facts = self.facts;
        let (license, gpl_ok) = (self.license, self.gpl_ok);
        // 5. Licence, tree.
        if !gpl_ok {
            self.reasons.push(Reason::new(Code::NotGplCompatible, Severity::Info,
                format!("licence {license:?} is not GPL-compatible: loading taints the kernel with P, and GPL-only exports are unavailable")));
        }
        if facts.modinfo.get("intree") != Some("Y") {
            self.reasons.push(Reason::new(
                Code::OutOfTree,
                Severity::Info,
                "built out of tree: loading taints the kernel with O",
            ));
        }
    }

    /// Step 7: Every import, in the order the loader resolves them.
    /// Before the imports: a damaged symbol table makes the loader read
    /// past its tables (`simplify_symbols` indexes the section headers by
    /// `st_shndx` unchecked in 6.1): whatever it answers, the module is unsafe.
    fn symbol_table(&mut self) {
        if self.facts.symbol_damage.is_empty() {
            return;
        }
        self.reasons.push(Reason::new(
            Code::SymbolTableDamaged,
            Severity::Incompatible,
            format!(
                "the symbol table is damaged: {}; the loader reads symbols through it unchecked",
                self.facts.symbol_damage.join("; ")
            ),
        ));
    }

    fn imports(&mut self) {
        let facts = self.facts;
        // 6. Every import, in the order the loader resolves them.
        let imported_ns: Vec<&str> = facts.modinfo.all("import_ns").collect();
        let versions: rustc_hash::FxHashMap<&str, u32> = facts
            .versions
            .iter()
            .map(|v| (v.name.as_ref(), v.crc))
            .collect();
        for sym in &facts.imports {
            self.import(sym, &imported_ns, versions.get(*sym).copied());
        }
    }

    /// One import: exported at all, GPL-only, its CRC, its namespace, and
    /// the feature it belongs to.
    fn import(&mut self, sym: &str, imported_ns: &[&str], version: Option<u32>) {
        let facts = self.facts;
        let target = self.target;
        let cfg = &self.target.config;
        let (license, gpl_ok) = (self.license, self.gpl_ok);
        let feature = feature_symbols::feature_of(sym);
        let Some(export) = target.symvers.get(sym) else {
            self.loader.hard(ENOENT);
            self.reasons.push(match feature {
                Some(f) if !cfg.enabled(f.option) => Reason::new(Code::NeedsConfig, Severity::Incompatible, format!(
                    "{sym} comes with {} (CONFIG_{}), which the target lacks: insmod reports \"Unknown symbol\"",
                    f.what, f.option)).config(f.option),
                _ => Reason::new(Code::UnknownSymbol, Severity::Incompatible,
                    format!("{sym} is not exported by the target kernel or its modules")),
            }.symbol(sym));
            return;
        };
        if export.kind == ExportKind::GplOnly && !gpl_ok {
            self.loader.hard(ENOENT);
            self.reasons.push(
                Reason::new(
                    Code::GplOnlySymbol,
                    Severity::Incompatible,
                    format!("{sym} is exported GPL-only and the module's licence is {license:?}"),
                )
                .symbol(sym),
            );
            return;
        }
        match version {
            Some(crc) if crc != export.crc => {
                self.loader.soft(EINVAL);
                let mut r = Reason::new(Code::CrcMismatch, Severity::Incompatible, format!(
                    "{sym}: CRC {crc:#010x} in the module, {:#010x} on the target: its prototype or a struct it takes changed",
                    export.crc)).symbol(sym);
                if let Some(options) = feature_symbols::lock_layout_options(sym) {
                    let on: Vec<&str> = options.iter().copied().filter(|o| cfg.enabled(o)).collect();
                    r.message.push_str(&match on.as_slice() {
                        [] => " (a lock API: lock structs differ with PREEMPT_RT and lock debugging, which the target has off)".to_owned(),
                        on => format!(" (a lock API: the target has CONFIG_{}, which changes the lock structs)", on.join(", CONFIG_")),
                    });
                    if let Some(first) = on.first() {
                        r = r.config(first);
                    }
                }
                self.reasons.push(r);
            }
            None if facts.has_versions => self.reasons.push(Reason::new(Code::NoSymbolVersion, Severity::Warning,
                format!("{sym} has no CRC in __versions: the loader only warns, so a changed prototype would go unnoticed")).symbol(sym)),
            _ => {}
        }
        if let Some(ns) = &export.namespace
            && !imported_ns.contains(&ns.as_str())
            && !cfg.builtin("MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS")
        {
            self.loader.hard(EINVAL);
            self.reasons.push(Reason::new(Code::MissingNamespaceImport, Severity::Incompatible, format!(
                "{sym} is in symbol namespace {ns}, which the module does not import (MODULE_IMPORT_NS)")).symbol(sym));
        }
        if let Some(f) = feature {
            let code = if f.option == "TRACEPOINTS" || f.option == "EVENT_TRACING" {
                Code::TracepointImport
            } else {
                Code::DebugFeatureImport
            };
            let severity = if code == Code::TracepointImport && !gpl_ok {
                Severity::Warning
            } else {
                Severity::Info
            };
            self.reasons.push(Reason::new(code, severity, format!(
                "{sym} belongs to {} (CONFIG_{}): the module depends on that feature staying configured", f.what, f.option))
                .symbol(sym).config(f.option));
        }
    }

    /// How it was built: ftrace call sites, tracepoints it defines.
    fn build_features(&mut self) {
        let facts = self.facts;
        let (license, gpl_ok) = (self.license, self.gpl_ok);
        if facts.ftrace_sites > 0 {
            self.reasons.push(
                Reason::new(
                    Code::FtraceSites,
                    Severity::Info,
                    format!(
                        "{} ftrace call sites: built with function tracing",
                        facts.ftrace_sites
                    ),
                )
                .config("FUNCTION_TRACER"),
            );
        }
        if !facts.defined_tracepoints.is_empty() {
            let severity = if gpl_ok {
                Severity::Info
            } else {
                Severity::Warning
            };
            self.reasons.push(Reason::new(Code::TracepointDefined, severity, format!(
                "defines {} tracepoint(s) ({}){}", facts.defined_tracepoints.len(),
                facts.defined_tracepoints.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                if gpl_ok { String::new() } else { format!("; licence {license:?}: tracepoints in non-GPL modules taint and may be disabled") }))
                .config("TRACEPOINTS"));
        }
    }
}
