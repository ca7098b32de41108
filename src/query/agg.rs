//! Mergeable partial aggregates.
//!
//! Each region folds its rows into one [`Acc`] per (group, bucket, field); the coordinator
//! merges the accumulators of every region with [`Acc::merge`] and finishes them with
//! [`Acc::finish`]. Every statistic is exactly mergeable: count; sum (integers exactly in
//! i128, floats with Neumaier compensation); min; max; first/last with their timestamps;
//! count/mean/M2 for the standard deviation (Chan et al.). Mean = sum / count at the end.

use std::cmp::Ordering;

/// A single result value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    #[default]
    Null,
    Float(f64),
    Int(i64),
    UInt(u64),
    Str(String),
    Bool(bool),
}

impl Value {
    /// A total order over every value, so that sorting never panics whatever mix of
    /// types and nulls a column holds: nulls first, then numbers (integers, unsigned and
    /// floats compared exactly by their numeric value), then strings, then booleans.
    pub fn cmp_values(&self, other: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Float(_) | Value::Int(_) | Value::UInt(_) => 1,
                Value::Str(_) => 2,
                Value::Bool(_) => 3,
            }
        }
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::UInt(a), Value::UInt(b)) => a.cmp(b),
            (Value::Int(a), Value::UInt(b)) => i128::from(*a).cmp(&i128::from(*b)),
            (Value::UInt(a), Value::Int(b)) => i128::from(*a).cmp(&i128::from(*b)),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Float(a), Value::Int(b)) => cmp_float_int(*a, i128::from(*b)),
            (Value::Float(a), Value::UInt(b)) => cmp_float_int(*a, i128::from(*b)),
            (Value::Int(a), Value::Float(b)) => cmp_float_int(*b, i128::from(*a)).reverse(),
            (Value::UInt(a), Value::Float(b)) => cmp_float_int(*b, i128::from(*a)).reverse(),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

/// Compares a float with an integer exactly (an `as f64` conversion rounds integers above
/// 2^53, which would make the order intransitive). NaN sorts after every integer.
fn cmp_float_int(f: f64, i: i128) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    let approx = f.total_cmp(&(i as f64));
    if approx != Ordering::Equal {
        return approx;
    }
    // `f` equals the integer `i` rounded to f64, so it is integral and within i128.
    (f as i128).cmp(&i)
}

/// The aggregate function of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    None,
    Count,
    Sum,
    Mean,
    Min,
    Max,
    First,
    Last,
    Stddev,
}

impl Agg {
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "none" | "" => Agg::None,
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "mean" | "avg" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "stddev" => Agg::Stddev,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::None => "none",
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::First => "first",
            Agg::Last => "last",
            Agg::Stddev => "stddev",
        }
    }
}

/// A timestamped value with a tie-break order (see [`Stamped::beats`]), so merges are
/// deterministic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stamped {
    pub time: i64,
    pub rank: u64,
    pub value: Value,
}

impl Stamped {
    /// Whether this point is the `first` (`last`) rather than `other`: the earlier (later)
    /// time; on equal times (points of several series in one group; a series has one point
    /// per time once deduplicated) the greater value, as InfluxDB's reducers decide, then
    /// the rank, so that every merge order gives the same answer.
    pub fn beats(&self, other: &Stamped, first: bool) -> bool {
        if self.time != other.time {
            return (self.time < other.time) == first;
        }
        match self.value.cmp_values(&other.value) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => (self.rank < other.rank) == first,
        }
    }
}

/// Partial state of one aggregate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Acc {
    pub count: u64,
    /// Float sum with its Neumaier compensation term.
    pub fsum: f64,
    pub fcomp: f64,
    /// Exact integer sum (as a decimal string on the wire: JSON numbers are not i128).
    #[serde(with = "i128_string")]
    pub isum: i128,
    pub has_float: bool,
    pub has_int: bool,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub first: Option<Stamped>,
    pub last: Option<Stamped>,
    /// Running mean and sum of squared deviations (stddev).
    pub mean: f64,
    pub m2: f64,
    /// Strings and booleans a numeric aggregate left out (a field stored with several
    /// types): the answer says so rather than skip them silently.
    #[serde(default)]
    pub skipped: u64,
}

/// An integer as its high (signed for `i64`) and low 32 bits, each in an `i64`.
pub trait Halves {
    fn halves(self) -> (i64, i64);
}

