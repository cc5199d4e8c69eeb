//! A synthetic trace shaped like a busy machine: 200 modules, 512 probed
//! functions, first uses, counter snapshots and load/unload churn. Shared
//! by the decode and TUI benchmarks.

use modscope::kernel::kallsyms::KernelFunction;
use modscope::trace::{
    TraceRecord, frame,
    records::{CountEntry, EndReason, ModuleOrigin, ModuleSeen, SessionStart, StatsSnapshot},
};

/// A capture shaped like a busy machine, `records` records long.
pub fn synthetic(records: usize) -> Vec<u8> {
    let functions: Vec<KernelFunction> = (0..512)
        .map(|i| {
            KernelFunction::new(
                format!("kernel_function_{i}"),
                0xffff_ffff_8100_0000 + i * 0x40,
            )
        })
        .collect();
    let mut out = frame::file_header().to_vec();
    frame::encode_frame(
        &TraceRecord::SessionStart(Box::new(SessionStart {
            kernel_release: "6.1.0-56-amd64".into(),
            functions: functions.clone(),
            ..SessionStart::default()
        })),
        &mut out,
    );
    let mut ts = 10_000_000_000u64;
    for i in 0..records as u64 - 2 {
        ts += 997;
        let incarnation = 1 + i % 200;
        let func = functions[(i % 512) as usize].address;
        let record = match i % 10 {
            0..=6 => TraceRecord::Counts {
                ts_ns: ts,
                entries: (0..4)
                    .map(|k| CountEntry::new(incarnation, func + k * 0x40, i * 3 + k))
                    .collect(),
            },
            7 | 8 => TraceRecord::FirstUse {
                ts_ns: ts,
                incarnation,
                func_ip: func,
                caller: 0xffff_ffff_c000_0000 + i % 4096,
            },
            _ if i % 20 == 9 => TraceRecord::Module(Box::new(ModuleSeen {
                ts_ns: ts,
                origin: ModuleOrigin::Loaded,
                incarnation,
                name: format!("module_{}", i % 200),
                taints: 1 << 12,
                struct_module: 0xffff_ffff_c100_0000,
                core_text: (0xffff_ffff_c000_0000, 0x4000),
                init_text: (0xffff_ffff_c010_0000, 0x1000),
                init_counted: true,
                imports: None,
                tail_called: Vec::new(),
            })),
            _ if i % 40 == 19 => TraceRecord::Stats(StatsSnapshot {
                ts_ns: ts,
                ..StatsSnapshot::default()
            }),
            // The module loaded ten records earlier.
            _ => TraceRecord::Unload {
                ts_ns: ts,
                incarnation: 1 + (i - 10) % 200,
            },
        };
        frame::encode_frame(&record, &mut out);
    }
    frame::encode_frame(
        &TraceRecord::SessionEnd {
            ts_ns: ts,
            reason: EndReason::Duration,
        },
        &mut out,
    );
    out
}
