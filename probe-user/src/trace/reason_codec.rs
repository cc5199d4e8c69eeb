//! Severities and `check`'s reasons in the trace, shared by the verdict
//! record and the guard's decision record.

use bytes::BufMut;
use modscope_analysis::verdict::Severity;

use super::{
    codec::{DecodeError, Decoder, Encoder},
    records::VerdictReason,
};

/// A severity's byte in the trace (`Severity` is the analysis' own).
pub fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Incompatible => 2,
    }
}

pub fn severity_from_code(v: u8) -> Result<Severity, DecodeError> {
    match v {
        0 => Ok(Severity::Info),
        1 => Ok(Severity::Warning),
        2 => Ok(Severity::Incompatible),
        v => Err(DecodeError::Invalid {
            what: "severity",
            value: u64::from(v),
        }),
    }
}

pub fn decode_reasons(d: &mut Decoder) -> Result<Vec<VerdictReason>, DecodeError> {
    let n = d.count()?;
    let mut reasons = Vec::with_capacity(n);
    for _ in 0..n {
        let code = d.str()?;
        let severity = match d.u8()? {
            255 => None,
            v => Some(severity_from_code(v)?),
        };
        reasons.push(VerdictReason {
            code,
            severity,
            symbol: d.str()?,
            struct_name: d.str()?,
            config: d.str()?,
            message: d.str()?,
        });
    }
    Ok(reasons)
}

pub fn encode_reasons<B: BufMut>(e: &mut Encoder<B>, reasons: &[VerdictReason]) {
    e.varint(reasons.len() as u64);
    for r in reasons {
        e.str(&r.code);
        e.u8(r.severity.map_or(255, severity_code));
        e.str(&r.symbol);
        e.str(&r.struct_name);
        e.str(&r.config);
        e.str(&r.message);
    }
}
