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
    csv_header(group_by, &r.columns, &mut out);
    w.write_all(out.as_bytes())?;
    for s in &r.series {
        let tags: Vec<&str> = group_by
            .iter()
            .map(|g| s.tags.get(g).map_or("", |v| v.as_str()))
            .collect();
        for (t, vals) in &s.rows {
            out.clear();
            csv_row(&r.name, &tags, *t, vals, epoch, &mut out);
            w.write_all(out.as_bytes())?;
        }
    }
    Ok(())
}

/// The header line of a CSV answer.
fn csv_header(group_by: &[String], columns: &[String], out: &mut String) {
    let header = std::iter::once("name")
        .chain(group_by.iter().map(|s| s.as_str()))
        .chain(std::iter::once("time"))
        .chain(columns.iter().map(|s| s.as_str()));
    for (i, h) in header.enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(h, out);
    }
    out.push('\n');
}

/// One line of a CSV answer.
fn csv_row(name: &str, tags: &[&str], t: i64, vals: &[Value], epoch: Epoch, out: &mut String) {
    csv_field(name, out);
    for tag in tags {
        out.push(',');
        csv_field(tag, out);
    }
    out.push(',');
    match time_json(t, epoch) {
        Json::String(st) => out.push_str(&st),
        other => out.push_str(&other.to_string()),
    }
    for v in vals {
        out.push(',');
        match v {
            Value::Null => {}
            Value::Str(s) => csv_field(s, out),
            other => out.push_str(&value_json(other).to_string()),
        }
    }
    out.push('\n');
}

/// The Arrow type of a result column: the type of its values; mixed numbers → Float64;
/// anything else mixed → Utf8.
fn column_type<'a>(values: impl Iterator<Item = &'a Value>) -> DataType {
    widen(values.filter_map(|v| {
        Some(match v {
            Value::Null => return None,
            Value::Float(_) => DataType::Float64,
            Value::Int(_) => DataType::Int64,
            Value::UInt(_) => DataType::UInt64,
            Value::Str(_) => DataType::Utf8,
            Value::Bool(_) => DataType::Boolean,
        })
    }))
}

/// One type for values of these types: the type when they agree, Float64 for mixed
/// numbers, Utf8 for anything else mixed, Float64 for none.
fn widen(types: impl Iterator<Item = DataType>) -> DataType {
    let mut t: Option<DataType> = None;
    for vt in types {
        t = Some(match t {
            None => vt,
            Some(prev) if prev == vt => prev,
            Some(prev) if prev.is_numeric() && vt.is_numeric() => DataType::Float64,
            Some(_) => DataType::Utf8,
        });
    }
    t.unwrap_or(DataType::Float64)
}

/// Rows per record batch of an Arrow answer: the answer is written batch by batch, never
/// encoded whole.
pub const ARROW_BATCH_ROWS: usize = 65_536;

type RowRef<'a> = (&'a super::Series, &'a (i64, Vec<Value>));