impl Halves for i64 {
    fn halves(self) -> (i64, i64) {
        (self >> 32, self & 0xFFFF_FFFF)
    }
}

impl Halves for u64 {
    fn halves(self) -> (i64, i64) {
        ((self >> 32) as i64, (self & 0xFFFF_FFFF) as i64)
    }
}

/// The exact sum of integers: the high and low halves are summed in `i64` lanes, which
/// cannot overflow for fewer than 2^31 values (so chunks of 2^30), and the compiler can
/// vectorize them, unlike an `i128` accumulator (measured: the sum was the largest part of
/// aggregating a scanned file).
pub fn exact_sum<T: Copy + Halves>(xs: &[T]) -> i128 {
    let mut total = 0i128;
    for chunk in xs.chunks(1 << 30) {
        let (mut hi, mut lo) = (0i64, 0i64);
        for &x in chunk {
            let (h, l) = x.halves();
            hi += h;
            lo += l;
        }
        total += ((hi as i128) << 32) + lo as i128;
    }
    total
}

fn neumaier(sum: &mut f64, comp: &mut f64, x: f64) {
    let t = *sum + x;
    if sum.abs() >= x.abs() {
        *comp += (*sum - t) + x;
    } else {
        *comp += (x - t) + *sum;
    }
    *sum = t;
}

mod i128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Acc {
    /// Folds a float in.
    #[inline]
    pub fn add_float(&mut self, agg: Agg, x: f64, time: i64, rank: u64) {
        self.count += 1;
        match agg {
            Agg::Sum | Agg::Mean => {
                self.has_float = true;
                neumaier(&mut self.fsum, &mut self.fcomp, x);
            }
            // The kept extreme may be an integer (a field stored as integers in some
            // files and floats in others): compare across types, never replace blindly.
            Agg::Min => match &self.min {
                Some(Value::Float(m)) if *m <= x => {}
                Some(Value::Float(_)) | None => self.min = Some(Value::Float(x)),
                Some(m) => {
                    if Value::Float(x).cmp_values(m) == Ordering::Less {
                        self.min = Some(Value::Float(x));
                    }
                }
            },
            Agg::Max => match &self.max {
                Some(Value::Float(m)) if *m >= x => {}
                Some(Value::Float(_)) | None => self.max = Some(Value::Float(x)),
                Some(m) => {
                    if Value::Float(x).cmp_values(m) == Ordering::Greater {
                        self.max = Some(Value::Float(x));
                    }
                }
            },
            Agg::Stddev => self.welford(x),
            Agg::First | Agg::Last => self.stamp(agg, Value::Float(x), time, rank),
            Agg::Count | Agg::None => {}
        }
    }

    /// Folds an integer in (i64 or u64 as i128).
    #[inline]
    pub fn add_int(&mut self, agg: Agg, x: i128, unsigned: bool, time: i64, rank: u64) {
        self.count += 1;
        let v = || {
            if unsigned {
                Value::UInt(x as u64)
            } else {
                Value::Int(x as i64)
            }
        };
        match agg {
            Agg::Sum | Agg::Mean => {
                self.has_int = true;
                self.isum += x;
            }
            Agg::Min => {
                let nv = v();
                if self
                    .min
                    .as_ref()
                    .is_none_or(|m| nv.cmp_values(m) == Ordering::Less)
                {
                    self.min = Some(nv);
                }
            }
            Agg::Max => {
                let nv = v();
                if self
                    .max
                    .as_ref()
                    .is_none_or(|m| nv.cmp_values(m) == Ordering::Greater)
                {
                    self.max = Some(nv);
                }
            }
            Agg::Stddev => self.welford(x as f64),
            Agg::First | Agg::Last => self.stamp(agg, v(), time, rank),
            Agg::Count | Agg::None => {}
        }
    }

