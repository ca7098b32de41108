//! The schema registry: the kind of every column per (db, measurement, partition).
//!
//! A column is a tag or a field of one type, fixed the first time it is written in that
//! partition (or found in a file of it at start-up). Every region shares one registry, so
//! a field has one type across regions and the query layer can merge them. Readers take an
//! `Arc` snapshot; adding columns is copy-on-write under a short lock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::model::{ColumnKind, PartitionStart};

/// Column kinds of one partition (FxHash: looked up for every key of every line).
pub type PartitionSchema = FxHashMap<Arc<str>, ColumnKind>;

type ByPartition = HashMap<i64, Arc<PartitionSchema>>;
type ByMeasurement = HashMap<Arc<str>, ByPartition>;

#[derive(Default)]
pub struct SchemaRegistry {
    /// db → measurement → partition start → schema.
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
        "{} {:?} conflicts with measurement {:?}: it is already {} in this partition, this line writes it as {}",
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

    /// The current schema of a partition, if any column is known.
    pub fn get(
        &self,
        db: &str,
        measurement: &str,
        partition: PartitionStart,
    ) -> Option<Arc<PartitionSchema>> {
        self.map
            .lock()
            .get(db)?
            .get(measurement)?
            .get(&partition.0)
            .cloned()
    }

    /// Checks `columns` against the partition's schema and adds the new ones, atomically:
    /// either every column is compatible (and the new ones are recorded) or nothing changes
    /// and the conflict is described. Returns the schema after the change.
    pub fn check_and_add(
        &self,
        db: &str,
        measurement: &str,
        partition: PartitionStart,
        columns: &[(&str, ColumnKind)],
    ) -> Result<Arc<PartitionSchema>, String> {
        let mut map = self.map.lock();
        let by_meas = match map.get_mut(db) {
            Some(m) => m,
            None => map.entry(Arc::from(db)).or_default(),
        };
        let by_part = match by_meas.get_mut(measurement) {
            Some(p) => p,
            None => by_meas.entry(Arc::from(measurement)).or_default(),
        };
        let current = by_part.entry(partition.0).or_default();
        let mut missing = false;
        for (name, kind) in columns {
            match current.get(*name) {
                Some(have) if have != kind => {
                    return Err(conflict_message(measurement, name, *have, *kind));
                }
                Some(_) => {}
                None => missing = true,
            }
        }
        if missing {
            let mut next: PartitionSchema = (**current).clone();
            for (name, kind) in columns {
                if !next.contains_key(*name) {
                    next.insert(Arc::from(*name), *kind);
                }
            }
            *current = Arc::new(next);
        }
        Ok(current.clone())
    }

    /// Records the columns of an existing file (start-up). Conflicting entries keep the
    /// first kind seen.
    pub fn load(
        &self,
        db: &str,
        measurement: &str,
        partition: PartitionStart,
        columns: &[(String, ColumnKind)],
    ) {
        let cols: Vec<(&str, ColumnKind)> = columns.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        for c in cols {
            let _ = self.check_and_add(db, measurement, partition, &[c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldType;

    #[test]
    fn types_are_fixed_per_partition() {
        let r = SchemaRegistry::new();
        let p0 = PartitionStart(0);
        let p1 = PartitionStart(3600);
        let f = ColumnKind::Field(FieldType::Float);
        let i = ColumnKind::Field(FieldType::Integer);
        r.check_and_add("db", "cpu", p0, &[("host", ColumnKind::Tag), ("v", f)])
            .unwrap();
        let e = r.check_and_add("db", "cpu", p0, &[("v", i)]).unwrap_err();
        assert!(
            e.contains("type float") && e.contains("type integer"),
            "{e}"
        );
        assert!(r.check_and_add("db", "cpu", p0, &[("host", f)]).is_err());
        // Another partition, measurement or db is independent.
        r.check_and_add("db", "cpu", p1, &[("v", i)]).unwrap();
        r.check_and_add("db", "mem", p0, &[("v", i)]).unwrap();
        r.check_and_add("db2", "cpu", p0, &[("v", i)]).unwrap();
        // A conflicting line adds nothing, not even its compatible new columns.
        assert!(
            r.check_and_add("db", "cpu", p0, &[("new", f), ("v", i)])
                .is_err()
        );
        assert!(!r.get("db", "cpu", p0).unwrap().contains_key("new"));
    }
}
