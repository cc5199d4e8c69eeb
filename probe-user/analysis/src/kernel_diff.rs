//! What changed between two kernels, and what that means for modules built
//! for the first: config options, exported symbols (CRC changed, gone,
//! new), struct layouts, and per module whether it can be reused as is.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    ModuleReport, feature_symbols,
    struct_layout::{self, StructChange},
    target::TargetKernel,
    verdict::Verdict,
};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigChange {
    pub option: String,
    pub a: Option<String>,
    pub b: Option<String>,
    /// The option is one modscope knows to change module ABI (catalogue).
    pub layout_relevant: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CrcChange {
    pub symbol: String,
    pub crc_a: u32,
    pub crc_b: u32,
    /// How many of the assessed modules import it (set by [`rank_by_use`]).
    pub used_by: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct KernelDiff {
    pub config: Vec<ConfigChange>,
    pub crc_changed: Vec<CrcChange>,
    pub symbols_gone: Vec<String>,
    pub symbols_new: Vec<String>,
    /// `None` when either kernel has no BTF.
    pub structs_changed: Option<Vec<StructChange>>,
    pub btf_note: Option<String>,
}

pub fn config_diff(a: &TargetKernel, b: &TargetKernel) -> Vec<ConfigChange> {
    let relevant = feature_symbols::layout_relevant_options();
    let mut options: BTreeMap<&str, (Option<&str>, Option<&str>)> = BTreeMap::new();
    for (k, v) in a.config.iter() {
        options.entry(k).or_default().0 = Some(v);
    }
    for (k, v) in b.config.iter() {
        options.entry(k).or_default().1 = Some(v);
    }
    options
        .into_iter()
        .filter(|(_, (x, y))| x != y)
        .map(|(k, (x, y))| ConfigChange {
            option: format!("CONFIG_{k}"),
            a: x.map(str::to_owned),
            b: y.map(str::to_owned),
            layout_relevant: relevant.binary_search(&k).is_ok(),
        })
        .collect()
}

pub fn diff(a: &TargetKernel, b: &TargetKernel) -> KernelDiff {
    let mut d = KernelDiff {
        config: config_diff(a, b),
        ..Default::default()
    };
    for (sym, ea) in a.symvers.iter() {
        match b.symvers.get(sym) {
            Some(eb) if eb.crc != ea.crc => d.crc_changed.push(CrcChange {
                symbol: sym.to_owned(),
                crc_a: ea.crc,
                crc_b: eb.crc,
                used_by: 0,
            }),
            Some(_) => {}
            None => d.symbols_gone.push(sym.to_owned()),
        }
    }
    d.symbols_new = b
        .symvers
        .iter()
        .filter(|(s, _)| a.symvers.get(s).is_none())
        .map(|(s, _)| s.to_owned())
        .collect();
    d.crc_changed.sort_by(|x, y| x.symbol.cmp(&y.symbol));
    d.symbols_gone.sort();
    d.symbols_new.sort();
    match (a.btf(), b.btf()) {
        (Ok(ba), Ok(bb)) => {
            let mut changes = struct_layout::diff(
                &struct_layout::all_layouts(ba),
                &struct_layout::all_layouts(bb),
            );
            // The watched lock and module structs first, then the rest by name.
            changes.sort_by_key(|c| {
                (
                    feature_symbols::watched_rank(&c.name).unwrap_or(usize::MAX),
                    c.name.clone(),
                )
            });
            d.structs_changed = Some(changes);
        }
        (ea, eb) => {
            d.btf_note = Some(format!(
                "struct layouts not compared: {}",
                ea.err().or(eb.err()).unwrap_or("no BTF")
            ))
        }
    }
    d
}

/// Orders changed and vanished symbols by how many of `reports`' modules
/// they break (a CRC mismatch or an unknown symbol names them), then by name:
/// what affects the given modules comes first.
pub fn rank_by_use(d: &mut KernelDiff, reports: &[ModuleReport]) {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        let mut named: Vec<&str> = r
            .reasons
            .iter()
            .filter_map(|x| x.symbol.as_deref())
            .collect();
        named.sort_unstable();
        named.dedup();
        for s in named {
            *uses.entry(s).or_default() += 1;
        }
    }
    let used = |s: &str| uses.get(s).copied().unwrap_or(0);
    for c in &mut d.crc_changed {
        c.used_by = used(&c.symbol);
    }
    d.crc_changed.sort_by(|x, y| {
        y.used_by
            .cmp(&x.used_by)
            .then_with(|| x.symbol.cmp(&y.symbol))
    });
    d.symbols_gone
        .sort_by(|x, y| used(y).cmp(&used(x)).then_with(|| x.cmp(y)));
}

/// Modules built for A, as B would take them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ModuleImpact {
    pub safe_to_reuse: Vec<String>,
    pub affected: Vec<ModuleReport>,
}