    /// Folds a run of non-null integers in: the values of one series in one bucket, in time
    /// order (`times` ascending, ranks `rank..`). Same result as [`Acc::add_int`] on each.
    pub fn add_int_run<T: Copy + Ord + Into<i128> + Halves>(
        &mut self,
        agg: Agg,
        xs: &[T],
        unsigned: bool,
        times: &[i64],
        rank: u64,
    ) {
        let (Some(first), Some(last)) = (xs.first(), xs.last()) else {
            return;
        };
        // `times` may be empty for aggregates that ignore them.
        let time = |i: usize| times.get(i).copied().unwrap_or(0);
        let one = |acc: &mut Acc, x: T, i: usize| {
            acc.add_int(agg, x.into(), unsigned, time(i), rank + i as u64);
            acc.count += xs.len() as u64 - 1;
        };
        match agg {
            Agg::Count => self.count += xs.len() as u64,
            Agg::Sum | Agg::Mean => {
                self.count += xs.len() as u64;
                self.has_int = true;
                self.isum += exact_sum(xs);
            }
            Agg::Min => one(self, xs.iter().copied().min().unwrap_or(*first), 0),
            Agg::Max => one(self, xs.iter().copied().max().unwrap_or(*last), 0),
            Agg::First => one(self, *first, 0),
            Agg::Last => one(self, *last, xs.len() - 1),
            Agg::Stddev | Agg::None => {
                for (i, &x) in xs.iter().enumerate() {
                    self.add_int(agg, x.into(), unsigned, time(i), rank + i as u64);
                }
            }
        }
    }

    /// Folds a string or boolean in (count, first, last only; other aggregates ignore it).
    pub fn add_other(&mut self, agg: Agg, v: impl FnOnce() -> Value, time: i64, rank: u64) {
        match agg {
            Agg::Count => self.count += 1,
            Agg::First | Agg::Last => {
                self.count += 1;
                self.stamp(agg, v(), time, rank);
            }
            Agg::Sum | Agg::Mean | Agg::Min | Agg::Max | Agg::Stddev => self.skipped += 1,
            Agg::None => {}
        }
    }

    fn welford(&mut self, x: f64) {
        let n = self.count as f64;
        let d = x - self.mean;
        self.mean += d / n;
        self.m2 += d * (x - self.mean);
    }

    fn stamp(&mut self, agg: Agg, value: Value, time: i64, rank: u64) {
        let s = Stamped { time, rank, value };
        match agg {
            Agg::First => {
                if self.first.as_ref().is_none_or(|f| s.beats(f, true)) {
                    self.first = Some(s);
                }
            }
            _ => {
                if self.last.as_ref().is_none_or(|l| s.beats(l, false)) {
                    self.last = Some(s);
                }
            }
        }
    }

    /// Merges another partial of the same (group, bucket, field).
    pub fn merge(&mut self, o: &Acc) {
        if o.count == 0 {
            self.skipped = self.skipped.saturating_add(o.skipped);
            return;
        }
        let (n1, n2) = (self.count as f64, o.count as f64);
        if n1 == 0.0 {
            self.mean = o.mean;
            self.m2 = o.m2;
        } else {
            let d = o.mean - self.mean;
            let n = n1 + n2;
            self.mean += d * n2 / n;
            self.m2 += o.m2 + d * d * n1 * n2 / n;
        }
        // Partials may come from other nodes: saturate rather than overflow.
        self.count = self.count.saturating_add(o.count);
        neumaier(&mut self.fsum, &mut self.fcomp, o.fsum);
        self.fcomp += o.fcomp;
        self.isum = self.isum.saturating_add(o.isum);
        self.has_float |= o.has_float;
        self.has_int |= o.has_int;
        self.skipped = self.skipped.saturating_add(o.skipped);
        if let Some(m) = &o.min
            && self
                .min
                .as_ref()
                .is_none_or(|s| m.cmp_values(s) == Ordering::Less)
        {
            self.min = Some(m.clone());
        }
        if let Some(m) = &o.max
            && self
                .max
                .as_ref()
                .is_none_or(|s| m.cmp_values(s) == Ordering::Greater)
        {
            self.max = Some(m.clone());
        }
        if let Some(f) = &o.first
            && self.first.as_ref().is_none_or(|s| f.beats(s, true))
        {
            self.first = Some(f.clone());
        }
        if let Some(l) = &o.last
            && self.last.as_ref().is_none_or(|s| l.beats(s, false))
        {
            self.last = Some(l.clone());
        }
    }

