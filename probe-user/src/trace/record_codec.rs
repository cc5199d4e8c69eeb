//! How each trace record kind is written and read: a kind byte, then its
//! fields in the `codec`'s varints and strings. Reading checks every field;
//! the whole payload must be consumed.

use bytes::BufMut;

use crate::kernel::kallsyms::{KernelFunction, NotAttached};

use super::{
    codec::{DecodeError, Decoder, Encoder},
    guard_codec,
    reason_codec::{decode_reasons, encode_reasons, severity_code, severity_from_code},
    records::{
        AnomalyRecord, CountEntry, EndReason, ModuleOrigin, ModuleSeen, ModuleVerdict,
        SessionStart, Stats, StatsSnapshot, TraceRecord,
    },
};

mod kind {
    pub const SESSION_START: u8 = 1;
    pub const MODULE: u8 = 2;
    pub const UNLOAD: u8 = 3;
    pub const FIRST_USE: u8 = 4;
    pub const COUNTS: u8 = 5;
    pub const STATS: u8 = 6;
    pub const SESSION_END: u8 = 7;
    pub const FUNCTIONS: u8 = 8;
    pub const VERDICT: u8 = 9;
    pub const ANOMALY: u8 = 10;
    pub const GUARD: u8 = 11;
}

fn decode_session(d: &mut Decoder) -> Result<SessionStart, DecodeError> {
    let mut s = SessionStart {
        tool_version: d.str()?,
        kernel_release: d.str()?,
        boot_id: d.str()?,
        hostname: d.str()?,
        epoch_at_boot_ns: d.varint()?,
        started_ns: d.varint()?,
        command: d.strs()?,
        config_source: d.str()?,
        ..SessionStart::default()
    };
    for _ in 0..d.count()? {
        s.config.push((d.str()?, d.str()?));
    }
    s.attach_type = d.str()?;
    for _ in 0..d.count()? {
        s.functions.push(KernelFunction::new(d.str()?, d.varint()?));
    }
    s.capped = d.strs()?;
    for _ in 0..d.count()? {
        s.not_attached.push(NotAttached::new(d.str()?, d.str()?));
    }
    s.module_filter = d.strs()?;
    Ok(s)
}

fn decode_verdict(d: &mut Decoder) -> Result<ModuleVerdict, DecodeError> {
    let ts_ns = d.varint()?;
    let incarnation = d.varint()?;
    let file = d.str()?;
    let severity = severity_from_code(d.u8()?)?;
    let kernel_would_refuse = d.bool("kernel_would_refuse")?;
    let reasons = decode_reasons(d)?;
    Ok(ModuleVerdict {
        ts_ns,
        incarnation,
        file,
        severity,
        kernel_would_refuse,
        reasons,
    })
}

fn decode_module(d: &mut Decoder) -> Result<ModuleSeen, DecodeError> {
    let ts_ns = d.varint()?;
    let origin = match d.u8()? {
        0 => ModuleOrigin::Present,
        1 => ModuleOrigin::Loaded,
        v => {
            return Err(DecodeError::Invalid {
                what: "module origin",
                value: u64::from(v),
            });
        }
    };
    Ok(ModuleSeen {
        ts_ns,
        origin,
        incarnation: d.varint()?,
        name: d.str()?,
        taints: d.varint()?,
        struct_module: d.varint()?,
        core_text: (d.varint()?, d.varint()?),
        init_text: (d.varint()?, d.varint()?),
        init_counted: d.bool("init_counted")?,
        imports: if d.bool("imports known")? {
            Some(d.strs()?)
        } else {
            None
        },
        tail_called: if d.has_more() { d.strs()? } else { Vec::new() },
    })
}

impl TraceRecord {
    pub fn encode<B: BufMut>(&self, e: &mut Encoder<B>) {
        match self {
            TraceRecord::SessionStart(s) => encode_session(e, s),
            TraceRecord::Module(m) => encode_module(e, m),
            TraceRecord::Unload { ts_ns, incarnation } => {
                e.u8(kind::UNLOAD);
                e.varint(*ts_ns);
                e.varint(*incarnation);
            }
            TraceRecord::FirstUse {
                ts_ns,
                incarnation,
                func_ip,
                caller,
            } => {
                e.u8(kind::FIRST_USE);
                e.varint(*ts_ns);
                e.varint(*incarnation);
                e.varint(*func_ip);
                e.varint(*caller);
            }
            TraceRecord::Counts { ts_ns, entries } => {
                e.u8(kind::COUNTS);
                e.varint(*ts_ns);
                e.varint(entries.len() as u64);
                for c in entries {
                    e.varint(c.incarnation);
                    e.varint(c.func_ip);
                    e.varint(c.calls);
                }
            }
            TraceRecord::Stats(s) => {
                e.u8(kind::STATS);
                let c = &s.counters;
                for v in [
                    s.ts_ns,
                    c.lost_events,
                    c.read_errors,
                    c.registry_full,
                    c.page_map_full,
                    c.call_map_full,
                    c.decode_errors,
                ] {
                    e.varint(v);
                }
                if c.skipped_runs != 0 {
                    e.varint(c.skipped_runs);
                }
            }
            TraceRecord::Functions { ts_ns, functions } => {
                e.u8(kind::FUNCTIONS);
                e.varint(*ts_ns);
                e.varint(functions.len() as u64);
                for f in functions {
                    e.str(&f.name);
                    e.varint(f.address);
                }
            }
            TraceRecord::SessionEnd { ts_ns, reason } => {
                e.u8(kind::SESSION_END);
                e.varint(*ts_ns);
                e.u8(match reason {
                    EndReason::Duration => 0,
                    EndReason::Interrupt => 1,
                    EndReason::Terminate => 2,
                    EndReason::Quit => 3,
                    EndReason::Rotated => 4,
                });
            }
            TraceRecord::Verdict(v) => encode_verdict(e, v),
            TraceRecord::Anomaly(a) => encode_anomaly(e, a),
            TraceRecord::Guard(g) => {
                e.u8(kind::GUARD);
                guard_codec::encode(e, g);
            }
        }
    }