/// An Arrow IPC stream written to `w` in batches of [`ARROW_BATCH_ROWS`] rows: columns =
/// group tags, time, result columns (a column's type is that of all its values). The
/// `partial` flag and the region reports are in the schema metadata.
pub fn write_arrow(
    r: &QueryResult,
    group_by: &[String],
    w: &mut dyn std::io::Write,
) -> Result<(), String> {
    let rows: Vec<RowRef<'_>> = r
        .series
        .iter()
        .flat_map(|s| s.rows.iter().map(move |row| (s, row)))
        .collect();
    let types: Vec<DataType> = (0..r.columns.len())
        .map(|ci| column_type(rows.iter().map(|(_, (_, v))| &v[ci])))
        .collect();
    let mut fields = Vec::new();
    for g in group_by {
        fields.push(Field::new(g, DataType::Utf8, true));
    }
    fields.push(Field::new("time", time_type(), false));
    for (name, dt) in r.columns.iter().zip(&types) {
        fields.push(Field::new(name, dt.clone(), true));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("meridian.partial".to_string(), r.partial.to_string());
    meta.insert(
        "meridian.regions".to_string(),
        serde_json::to_string(&r.regions).map_err(|e| e.to_string())?,
    );
    let schema = Arc::new(Schema::new(fields).with_metadata(meta));
    let mut sw =
        arrow::ipc::writer::StreamWriter::try_new(w, &schema).map_err(|e| e.to_string())?;
    let empty: [RowRef<'_>; 0] = [];
    let chunks: Vec<&[RowRef<'_>]> = if rows.is_empty() {
        vec![&empty]
    } else {
        rows.chunks(ARROW_BATCH_ROWS).collect()
    };
    for chunk in chunks {
        let batch = arrow_batch(chunk, group_by, &types, &schema)?;
        sw.write(&batch).map_err(|e| e.to_string())?;
    }
    sw.finish().map_err(|e| e.to_string())
}

/// The name of result column `ci` in an answer's Arrow schema (after the group tags and
/// `time`).
fn schema_name(schema: &Schema, group_by: &[String], ci: usize) -> String {
    schema
        .fields()
        .get(group_by.len() + 1 + ci)
        .map_or_else(String::new, |f| f.name().clone())
}

/// The error of a value that its column's declared type cannot hold.
fn unfit(value: &str, column: &str, dt: &DataType) -> String {
    format!("{value} in column {column:?} does not fit its Arrow type {dt}; ask for JSON or CSV")
}

/// One record batch of `rows`.
fn arrow_batch(
    rows: &[RowRef<'_>],
    group_by: &[String],
    types: &[DataType],
    schema: &Arc<Schema>,
) -> Result<RecordBatch, String> {
    let mut cols: Vec<ArrayRef> = Vec::new();
    for g in group_by {
        let a: StringArray = rows
            .iter()
            .map(|(s, _)| s.tags.get(g).map(|v| v.as_str()))
            .collect();
        cols.push(Arc::new(a));
    }
    cols.push(Arc::new(
        TimestampNanosecondArray::from(rows.iter().map(|(_, (t, _))| *t).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    for (ci, dt) in types.iter().enumerate() {
        let vals = || rows.iter().map(move |(_, (_, v))| &v[ci]);
        let arr: ArrayRef = match dt {
            // A streamed answer declares its types before its values are known (an
            // integer sum may pass the range of its column): a number that the column
            // cannot hold exactly fails the answer rather than become a null.
            DataType::Int64 => Arc::new(
                vals()
                    .map(|v| match v {
                        Value::Int(i) => Ok(Some(*i)),
                        Value::UInt(u) => i64::try_from(*u).map(Some).map_err(|_| u.to_string()),
                        Value::Null => Ok(None),
                        other => Err(value_json(other).to_string()),
                    })
                    .collect::<Result<Int64Array, String>>()
                    .map_err(|v| unfit(&v, &schema_name(schema, group_by, ci), dt))?,
            ),
            DataType::UInt64 => Arc::new(
                vals()
                    .map(|v| match v {
                        Value::UInt(u) => Ok(Some(*u)),
                        Value::Int(i) => u64::try_from(*i).map(Some).map_err(|_| i.to_string()),
                        Value::Null => Ok(None),
                        other => Err(value_json(other).to_string()),
                    })
                    .collect::<Result<UInt64Array, String>>()
                    .map_err(|v| unfit(&v, &schema_name(schema, group_by, ci), dt))?,
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
        cols.push(arr);
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}

/// The Arrow type of a result column whose stored kinds are `kinds` (several: a field
/// written with several types before types were fixed per measurement), by the rule of
/// [`column_type`]: one kind its type, mixed numbers Float64, anything else mixed Utf8, no
/// kind (a field asked for that no file holds) Float64.
pub fn kinds_type(kinds: &[crate::model::ColumnKind]) -> DataType {
    use crate::model::{ColumnKind, FieldType};
    let one = |k: &ColumnKind| match k {
        ColumnKind::Tag => DataType::Utf8,
        ColumnKind::Field(t) => match t {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::UInteger => DataType::UInt64,
            FieldType::String => DataType::Utf8,
            FieldType::Boolean => DataType::Boolean,
        },
    };
    widen(kinds.iter().map(one))
}

/// The Arrow type of an aggregate's result column over a field stored with `kinds`, by
/// the rule the values of a whole answer follow: counts are integers, means and standard
/// deviations floats, sums floats when a float was summed (integers otherwise), minimums
/// and maximums those of the numbers only, selectors (and raw values) those of every kind.
pub fn agg_type(agg: crate::query::agg::Agg, kinds: &[crate::model::ColumnKind]) -> DataType {
    use crate::model::{ColumnKind, FieldType};
    use crate::query::agg::Agg;
    let numeric: Vec<ColumnKind> = kinds
        .iter()
        .filter(|k| {
            matches!(
                k,
                ColumnKind::Field(FieldType::Float | FieldType::Integer | FieldType::UInteger)
            )
        })
        .copied()
        .collect();
    match agg {
        Agg::Count => DataType::Int64,
        Agg::Mean | Agg::Stddev => DataType::Float64,
        Agg::Sum
            if numeric.is_empty() || numeric.contains(&ColumnKind::Field(FieldType::Float)) =>
        {
            DataType::Float64
        }
        Agg::Sum => DataType::Int64,
        Agg::Min | Agg::Max => kinds_type(&numeric),
        Agg::None | Agg::First | Agg::Last => kinds_type(kinds),
    }
}

/// A raw answer written as its rows are computed, a part at a time, in the format asked
/// for: its columns (and their Arrow types) are known before the first row, and its series
/// come in order (rows of one series in one or more consecutive parts). JSON puts
/// `partial`, `regions` and `warnings` after `series`, since they are known only at the end.
pub struct RowStream<'w> {
    w: &'w mut dyn std::io::Write,
    name: String,
    columns: Vec<String>,
    group_by: Vec<String>,
    epoch: Epoch,
    kind: RowSink,
    rows: u64,
    /// The series being written (its tags).
    current: Option<std::collections::BTreeMap<String, String>>,
}

enum RowSink {
    Json,
    Csv,
    Arrow {
        writer: Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
        types: Vec<DataType>,
        schema: Arc<Schema>,
    },
}

impl<'w> RowStream<'w> {
    /// Starts the answer (the CSV header, the Arrow schema).
    pub fn start(
        w: &'w mut dyn std::io::Write,
        format: super::plan::Format,
        name: &str,
        (columns, types): (Vec<String>, Vec<DataType>),
        group_by: Vec<String>,
        epoch: Epoch,
    ) -> std::io::Result<RowStream<'w>> {
        use super::plan::Format;
        let kind = match format {
            Format::Json => RowSink::Json,
            Format::Csv => {
                let mut out = String::new();
                csv_header(&group_by, &columns, &mut out);
                w.write_all(out.as_bytes())?;
                RowSink::Csv
            }
            Format::Arrow => {
                let mut fields: Vec<Field> = group_by
                    .iter()
                    .map(|g| Field::new(g, DataType::Utf8, true))
                    .collect();
                fields.push(Field::new("time", time_type(), false));
                for (n, t) in columns.iter().zip(&types) {
                    fields.push(Field::new(n, t.clone(), true));
                }
                let meta = std::collections::HashMap::from([
                    ("meridian.partial".to_string(), "false".to_string()),
                    ("meridian.streamed".to_string(), "true".to_string()),
                ]);
                let schema = Arc::new(Schema::new(fields).with_metadata(meta));
                let writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema)
                    .map_err(std::io::Error::other)?;
                RowSink::Arrow {
                    writer: Box::new(writer),
                    types,
                    schema,
                }
            }
        };
        let mut rs = RowStream {
            w,
            name: name.to_string(),
            columns,
            group_by,
            epoch,
            kind,
            rows: 0,
            current: None,
        };
        rs.drain_arrow()?;
        Ok(rs)
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Sends what the Arrow writer has encoded.
    fn drain_arrow(&mut self) -> std::io::Result<()> {
        if let RowSink::Arrow { writer, .. } = &mut self.kind {
            let buf = writer.get_mut();
            if !buf.is_empty() {
                self.w.write_all(buf)?;
                buf.clear();
            }
        }
        Ok(())
    }

    /// The next rows of the series with these tags (the current one, or the next one), in
    /// time order, one value per column.
    pub fn rows(
        &mut self,
        tags: &std::collections::BTreeMap<String, String>,
        rows: &[(i64, Vec<Value>)],
    ) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let new_series = self.current.as_ref() != Some(tags);
        if new_series {
            self.current = Some(tags.clone());
        }
        match &mut self.kind {
            RowSink::Json => {
                if new_series {
                    self.w.write_all(if self.rows == 0 {
                        b"{\"series\":[{\"columns\":"
                    } else {
                        b"]},{\"columns\":"
                    })?;
                    let columns: Vec<&str> = std::iter::once("time")
                        .chain(self.columns.iter().map(String::as_str))
                        .collect();
                    serde_json::to_writer(&mut *self.w, &columns)?;
                    self.w.write_all(b",\"name\":")?;
                    serde_json::to_writer(&mut *self.w, &self.name)?;
                    self.w.write_all(b",\"tags\":")?;
                    serde_json::to_writer(&mut *self.w, tags)?;
                    self.w.write_all(b",\"values\":[")?;
                }
                for (i, (t, vals)) in rows.iter().enumerate() {
                    if !new_series || i > 0 {
                        self.w.write_all(b",")?;
                    }
                    let row = Row {
                        time: *t,
                        vals,
                        epoch: self.epoch,
                    };
                    serde_json::to_writer(&mut *self.w, &row)?;
                }
            }
            RowSink::Csv => {
                let mut out = String::new();
                let values: Vec<&str> = self
                    .group_by
                    .iter()
                    .map(|g| tags.get(g).map_or("", String::as_str))
                    .collect();
                for (t, vals) in rows {
                    out.clear();
                    csv_row(&self.name, &values, *t, vals, self.epoch, &mut out);
                    self.w.write_all(out.as_bytes())?;
                }
            }
            RowSink::Arrow {
                writer,
                types,
                schema,
                ..
            } => {
                let series = super::Series {
                    tags: tags.clone(),
                    rows: Vec::new(),
                };
                for chunk in rows.chunks(ARROW_BATCH_ROWS) {
                    let refs: Vec<RowRef<'_>> = chunk.iter().map(|r| (&series, r)).collect();
                    let batch = arrow_batch(&refs, &self.group_by, types, schema)
                        .map_err(std::io::Error::other)?;
                    writer.write(&batch).map_err(std::io::Error::other)?;
                    let buf = writer.get_mut();
                    self.w.write_all(buf)?;
                    buf.clear();
                }
            }
        }
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Ends the answer. JSON says whether it is partial, the regions' reports and the
    /// warnings; CSV and Arrow have no place for them (a failed stream is cut short by the
    /// caller instead, never ended as if complete).
    pub fn finish(
        mut self,
        partial: bool,
        regions: &std::collections::BTreeMap<String, super::RegionReport>,
        warnings: &[String],
    ) -> std::io::Result<()> {
        match &mut self.kind {
            RowSink::Json => {
                if self.rows == 0 {
                    self.w.write_all(b"{\"series\":[]")?;
                } else {
                    self.w.write_all(b"]}]")?;
                }
                self.w.write_all(b",\"partial\":")?;
                serde_json::to_writer(&mut *self.w, &partial)?;
                self.w.write_all(b",\"regions\":")?;
                serde_json::to_writer(&mut *self.w, regions)?;
                if !warnings.is_empty() {
                    self.w.write_all(b",\"warnings\":")?;
                    serde_json::to_writer(&mut *self.w, warnings)?;
                }
                self.w.write_all(b"}")?;
            }
            RowSink::Csv => {}
            RowSink::Arrow { writer, .. } => {
                writer.finish().map_err(std::io::Error::other)?;
                self.drain_arrow()?;
            }
        }
        Ok(())
    }
}

/// [`write_arrow`] into memory (tests, small answers).
pub fn to_arrow(r: &QueryResult, group_by: &[String]) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    write_arrow(r, group_by, &mut buf)?;
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
            skipped: Vec::new(),
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

    /// A streamed Arrow answer declares its types first: an integer that fits its column
    /// is written there (an unsigned sum in an Int64 column), one that does not fails the
    /// answer instead of becoming a null.
    #[test]
    fn streamed_arrow_values_fit_their_declared_type_or_fail() {
        use crate::model::{ColumnKind, FieldType};
        use crate::query::agg::Agg;
        let sum_type = agg_type(Agg::Sum, &[ColumnKind::Field(FieldType::UInteger)]);
        assert_eq!(sum_type, DataType::Int64);
        assert_eq!(
            agg_type(Agg::Max, &[ColumnKind::Field(FieldType::String)]),
            DataType::Float64
        );
        let tags = BTreeMap::new();
        let mut out = Vec::new();
        let mut rs = RowStream::start(
            &mut out,
            super::super::plan::Format::Arrow,
            "m",
            (vec!["s".into()], vec![sum_type.clone()]),
            Vec::new(),
            Epoch::Ns,
        )
        .unwrap();
        rs.rows(
            &tags,
            &[(1, vec![Value::UInt(5)]), (2, vec![Value::Int(-3)])],
        )
        .unwrap();
        rs.finish(false, &BTreeMap::new(), &[]).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None).unwrap();
        let got: Vec<Option<i64>> = reader
            .flat_map(|b| {
                let b = b.unwrap();
                let c = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                c.iter().collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(got, vec![Some(5), Some(-3)]);
        let mut out = Vec::new();
        let mut rs = RowStream::start(
            &mut out,
            super::super::plan::Format::Arrow,
            "m",
            (vec!["s".into()], vec![sum_type]),
            Vec::new(),
            Epoch::Ns,
        )
        .unwrap();
        let err = rs
            .rows(&tags, &[(1, vec![Value::UInt(u64::MAX)])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit its Arrow type Int64"), "{err}");
    }

    /// A large answer is written in several record batches that read back as the rows, in
    /// order, with one type per column (a column mixing integers and floats is Float64).
    #[test]
    fn arrow_answers_are_written_batch_by_batch() {
        let n = ARROW_BATCH_ROWS * 2 + 7;
        let rows: Vec<(i64, Vec<Value>)> = (0..n as i64)
            .map(|i| {
                let x = if i == 5 {
                    Value::Float(0.5)
                } else {
                    Value::Int(i)
                };
                (i, vec![x, Value::Str(format!("s{i}"))])
            })
            .collect();
        let r = QueryResult {
            refused: None,
            warnings: Vec::new(),
            skipped: Vec::new(),
            name: "m".into(),
            columns: vec!["x".into(), "s".into()],
            series: vec![Series {
                tags: BTreeMap::from([("host".to_string(), "a".to_string())]),
                rows,
            }],
            partial: true,
            regions: BTreeMap::new(),
        };
        let bytes = to_arrow(&r, &["host".to_string()]).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        assert_eq!(
            reader
                .schema()
                .metadata()
                .get("meridian.partial")
                .map(String::as_str),
            Some("true")
        );
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 3);
        let mut i = 0i64;
        for b in &batches {
            assert_eq!(b.schema().field(2).data_type(), &DataType::Float64);
            let t = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap();
            let x = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
            let s = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
            for k in 0..b.num_rows() {
                assert_eq!(t.value(k), i);
                assert_eq!(x.value(k), if i == 5 { 0.5 } else { i as f64 });
                assert_eq!(s.value(k), format!("s{i}"));
                i += 1;
            }
        }
        assert_eq!(i, n as i64);
        // No rows: the schema and one empty batch.
        let none = QueryResult {
            series: Vec::new(),
            ..r
        };
        let bytes = to_arrow(&none, &[]).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0);
    }
}
