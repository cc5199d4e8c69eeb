//! What `check` concludes about one module on one kernel: reasons, each
//! with a stable machine code, and a verdict.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Incompatible,
}

/// Stable reason codes (documented in the README). Never renumber or rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    WrongArchitecture,
    VermagicMismatch,
    VermagicMissing,
    CrcMismatch,
    StructModuleCrc,
    NoSymbolVersion,
    UnknownSymbol,
    NeedsConfig,
    GplOnlySymbol,
    MissingNamespaceImport,
    ThisModuleSize,
    DebugFeatureImport,
    TracepointImport,
    TracepointDefined,
    FtraceSites,
    NotGplCompatible,
    OutOfTree,
    Unsigned,
    SignatureRequired,
    SignatureInvalid,
    SignatureUntrusted,
    SignatureVerified,
    SignatureNotChecked,
    SymbolTableDamaged,
    RetpolineMissing,
    BtfUnavailable,
    BtfStructLayout,
    BtfBaseUnavailable,
}

impl Code {
    /// A reason given once per symbol or struct: a consequence of a root
    /// cause (vermagic, `module_layout`, struct module's size, an option),
    /// shown after the root causes and summarised when there are many.
    pub fn is_per_symbol(self) -> bool {
        matches!(
            self,
            Code::CrcMismatch
                | Code::NoSymbolVersion
                | Code::UnknownSymbol
                | Code::GplOnlySymbol
                | Code::MissingNamespaceImport
                | Code::DebugFeatureImport
                | Code::TracepointImport
                | Code::BtfStructLayout
        )
    }

    /// The stable name, as in JSON (`CRC_MISMATCH`).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: Code,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(rename = "struct", skip_serializing_if = "Option::is_none")]
    pub struct_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub message: String,
}

impl Reason {
    pub fn new(code: Code, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            code,
            severity,
            symbol: None,
            struct_name: None,
            config: None,
            message: message.into(),
        }
    }

    pub fn symbol(mut self, s: &str) -> Self {
        self.symbol = Some(s.to_owned());
        self
    }

    pub fn config(mut self, option: &str) -> Self {
        self.config = Some(format!("CONFIG_{option}"));
        self
    }

    pub fn struct_name(mut self, s: &str) -> Self {
        self.struct_name = Some(s.to_owned());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Compatible,
    Warning,
    Incompatible,
}

impl Verdict {
    pub fn from_reasons(reasons: &[Reason]) -> Self {
        match reasons.iter().map(|r| r.severity).max() {
            Some(Severity::Incompatible) => Verdict::Incompatible,
            Some(Severity::Warning) => Verdict::Warning,
            _ => Verdict::Compatible,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Compatible => "compatible",
            Verdict::Warning => "warning",
            Verdict::Incompatible => "incompatible",
        }
    }
}

/// What the kernel's own loader would answer: the error `insmod` prints
/// (kmod's wording), or `None` when it loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoaderAnswer {
    /// Plain `insmod`.
    pub insmod: Option<String>,
    /// `insmod -f` (ignores vermagic and symbol versions, taints F).
    pub insmod_force: Option<String>,
}

impl LoaderAnswer {
    pub fn refuses(&self) -> bool {
        self.insmod.is_some()
    }
}
