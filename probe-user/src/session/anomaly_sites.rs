//! The anomalous call sites a session has seen: the record written at a
//! site's first anomaly, then one whenever its exact count changes, and
//! the records for what the load check and the tracepoint detector saw.

use std::collections::BTreeMap;

use probe_common::{AnomalyEvent, AnomalyKey, Detector, LoadLayoutEvent};

use super::hidden_modules::{HiddenModule, UnownedSite};
use crate::detectors::explain::{self, Finding};
use crate::{
    kernel::{kallsyms, kcore, taint},
    trace::records::AnomalyRecord,
};

/// The record for a module image whose compiled `struct module` is not
/// this kernel's size, seen as the kernel starts loading it: the module has
/// no incarnation yet (0), and may never get one.
pub fn load_layout(e: &LoadLayoutEvent) -> AnomalyRecord {
    let name = String::from_utf8_lossy(e.name.as_bytes()).into_owned();
    let comm_end = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
    let comm = String::from_utf8_lossy(&e.comm[..comm_end]).into_owned();
    AnomalyRecord {
        ts_ns: e.header.ts_ns,
        incarnation: 0,
        module: name,
        detector: explain::LOAD_LAYOUT.to_owned(),
        symbol: "load_module".into(),
        func_ip: 0,
        caller: 0,
        site: format!("{comm} (pid {})", e.pid_tgid >> 32),
        object: 0,
        expected: e.kernel_size,
        observed: e.module_size,
        option: String::new(),
        message: explain::explain_load_layout(e.module_size, e.kernel_size),
        count: 1,
    }
}

/// The record for a module the views disagree on: its incarnation when
/// modscope saw it load (0 when it hid before the session).
pub fn hidden_module(found: &HiddenModule, incarnation: u64, ts_ns: u64) -> AnomalyRecord {
    let evidence = found.evidence();
    AnomalyRecord {
        ts_ns,
        incarnation,
        module: found.name.clone(),
        detector: explain::HIDDEN_MODULE.to_owned(),
        symbol: String::new(),
        func_ip: 0,
        caller: 0,
        site: evidence.clone(),
        object: 0,
        expected: 0,
        observed: 0,
        option: String::new(),
        message: explain::explain_hidden_module(&evidence),
        count: 1,
    }
}

/// The record for calls from unowned module memory: the site is the
/// return address itself.
pub fn unowned_code(site: &UnownedSite, symbol: String, ts_ns: u64) -> AnomalyRecord {
    AnomalyRecord {
        ts_ns,
        incarnation: 0,
        module: site.module.clone().unwrap_or_default(),
        detector: explain::UNOWNED_CODE.to_owned(),
        symbol,
        func_ip: site.key.func_ip,
        caller: site.key.caller,
        site: format!("{:#x}", site.key.caller),
        object: 0,
        expected: 0,
        observed: 0,
        option: String::new(),
        message: explain::explain_unowned_code(site.module.as_deref()),
        count: site.count,
    }
}

/// What the message adds for a tracepoint registration: which tracepoint
/// and the module's taints, which say whether it is out of tree, unsigned
/// or proprietary. The tracepoint is its `__tracepoint_*` symbol at the
/// object's address in /proc/kallsyms, or, where kallsyms lists no data
/// (no KALLSYMS_ALL: arm64's Debian 6.1), `struct tracepoint`'s first
/// field, its name, read through /proc/kcore. A rare event: read when
/// needed.
pub fn tracepoint_detail(object: u64, taint_mask: Option<u64>) -> String {
    let kallsyms = crate::kernel::text_file::read("/proc/kallsyms").unwrap_or_default();
    let name = kallsyms::name_at(&kallsyms, object)
        .map(|n| n.strip_prefix("__tracepoint_").unwrap_or(n).to_owned())
        .or_else(|| {
            kcore::read_headers(kcore::PROC_KCORE)
                .ok()?
                .read_c_string(object)
        });
    let taints = taint_mask.map(taint::letters);
    format!(
        "; tracepoint {}; module taints {} (P: a licence that is not GPL-compatible)",
        name.as_deref().unwrap_or("unknown"),
        match taints.as_deref() {
            Some("") => "none",
            Some(t) => t,
            None => "unknown",
        }
    )
}

