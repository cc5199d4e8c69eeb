"""Queries an export with DuckDB, as a fleet's analyst would, and prints
the totals as JSON for the Rust test to compare with `report --json`.

usage: duckdb_totals.py PARQUET_DIR JSONL_FILE
"""
import json
import sys

import duckdb

parquet_dir, jsonl = sys.argv[1], sys.argv[2]
db = duckdb.connect()


def rows(sql):
    return [list(r) for r in db.execute(sql).fetchall()]


def t(name):
    return f"read_parquet('{parquet_dir}/{name}.parquet')"


out = {
    # Per host and module: the calls table summed, and the modules table's
    # per-incarnation totals summed: both must be report's total_calls.
    "calls_by_host_module": rows(
        f"select host, module, sum(calls)::ubigint from {t('calls')} group by all order by all"
    ),
    "module_totals_by_host_module": rows(
        f"select host, module, sum(total_calls)::ubigint from {t('modules')} group by all order by all"
    ),
    "calls_by_kernel": rows(
        f"select kernel_release, sum(calls)::ubigint from {t('calls')} group by all order by all"
    ),
    "total_calls": rows(f"select sum(calls)::ubigint from {t('calls')}")[0][0],
    "sessions": rows(f"select count(distinct session) from {t('sessions')}")[0][0],
    "incarnations": rows(f"select count(*) from {t('modules')}")[0][0],
    "anomalous_calls": rows(f"select sum(count)::ubigint from {t('anomalies')}")[0][0],
    "reasons_by_code": rows(
        f"select code, count(*) from {t('verdict_reasons')} group by all order by all"
    ),
    "incompatible_modules": rows(
        f"select count(*) from {t('modules')} where verdict = 'incompatible'"
    )[0][0],
    # A join across tables, on the session key every row carries.
    "calls_of_incompatible": rows(
        f"""select sum(c.calls)::ubigint from {t('calls')} c join {t('modules')} m
            using (session, incarnation) where m.verdict = 'incompatible'"""
    )[0][0],
    "time_type": rows(
        f"select typeof(started) from {t('sessions')} limit 1"
    )[0][0],
    # JSON lines, read by DuckDB's own reader.
    "jsonl_total_calls": rows(
        f"""select sum(calls)::ubigint from read_json('{jsonl}', format='newline_delimited')
            where "table" = 'calls'"""
    )[0][0],
}
print(json.dumps(out))
