//! Shared vocabulary: ids, field types, precisions, durations, name rules.
//!
//! Invariants: a name accepted by [`is_safe_name`] can be used as one path component
//! (no separators, no `.`/`..`, bounded length); [`RESERVED_KEYS`] can never be a tag or field
//! key, because they are the `time` column and the hive partition keys of the file layout.

use arrow::datatypes::DataType;

/// Index of a region in the configuration's region list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub usize);

/// Index of an ingest shard inside its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// Start of a time partition, ns since the epoch, aligned to the partition duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionStart(pub i64);

impl PartitionStart {
    /// The partition holding `ts` (floor division, so negative times work too). For the
    /// earliest times, whose aligned start would be below `i64::MIN`, the start saturates:
    /// that first partition is shorter than the others.
    pub fn of(ts: i64, duration_ns: i64) -> PartitionStart {
        PartitionStart(ts.div_euclid(duration_ns).saturating_mul(duration_ns))
    }
}

/// The earliest and latest point times InfluxDB accepts (ns): `i64::MIN` and `i64::MAX` are
/// its sentinels, so the range stops two (one) short of them.
pub const MIN_TIME: i64 = i64::MIN + 2;
pub const MAX_TIME: i64 = i64::MAX - 1;

/// Name of the time column in every file and query result.
pub const TIME_COLUMN: &str = "time";

/// Hive partition keys used in directory names (see `storage::paths`). Chosen so they are
/// unlikely to be real tag names, and reserved so they can never collide with a column.
pub const PARTITION_KEY_DAY: &str = "part_day";
pub const PARTITION_KEY_HOUR: &str = "part_hour";
pub const PARTITION_KEY_MINUTE: &str = "part_minute";

/// Keys a tag or field may not use.
pub const RESERVED_KEYS: [&str; 4] = [
    TIME_COLUMN,
    PARTITION_KEY_DAY,
    PARTITION_KEY_HOUR,
    PARTITION_KEY_MINUTE,
];

/// A database, bucket or region name: 1–64 of `A-Z a-z 0-9 _ -`, not starting with `-`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Database names a write cannot use: the directories that share a region's root with the
/// databases (`storage::paths::WAL_DIR` and `MANIFEST_DIR`).
pub const RESERVED_DB_NAMES: [&str; 2] = ["wal", "_manifest"];

/// Why a database name cannot be written to, if it cannot.
pub fn db_name_problem(name: &str) -> Option<String> {
    if !is_safe_name(name) {
        return Some(format!(
            "invalid database name {:?}: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-', not starting with '-'",
            truncate(name, 64)
        ));
    }
    if RESERVED_DB_NAMES.contains(&name) {
        return Some(format!(
            "database name {name:?} is reserved: Meridian keeps a directory of that name beside the databases"
        ));
    }
    None
}

/// The type of a field column. Fixed per (db, measurement, partition, field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Float,
    Integer,
    UInteger,
    String,
    Boolean,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::UInteger => "unsigned",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::UInteger => DataType::UInt64,
            FieldType::String => DataType::Utf8,
            FieldType::Boolean => DataType::Boolean,
        }
    }

    pub fn from_arrow(dt: &DataType) -> Option<FieldType> {
        Some(match dt {
            // Decimals are float fields stored as scaled integers (`storage::scaled`).
            DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..) => FieldType::Float,
            DataType::Int64 => FieldType::Integer,
            DataType::UInt64 => FieldType::UInteger,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
            DataType::Boolean => FieldType::Boolean,
            _ => return None,
        })
    }
}

/// What a column of a measurement is: a tag or a typed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Tag,
    Field(FieldType),
}

/// Timestamp precision of a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    /// v3 `auto`: guess from the magnitude of each timestamp, as InfluxDB 3 does.
    Auto,
}

impl Precision {
    /// `precision` of `/write` (v1). Absent → ns.
    pub fn parse_v1(s: Option<&str>) -> Result<Precision, String> {
        Ok(match s {
            None | Some("") | Some("n") | Some("ns") => Precision::Nanosecond,
            Some("u") | Some("us") | Some("µ") | Some("µs") => Precision::Microsecond,
            Some("ms") => Precision::Millisecond,
            Some("s") => Precision::Second,
            Some("m") => Precision::Minute,
            Some("h") => Precision::Hour,
            Some(other) => {
                return Err(format!(
                    "invalid precision {:?}: use n, ns, u, us, ms, s, m or h",
                    truncate(other, 32)
                ));
            }
        })
    }

    /// `precision` of `/api/v2/write`. Absent → ns.
    pub fn parse_v2(s: Option<&str>) -> Result<Precision, String> {
        Ok(match s {
            None | Some("") | Some("ns") => Precision::Nanosecond,
            Some("us") => Precision::Microsecond,
            Some("ms") => Precision::Millisecond,
            Some("s") => Precision::Second,
            Some(other) => {
                return Err(format!(
                    "invalid precision {:?}: use ns, us, ms or s",
                    truncate(other, 32)
                ));
            }
        })
    }