/// Every site seen this session, with the count last written.
#[derive(Default)]
pub struct AnomalySites {
    sites: BTreeMap<AnomalyKey, AnomalyRecord>,
}

impl AnomalySites {
    /// The record for a site's first anomaly; `detail` ends its message.
    pub fn first(
        &mut self,
        e: &AnomalyEvent,
        module: String,
        symbol: String,
        site: String,
        detail: &str,
    ) -> AnomalyRecord {
        let detector = Detector::try_from(e.key.detector).ok();
        let option = explain::option_name(e.option);
        let record = AnomalyRecord {
            ts_ns: e.header.ts_ns,
            incarnation: e.key.incarnation,
            module,
            detector: detector
                .map_or("unknown", explain::detector_name)
                .to_owned(),
            message: detector.map_or_else(
                || format!("detector {} fired", e.key.detector),
                |detector| {
                    explain::explain(&Finding {
                        detector,
                        symbol: &symbol,
                        object: e.object,
                        expected: e.expected,
                        observed: e.observed,
                        option,
                    })
                },
            ) + detail,
            symbol,
            func_ip: e.key.func_ip,
            caller: e.key.caller,
            site,
            object: e.object,
            expected: e.expected,
            observed: e.observed,
            option: option.to_owned(),
            count: 1,
        };
        self.sites.insert(e.key, record.clone());
        record
    }

    /// Sites whose total changed since they were last written.
    pub fn updates(&mut self, counts: &BTreeMap<AnomalyKey, u64>) -> Vec<AnomalyRecord> {
        let mut out = Vec::new();
        for (key, &n) in counts {
            if let Some(r) = self.sites.get_mut(key)
                && r.count != n
            {
                r.count = n;
                out.push(r.clone());
            }
        }
        out
    }

    /// Every site, latest counts.
    pub fn all(&self) -> impl Iterator<Item = &AnomalyRecord> {
        self.sites.values()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use probe_common::{EventHeader, EventKind};

    /// A spinlock-magic anomaly of incarnation 7 calling 0x1000 from
    /// `caller` (shared with the session state's tests).
    pub(crate) fn event(caller: u64) -> AnomalyEvent {
        spinlock_anomaly(7, caller, 0x1000)
    }

    pub(crate) fn spinlock_anomaly(incarnation: u64, caller: u64, func_ip: u64) -> AnomalyEvent {
        AnomalyEvent {
            header: EventHeader {
                kind: EventKind::Anomaly as u32,
                cpu: 0,
                ts_ns: 10,
            },
            key: AnomalyKey {
                incarnation,
                caller,
                func_ip,
                detector: Detector::SpinlockMagic as u32,
                _pad: 0,
            },
            object: 0xffff_ffff_c000_8000,
            expected: 0xdead_4ead,
            observed: 0,
            option: 0,
            _pad: 0,
        }
    }

    #[test]
    fn a_site_is_written_first_then_only_when_its_count_changes() {
        let mut sites = AnomalySites::default();
        let e = event(0xffff_ffff_c000_0010);
        let r = sites.first(
            &e,
            "m".into(),
            "_raw_spin_lock".into(),
            "core+0x10".into(),
            "",
        );
        assert_eq!(r.detector, "spinlock_magic");
        assert_eq!(r.option, "DEBUG_SPINLOCK");
        assert_eq!(r.count, 1);
        assert!(r.message.contains("0xdead4ead"), "{}", r.message);
        let mut counts = BTreeMap::from([(e.key, 1)]);
        assert!(sites.updates(&counts).is_empty(), "unchanged");
        counts.insert(e.key, 1000);
        let up = sites.updates(&counts);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].count, 1000);
        assert!(sites.updates(&counts).is_empty());
        // A count for a site whose event has not arrived yet waits for it.
        counts.insert(event(0x20).key, 5);
        assert!(sites.updates(&counts).is_empty());
        assert_eq!(sites.all().count(), 1);
    }
}
