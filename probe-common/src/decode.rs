//! Checked decoding of ring-buffer records: length first, then the tag, then
//! a copy out of the byte slice. The bytes are never trusted.

use crate::{
    AnomalyEvent, EventHeader, EventKind, FirstUseEvent, GuardEvent, LoadLayoutEvent, ModuleEvent,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte event header")]
    TooShortForHeader { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} record has {len} bytes, expected {need}")]
    WrongLength {
        kind: EventKind,
        len: usize,
        need: usize,
    },
}

/// A decoded record.
#[derive(Clone, Copy)]
pub enum Event {
    ModuleLoad(ModuleEvent),
    ModuleFree(ModuleEvent),
    FirstUse(FirstUseEvent),
    Anomaly(AnomalyEvent),
    LoadLayout(LoadLayoutEvent),
    Guard(GuardEvent),
}

/// A `#[repr(C)]` type made only of integers and integer arrays, with no
/// padding: every bit pattern of its size is a valid value, so it may be
/// copied out of untrusted bytes. No enum, bool, reference or float may
/// implement it. Private to this module: only the record types below do.
///
/// # Safety
/// Implement only for such types; `read_exact` relies on it.
unsafe trait IntegerOnly: Copy {}

// SAFETY: each of these is `#[repr(C)]` of u32/u64 fields and u8 arrays,
// with explicit `_pad` fields where alignment would leave a gap (the
// `const` size asserts next to each definition pin that).
unsafe impl IntegerOnly for EventHeader {}
// SAFETY: as above.
unsafe impl IntegerOnly for ModuleEvent {}
// SAFETY: as above.
unsafe impl IntegerOnly for FirstUseEvent {}
// SAFETY: as above.
unsafe impl IntegerOnly for AnomalyEvent {}
// SAFETY: as above.
unsafe impl IntegerOnly for LoadLayoutEvent {}
// SAFETY: as above.
unsafe impl IntegerOnly for GuardEvent {}

/// Copies a `T` out of `bytes`, which must be exactly `size_of::<T>()` long.
fn read_exact<T: IntegerOnly>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), core::mem::size_of::<T>());
    // SAFETY: the length is checked above; read_unaligned copes with the
    // ring buffer's 8-byte alignment; `T: IntegerOnly` is valid for every
    // bit pattern.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

