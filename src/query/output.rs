//! Query results → JSON, CSV or an Arrow IPC stream.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Map, Value as Json, json};

use super::QueryResult;
use super::agg::Value;
use super::plan::Epoch;
use crate::region::block::time_type;

fn time_json(t: i64, epoch: Epoch) -> Json {
    match epoch {
        Epoch::Rfc3339 => Json::String(
            chrono::DateTime::from_timestamp_nanos(t)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        Epoch::Ns => json!(t),
        Epoch::Us => json!(t.div_euclid(1_000)),
        Epoch::Ms => json!(t.div_euclid(1_000_000)),
        Epoch::S => json!(t.div_euclid(1_000_000_000)),
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bool(b) => json!(b),
    }
}

/// The JSON document of SPEC §5.
pub fn to_json(r: &QueryResult, epoch: Epoch) -> Json {
    let mut columns = vec![Json::String("time".into())];
    columns.extend(r.columns.iter().map(|c| Json::String(c.clone())));
    let series: Vec<Json> = r
        .series
        .iter()
        .map(|s| {
            let values: Vec<Json> = s
                .rows
                .iter()
                .map(|(t, vals)| {
                    let mut row = Vec::with_capacity(vals.len() + 1);
                    row.push(time_json(*t, epoch));
                    row.extend(vals.iter().map(value_json));
                    Json::Array(row)
                })
                .collect();
            json!({ "name": r.name, "tags": s.tags, "columns": columns, "values": values })
        })
        .collect();
    let regions: Map<String, Json> = r
        .regions
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Json::Null)))
        .collect();
    json!({ "series": series, "partial": r.partial, "regions": regions })
}

fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// CSV: `name,<group tags>,time,<columns>`; time as in JSON.
pub fn to_csv(r: &QueryResult, group_by: &[String], epoch: Epoch) -> String {
    let mut out = String::new();
    let header: Vec<&str> = std::iter::once("name")
        .chain(group_by.iter().map(|s| s.as_str()))
        .chain(std::iter::once("time"))
        .chain(r.columns.iter().map(|s| s.as_str()))
        .collect();
    for (i, h) in header.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(h, &mut out);
    }
    out.push('\n');
    for s in &r.series {
        for (t, vals) in &s.rows {
            csv_field(&r.name, &mut out);
            for g in group_by {
                out.push(',');
                csv_field(s.tags.get(g).map_or("", |v| v.as_str()), &mut out);
            }
            out.push(',');
            match time_json(*t, epoch) {
                Json::String(st) => out.push_str(&st),
                other => out.push_str(&other.to_string()),
            }
            for v in vals {
                out.push(',');
                match v {
                    Value::Null => {}
                    Value::Str(s) => csv_field(s, &mut out),
                    other => out.push_str(&value_json(other).to_string()),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The Arrow type of a result column: the type of its values; mixed numbers → Float64;
/// anything else mixed → Utf8.
fn column_type<'a>(values: impl Iterator<Item = &'a Value>) -> DataType {
    let mut t: Option<DataType> = None;
    for v in values {
        let vt = match v {
            Value::Null => continue,
            Value::Float(_) => DataType::Float64,
            Value::Int(_) => DataType::Int64,
            Value::UInt(_) => DataType::UInt64,
            Value::Str(_) => DataType::Utf8,
            Value::Bool(_) => DataType::Boolean,
        };
        t = Some(match t {
            None => vt,
            Some(prev) if prev == vt => prev,
            Some(prev) if prev.is_numeric() && vt.is_numeric() => DataType::Float64,
            Some(_) => DataType::Utf8,
        });
    }
    t.unwrap_or(DataType::Float64)
}

/// An Arrow IPC stream: one batch, columns = group tags, time, result columns. The
/// `partial` flag and the region reports are in the schema metadata.
pub fn to_arrow(r: &QueryResult, group_by: &[String]) -> Result<Vec<u8>, String> {
    let rows: Vec<(&super::Series, &(i64, Vec<Value>))> = r
        .series
        .iter()
        .flat_map(|s| s.rows.iter().map(move |row| (s, row)))
        .collect();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for g in group_by {
        fields.push(Field::new(g, DataType::Utf8, true));
        let a: StringArray = rows
            .iter()
            .map(|(s, _)| s.tags.get(g).map(|v| v.as_str()))
            .collect();
        cols.push(Arc::new(a));
    }
    fields.push(Field::new("time", time_type(), false));
    cols.push(Arc::new(
        TimestampNanosecondArray::from(rows.iter().map(|(_, (t, _))| *t).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    for (ci, name) in r.columns.iter().enumerate() {
        let vals = || rows.iter().map(move |(_, (_, v))| &v[ci]);
        let dt = column_type(vals());
        let arr: ArrayRef = match dt {
            DataType::Int64 => Arc::new(
                vals()
                    .map(|v| {
                        if let Value::Int(i) = v {
                            Some(*i)
                        } else {
                            None
                        }
                    })
                    .collect::<Int64Array>(),
            ),
            DataType::UInt64 => Arc::new(
                vals()
                    .map(|v| {
                        if let Value::UInt(u) = v {
                            Some(*u)
                        } else {
                            None
                        }
                    })
                    .collect::<UInt64Array>(),
            ),
            DataType::Boolean => Arc::new(
                vals()
                    .map(|v| {
                        if let Value::Bool(b) = v {
                            Some(*b)
                        } else {
                            None
                        }
                    })
                    .collect::<BooleanArray>(),
            ),
            DataType::Utf8 => Arc::new(
                vals()
                    .map(|v| match v {
                        Value::Null => None,
                        Value::Str(s) => Some(s.clone()),
                        other => Some(value_json(other).to_string()),
                    })
                    .collect::<StringArray>(),
            ),
            _ => Arc::new(
                vals()
                    .map(|v| match v {
                        Value::Float(f) => Some(*f),
                        Value::Int(i) => Some(*i as f64),
                        Value::UInt(u) => Some(*u as f64),
                        _ => None,
                    })
                    .collect::<Float64Array>(),
            ),
        };
        fields.push(Field::new(name, arr.data_type().clone(), true));
        cols.push(arr);
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("meridian.partial".to_string(), r.partial.to_string());
    meta.insert(
        "meridian.regions".to_string(),
        serde_json::to_string(&r.regions).map_err(|e| e.to_string())?,
    );
    let schema = Arc::new(Schema::new(fields).with_metadata(meta));
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &schema)
            .map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}
