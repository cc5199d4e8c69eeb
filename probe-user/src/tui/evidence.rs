//! Why a finding matters on this kernel, in one sentence: for each static
//! reason, and for the runtime evidence (calls the module actually made to
//! functions whose structs the kernel's configuration changes).

use super::{model::Model, module_entry::ModuleEntry};
use modscope_analysis::{feature_symbols, verdict::Severity};

use crate::trace::records::VerdictReason;

/// `CONFIG_X=value` as this kernel has it, from the session header.
fn setting(model: &Model, option: &str) -> Option<String> {
    let bare = option.strip_prefix("CONFIG_").unwrap_or(option);
    let config = &model.session.as_ref()?.config;
    let value = config
        .iter()
        .find(|(k, _)| k == bare)
        .map_or("n", |(_, v)| v.as_str());
    (!config.is_empty()).then(|| format!("CONFIG_{bare}={value}"))
}

/// One sentence: why this reason matters here.
pub fn why(reason: &VerdictReason, model: &Model) -> String {
    let here = (!reason.config.is_empty())
        .then(|| setting(model, &reason.config))
        .flatten()
        .map(|s| format!(" (this kernel: {s})"))
        .unwrap_or_default();
    let sym = if reason.symbol.is_empty() {
        "it"
    } else {
        reason.symbol.as_str()
    };
    match reason.code.as_str() {
        "CRC_MISMATCH" => format!(
            "{sym} was built here from a different definition than the module expects, \
             so a struct passed through it can be laid out differently{here}"
        ),
        "VERMAGIC_MISMATCH" | "VERMAGIC_MISSING" => {
            "built for another kernel build: only insmod -f \
             loads it, and then nothing checks struct layouts"
                .to_owned()
        }
        "STRUCT_MODULE_CRC" | "THIS_MODULE_SIZE" => format!(
            "struct module differs here: the kernel reads the module's own copy at the wrong offsets{here}"
        ),
        "BTF_STRUCT_LAYOUT" => format!(
            "a kernel struct it uses has other member offsets here: each access reads or writes the wrong field{here}"
        ),
        "UNKNOWN_SYMBOL" | "NEEDS_CONFIG" => {
            format!("this kernel does not export {sym}: the load fails{here}")
        }
        "DEBUG_FEATURE_IMPORT" => format!(
            "it relies on a debug or tracing feature whose structs change with the kernel's configuration{here}"
        ),
        "TRACEPOINT_IMPORT" | "TRACEPOINT_DEFINED" => {
            "it hooks the kernel's tracing: its code runs inside other code's events".to_owned()
        }
        "FTRACE_SITES" => "its functions carry ftrace call sites: it expects a kernel built with \
             function tracing, whose struct module has the fields for them"
            .to_owned(),
        "NO_SYMBOL_VERSION" => {
            format!("nothing checks that {sym} has the layout the module was built against")
        }
        "GPL_ONLY_SYMBOL" | "MISSING_NAMESPACE_IMPORT" => {
            "the loader refuses it on this kernel".to_owned()
        }
        "NOT_GPL_COMPATIBLE" | "OUT_OF_TREE" | "UNSIGNED" | "SIGNATURE_REQUIRED" => {
            "it taints the kernel: nobody vouches for its build against this kernel".to_owned()
        }
        "RETPOLINE_MISSING" => {
            "built without the kernel's speculative-execution mitigations".to_owned()
        }
        _ => String::new(),
    }
}

/// A line of runtime evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub severity: Severity,
    pub text: String,
}

/// What the module's calls show, on this kernel: calls to functions its
/// verdict flags, and calls into lock APIs whose structs the kernel's
/// configuration changes.
pub fn runtime(m: &ModuleEntry, model: &Model) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (&ip, stat) in &m.calls {
        if stat.count == 0 && stat.first_use_ns.is_none() {
            continue;
        }
        let symbol = model.function_name(ip);
        let calls = if stat.count > 0 {
            format!("{} times", group(stat.count))
        } else {
            "at least once".to_owned()
        };
        let flagged = m.verdict.as_ref().and_then(|v| {
            v.reasons
                .iter()
                .find(|r| r.symbol == symbol && r.severity == Some(Severity::Incompatible))
        });
        if let Some(r) = flagged {
            out.push(Evidence {
                severity: Severity::Incompatible,
                text: format!(
                    "called {symbol} {calls} although {} flags it: {}",
                    r.code,
                    why(r, model)
                ),
            });
        } else if let Some(options) = feature_symbols::lock_layout_options(&symbol) {
            let set: Vec<String> = options
                .iter()
                .filter_map(|o| setting(model, o))
                .filter(|s| !s.ends_with("=n"))
                .collect();
            let here = if set.is_empty() {
                "none of them is set on this kernel".to_owned()
            } else {
                format!("this kernel has {}", set.join(", "))
            };
            out.push(Evidence {
                severity: if set.is_empty() {
                    Severity::Info
                } else {
                    Severity::Warning
                },
                text: format!(
                    "called {symbol} {calls}: the lock it takes changes layout with {}; {here}",
                    options.join("/")
                ),
            });
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.severity));
    out
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