impl TryFrom<&[u8]> for Event {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let need = core::mem::size_of::<EventHeader>();
        if bytes.len() < need {
            return Err(DecodeError::TooShortForHeader {
                len: bytes.len(),
                need,
            });
        }
        let header: EventHeader = read_exact(&bytes[..need]);
        let kind = EventKind::try_from(header.kind).map_err(DecodeError::UnknownKind)?;
        let need = match kind {
            EventKind::ModuleLoad | EventKind::ModuleFree => core::mem::size_of::<ModuleEvent>(),
            EventKind::FirstUse => core::mem::size_of::<FirstUseEvent>(),
            EventKind::Anomaly => core::mem::size_of::<AnomalyEvent>(),
            EventKind::LoadLayout => core::mem::size_of::<LoadLayoutEvent>(),
            EventKind::Guard => core::mem::size_of::<GuardEvent>(),
        };
        if bytes.len() != need {
            return Err(DecodeError::WrongLength {
                kind,
                len: bytes.len(),
                need,
            });
        }
        Ok(match kind {
            EventKind::ModuleLoad => Event::ModuleLoad(read_exact(bytes)),
            EventKind::ModuleFree => Event::ModuleFree(read_exact(bytes)),
            EventKind::FirstUse => Event::FirstUse(read_exact(bytes)),
            EventKind::Anomaly => Event::Anomaly(read_exact(bytes)),
            EventKind::LoadLayout => Event::LoadLayout(read_exact(bytes)),
            EventKind::Guard => Event::Guard(read_exact(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModuleName, ModuleRecord};

    fn as_bytes(ev: &ModuleEvent) -> &[u8] {
        // SAFETY: ModuleEvent is repr(C) and fully initialised, padding included.
        unsafe {
            core::slice::from_raw_parts(
                (ev as *const ModuleEvent).cast::<u8>(),
                core::mem::size_of::<ModuleEvent>(),
            )
        }
    }

    fn sample(kind: EventKind) -> ModuleEvent {
        let mut record = ModuleRecord::zeroed();
        record.name = ModuleName::from_bytes(b"hello");
        record.taints = 0b11;
        record.core_text_base = 0xffff_ffff_c000_0000;
        record.core_text_size = 4096;
        ModuleEvent {
            header: EventHeader {
                kind: kind as u32,
                cpu: 1,
                ts_ns: 42,
            },
            record,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in [EventKind::ModuleLoad, EventKind::ModuleFree] {
            let ev = sample(kind);
            let decoded = Event::try_from(as_bytes(&ev)).unwrap();
            let (got_kind, got) = match decoded {
                Event::ModuleLoad(e) => (EventKind::ModuleLoad, e),
                Event::ModuleFree(e) => (EventKind::ModuleFree, e),
                Event::FirstUse(_) | Event::Anomaly(_) | Event::LoadLayout(_) | Event::Guard(_) => {
                    panic!("decoded a module event as something else")
                }
            };
            assert_eq!(got_kind, kind);
            assert_eq!(got.record.name.as_bytes(), b"hello");
            assert_eq!(got.record.taints, 0b11);
            assert_eq!(got.record.core_text_base, 0xffff_ffff_c000_0000);
            assert_eq!(got.header.ts_ns, 42);
        }
    }

    #[test]
    fn first_use_round_trips() {
        let ev = crate::FirstUseEvent {
            header: EventHeader {
                kind: EventKind::FirstUse as u32,
                cpu: 0,
                ts_ns: 9,
            },
            key: crate::CallKey {
                incarnation: 77,
                func_ip: 0xffff_ffff_8100_0000,
            },
            caller: 0xffff_ffff_c000_1234,
        };
        // SAFETY: FirstUseEvent is repr(C), fully initialised, no padding.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (&ev as *const crate::FirstUseEvent).cast::<u8>(),
                core::mem::size_of_val(&ev),
            )
        };
        match Event::try_from(bytes).unwrap() {
            Event::FirstUse(e) => {
                assert_eq!(e.key, ev.key);
                assert_eq!(e.caller, ev.caller);
                assert_eq!(e.header.ts_ns, 9);
            }
            _ => panic!("wrong kind"),
        }
        assert!(matches!(
            Event::try_from(&bytes[..bytes.len() - 8]),
            Err(DecodeError::WrongLength {
                kind: EventKind::FirstUse,
                ..
            })
        ));
    }

    #[test]
    fn anomaly_round_trips() {
        let ev = crate::AnomalyEvent {
            header: EventHeader {
                kind: EventKind::Anomaly as u32,
                cpu: 1,
                ts_ns: 5,
            },
            key: crate::AnomalyKey {
                incarnation: 3,
                caller: 0xffff_ffff_c000_0042,
                func_ip: 0xffff_ffff_8100_0010,
                detector: crate::Detector::SpinlockMagic as u32,
                _pad: 0,
            },
            object: 0xffff_8880_0000_1000,
            expected: 0xdead_4ead,
            observed: 0,
            option: 2,
            _pad: 0,
        };
        // SAFETY: AnomalyEvent is repr(C), fully initialised, explicit padding.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (&ev as *const crate::AnomalyEvent).cast::<u8>(),
                core::mem::size_of_val(&ev),
            )
        };
        match Event::try_from(bytes).unwrap() {
            Event::Anomaly(e) => {
                assert_eq!(e.key, ev.key);
                assert_eq!(
                    (e.object, e.expected, e.observed),
                    (ev.object, 0xdead_4ead, 0)
                );
                assert_eq!(e.option, 2);
            }
            _ => panic!("wrong kind"),
        }
        assert!(matches!(
            Event::try_from(&bytes[..bytes.len() - 4]),
            Err(DecodeError::WrongLength {
                kind: EventKind::Anomaly,
                ..
            })
        ));
    }

    #[test]
    fn short_record_is_rejected_before_the_tag_is_read() {
        let ev = sample(EventKind::ModuleLoad);
        let err = Event::try_from(&as_bytes(&ev)[..8]).err().unwrap();
        assert_eq!(err, DecodeError::TooShortForHeader { len: 8, need: 16 });
    }

    #[test]
    fn unknown_tag_is_an_error_not_a_transmute() {
        let mut ev = sample(EventKind::ModuleLoad);
        ev.header.kind = 99;
        assert_eq!(
            Event::try_from(as_bytes(&ev)).err(),
            Some(DecodeError::UnknownKind(99))
        );
    }

    #[test]
    fn truncated_payload_is_rejected() {
        let ev = sample(EventKind::ModuleFree);
        let bytes = as_bytes(&ev);
        let err = Event::try_from(&bytes[..bytes.len() - 1]).err().unwrap();
        assert_eq!(
            err,
            DecodeError::WrongLength {
                kind: EventKind::ModuleFree,
                len: 143,
                need: 144
            }
        );
    }

    #[test]
    fn name_is_truncated_like_the_kernel() {
        let long = [b'a'; 80];
        let name = ModuleName::from_bytes(&long);
        assert_eq!(name.as_bytes().len(), 55);
    }
}
