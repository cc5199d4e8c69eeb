//! `--metrics` against a real Prometheus: Debian's `prometheus` (installed
//! by set-up; the x86-64 guests run the host's root) scrapes modscope every
//! second, and what its HTTP API answers must be what the trace report
//! says: exact call counts per function, each module's verdict, the
//! detectors' anomalies, loads, probe states; the programs' run time is
//! there and grows. The arm64 guests (busybox, no Prometheus) scrape
//! modscope's endpoint themselves and check the same.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vm_tests::{http, *};

const CALLS: &str = "modscope_calls";
const TRACEPOINT: &str = "modscope_tracepoint";
const METRICS: &str = "127.0.0.1:9464";
const PROMETHEUS: &str = "127.0.0.1:9090";
const WAIT: Duration = Duration::from_secs(120);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modscope-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Prometheus server scraping modscope every second, its database on a
/// tmpfs; killed when dropped.
struct Prometheus {
    child: Child,
    db: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path) -> Option<Self> {
        if !Path::new("/usr/bin/prometheus").exists() {
            return None;
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: modscope\n    static_configs:\n      - targets: ['{METRICS}']\n"
            ),
        )
        .unwrap();
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&db)
            .status();
        assert!(
            mounted.is_ok_and(|s| s.success()),
            "a tmpfs for Prometheus's database"
        );
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", db.display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting prometheus");
        let p = Self { child, db };
        let start = Instant::now();
        while !matches!(http::get(PROMETHEUS, "/-/ready"), Ok((200, _))) {
            assert!(
                start.elapsed() < WAIT,
                "Prometheus was not ready in {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        Some(p)
    }

    /// An instant query's result: each series' labels and value.
    fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let (status, body) = http::get(
            PROMETHEUS,
            &format!("/api/v1/query?query={}", http::encode(q)),
        )
        .unwrap_or_else(|e| panic!("querying {q}: {e}"));
        assert_eq!(status, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{q}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                (labels, r["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg(&self.db).status();
    }
}

/// Where the values come from: Prometheus, or modscope's own endpoint.
enum Source {
    Prometheus(Prometheus),
    Endpoint,
}

impl Source {
    /// Every series of `metric` whose labels include `want`.
    fn series(&self, metric: &str, want: &[(&str, &str)]) -> Vec<(BTreeMap<String, String>, f64)> {
        let all = match self {
            Source::Prometheus(p) => p.query(metric),
            Source::Endpoint => scrape(metric),
        };
        all.into_iter()
            .filter(|(l, _)| {
                want.iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn value(&self, metric: &str, want: &[(&str, &str)]) -> Option<f64> {
        let s = self.series(metric, want);
        assert!(s.len() <= 1, "{metric} {want:?}: {s:?}");
        s.first().map(|(_, v)| *v)
    }

    /// Waits until `metric{want}` is `value`.
    fn wait_for(&self, metric: &str, want: &[(&str, &str)], value: f64) {
        let start = Instant::now();
        loop {
            let got = self.value(metric, want);
            if got == Some(value) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{metric}{want:?} is {got:?}, not {value}, after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// modscope's own `/metrics`, parsed (labels without escapes: the test's
/// names have none).
fn scrape(metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = http::get(METRICS, "/metrics").expect("modscope's /metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            (name == metric).then_some(())?;
            let labels = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn write_param(module: &str, param: &str, value: &str) {
    let path = format!("/sys/module/{module}/parameters/{param}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {value} to {path}: {e}"));
}

#[test]
fn prometheus_answers_what_the_trace_report_says() {
    if !output_kernel("metrics") {
        return;
    }
    http::loopback_up();
    let dir = scratch("prometheus");
    let trace = dir.join("session.trace");
    let args: Vec<String> = [
        "record",
        "--json",
        "--metrics",
        METRICS,
        "-o",
        &trace.display().to_string(),
        "--watch",
        &module_file(CALLS).display().to_string(),
        "--watch",
        &module_file(TRACEPOINT).display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut stream = EventStream::start_with(&args, "calls");
    let source = match Prometheus::start(&dir) {
        Some(p) => Source::Prometheus(p),
        // The arm64 guests boot busybox, without the host's packages;
        // set-up installs prometheus for the x86-64 guests, which need it.
        None if cfg!(target_arch = "aarch64") => Source::Endpoint,
        None => panic!("no /usr/bin/prometheus: `cargo xtask setup` installs it"),
    };
    let calls = insmod(CALLS, &[]);
    write_param(CALLS, "trigger", "250");
    let tracepoint = insmod(TRACEPOINT, &[]);
    source.wait_for(
        "modscope_module_calls_total",
        &[("module", CALLS), ("function", "kstrdup")],
        1250.0,
    );
    tracepoint.unload();
    source.wait_for("modscope_module_loaded", &[("module", TRACEPOINT)], 0.0);
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == TRACEPOINT);
    // The values the session ends with, then the report of its trace.
    std::thread::sleep(Duration::from_secs(3));
    let live = |m: &str, l: &[(&str, &str)]| source.series(m, l);
    let calls_seen = live("modscope_module_calls_total", &[("module", CALLS)]);
    let verdicts = live("modscope_module_verdict", &[]);
    let anomalies = live("modscope_anomalies_total", &[]);
    let loads = live("modscope_module_loads_total", &[]);
    let probes = live("modscope_probes", &[("state", "attached")]);
    let runs = live("modscope_probe_runs_total", &[("program", "count_call")]);
    let run_time = live(
        "modscope_probe_run_seconds_total",
        &[("program", "count_call")],
    );
    let lost = live("modscope_events_lost_total", &[]);
    drop(calls);
    stream.stop();
    let report = modscope_report(&trace);
    let session = &report["sessions"][0];
    let module = |name: &str| -> Value {
        session["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap()
    };

    let reported: BTreeMap<String, f64> = module(CALLS)["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["symbol"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap() as f64,
            )
        })
        .collect();
    let scraped: BTreeMap<String, f64> = calls_seen
        .iter()
        .map(|(l, v)| (l["function"].clone(), *v))
        .collect();
    assert_eq!(scraped, reported, "every function's count, exactly");
    assert_eq!(reported["kstrdup"], 1250.0);
    for name in [CALLS, TRACEPOINT] {
        let now: Vec<&str> = verdicts
            .iter()
            .filter(|(l, v)| l["module"] == name && *v == 1.0)
            .map(|(l, _)| l["verdict"].as_str())
            .collect();
        assert_eq!(
            now,
            [module(name)["runtime_verdict"].as_str().unwrap()],
            "{name}'s verdict"
        );
        let load = loads
            .iter()
            .find(|(l, _)| l["module"] == name)
            .map(|(_, v)| *v);
        assert_eq!(load, Some(1.0), "{name} loaded once");
    }
    let reported_anomalies: BTreeMap<(String, String, String), f64> = session["modules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["anomalies"].as_array().unwrap().iter())
        .fold(BTreeMap::new(), |mut acc, a| {
            let key = (
                a["module"].as_str().unwrap().into(),
                a["detector"].as_str().unwrap().into(),
                a["option"].as_str().unwrap().into(),
            );
            *acc.entry(key).or_default() += a["count"].as_u64().unwrap() as f64;
            acc
        });
    let scraped_anomalies: BTreeMap<(String, String, String), f64> = anomalies
        .iter()
        .map(|(l, v)| {
            (
                (
                    l["module"].clone(),
                    l["detector"].clone(),
                    l["option"].clone(),
                ),
                *v,
            )
        })
        .collect();
    assert_eq!(scraped_anomalies, reported_anomalies);
    assert!(scraped_anomalies.contains_key(&(
        TRACEPOINT.into(),
        "tracepoint_probe".into(),
        "TRACEPOINTS".into()
    )));
    assert_eq!(probes.len(), 1);
    assert_eq!(
        probes[0].1,
        session["probed_functions"].as_u64().unwrap() as f64
    );
    assert_eq!(
        lost.first().map(|(_, v)| *v),
        Some(session["stats"]["lost_events"].as_u64().unwrap() as f64)
    );
    assert!(
        runs.first().is_some_and(|(_, v)| *v >= 1250.0),
        "count_call ran for every counted call: {runs:?}"
    );
    assert!(
        run_time.first().is_some_and(|(_, v)| *v > 0.0),
        "{run_time:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_fails_before_anything_loads() {
    http::loopback_up();
    let taken = std::net::TcpListener::bind("127.0.0.1:9465").unwrap();
    let out = Command::new(modscope_bin())
        .args([
            "record",
            "--json",
            "--duration",
            "5",
            "--metrics",
            "127.0.0.1:9465",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("binding the metrics address 127.0.0.1:9465"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(taken);
}
