//! The guard's decision record in the trace: its fields after the kind
//! byte, tags as the programs define them (`probe_common::guard`), each
//! checked on the way in.

use bytes::BufMut;

use super::{
    codec::{DecodeError, Decoder, Encoder},
    reason_codec::{decode_reasons, encode_reasons},
    records::{Decision, GuardRecord, Judgement, Policy, Stage},
};

pub fn encode<B: BufMut>(e: &mut Encoder<B>, g: &GuardRecord) {
    e.varint(g.ts_ns);
    for tag in [
        g.stage as u32,
        g.decision as u32,
        g.judgement as u32,
        g.policy as u32,
        g.pid,
    ] {
        e.varint(u64::from(tag));
    }
    e.str(&g.comm);
    e.str(&g.module);
    e.str(&g.file);
    for v in [g.dev, g.ino, g.module_size, g.kernel_size] {
        e.varint(v);
    }
    encode_reasons(e, &g.reasons);
}

/// A tag read with its type's `TryFrom`, an unknown one an error naming it.
fn tag<T: TryFrom<u32, Error = u32>>(
    d: &mut Decoder,
    what: &'static str,
) -> Result<T, DecodeError> {
    T::try_from(d.u32(what)?).map_err(|v| DecodeError::Invalid {
        what,
        value: u64::from(v),
    })
}

pub fn decode(d: &mut Decoder) -> Result<GuardRecord, DecodeError> {
    Ok(GuardRecord {
        ts_ns: d.varint()?,
        stage: tag::<Stage>(d, "guard stage")?,
        decision: tag::<Decision>(d, "guard decision")?,
        judgement: tag::<Judgement>(d, "guard judgement")?,
        policy: tag::<Policy>(d, "guard policy")?,
        pid: d.u32("pid")?,
        comm: d.str()?,
        module: d.str()?,
        file: d.str()?,
        dev: d.varint()?,
        ino: d.varint()?,
        module_size: d.varint()?,
        kernel_size: d.varint()?,
        reasons: decode_reasons(d)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::trace::{codec::Encoder, records::TraceRecord, samples};

    #[test]
    fn an_unknown_decision_tag_is_refused_by_name() {
        let g = samples::guard_refusal();
        let mut e: Encoder = Encoder::default();
        TraceRecord::Guard(Box::new(g.clone())).encode(&mut e);
        // The decision tag is the third byte after kind and time (one-byte
        // varints here): rewrite it to a value no decision has.
        let ts_len = {
            let mut t: Encoder = Encoder::default();
            t.varint(g.ts_ns);
            t.buf.len()
        };
        let at = 1 + ts_len + 1;
        assert_eq!(e.buf[at], g.decision as u8);
        e.buf[at] = 9;
        let err = TraceRecord::decode(&e.buf).unwrap_err().to_string();
        assert!(err.contains("guard decision"), "{err}");
    }
}
