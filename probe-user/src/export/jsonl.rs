//! JSON lines: one object per table row, `{"table": "calls", "host": …}`,
//! with the Parquet tables' columns in their order, for log pipelines
//! (Fluent Bit, Vector, Loki, Elasticsearch). Times are RFC 3339 text in
//! UTC with nanoseconds; a null is `null`.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::tables::{Table, Value};
use crate::kernel::clock::rfc3339;

/// Writes every row of `tables` as one line each.
pub fn write_tables(out: &mut impl Write, tables: &[Table]) -> io::Result<u64> {
    let mut lines = 0;
    let mut line = String::new();
    for t in tables {
        for row in &t.rows {
            line.clear();
            line.push_str("{\"table\":");
            push_json(&mut line, &serde_json::Value::from(t.name));
            for ((name, _), v) in t.schema.iter().zip(row) {
                line.push(',');
                push_json(&mut line, &serde_json::Value::from(*name));
                line.push(':');
                push_json(&mut line, &json_of(v));
            }
            line.push_str("}\n");
            out.write_all(line.as_bytes())?;
            lines += 1;
        }
    }
    Ok(lines)
}

fn push_json(line: &mut String, v: &serde_json::Value) {
    // A `Value`'s Display is its compact JSON text and cannot fail.
    line.push_str(&v.to_string());
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Text(s) => s.as_str().into(),
        Value::UInt(n) => (*n).into(),
        Value::Bool(b) => (*b).into(),
        Value::Float(x) => {
            serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Time(ns) => rfc3339(UNIX_EPOCH + Duration::from_nanos((*ns).max(0) as u64)).into(),
        Value::Null => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tables;
    use crate::trace::{Trace, samples};

    fn sample_tables() -> [Table; 5] {
        let trace = Trace {
            records: samples::all().into_iter().map(|r| (0, r)).collect(),
            damage: vec![],
        };
        tables::of_trace("lab7.trace", &trace)
    }

    #[test]
    fn every_row_is_one_object_with_its_table_and_session_key() {
        let tables = sample_tables();
        let mut out = Vec::new();
        let n = write_tables(&mut out, &tables).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n as usize, text.lines().count());
        assert_eq!(
            n as usize,
            tables.iter().map(|t| t.rows.len()).sum::<usize>()
        );
        let calls: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["table"] == "calls")
            .collect();
        let kstrdup = calls.iter().find(|c| c["function"] == "kstrdup").unwrap();
        assert_eq!(kstrdup["host"], "lab7");
        assert_eq!(kstrdup["kernel_release"], "6.1.0-56-amd64");
        assert_eq!(kstrdup["calls"], 1000);
        assert_eq!(kstrdup["first_use"], "2026-09-21T14:13:26.000000100Z");
        assert_eq!(kstrdup["first_caller"], "init+0x10");
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("{\"table\":\"sessions\",\"host\":\"lab7\",\"boot_id\":"),
            "{first}"
        );
    }
}