    /// Decodes one record's payload (kind byte first); the whole payload
    /// must be consumed.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(payload);
        let record = match d.u8()? {
            kind::SESSION_START => TraceRecord::SessionStart(Box::new(decode_session(&mut d)?)),
            kind::MODULE => TraceRecord::Module(Box::new(decode_module(&mut d)?)),
            kind::UNLOAD => TraceRecord::Unload {
                ts_ns: d.varint()?,
                incarnation: d.varint()?,
            },
            kind::FIRST_USE => TraceRecord::FirstUse {
                ts_ns: d.varint()?,
                incarnation: d.varint()?,
                func_ip: d.varint()?,
                caller: d.varint()?,
            },
            kind::COUNTS => {
                let ts_ns = d.varint()?;
                let n = d.count()?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(CountEntry {
                        incarnation: d.varint()?,
                        func_ip: d.varint()?,
                        calls: d.varint()?,
                    });
                }
                TraceRecord::Counts { ts_ns, entries }
            }
            kind::STATS => TraceRecord::Stats(decode_stats(&mut d)?),
            kind::SESSION_END => TraceRecord::SessionEnd {
                ts_ns: d.varint()?,
                reason: decode_end_reason(&mut d)?,
            },
            kind::FUNCTIONS => {
                let ts_ns = d.varint()?;
                let n = d.count()?;
                let mut functions = Vec::with_capacity(n);
                for _ in 0..n {
                    functions.push(KernelFunction::new(d.str()?, d.varint()?));
                }
                TraceRecord::Functions { ts_ns, functions }
            }
            kind::VERDICT => TraceRecord::Verdict(Box::new(decode_verdict(&mut d)?)),
            kind::ANOMALY => TraceRecord::Anomaly(Box::new(decode_anomaly(&mut d)?)),
            kind::GUARD => TraceRecord::Guard(Box::new(guard_codec::decode(&mut d)?)),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        d.finish()?;
        Ok(record)
    }
}
fn encode_session<B: BufMut>(e: &mut Encoder<B>, s: &SessionStart) {
    e.u8(kind::SESSION_START);
    e.str(&s.tool_version);
    e.str(&s.kernel_release);
    e.str(&s.boot_id);
    e.str(&s.hostname);
    e.varint(s.epoch_at_boot_ns);
    e.varint(s.started_ns);
    e.strs(s.command.iter());
    e.str(&s.config_source);
    e.varint(s.config.len() as u64);
    for (k, v) in &s.config {
        e.str(k);
        e.str(v);
    }
    e.str(&s.attach_type);
    e.varint(s.functions.len() as u64);
    for f in &s.functions {
        e.str(&f.name);
        e.varint(f.address);
    }
    e.strs(s.capped.iter());
    e.varint(s.not_attached.len() as u64);
    for n in &s.not_attached {
        e.str(&n.function);
        e.str(&n.error);
    }
    e.strs(s.module_filter.iter());
}

fn encode_module<B: BufMut>(e: &mut Encoder<B>, m: &ModuleSeen) {
    e.u8(kind::MODULE);
    e.varint(m.ts_ns);
    e.u8(match m.origin {
        ModuleOrigin::Present => 0,
        ModuleOrigin::Loaded => 1,
    });
    e.varint(m.incarnation);
    e.str(&m.name);
    e.varint(m.taints);
    e.varint(m.struct_module);
    e.varint(m.core_text.0);
    e.varint(m.core_text.1);
    e.varint(m.init_text.0);
    e.varint(m.init_text.1);
    e.bool(m.init_counted);
    match &m.imports {
        None => e.u8(0),
        Some(list) => {
            e.u8(1);
            e.strs(list.iter());
        }
    }
    if !m.tail_called.is_empty() {
        e.strs(m.tail_called.iter());
    }
}

fn encode_verdict<B: BufMut>(e: &mut Encoder<B>, v: &ModuleVerdict) {
    e.u8(kind::VERDICT);
    e.varint(v.ts_ns);
    e.varint(v.incarnation);
    e.str(&v.file);
    e.u8(severity_code(v.severity));
    e.bool(v.kernel_would_refuse);
    encode_reasons(e, &v.reasons);
}

