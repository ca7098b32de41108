//! Group parts of an answer grouped by tags that is too large to compute whole: the
//! series come in the order of their group values (the first key first), so the answer can
//! be computed a batch of the first key's values at a time, each batch its own execution
//! (its own memory budget), and no group is ever split between two parts. The values come
//! from the series catalog. One value too large for a part goes by the values of the next
//! key under it. Used by the native export (`http::export`) and by `chunked=true`
//! InfluxQL answers ([`crate::query::influxql::stream`]).

use crate::catalog::series::MeasurementSeries;
use crate::query::plan::{TagOp, TagPred};
use roaring::RoaringBitmap;

/// Values of one key in one part at most (the size of its regex).
pub const MAX_BATCH_VALUES: usize = 256;

/// Distinct values of the first key above which an answer is not cut into group parts
/// (each part would test every value of the key in every file: an id-like key).
pub const MAX_GROUP_VALUES: usize = 4096;

/// The groups of one part: those whose first keys have the values `fixed` (`(key, value)`,
/// `""`: series without the key) and whose next key has one of `values` (or, for the
/// `rest` part, none of them).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPart {
    pub fixed: Vec<(String, String)>,
    pub values: Vec<String>,
    /// The groups under `fixed` whose next key has none of `values` (every value the parts
    /// cover): series written after the parts were made, answered last, by the parts
    /// [`late`] makes of them when their turn comes.
    pub rest: bool,
    /// Made by [`late`]: groups of series written after the first parts were made.
    pub late: bool,
}

impl GroupPart {
    /// The predicates selecting the part's series, for grouping keys `keys`; `None` when a
    /// regex is too large to build (then [`GroupPart::halves`]), or for the rest part
    /// (see [`late`]).
    pub fn preds(&self, keys: &[String]) -> Option<Vec<TagPred>> {
        let key = keys.get(self.fixed.len())?;
        if self.rest {
            return None;
        }
        let mut preds = self
            .fixed
            .iter()
            .map(|(k, v)| values_pred(k, std::slice::from_ref(v)))
            .collect::<Option<Vec<_>>>()?;
        preds.push(values_pred(key, &self.values)?);
        Some(preds)
    }

    /// The part in two halves of its values, in order; `None` for one value or the rest.
    pub fn halves(&self) -> Option<[GroupPart; 2]> {
        if self.rest || self.values.len() < 2 {
            return None;
        }
        let (a, b) = self.values.split_at(self.values.len() / 2);
        let half = |values: &[String]| GroupPart {
            fixed: self.fixed.clone(),
            values: values.to_vec(),
            rest: false,
            late: self.late,
        };
        Some([half(a), half(b)])
    }
}

/// The values of key `key` (sorted; `""` first, for series without it) among the series
/// of `among` (those a statement's tag conditions match; all when `None`) whose earlier
/// keys have the values `fixed` (`(key, value)`, `""`: without it).
fn values(
    ms: &MeasurementSeries,
    among: Option<&RoaringBitmap>,
    fixed: &[(String, String)],
    key: &str,
) -> Vec<String> {
    let within = (among.is_some() || !fixed.is_empty()).then(|| {
        let start = among.cloned().unwrap_or_else(|| ms.all());
        fixed.iter().fold(start, |acc, (k, v)| {
            let these = if v.is_empty() {
                ms.without_key(k)
            } else {
                ms.with_value(k, v)
            };
            acc & these
        })
    });
    let mut values: Vec<String> = ms
        .tag_values(key, within.as_ref())
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut without = ms.without_key(key);
    if let Some(w) = &within {
        without &= w;
    }
    if !without.is_empty() {
        values.insert(0, String::new());
    }
    values
}

/// The values of the first key `key` among the series of `among` (all when `None`), as
/// [`values`], or `None` when there are fewer than 2 or more than [`MAX_GROUP_VALUES`]
/// (the key's values counted before any is copied).
pub fn first_values(
    ms: &MeasurementSeries,
    among: Option<&RoaringBitmap>,
    key: &str,
) -> Option<Vec<String>> {
    if ms.value_count(key) > MAX_GROUP_VALUES {
        return None;
    }
    let found = values(ms, among, &[], key);
    (2..=MAX_GROUP_VALUES)
        .contains(&found.len())
        .then_some(found)
}

/// The parts of a rest part ([`GroupPart::rest`]): the values of its key under its
/// `fixed` (among the series of `among`, when given) that the catalog lists now and the
/// parts made before did not (series written since), in batches of at most
/// [`MAX_BATCH_VALUES`]; empty when there are none.
pub fn late(
    ms: &MeasurementSeries,
    among: Option<&RoaringBitmap>,
    keys: &[String],
    rest: &GroupPart,
) -> Vec<GroupPart> {
    let Some(key) = keys.get(rest.fixed.len()) else {
        return Vec::new();
    };
    let known: std::collections::HashSet<&str> = rest.values.iter().map(String::as_str).collect();
    let new: Vec<String> = values(ms, among, &rest.fixed, key)
        .into_iter()
        .filter(|v| !known.contains(v.as_str()))
        .collect();
    new.chunks(MAX_BATCH_VALUES)
        .map(|c| GroupPart {
            fixed: rest.fixed.clone(),
            values: c.to_vec(),
            rest: false,
            late: true,
        })
        .collect()
}

