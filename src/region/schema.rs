//! The schema registry: the kind of every column per (db, measurement).
//!
//! A column is a tag or a field of one type, fixed the first time it is written in that
//! measurement, in any partition (or found in a file of it at start-up), as InfluxDB fixes a
//! field's type. Every region shares one registry, so a field has one type across regions
//! and partitions and the query layer can merge them. Readers take an `Arc` snapshot; adding
//! columns is copy-on-write under a short lock.
//!
//! Data already stored is never refused: files written before types were fixed per
//! measurement, and WAL records replayed at start-up, are recorded with [`SchemaRegistry::load`],
//! which keeps the first kind seen and never fails (the query layer reads a field stored with
//! several types by one documented rule, see `query::agg`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::model::ColumnKind;

/// Column kinds of one measurement (FxHash: looked up for every key of every line).
pub type MeasurementSchema = FxHashMap<Arc<str>, ColumnKind>;

type ByMeasurement = HashMap<Arc<str>, Arc<MeasurementSchema>>;

#[derive(Default)]
pub struct SchemaRegistry {
    /// db → measurement → schema.
    map: Mutex<HashMap<Arc<str>, ByMeasurement>>,
}

/// Why a column cannot be added.
pub fn conflict_message(
    measurement: &str,
    name: &str,
    have: ColumnKind,
    want: ColumnKind,
) -> String {
    let describe = |k: ColumnKind| match k {
        ColumnKind::Tag => "a tag".to_string(),
        ColumnKind::Field(t) => format!("a field of type {}", t.name()),
    };
    format!(
        "{} {:?} conflicts with measurement {:?}: it is already {} there, this line writes it as {}",
        if matches!(want, ColumnKind::Tag) {
            "tag"
        } else {
            "field"
        },
        crate::model::truncate(name, 64),
        crate::model::truncate(measurement, 64),
        describe(have),
        describe(want)
    )
}

impl SchemaRegistry {
    pub fn new() -> SchemaRegistry {
        SchemaRegistry::default()
    }

    /// The current schema of a measurement, if any column is known.
    pub fn get(&self, db: &str, measurement: &str) -> Option<Arc<MeasurementSchema>> {
        self.map.lock().get(db)?.get(measurement).cloned()
    }

    /// Whether `db` has at least one measurement.
    pub fn get_any(&self, db: &str) -> bool {
        self.map.lock().get(db).is_some_and(|ms| !ms.is_empty())
    }

    /// Databases with at least one measurement, sorted.
    pub fn databases(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = self.map.lock().keys().cloned().collect();
        out.sort();
        out
    }

    /// Measurements of `db` and their schemas, sorted by name.
    pub fn measurements(&self, db: &str) -> Vec<(Arc<str>, Arc<MeasurementSchema>)> {
        let mut out: Vec<(Arc<str>, Arc<MeasurementSchema>)> = self
            .map
            .lock()
            .get(db)
            .map(|ms| ms.iter().map(|(m, s)| (m.clone(), s.clone())).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets a database (it was dropped).
    pub fn drop_database(&self, db: &str) {
        self.map.lock().remove(db);
    }

    /// Forgets a measurement (it was dropped).
    pub fn drop_measurement(&self, db: &str, measurement: &str) {
        if let Some(ms) = self.map.lock().get_mut(db) {
            ms.remove(measurement);
        }
    }

    /// Checks `columns` against the measurement's schema and adds the new ones, atomically:
    /// either every column is compatible (and the new ones are recorded) or nothing changes
    /// and the conflict is described. Returns the schema after the change.
    pub fn check_and_add(
        &self,
        db: &str,
        measurement: &str,
        columns: &[(&str, ColumnKind)],
    ) -> Result<Arc<MeasurementSchema>, String> {
        self.add(db, measurement, columns, true)
    }

    /// Records columns of data already stored (a file's columns, a replayed WAL row): new
    /// columns are added, a conflicting one keeps the kind seen first. Never fails.
    pub fn load(&self, db: &str, measurement: &str, columns: &[(&str, ColumnKind)]) {
        let _ = self.add(db, measurement, columns, false);
    }

    fn add(
        &self,
        db: &str,
        measurement: &str,
        columns: &[(&str, ColumnKind)],
        strict: bool,
    ) -> Result<Arc<MeasurementSchema>, String> {
        let mut map = self.map.lock();
        let by_meas = match map.get_mut(db) {
            Some(m) => m,
            None => map.entry(Arc::from(db)).or_default(),
        };
        let current = match by_meas.get_mut(measurement) {
            Some(s) => s,
            None => by_meas.entry(Arc::from(measurement)).or_default(),
        };
        let mut missing = false;
        for (name, kind) in columns {
            match current.get(*name) {
                Some(have) if have != kind && strict => {
                    return Err(conflict_message(measurement, name, *have, *kind));
                }
                Some(_) => {}
                None => missing = true,
            }
        }
        if missing {
            let mut next: MeasurementSchema = (**current).clone();
            for (name, kind) in columns {
                if !next.contains_key(*name) {
                    next.insert(Arc::from(*name), *kind);
                }
            }
            *current = Arc::new(next);
        }
        Ok(current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldType;

    #[test]
    fn types_are_fixed_per_measurement_across_partitions() {
        let r = SchemaRegistry::new();
        let f = ColumnKind::Field(FieldType::Float);
        let i = ColumnKind::Field(FieldType::Integer);
        r.check_and_add("db", "cpu", &[("host", ColumnKind::Tag), ("v", f)])
            .unwrap();
        let e = r.check_and_add("db", "cpu", &[("v", i)]).unwrap_err();
        assert!(
            e.contains("\"v\"") && e.contains("type float") && e.contains("type integer"),
            "{e}"
        );
        assert!(r.check_and_add("db", "cpu", &[("host", f)]).is_err());
        // Another measurement or db is independent.
        r.check_and_add("db", "mem", &[("v", i)]).unwrap();
        r.check_and_add("db2", "cpu", &[("v", i)]).unwrap();
        // A conflicting line adds nothing, not even its compatible new columns.
        assert!(
            r.check_and_add("db", "cpu", &[("new", f), ("v", i)])
                .is_err()
        );
        assert!(!r.get("db", "cpu").unwrap().contains_key("new"));
        // Stored data is recorded whatever its kinds: the first kind seen stays.
        r.load("db", "cpu", &[("v", i), ("w", i)]);
        let s = r.get("db", "cpu").unwrap();
        assert_eq!((s.get("v"), s.get("w")), (Some(&f), Some(&i)));
    }
}