fn encode_anomaly<B: BufMut>(e: &mut Encoder<B>, a: &AnomalyRecord) {
    e.u8(kind::ANOMALY);
    for v in [a.ts_ns, a.incarnation] {
        e.varint(v);
    }
    e.str(&a.module);
    e.str(&a.detector);
    e.str(&a.symbol);
    for v in [a.func_ip, a.caller] {
        e.varint(v);
    }
    e.str(&a.site);
    for v in [a.object, a.expected, a.observed] {
        e.varint(v);
    }
    e.str(&a.option);
    e.str(&a.message);
    e.varint(a.count);
}

fn decode_anomaly(d: &mut Decoder) -> Result<AnomalyRecord, DecodeError> {
    Ok(AnomalyRecord {
        ts_ns: d.varint()?,
        incarnation: d.varint()?,
        module: d.str()?,
        detector: d.str()?,
        symbol: d.str()?,
        func_ip: d.varint()?,
        caller: d.varint()?,
        site: d.str()?,
        object: d.varint()?,
        expected: d.varint()?,
        observed: d.varint()?,
        option: d.str()?,
        message: d.str()?,
        count: d.varint()?,
    })
}

fn decode_stats(d: &mut Decoder) -> Result<StatsSnapshot, DecodeError> {
    Ok(StatsSnapshot {
        ts_ns: d.varint()?,
        counters: Stats {
            lost_events: d.varint()?,
            read_errors: d.varint()?,
            registry_full: d.varint()?,
            page_map_full: d.varint()?,
            call_map_full: d.varint()?,
            decode_errors: d.varint()?,
            skipped_runs: if d.has_more() { d.varint()? } else { 0 },
        },
    })
}

fn decode_end_reason(d: &mut Decoder) -> Result<EndReason, DecodeError> {
    match d.u8()? {
        0 => Ok(EndReason::Duration),
        1 => Ok(EndReason::Interrupt),
        2 => Ok(EndReason::Terminate),
        3 => Ok(EndReason::Quit),
        4 => Ok(EndReason::Rotated),
        v => Err(DecodeError::Invalid {
            what: "end reason",
            value: u64::from(v),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::samples;

    #[test]
    fn every_record_kind_round_trips() {
        for r in samples::all() {
            let mut e: Encoder = Encoder::default();
            r.encode(&mut e);
            assert_eq!(TraceRecord::decode(&e.buf).unwrap(), r);
        }
    }

    #[test]
    fn tail_called_imports_are_an_optional_last_field() {
        let plain = samples::module("m", 7);
        let tail = ModuleSeen {
            tail_called: vec!["proc_remove".into()],
            ..plain.clone()
        };
        let bytes = |m: &ModuleSeen| {
            let mut e: Encoder = Encoder::default();
            TraceRecord::Module(Box::new(m.clone())).encode(&mut e);
            e.buf
        };
        let (old, new) = (bytes(&plain), bytes(&tail));
        // Without tail calls the record is what traces held before the
        // field existed, and those decode with none.
        assert!(new.starts_with(&old) && new.len() > old.len());
        let decoded = |b: &[u8]| match TraceRecord::decode(b).unwrap() {
            TraceRecord::Module(m) => *m,
            other => panic!("{other:?}"),
        };
        assert_eq!(decoded(&old), plain);
        assert_eq!(decoded(&new), tail);
    }

    #[test]
    fn skipped_runs_are_an_optional_last_field_of_the_stats() {
        let stats = |skipped_runs| {
            TraceRecord::Stats(StatsSnapshot {
                ts_ns: 5,
                counters: Stats {
                    lost_events: 2,
                    skipped_runs,
                    ..Stats::default()
                },
            })
        };
        let bytes = |r: &TraceRecord| {
            let mut e: Encoder = Encoder::default();
            r.encode(&mut e);
            e.buf
        };
        let (old, new) = (bytes(&stats(0)), bytes(&stats(343)));
        assert!(new.starts_with(&old) && new.len() > old.len());
        assert_eq!(TraceRecord::decode(&old).unwrap(), stats(0));
        assert_eq!(TraceRecord::decode(&new).unwrap(), stats(343));
    }

    #[test]
    fn every_truncation_of_every_record_is_an_error() {
        for r in samples::all() {
            let mut e: Encoder = Encoder::default();
            r.encode(&mut e);
            for len in 0..e.buf.len() {
                assert!(
                    TraceRecord::decode(&e.buf[..len]).is_err(),
                    "{r:?} cut at {len}"
                );
            }
        }
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_refused() {
        assert_eq!(
            TraceRecord::decode(&[99]),
            Err(DecodeError::UnknownKind(99))
        );
        let mut e: Encoder = Encoder::default();
        TraceRecord::Unload {
            ts_ns: 1,
            incarnation: 2,
        }
        .encode(&mut e);
        e.u8(0);
        assert_eq!(
            TraceRecord::decode(&e.buf),
            Err(DecodeError::Trailing { extra: 1 })
        );
    }
}