pub fn impact(reports: Vec<ModuleReport>) -> ModuleImpact {
    let mut out = ModuleImpact::default();
    for r in reports {
        if r.verdict == Verdict::Compatible && !r.kernel_would_refuse {
            out.safe_to_reuse.push(r.name);
        } else {
            out.affected.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kconfig::KernelConfig, symvers::Symvers};

    const SYMVERS: &str = "0x00000001\tkmalloc\tvmlinux\tEXPORT_SYMBOL\t\n0x00000002\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n";

    fn kernel(config: &str, symvers: &str) -> TargetKernel {
        TargetKernel::from_parts(
            "6.1.0-test",
            KernelConfig::parse(config),
            Symvers::parse(symvers),
            Err("none".into()),
            Some(896),
        )
    }

    #[test]
    fn enabling_an_unrelated_module_changes_no_crc() {
        // The OpenWrt case: one more `=m` option, its exports added.
        let a = kernel("CONFIG_SMP=y\n", SYMVERS);
        let b = kernel(
            "CONFIG_SMP=y\nCONFIG_NETFILTER_NETLINK=m\n",
            &format!(
                "{SYMVERS}0x00000003\tnfnetlink_send\tnet/netfilter/nfnetlink\tEXPORT_SYMBOL_GPL\t\n"
            ),
        );
        let d = diff(&a, &b);
        assert_eq!(d.config.len(), 1);
        assert!(!d.config[0].layout_relevant);
        assert!(d.crc_changed.is_empty() && d.symbols_gone.is_empty());
        assert_eq!(d.symbols_new, ["nfnetlink_send"]);
        assert!(d.structs_changed.is_none() && d.btf_note.is_some());
    }

    #[test]
    fn a_debug_option_is_flagged_with_its_crc_changes() {
        let a = kernel("CONFIG_SMP=y\n", SYMVERS);
        let b = kernel(
            "CONFIG_SMP=y\nCONFIG_DEBUG_MUTEXES=y\n",
            "0x00000001\tkmalloc\tvmlinux\tEXPORT_SYMBOL\t\n0x0000dead\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n",
        );
        let d = diff(&a, &b);
        assert_eq!(
            d.config,
            vec![ConfigChange {
                option: "CONFIG_DEBUG_MUTEXES".into(),
                a: None,
                b: Some("y".into()),
                layout_relevant: true
            }]
        );
        assert_eq!(
            d.crc_changed,
            vec![CrcChange {
                symbol: "mutex_lock".into(),
                crc_a: 2,
                crc_b: 0xdead,
                used_by: 0,
            }]
        );
    }

    #[test]
    fn a_debug_option_that_changes_no_layout_is_not_marked() {
        let a = kernel("CONFIG_SMP=y\n", SYMVERS);
        let b = kernel(
            "CONFIG_SMP=y\nCONFIG_DEBUG_INFO_COMPRESSED_NONE=y\nCONFIG_PREEMPT_RT=y\n",
            SYMVERS,
        );
        let marked: Vec<_> = diff(&a, &b)
            .config
            .into_iter()
            .map(|c| (c.option, c.layout_relevant))
            .collect();
        assert_eq!(
            marked,
            [
                ("CONFIG_DEBUG_INFO_COMPRESSED_NONE".to_owned(), false),
                ("CONFIG_PREEMPT_RT".to_owned(), true)
            ]
        );
    }

    #[test]
    fn symbols_the_given_modules_use_come_first() {
        let a = kernel(
            "",
            "0x1\tzz_used\tvmlinux\tEXPORT_SYMBOL\t\n0x2\taa_unused\tvmlinux\tEXPORT_SYMBOL\t\n0x3\tgone_used\tvmlinux\tEXPORT_SYMBOL\t\n0x4\tgone_unused\tvmlinux\tEXPORT_SYMBOL\t\n",
        );
        let b = kernel(
            "",
            "0x9\tzz_used\tvmlinux\tEXPORT_SYMBOL\t\n0x8\taa_unused\tvmlinux\tEXPORT_SYMBOL\t\n",
        );
        let mut d = diff(&a, &b);
        use crate::verdict::{Code, LoaderAnswer, Reason, Severity};
        let report = |syms: &[&str]| ModuleReport {
            path: "m.ko".into(),
            name: "m".into(),
            verdict: Verdict::Incompatible,
            kernel_would_refuse: true,
            loader: LoaderAnswer {
                insmod: None,
                insmod_force: None,
            },
            imports: syms.len(),
            versioned_imports: syms.len(),
            reasons: syms
                .iter()
                .map(|s| Reason::new(Code::CrcMismatch, Severity::Incompatible, "").symbol(s))
                .collect(),
        };
        rank_by_use(
            &mut d,
            &[report(&["zz_used", "gone_used"]), report(&["zz_used"])],
        );
        let order: Vec<_> = d
            .crc_changed
            .iter()
            .map(|c| (c.symbol.as_str(), c.used_by))
            .collect();
        assert_eq!(order, [("zz_used", 2), ("aa_unused", 0)]);
        assert_eq!(d.symbols_gone, ["gone_used", "gone_unused"]);
    }
}
