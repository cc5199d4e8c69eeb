//! Parquet: one file per table in the output directory
//! (`sessions.parquet`, `modules.parquet`, …), written through Arrow's
//! columns with snappy compression, one row group per batch of traces.
//! Times are `TIMESTAMP(NANOS, UTC)`; unsigned counts are `UINT64`.

use std::{fs::File, path::Path, sync::Arc};

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, TimeUnit};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};

use super::{
    ExportError,
    tables::{Kind, Schema, TABLES, Table, Value},
};

/// The open writers, one per table, in `TABLES` order.
pub struct ParquetTables {
    writers: Vec<(Arc<arrow_schema::Schema>, ArrowWriter<File>)>,
}

impl ParquetTables {
    /// Creates `DIR/TABLE.parquet` for each table (the directory must exist).
    pub fn create(dir: &Path) -> Result<Self, ExportError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("modscope {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writers = Vec::new();
        for (name, schema) in TABLES {
            let path = dir.join(format!("{name}.parquet"));
            let file = File::create(&path).map_err(|e| ExportError::io(&path, e))?;
            let arrow = Arc::new(arrow_schema(schema));
            let w = ArrowWriter::try_new(file, arrow.clone(), Some(props.clone()))
                .map_err(|e| ExportError::parquet(name, e))?;
            writers.push((arrow, w));
        }
        Ok(Self { writers })
    }

    /// Appends one trace's tables (in `TABLES` order).
    pub fn write(&mut self, tables: &[Table]) -> Result<(), ExportError> {
        for ((arrow, w), t) in self.writers.iter_mut().zip(tables) {
            if t.rows.is_empty() {
                continue;
            }
            let columns = (0..t.schema.len())
                .map(|c| column(t, c))
                .collect::<Vec<_>>();
            let batch = RecordBatch::try_new(arrow.clone(), columns)
                .map_err(|e| ExportError::parquet(t.name, e.into()))?;
            w.write(&batch)
                .map_err(|e| ExportError::parquet(t.name, e))?;
        }
        Ok(())
    }

    /// Writes each file's footer; a file without it is no Parquet file.
    pub fn finish(self) -> Result<(), ExportError> {
        for ((_, w), (name, _)) in self.writers.into_iter().zip(TABLES) {
            w.close().map_err(|e| ExportError::parquet(name, e))?;
        }
        Ok(())
    }
}

fn arrow_schema(schema: Schema) -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        schema
            .iter()
            .map(|&(name, kind)| Field::new(name, data_type(kind), true))
            .collect::<Vec<_>>(),
    )
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text => DataType::Utf8,
        Kind::UInt => DataType::UInt64,
        Kind::Bool => DataType::Boolean,
        Kind::Float => DataType::Float64,
        Kind::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
    }
}

/// Column `c` of `t` as an Arrow array of its schema's type; a cell of
/// another type (never built by `tables`) is null.
fn column(t: &Table, c: usize) -> ArrayRef {
    let cells = t.rows.iter().map(|r| &r[c]);
    match t.schema[c].1 {
        Kind::Text => Arc::new(StringArray::from_iter(cells.map(|v| match v {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        }))),
        Kind::UInt => Arc::new(UInt64Array::from_iter(cells.map(|v| match v {
            Value::UInt(n) => Some(*n),
            _ => None,
        }))),
        Kind::Bool => Arc::new(BooleanArray::from_iter(cells.map(|v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }))),
        Kind::Float => Arc::new(Float64Array::from_iter(cells.map(|v| match v {
            Value::Float(x) => Some(*x),
            _ => None,
        }))),
        Kind::Time => Arc::new(
            TimestampNanosecondArray::from_iter(cells.map(|v| match v {
                Value::Time(ns) => Some(*ns),
                _ => None,
            }))
            .with_timezone("UTC"),
        ),
    }
}
