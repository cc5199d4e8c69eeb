//! `MetricsState` as the OpenMetrics text format, through prometheus-client's
//! encoder (names, escaping, `_total` suffixes and the `# EOF` end are its).

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::state::{MetricsState, VERDICTS};

/// The content type of what `text` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The whole exposition of `state`.
pub fn text(state: &Arc<Mutex<MetricsState>>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(state.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in
    // a name, which the tests catch.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Families(Arc<Mutex<MetricsState>>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Collector for Families {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        gauges(
            &mut e,
            "modscope_module_loaded",
            "Live incarnations of the module (0 once unloaded).",
            s.modules()
                .iter()
                .map(|(m, x)| (vec![("module", m.as_str())], x.live.len() as i64)),
        )?;
        let verdicts = s.modules().iter().flat_map(|(m, x)| {
            let now = x.verdict();
            VERDICTS.iter().map(move |v| {
                (
                    vec![("module", m.as_str()), ("verdict", *v)],
                    i64::from(*v == now),
                )
            })
        });
        gauges(
            &mut e,
            "modscope_module_verdict",
            "1 for the module's current verdict: its file's, made incompatible or warning by the detectors' findings.",
            verdicts,
        )?;
        let calls = s.modules().iter().flat_map(|(m, x)| {
            x.calls
                .iter()
                .map(move |(f, n)| (vec![("module", m.as_str()), ("function", f.as_str())], *n))
        });
        counters(
            &mut e,
            "modscope_module_calls",
            "Calls from the module to the kernel function, exact, from the kernel's per-CPU counts at each snapshot.",
            calls,
        )?;
        let mut anomalies: std::collections::BTreeMap<(&str, &str, &str), u64> = Default::default();
        for (m, x) in s.modules() {
            for a in &x.anomalies {
                *anomalies
                    .entry((m.as_str(), a.detector.as_str(), a.option.as_str()))
                    .or_default() += a.count;
            }
        }
        counters(
            &mut e,
            "modscope_anomalies",
            "Anomalous calls the in-kernel detectors caught, by module, detector and the config option that explains them.",
            anomalies
                .iter()
                .map(|((m, d, o), n)| (vec![("module", *m), ("detector", *d), ("option", *o)], *n)),
        )?;
        counters(
            &mut e,
            "modscope_module_loads",
            "Loads of the module seen during the session.",
            s.modules()
                .iter()
                .map(|(m, x)| (vec![("module", m.as_str())], x.loads)),
        )?;
        counters(
            &mut e,
            "modscope_events_lost",
            "Events the kernel could not hand over (ring buffer full).",
            [(vec![], s.stats.lost_events)].into_iter(),
        )?;
        let p = s.probes();
        gauges(
            &mut e,
            "modscope_probes",
            "Probed kernel functions by state: attached, refused by the kernel, capped by --max-probes.",
            [
                ("attached", p.attached),
                ("refused", p.refused),
                ("capped", p.capped),
            ]
            .into_iter()
            .map(|(k, n)| (vec![("state", k)], n as i64)),
        )?;
        let runs = s
            .programs
            .iter()
            .map(|(p, r)| (vec![("program", p.as_str())], r.runs));
        counters(
            &mut e,
            "modscope_probe_runs",
            "Runs of each eBPF program, from the kernel's BPF statistics.",
            runs,
        )?;
        let skipped = s
            .programs
            .iter()
            .map(|(p, r)| (vec![("program", p.as_str())], r.skipped));
        counters(
            &mut e,
            "modscope_probe_runs_skipped",
            "Runs of each eBPF program the kernel skipped because another BPF program or map syscall was under way on that CPU: an upper bound on the calls modscope did not see, most of them the kernel's own (counted by kernels from 6.7).",
            skipped,
        )?;
        let mut d = e.encode_descriptor("modscope_probe_run_seconds", "Time spent in each eBPF program, from the kernel's BPF statistics (enabled for the session).", None, MetricType::Counter)?;
        for (program, r) in &s.programs {
            let labels: Labels = vec![("program", program.as_str())];
            ConstCounter::new(r.run_time_ns as f64 / 1e9).encode(d.encode_family(&labels)?)?;
        }
        counters(
            &mut e,
            "modscope_guard_decisions",
            "The guard's decisions on module loads: allowed, refused, would_refuse (audit).",
            s.guard.iter().map(|(d, n)| (vec![("decision", *d)], *n)),
        )?;
        counters(
            &mut e,
            "modscope_metrics_series_folded",
            "Module names and (module, function) pairs past the label bounds, summed into the value _other.",
            [(vec![], s.folded)].into_iter(),
        )?;
        Ok(())
    }
}

fn counters<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut d = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels<'a>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut d = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(v).encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::state::ProgramRuns, trace::samples};

    #[test]
    fn the_sample_session_in_openmetrics_text() {
        let mut s = MetricsState::default();
        for r in samples::all() {
            s.apply(&r);
        }
        s.programs.insert(
            "count_call".into(),
            ProgramRuns {
                run_time_ns: 1_500_000_000,
                runs: 42,
                skipped: 3,
            },
        );
        let text = text(&Arc::new(Mutex::new(s)));
        for line in [
            "# TYPE modscope_module_calls counter",
            "modscope_module_calls_total{module=\"m\",function=\"kstrdup\"} 1000",
            "modscope_module_loaded{module=\"m\"} 0",
            "modscope_module_loaded{module=\"old\"} 1",
            "modscope_module_verdict{module=\"m\",verdict=\"incompatible\"} 1",
            "modscope_module_verdict{module=\"m\",verdict=\"compatible\"} 0",
            "modscope_module_loads_total{module=\"m\"} 1",
            "modscope_events_lost_total 2",
            "modscope_probes{state=\"attached\"} 3",
            "modscope_probe_run_seconds_total{program=\"count_call\"} 1.5",
            "modscope_probe_runs_total{program=\"count_call\"} 42",
            "modscope_probe_runs_skipped_total{program=\"count_call\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            text.lines().any(|l| l
                .starts_with("modscope_anomalies_total{module=\"m\",detector=\"spinlock_magic\"")),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