    /// The final value, and for first/last the time of the chosen point.
    pub fn finish(&self, agg: Agg) -> (Value, Option<i64>) {
        if self.count == 0 {
            return (
                if agg == Agg::Count {
                    Value::Int(0)
                } else {
                    Value::Null
                },
                None,
            );
        }
        let sum = || -> Value {
            if self.has_float {
                Value::Float(self.fsum + self.fcomp + self.isum as f64)
            } else if let Ok(i) = i64::try_from(self.isum) {
                Value::Int(i)
            } else if let Ok(u) = u64::try_from(self.isum) {
                Value::UInt(u)
            } else {
                Value::Float(self.isum as f64)
            }
        };
        match agg {
            Agg::Count => (Value::Int(self.count as i64), None),
            Agg::Sum if self.has_float || self.has_int => (sum(), None),
            Agg::Mean if self.has_float || self.has_int => {
                let total = if self.has_float {
                    self.fsum + self.fcomp + self.isum as f64
                } else {
                    self.isum as f64
                };
                (Value::Float(total / self.count as f64), None)
            }
            Agg::Min => (self.min.clone().unwrap_or(Value::Null), None),
            Agg::Max => (self.max.clone().unwrap_or(Value::Null), None),
            Agg::First => self
                .first
                .as_ref()
                .map_or((Value::Null, None), |s| (s.value.clone(), Some(s.time))),
            Agg::Last => self
                .last
                .as_ref()
                .map_or((Value::Null, None), |s| (s.value.clone(), Some(s.time))),
            Agg::Stddev if self.count > 1 => (
                Value::Float((self.m2 / (self.count as f64 - 1.0)).sqrt()),
                None,
            ),
            _ => (Value::Null, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold(agg: Agg, xs: &[(i64, f64)]) -> Acc {
        let mut a = Acc::default();
        for (i, (t, x)) in xs.iter().enumerate() {
            a.add_float(agg, *x, *t, i as u64);
        }
        a
    }

    proptest! {
        /// Splitting the input anywhere and merging gives the same answer as one pass.
        #[test]
        fn merge_equals_single_pass(
            xs in prop::collection::vec((0i64..1000, -1e6f64..1e6), 1..60),
            cut in 0usize..60,
        ) {
            let cut = cut.min(xs.len());
            for agg in [Agg::Count, Agg::Sum, Agg::Mean, Agg::Min, Agg::Max, Agg::First, Agg::Last, Agg::Stddev] {
                let whole = fold(agg, &xs).finish(agg);
                let mut left = Acc::default();
                for (i, (t, x)) in xs[..cut].iter().enumerate() { left.add_float(agg, *x, *t, i as u64); }
                let mut right = Acc::default();
                for (i, (t, x)) in xs[cut..].iter().enumerate() { right.add_float(agg, *x, *t, (cut + i) as u64); }
                left.merge(&right);
                let merged = left.finish(agg);
                match (&whole.0, &merged.0) {
                    (Value::Float(a), Value::Float(b)) => {
                        let tol = 1e-9 * a.abs().max(1.0);
                        prop_assert!((a - b).abs() <= tol, "{:?}: {} vs {}", agg, a, b);
                    }
                    (a, b) => prop_assert_eq!(a, b, "{:?}", agg),
                }
                prop_assert_eq!(whole.1, merged.1);
            }
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            (-4i64..4).prop_map(Value::Int),
            (0u64..4).prop_map(Value::UInt),
            prop_oneof![
                Just(-0.0f64),
                Just(0.5),
                Just(2.0),
                Just(-3.5),
                Just(9.007199254740993e15)
            ]
            .prop_map(Value::Float),
            Just(Value::Int(9_007_199_254_740_993)),
            Just(Value::UInt(u64::MAX)),
            "[ab]{0,2}".prop_map(Value::Str),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    proptest! {
        /// `cmp_values` is a total order over any mix of values, so sorting rows by it never
        /// panics (an absent tag is `Null` beside present ones).
        #[test]
        fn cmp_values_is_a_total_order(a in any_value(), b in any_value(), c in any_value()) {
            prop_assert_eq!(a.cmp_values(&b), b.cmp_values(&a).reverse());
            prop_assert_eq!(a.cmp_values(&a), Ordering::Equal);
            if a.cmp_values(&b).is_le() && b.cmp_values(&c).is_le() {
                prop_assert!(a.cmp_values(&c).is_le(), "{:?} {:?} {:?}", a, b, c);
            }
            if a.cmp_values(&b).is_eq() {
                prop_assert_eq!(a.cmp_values(&c), b.cmp_values(&c));
            }
        }
    }

    /// An integer extreme is not replaced by a smaller float (a field stored as integers in
    /// one file and floats in another).
    #[test]
    fn extremes_compare_across_integer_and_float() {
        let mut a = Acc::default();
        a.add_int(Agg::Max, 100, false, 0, 0);
        a.add_float(Agg::Max, 2.5, 1, 1);
        assert_eq!(a.finish(Agg::Max).0, Value::Int(100));
        a.add_float(Agg::Max, 100.5, 2, 2);
        assert_eq!(a.finish(Agg::Max).0, Value::Float(100.5));
        let mut m = Acc::default();
        m.add_int(Agg::Min, -7, false, 0, 0);
        m.add_float(Agg::Min, 2.5, 1, 1);
        assert_eq!(m.finish(Agg::Min).0, Value::Int(-7));
        let v = vec![
            Value::Str("x".into()),
            Value::Null,
            Value::Int(3),
            Value::Float(2.5),
        ];
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.cmp_values(b));
        assert_eq!(
            sorted,
            vec![
                Value::Null,
                Value::Float(2.5),
                Value::Int(3),
                Value::Str("x".into())
            ]
        );
    }

    #[test]
    fn independent_values() {
        let xs = [
            (3, 2.0),
            (1, 4.0),
            (2, 4.0),
            (5, 4.0),
            (4, 5.0),
            (6, 5.0),
            (7, 7.0),
            (8, 9.0),
        ];
        assert_eq!(fold(Agg::Count, &xs).finish(Agg::Count).0, Value::Int(8));
        assert_eq!(fold(Agg::Sum, &xs).finish(Agg::Sum).0, Value::Float(40.0));
        assert_eq!(fold(Agg::Mean, &xs).finish(Agg::Mean).0, Value::Float(5.0));
        assert_eq!(fold(Agg::Min, &xs).finish(Agg::Min).0, Value::Float(2.0));
        assert_eq!(fold(Agg::Max, &xs).finish(Agg::Max).0, Value::Float(9.0));
        assert_eq!(
            fold(Agg::First, &xs).finish(Agg::First),
            (Value::Float(4.0), Some(1))
        );
        assert_eq!(
            fold(Agg::Last, &xs).finish(Agg::Last),
            (Value::Float(9.0), Some(8))
        );
        // Sample standard deviation of 2,4,4,4,5,5,7,9 = sqrt(32/7).
        match fold(Agg::Stddev, &xs).finish(Agg::Stddev).0 {
            Value::Float(s) => assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12),
            v => panic!("{v:?}"),
        }
    }

    proptest! {
        #[test]
        fn exact_sum_equals_an_i128_sum(xs in proptest::collection::vec(any::<i64>(), 0..300),
                                        us in proptest::collection::vec(any::<u64>(), 0..300)) {
            prop_assert_eq!(exact_sum(&xs), xs.iter().map(|&x| x as i128).sum::<i128>());
            prop_assert_eq!(exact_sum(&us), us.iter().map(|&x| x as i128).sum::<i128>());
        }
    }

    #[test]
    fn exact_sum_at_the_extremes() {
        let big = vec![i64::MAX; 1000];
        assert_eq!(exact_sum(&big), i64::MAX as i128 * 1000);
        let small = vec![i64::MIN; 1000];
        assert_eq!(exact_sum(&small), i64::MIN as i128 * 1000);
        let huge = vec![u64::MAX; 1000];
        assert_eq!(exact_sum(&huge), u64::MAX as i128 * 1000);
    }

    #[test]
    fn integer_sums_are_exact() {
        let mut a = Acc::default();
        a.add_int(Agg::Sum, i64::MAX as i128, false, 0, 0);
        a.add_int(Agg::Sum, i64::MAX as i128, false, 1, 1);
        a.add_int(Agg::Sum, -(i64::MAX as i128), false, 2, 2);
        assert_eq!(a.finish(Agg::Sum).0, Value::Int(i64::MAX));
        let mut m = Acc::default();
        m.add_int(Agg::Min, 5, true, 0, 0);
        m.add_int(Agg::Min, 3, true, 0, 1);
        assert_eq!(m.finish(Agg::Min).0, Value::UInt(3));
        let mut c = Acc::default();
        c.add_other(Agg::Count, || Value::Str("x".into()), 0, 0);
        c.add_other(Agg::Last, || Value::Str("y".into()), 5, 1);
        assert_eq!(c.finish(Agg::Last), (Value::Str("y".into()), Some(5)));
        assert_eq!(Acc::default().finish(Agg::Count).0, Value::Int(0));
    }
}