    /// `precision` of `/api/v3/write_lp`. Absent → auto.
    pub fn parse_v3(s: Option<&str>) -> Result<Precision, String> {
        Ok(match s {
            None | Some("") | Some("auto") => Precision::Auto,
            Some("nanosecond") | Some("ns") => Precision::Nanosecond,
            Some("microsecond") | Some("us") => Precision::Microsecond,
            Some("millisecond") | Some("ms") => Precision::Millisecond,
            Some("second") | Some("s") => Precision::Second,
            Some(other) => {
                return Err(format!(
                    "invalid precision {:?}: use auto, nanosecond, microsecond, millisecond or second",
                    truncate(other, 32)
                ));
            }
        })
    }

    fn multiplier(self, ts: i64) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
            // InfluxDB 3's rule: the number of digits says the unit.
            Precision::Auto => match ts.unsigned_abs() {
                0..=9_999_999_999 => 1_000_000_000,
                10_000_000_000..=9_999_999_999_999 => 1_000_000,
                10_000_000_000_000..=9_999_999_999_999_999 => 1_000,
                _ => 1,
            },
        }
    }

    /// A written timestamp in this precision → ns, or an error on overflow.
    pub fn to_nanos(self, ts: i64) -> Result<i64, String> {
        ts.checked_mul(self.multiplier(ts)).ok_or_else(|| {
            format!("timestamp {ts} overflows a 64-bit nanosecond time at this precision")
        })
    }

    /// The server's time `now_ns` truncated to this precision (used for lines without a
    /// timestamp, as InfluxDB does).
    pub fn now(self, now_ns: i64) -> i64 {
        let m = match self {
            Precision::Auto => 1,
            p => p.multiplier(0),
        };
        now_ns.div_euclid(m) * m
    }
}

/// Parses a duration: `500ms`, `10s`, `1m`, `1h`, `1d`, `1w`, compounds like `1h30m`; also
/// `ns`, `us`/`µs`. Returns nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    // "1 h" as "1h", as sizes take "64 MiB".
    let spaced: String = s.split_whitespace().collect();
    let t = spaced.as_str();
    if t.is_empty() {
        return Err("empty duration: use e.g. \"10s\", \"1m\", \"1h\"".into());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number, e.g. \"10s\""
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult: i64 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m, h, d, w)"
                ));
            }
            other if other.starts_with('.') => {
                return Err(format!(
                    "invalid duration {s:?}: whole numbers only; combine units (\"1h30m\", not \"1.5h\")"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} (use ns, us, ms, s, m, h, d, w)"
                ));
            }
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    }
    Ok(total)
}

/// At most `max` bytes of `s` (on a char boundary), for error messages.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), 10_000_000_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000_000_000);
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1h-",
            "99999999999999999999s",
            "9999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_names() {
        for ok in ["telegraf", "my-db", "db_1", "A"] {
            assert!(is_safe_name(ok), "{ok}");
        }
        let long = "x".repeat(65);
        for bad in [
            "", ".", "..", "../etc", "a/b", "a\\b", "-x", "a b", "é", "a.b", &long,
        ] {
            assert!(!is_safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let h = 3_600_000_000_000;
        assert_eq!(PartitionStart::of(MIN_TIME, h), PartitionStart(i64::MIN));
        assert_eq!(PartitionStart::of(i64::MIN, h), PartitionStart(i64::MIN));
        let last = PartitionStart::of(MAX_TIME, h);
        assert!(last.0 <= MAX_TIME && MAX_TIME - last.0 < h);
    }

    #[test]
    fn partitions_floor_negative_times() {
        let h = 3_600_000_000_000;
        assert_eq!(PartitionStart::of(0, h), PartitionStart(0));
        assert_eq!(PartitionStart::of(h - 1, h), PartitionStart(0));
        assert_eq!(PartitionStart::of(h, h), PartitionStart(h));
        assert_eq!(PartitionStart::of(-1, h), PartitionStart(-h));
    }

    #[test]
    fn precisions() {
        assert_eq!(
            Precision::parse_v1(Some("s")).unwrap().to_nanos(2).unwrap(),
            2_000_000_000
        );
        assert_eq!(
            Precision::parse_v1(Some("h")).unwrap().to_nanos(1).unwrap(),
            3_600_000_000_000
        );
        assert!(Precision::parse_v1(Some("x")).is_err());
        assert!(Precision::parse_v2(Some("m")).is_err());
        assert!(Precision::parse_v3(Some("ns")).is_ok());
        assert!(Precision::Second.to_nanos(i64::MAX / 10).is_err());
        let auto = Precision::parse_v3(None).unwrap();
        assert_eq!(
            auto.to_nanos(1_700_000_000).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            auto.to_nanos(1_700_000_000_000).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            auto.to_nanos(1_700_000_000_000_000).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            auto.to_nanos(1_700_000_000_000_000_000).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            Precision::Second.now(1_700_000_000_123_456_789),
            1_700_000_000_000_000_000
        );
    }
}