/// The parts of the groups under `fixed`: batches of `batch` values of the next key, then
/// the rest.
pub fn batches(fixed: Vec<(String, String)>, values: Vec<String>, batch: usize) -> Vec<GroupPart> {
    let mut parts: Vec<GroupPart> = values
        .chunks(batch.max(1))
        .map(|c| GroupPart {
            fixed: fixed.clone(),
            values: c.to_vec(),
            rest: false,
            late: false,
        })
        .collect();
    parts.push(GroupPart {
        fixed,
        values,
        rest: true,
        late: false,
    });
    parts
}

/// The smaller parts of a part too large for one execution: the halves of its values,
/// or, for a part of one value, the values of the next key under it (among the series of
/// `among`), by halves (a half that does not fit is halved again). `None` for the rest
/// part, a single group (one value of the last key), or too many values under it.
pub fn smaller(
    ms: &MeasurementSeries,
    among: Option<&RoaringBitmap>,
    keys: &[String],
    part: &GroupPart,
) -> Option<Vec<GroupPart>> {
    if let Some(halves) = part.halves() {
        return Some(halves.to_vec());
    }
    let depth = part.fixed.len();
    let (Some(key), [value], false) = (keys.get(depth), part.values.as_slice(), part.rest) else {
        return None;
    };
    let next_key = keys.get(depth + 1)?;
    let mut fixed = part.fixed.clone();
    fixed.push((key.clone(), value.clone()));
    let next = values(ms, among, &fixed, next_key);
    if next.is_empty() || next.len() > MAX_GROUP_VALUES {
        return None;
    }
    let half = next.len().div_ceil(2).min(MAX_BATCH_VALUES);
    let mut parts = batches(fixed, next, half);
    for p in &mut parts {
        p.late = part.late;
    }
    Some(parts)
}

/// The predicate selecting the series whose `key` is one of `values` (`""`: without it);
/// `None` when its regex is too large to build.
fn values_pred(key: &str, values: &[String]) -> Option<TagPred> {
    let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
    let re = regex::Regex::new(&format!("^(?:{})$", alternatives.join("|"))).ok()?;
    Some(TagPred {
        key: key.to_string(),
        op: TagOp::Re(re),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(series: &[&[(&str, &str)]]) -> MeasurementSeries {
        let mut ms = MeasurementSeries::default();
        for tags in series {
            ms.add(tags);
        }
        ms
    }

    /// Every series matches the predicates of exactly one part, in group order, and a
    /// series written after the parts were made matches the rest.
    #[test]
    fn parts_cover_each_group_once_in_order() {
        let ms = catalog(&[
            &[("dc", "x"), ("host", "a")],
            &[("dc", "y"), ("host", "a")],
            &[("host", "b")],
            &[("dc", "x")],
            &[("dc", "y"), ("host", "c|d")],
        ]);
        let keys = vec!["host".to_string(), "dc".to_string()];
        let first = values(&ms, None, &[], "host");
        assert_eq!(first, ["", "a", "b", "c|d"]);
        let parts = batches(Vec::new(), first, 2);
        assert_eq!(parts.len(), 3);
        assert!(parts[2].rest && parts[2].preds(&keys).is_none());
        let matching = |part: &GroupPart, tags: &[(&str, &str)]| {
            let preds = part.preds(&keys).expect("small regex");
            preds.iter().all(|p| {
                let v = tags.iter().find(|(k, _)| *k == p.key).map(|(_, v)| *v);
                p.matches(v)
            })
        };
        for (tags, want) in [
            (&[("dc", "x"), ("host", "a")][..], Some(0)),
            (&[("dc", "x")][..], Some(0)),
            (&[("host", "b")][..], Some(1)),
            (&[("host", "c|d")][..], Some(1)),
            (&[("host", "c")][..], None),
            (&[("host", "zz"), ("dc", "x")][..], None),
        ] {
            let hits: Vec<usize> = (0..2).filter(|&i| matching(&parts[i], tags)).collect();
            assert_eq!(hits, want.into_iter().collect::<Vec<_>>(), "{tags:?}");
        }
        // Series written after the parts were made: the rest part's new values.
        let mut later = catalog(&[&[("dc", "x"), ("host", "a")], &[("host", "b")]]);
        assert!(late(&later, None, &keys, &parts[2]).is_empty());
        later.add(&[("host", "c")]);
        later.add(&[("host", "a"), ("dc", "z")]);
        let new = late(&later, None, &keys, &parts[2]);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].values, ["c"]);
        assert!(!new[0].rest && new[0].late && new[0].fixed.is_empty());
        // One value too large: the next key's values under it.
        let one = GroupPart {
            fixed: Vec::new(),
            values: vec!["a".into()],
            rest: false,
            late: false,
        };
        let under_a = smaller(&ms, None, &keys, &one).expect("a second key");
        assert_eq!(under_a[0].fixed, [("host".to_string(), "a".to_string())]);
        assert_eq!(under_a[0].values, ["x"]);
        assert_eq!(under_a[1].values, ["y"]);
        assert!(under_a[2].rest);
        let last = &under_a[0];
        assert!(
            smaller(&ms, None, &keys, last).is_none(),
            "one group of the last key"
        );
        assert!(last.halves().is_none());
        let [a, b] = parts[0].halves().expect("two values");
        assert_eq!(
            (a.values, b.values),
            (vec![String::new()], vec!["a".to_string()])
        );
    }
}
