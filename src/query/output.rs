//! Query results → JSON, CSV or an Arrow IPC stream.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value as Json, json};

use super::QueryResult;
use super::agg::Value;
use super::plan::Epoch;
use crate::storage::schema::time_type;

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
    serde_json::to_value(JsonValue(v)).unwrap_or(Json::Null)
}

/// The JSON document of SPEC §5, serialized straight from the result (no intermediate
/// `serde_json::Value` tree: a raw answer has a value per cell). Keys in sorted order.
pub fn to_json(r: &QueryResult, epoch: Epoch) -> JsonResult<'_> {
    JsonResult { r, epoch }
}

pub struct JsonResult<'a> {
    r: &'a QueryResult,
    epoch: Epoch,
}

impl Serialize for JsonResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("partial", &self.r.partial)?;
        m.serialize_entry("regions", &self.r.regions)?;
        m.serialize_entry("series", &SeriesList(self))?;
        if !self.r.warnings.is_empty() {
            m.serialize_entry("warnings", &self.r.warnings)?;
        }
        m.end()
    }
}

struct SeriesList<'a>(&'a JsonResult<'a>);

impl Serialize for SeriesList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0.r;
        let mut seq = s.serialize_seq(Some(r.series.len()))?;
        for series in &r.series {
            seq.serialize_element(&OneSeries {
                r,
                series,
                epoch: self.0.epoch,
            })?;
        }
        seq.end()
    }
}

struct OneSeries<'a> {
    r: &'a QueryResult,
    series: &'a super::Series,
    epoch: Epoch,
}

impl Serialize for OneSeries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let columns: Vec<&str> = std::iter::once("time")
            .chain(self.r.columns.iter().map(String::as_str))
            .collect();
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("columns", &columns)?;
        m.serialize_entry("name", &self.r.name)?;
        m.serialize_entry("tags", &self.series.tags)?;
        m.serialize_entry("values", &Rows(self))?;
        m.end()
    }
}

struct Rows<'a>(&'a OneSeries<'a>);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = &self.0.series.rows;
        let mut seq = s.serialize_seq(Some(rows.len()))?;
        for (t, vals) in rows {
            seq.serialize_element(&Row {
                time: *t,
                vals,
                epoch: self.0.epoch,
            })?;
        }
        seq.end()
    }
}

struct Row<'a> {
    time: i64,
    vals: &'a [Value],
    epoch: Epoch,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.vals.len() + 1))?;
        seq.serialize_element(&time_json(self.time, self.epoch))?;
        for v in self.vals {
            seq.serialize_element(&JsonValue(v))?;
        }
        seq.end()
    }
}

/// A value as JSON: non-finite floats (which JSON cannot hold) as null.
struct JsonValue<'a>(&'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Str(v) => s.serialize_str(v),
            Value::Bool(b) => s.serialize_bool(*b),
        }
    }
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

/// CSV: `name,<group tags>,time,<columns>`; time as in JSON. Written a line at a time.
pub fn write_csv(
    r: &QueryResult,
    group_by: &[String],
    epoch: Epoch,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
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
    w.write_all(out.as_bytes())?;
    for s in &r.series {
        for (t, vals) in &s.rows {
            out.clear();
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
            w.write_all(out.as_bytes())?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::query::Series;

    #[test]
    fn json_document_shape_and_values() {
        let r = QueryResult {
            refused: None,
            warnings: Vec::new(),
            name: "cpu".into(),
            columns: vec!["f".into(), "s".into(), "i".into(), "u".into(), "b".into()],
            series: vec![Series {
                tags: BTreeMap::from([("host".to_string(), "h\"1".to_string())]),
                rows: vec![
                    (
                        1_500_000_000,
                        vec![
                            Value::Float(0.5),
                            Value::Str("a\nb".into()),
                            Value::Int(-3),
                            Value::UInt(u64::MAX),
                            Value::Bool(true),
                        ],
                    ),
                    (
                        2_000_000_000,
                        vec![
                            Value::Float(f64::NAN),
                            Value::Null,
                            Value::Null,
                            Value::Null,
                            Value::Bool(false),
                        ],
                    ),
                ],
            }],
            partial: false,
            regions: BTreeMap::new(),
        };
        let text = serde_json::to_string(&to_json(&r, Epoch::Ms)).unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({
                "partial": false,
                "regions": {},
                "series": [{
                    "name": "cpu",
                    "tags": {"host": "h\"1"},
                    "columns": ["time", "f", "s", "i", "u", "b"],
                    "values": [
                        [1500, 0.5, "a\nb", -3, u64::MAX, true],
                        [2000, null, null, null, null, false]
                    ]
                }]
            })
        );
        let text = serde_json::to_string(&to_json(&r, Epoch::Rfc3339)).unwrap();
        assert!(text.contains("\"1970-01-01T00:00:01.500Z\""), "{text}");
    }
}
