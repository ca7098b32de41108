//! Routing versions: the rules that route a point are those in force at the point's time.
//!
//! A change of routing (a `[directory]` entry moved, a region's geography changed, a region
//! added) is a new *version* with an effective time, a data time in ns. Every point is
//! routed by the version in force at its own timestamp, whenever it is written:
//!
//! ```text
//!   versions:   v1 ─────────────────────┬ v2 (effective 2026-12-07T00:00Z) ────────▶
//!   point time: ..... 2026-12-06T23:10 ─┼─ 2026-12-07T00:05 .....
//!   routed by:  v1 (tenant acme → americas)  v2 (tenant acme → eu)
//! ```
//!
//! So a point rewritten after a change goes where its first write went (last write wins
//! holds across a move), and a query reads, for each span of time it covers, the regions of
//! the version in force over that span (data written before a change is still found).
//!
//! Invariants:
//! - Versions are numbered 1, 2, … and their effective times strictly increase; the first
//!   is effective from the beginning of time. A version is never edited once recorded.
//! - A version this node cannot read (a newer format, a region its regions.toml lacks) is
//!   *unknown*: points at or after its effective time are refused, not routed by an older
//!   version, and queries over its span ask every region.
//! - In cluster mode a version takes effect at least `cluster.routing_lead` after it was
//!   published (`meridian routing publish`); a node that read the cluster's versions at
//!   time C knows every version effective before C + lead, and refuses points after that
//!   (see [`Horizon`]) rather than route them by a version that may be outdated.
//!
//! Where versions are kept is the caller's business: `<data_dir>/routing.json` in
//! single-node mode (a version is recorded at start-up when regions.toml's routing
//! changed), JetStream KV in cluster mode (`cluster::jetstream`).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::{BBox, Export, RegionConfig, RoutingConfig};
use crate::router::Router;

/// The format of [`Rules`] this build reads and writes.
pub const FORMAT: u32 = 1;

/// The routing rules of one version, by region name (indices differ between configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub geo_tag: String,
    pub lat_tag: String,
    pub lon_tag: String,
    pub default_region: String,
    /// Geography per region, in precedence order.
    pub regions: Vec<RegionRules>,
    /// `tag=value → region` overrides, sorted by `tag=value`.
    pub directory: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRules {
    pub name: String,
    #[serde(default)]
    pub tag_values: Vec<String>,
    #[serde(default)]
    pub bbox: Vec<BBox>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    pub tag: String,
    pub value: String,
    pub region: String,
}

impl Rules {
    /// The rules a validated config describes.
    pub fn from_config(cfg: &RoutingConfig) -> Rules {
        let name = |i: usize| cfg.regions[i].name.clone();
        let mut directory: Vec<DirectoryEntry> = cfg
            .directory
            .iter()
            .map(|(tag, value, r)| DirectoryEntry {
                tag: tag.clone(),
                value: value.clone(),
                region: name(*r),
            })
            .collect();
        directory.sort_by(|a, b| (&a.tag, &a.value).cmp(&(&b.tag, &b.value)));
        Rules {
            geo_tag: cfg.geo_tag.clone(),
            lat_tag: cfg.lat_tag.clone(),
            lon_tag: cfg.lon_tag.clone(),
            default_region: name(cfg.default_region),
            regions: cfg
                .regions
                .iter()
                .map(|r| RegionRules {
                    name: r.name.clone(),
                    tag_values: r.tag_values.clone(),
                    bbox: r.bbox.clone(),
                })
                .collect(),
            directory,
        }
    }
}

/// One recorded version. `rules` stays JSON until read, so that a version of a newer
/// format is carried (and refused) rather than failing the whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub number: u64,
    pub format: u32,
    /// Points at or after this time (ns since the epoch) are routed by this version
    /// (`i64::MIN` for the first).
    pub effective_from: i64,
    /// When it was recorded (ns since the epoch, the recorder's clock), for operators.
    pub recorded_at: i64,
    pub rules: serde_json::Value,
}

/// Every version, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub versions: Vec<Version>,
    /// Cluster mode: the lead (ns) every version is published ahead of its effective time,
    /// recorded with the first version so that publishers and nodes use one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_ns: Option<i64>,
}

/// Why a version cannot be recorded after the others.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistoryError {
    #[error(
        "version {number} would take effect at {effective_from} ns, not after version {last} ({last_from} ns): versions take effect in order"
    )]
    NotAfter {
        number: u64,
        effective_from: i64,
        last: u64,
        last_from: i64,
    },
    #[error("the routing is unchanged: it is version {0} already")]
    Unchanged(u64),
    #[error("the cluster's routing history is not readable: {0}")]
    Unreadable(String),
}

impl History {
    /// A history of one version: `rules` from the beginning of time.
    pub fn first(rules: &Rules, now_ns: i64) -> History {
        History {
            versions: vec![Version {
                number: 1,
                format: FORMAT,
                effective_from: i64::MIN,
                recorded_at: now_ns,
                rules: rules_json(rules),
            }],
            lead_ns: None,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<History, HistoryError> {
        let h: History =
            serde_json::from_slice(bytes).map_err(|e| HistoryError::Unreadable(e.to_string()))?;
        let ordered = h
            .versions
            .windows(2)
            .all(|w| w[1].number == w[0].number + 1 && w[1].effective_from > w[0].effective_from);
        if h.versions.is_empty() || !ordered {
            return Err(HistoryError::Unreadable(
                "versions must be numbered 1, 2, … with increasing effective times".into(),
            ));
        }
        Ok(h)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// Records `rules` as the next version, in force from `effective_from`.
    pub fn push(
        &mut self,
        rules: &Rules,
        effective_from: i64,
        now_ns: i64,
    ) -> Result<Version, HistoryError> {
        let number = self.latest().map_or(1, |v| v.number.saturating_add(1));
        if let Some(last) = self.latest() {
            if last.format == FORMAT
                && serde_json::from_value::<Rules>(last.rules.clone())
                    .ok()
                    .as_ref()
                    == Some(rules)
            {
                return Err(HistoryError::Unchanged(last.number));
            }
            if effective_from <= last.effective_from {
                return Err(HistoryError::NotAfter {
                    number,
                    effective_from,
                    last: last.number,
                    last_from: last.effective_from,
                });
            }
        }
        let v = Version {
            number,
            format: FORMAT,
            effective_from,
            recorded_at: now_ns,
            rules: rules_json(rules),
        };
        self.versions.push(v.clone());
        Ok(v)
    }
}

fn rules_json(rules: &Rules) -> serde_json::Value {
    serde_json::to_value(rules).unwrap_or(serde_json::Value::Null)
}

/// How a region is reached and what its nodes let other nodes ask: its `url` (the node
/// asked first), `replicas` (asked when that one fails) and `export` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reach {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub replicas: Vec<String>,
    pub export: Export,
}

impl Reach {
    pub fn from_config(r: &RegionConfig) -> Reach {
        Reach {
            url: r.url.clone(),
            replicas: r.replicas.clone(),
            export: r.export,
        }
    }

    /// The nodes to ask, in order: the url, then the replicas.
    pub fn urls(&self) -> Vec<String> {
        self.url.iter().chain(&self.replicas).cloned().collect()
    }
}

/// The format of [`Definitions`] this build reads and writes.
pub const DEFINITIONS_FORMAT: u32 = 1;

/// Cluster mode: every region's [`Reach`], as published with `meridian routing publish`.
/// Unlike routing versions they have no effective time: they say where a region's nodes
/// are, and what they answer, from now on, and every node uses them once it reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    pub format: u32,
    /// When they were published (ns since the epoch, the publisher's clock), for operators.
    pub recorded_at: i64,
    /// By region name, in the publisher's config order.
    pub regions: Vec<RegionDefinition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionDefinition {
    pub name: String,
    pub reach: Reach,
}

impl Definitions {
    /// The definitions a validated config describes.
    pub fn from_config(cfg: &RoutingConfig, now_ns: i64) -> Definitions {
        Definitions {
            format: DEFINITIONS_FORMAT,
            recorded_at: now_ns,
            regions: cfg
                .regions
                .iter()
                .map(|r| RegionDefinition {
                    name: r.name.clone(),
                    reach: Reach::from_config(r),
                })
                .collect(),
        }
    }

    /// Reads and checks published definitions: a format this build knows, each region
    /// named once, urls that are http(s), replicas only after a url, a positive minimum
    /// bucket.
    pub fn parse(bytes: &[u8]) -> Result<Definitions, String> {
        let d: Definitions = serde_json::from_slice(bytes)
            .map_err(|e| format!("the region definitions are not readable: {e}"))?;
        if d.format != DEFINITIONS_FORMAT {
            return Err(format!(
                "the region definitions are in format {}, this build reads format {DEFINITIONS_FORMAT}",
                d.format
            ));
        }
        let mut names = std::collections::HashSet::new();
        for r in &d.regions {
            let bad = |why: String| format!("region {:?}: {why}", r.name);
            if !names.insert(r.name.as_str()) {
                return Err(bad("defined twice".into()));
            }
            for u in r.reach.url.iter().chain(&r.reach.replicas) {
                crate::config::check_node_url(u).map_err(bad)?;
            }
            if !r.reach.replicas.is_empty() && r.reach.url.is_none() {
                return Err(bad("replicas need a url too (the node asked first)".into()));
            }
            if let Export::Aggregates { min_every_ns } = r.reach.export
                && min_every_ns <= 0
            {
                return Err(bad(format!(
                    "export_min_every {min_every_ns} ns is not positive"
                )));
            }
        }
        Ok(d)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn get(&self, region: &str) -> Option<&Reach> {
        self.regions
            .iter()
            .find(|r| r.name == region)
            .map(|r| &r.reach)
    }

    /// Whether both define the same regions the same way (the time aside).
    pub fn same_as(&self, other: &Definitions) -> bool {
        self.regions == other.regions
    }
}

/// A version this node cannot route by.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    pub number: u64,
    pub why: String,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "routing version {} is not known here: {}",
            self.number, self.why
        )
    }
}

struct Span {
    from: i64,
    router: Result<Router, Unknown>,
}

/// A history compiled against this node's regions: the router in force at any time.
pub struct Routing {
    /// By `from`, ascending; the first from `i64::MIN`.
    spans: Vec<Span>,
    latest: u64,
}

impl Routing {
    /// One version, the config's own (a data dir with no history yet, tests).
    pub fn from_config(cfg: &RoutingConfig) -> Result<Routing, String> {
        Ok(Routing {
            spans: vec![Span {
                from: i64::MIN,
                router: Ok(Router::new(cfg)?),
            }],
            latest: 1,
        })
    }

    /// Nothing routable yet (cluster mode before the history was read): every point is
    /// refused with `why`, every query asks every region.
    pub fn unknown(why: &str) -> Routing {
        Routing {
            spans: vec![Span {
                from: i64::MIN,
                router: Err(Unknown {
                    number: 0,
                    why: why.to_string(),
                }),
            }],
            latest: 0,
        }
    }

    /// Compiles every version against this node's config (its regions and their order,
    /// its partition duration).
    pub fn compile(history: &History, cfg: &RoutingConfig) -> Routing {
        let spans = history
            .versions
            .iter()
            .map(|v| Span {
                from: v.effective_from,
                router: compile_version(v, cfg).map_err(|why| Unknown {
                    number: v.number,
                    why,
                }),
            })
            .collect();
        Routing {
            spans,
            latest: history.latest().map_or(0, |v| v.number),
        }
    }

    /// The number of the latest version.
    pub fn latest(&self) -> u64 {
        self.latest
    }

    pub fn version_count(&self) -> usize {
        self.spans.len()
    }

    /// The index of the span in force at `ts`.
    pub fn span_at(&self, ts: i64) -> usize {
        self.spans
            .partition_point(|s| s.from <= ts)
            .saturating_sub(1)
    }

    /// The span at `index`: its router, and the time its successor takes over.
    pub fn span(&self, index: usize) -> (Result<&Router, &Unknown>, i64) {
        let s = &self.spans[index.min(self.spans.len() - 1)];
        let until = self.spans.get(index + 1).map_or(i64::MAX, |n| n.from);
        (s.router.as_ref(), until)
    }

    /// The router in force at `ts`.
    pub fn at(&self, ts: i64) -> Result<&Router, &Unknown> {
        self.span(self.span_at(ts)).0
    }

    /// Every router in force at some time of `[lo, hi)`; `None` when one of them is unknown
    /// here (the caller must then assume any region).
    pub fn over(&self, lo: i64, hi: i64) -> Option<Vec<&Router>> {
        let first = self.span_at(lo);
        let mut out = Vec::new();
        for i in first..self.spans.len() {
            if i > first && self.spans[i].from >= hi {
                break;
            }
            out.push(self.spans[i].router.as_ref().ok()?);
        }
        Some(out)
    }
}

fn compile_version(v: &Version, cfg: &RoutingConfig) -> Result<Router, String> {
    if v.format != FORMAT {
        return Err(format!(
            "its format is {}, this build reads format {FORMAT}: upgrade this node",
            v.format
        ));
    }
    let rules: Rules = serde_json::from_value(v.rules.clone())
        .map_err(|e| format!("its rules are not readable: {e}"))?;
    Router::from_rules(&rules, cfg)
}

/// The routing of this node, replaced whole when a version is added, and in cluster mode
/// the last time the cluster's versions were read.
pub struct RoutingTable {
    current: RwLock<Arc<Routing>>,
    /// ns since the epoch; `i64::MAX` when nothing needs confirming (single-node mode).
    confirmed_ns: AtomicI64,
    /// The cluster's routing lead (ns, see [`History::lead_ns`]); 0 in single-node mode.
    lead_ns: AtomicI64,
}

/// How far ahead a node may route points (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Horizon {
    /// A point after this is too far in the future of this node's clock: a bad line.
    pub future_limit: i64,
    /// Points up to this are routed by versions this node knows; later ones may be routed
    /// by a version published since the node last read the versions: refused for now.
    pub known_until: i64,
}

impl Horizon {
    /// No bound (single-node mode, or rows another node routed already).
    pub const NONE: Horizon = Horizon {
        future_limit: i64::MAX,
        known_until: i64::MAX,
    };
}

impl RoutingTable {
    /// Single-node mode: every version is known, no horizon.
    pub fn local(routing: Routing) -> RoutingTable {
        RoutingTable {
            current: RwLock::new(Arc::new(routing)),
            confirmed_ns: AtomicI64::new(i64::MAX),
            lead_ns: AtomicI64::new(0),
        }
    }

    /// Cluster mode: nothing routable until [`RoutingTable::install`] and
    /// [`RoutingTable::confirm`].
    pub fn cluster(lead_ns: i64) -> RoutingTable {
        RoutingTable {
            current: RwLock::new(Arc::new(Routing::unknown(
                "the cluster's routing was not read from NATS yet",
            ))),
            confirmed_ns: AtomicI64::new(i64::MIN),
            lead_ns: AtomicI64::new(lead_ns),
        }
    }

    pub fn current(&self) -> Arc<Routing> {
        self.current.read().clone()
    }

    pub fn install(&self, routing: Routing) {
        *self.current.write() = Arc::new(routing);
    }

    /// The versions were read whole at `at_ns` (this node's clock). Call it after
    /// [`RoutingTable::install`]: a reader that sees this confirmation (Acquire) then reads
    /// versions at least as new.
    pub fn confirm(&self, at_ns: i64) {
        self.confirmed_ns.fetch_max(at_ns, AcqRel);
    }

    pub fn confirmed_ns(&self) -> i64 {
        self.confirmed_ns.load(Acquire)
    }

    /// The cluster's lead, as its history records it.
    pub fn set_lead(&self, lead_ns: i64) {
        self.lead_ns.store(lead_ns, Relaxed);
    }

    pub fn lead_ns(&self) -> i64 {
        self.lead_ns.load(Relaxed)
    }

    /// Whether a query at `now_ns` may prune regions by the versions known here: in cluster
    /// mode only while no point can exist past this node's horizon (versions read within
    /// half the lead), else a version not read yet may have routed points elsewhere.
    pub fn prunable(&self, now_ns: i64) -> bool {
        let h = self.horizon(now_ns);
        h.known_until >= h.future_limit
    }

    /// The horizon of a write received at `now_ns`. A version is published at least a lead
    /// before it takes effect; a quarter of the lead is left for the clocks of the
    /// publisher and this node to disagree, a quarter for points stamped ahead of this
    /// clock.
    pub fn horizon(&self, now_ns: i64) -> Horizon {
        let confirmed = self.confirmed_ns.load(Acquire);
        if confirmed == i64::MAX {
            return Horizon::NONE;
        }
        let lead = self.lead_ns();
        let future_limit = now_ns.saturating_add(lead / 4);
        if confirmed == i64::MIN {
            return Horizon {
                future_limit,
                known_until: i64::MIN,
            };
        }
        Horizon {
            future_limit,
            known_until: confirmed.saturating_add(lead - lead / 4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::RegionId;

    fn cfg(directory: &str) -> Config {
        let text = format!(
            r#"
data_dir = "d"
partition_duration = "1h"
default_region = "global"
[[region]]
name = "us"
tag_values = ["us-*"]
[[region]]
name = "eu"
tag_values = ["eu-*"]
[[region]]
name = "global"
[directory]
{directory}
"#
        );
        Config::parse(&text).unwrap()
    }

    fn history(changes: &[(&str, i64)]) -> (History, Config) {
        let base = cfg("");
        let mut h = History::first(&Rules::from_config(&base.routing), 0);
        for (dir, from) in changes {
            h.push(&Rules::from_config(&cfg(dir).routing), *from, 0)
                .unwrap();
        }
        (h, base)
    }

    #[test]
    fn points_are_routed_by_the_version_in_force_at_their_time() {
        let (h, base) = history(&[("\"tenant=acme\" = \"eu\"", 1000), ("", 2000)]);
        let r = Routing::compile(&h, &base.routing);
        let acme = [("region", "us-east-1"), ("tenant", "acme")];
        let route = |ts| r.at(ts).unwrap().route(&acme).0;
        assert_eq!(route(i64::MIN), RegionId(0));
        assert_eq!(route(999), RegionId(0));
        assert_eq!(route(1000), RegionId(1));
        assert_eq!(route(1999), RegionId(1));
        assert_eq!(route(2000), RegionId(0));
        assert_eq!(route(i64::MAX), RegionId(0));
        assert_eq!(r.over(0, 1000).unwrap().len(), 1);
        assert_eq!(r.over(0, 1001).unwrap().len(), 2);
        assert_eq!(r.over(1500, i64::MAX).unwrap().len(), 2);
        assert_eq!(r.over(2000, 2001).unwrap().len(), 1);
    }

    #[test]
    fn a_version_naming_a_region_this_node_lacks_is_unknown_from_its_time() {
        let mut h = History::first(&Rules::from_config(&cfg("").routing), 0);
        let mut rules = Rules::from_config(&cfg("").routing);
        rules.directory.push(DirectoryEntry {
            tag: "tenant".into(),
            value: "acme".into(),
            region: "mars".into(),
        });
        h.push(&rules, 5000, 0).unwrap();
        let r = Routing::compile(&h, &cfg("").routing);
        assert!(r.at(4999).is_ok());
        let e = r.at(5000).err().unwrap();
        assert_eq!(e.number, 2);
        assert!(e.why.contains("mars"), "{}", e.why);
        assert!(r.over(0, 4000).is_some());
        assert!(r.over(0, 6000).is_none());
        // A newer format is carried and refused too.
        let mut h2 = h.clone();
        h2.versions[1].format = FORMAT + 1;
        let r = Routing::compile(&History::parse(&h2.to_json()).unwrap(), &cfg("").routing);
        assert!(r.at(5000).err().unwrap().why.contains("format"));
    }

    #[test]
    fn versions_take_effect_in_order_and_unchanged_rules_are_not_recorded() {
        let (mut h, base) = history(&[("\"tenant=acme\" = \"eu\"", 1000)]);
        let same = Rules::from_config(&cfg("\"tenant=acme\" = \"eu\"").routing);
        assert_eq!(
            h.push(&same, 5000, 0).unwrap_err(),
            HistoryError::Unchanged(2)
        );
        let back = Rules::from_config(&base.routing);
        assert!(matches!(
            h.push(&back, 1000, 0).unwrap_err(),
            HistoryError::NotAfter { .. }
        ));
        let parsed = History::parse(&h.to_json()).unwrap();
        assert_eq!(parsed, h);
        let mut bad = h.clone();
        bad.versions[1].effective_from = i64::MIN;
        assert!(History::parse(&bad.to_json()).is_err());
        assert!(History::parse(b"{\"versions\":[]}").is_err());
        assert!(History::parse(b"not json").is_err());
    }

    #[test]
    fn the_horizon_leaves_a_quarter_lead_for_clocks_and_one_for_the_future() {
        let t = RoutingTable::cluster(400);
        assert_eq!(t.horizon(1000).known_until, i64::MIN);
        t.confirm(1000);
        t.confirm(900);
        let h = t.horizon(1010);
        assert_eq!(h.future_limit, 1110);
        assert_eq!(h.known_until, 1300);
        assert_eq!(
            RoutingTable::local(Routing::unknown("x")).horizon(5),
            Horizon::NONE
        );
    }

    proptest::proptest! {
        /// Against a model: the version in force at t is the last one whose effective time
        /// is ≤ t, and `over` lists exactly the versions with a time inside the range.
        #[test]
        fn the_version_at_a_time_matches_a_model(
            mut froms in proptest::collection::btree_set(-1000i64..1000, 0..6),
            ts in -1200i64..1200,
            len in 1i64..800,
        ) {
            let base = cfg("");
            let mut h = History::first(&Rules::from_config(&base.routing), 0);
            froms.retain(|f| *f > i64::MIN);
            for (i, from) in froms.iter().enumerate() {
                let mut rules = Rules::from_config(&base.routing);
                rules.directory.push(DirectoryEntry {
                    tag: "v".into(),
                    value: i.to_string(),
                    region: "eu".into(),
                });
                h.push(&rules, *from, 0).unwrap();
            }
            let r = Routing::compile(&h, &base.routing);
            let model = h.versions.iter().filter(|v| v.effective_from <= ts).count() - 1;
            proptest::prop_assert_eq!(r.span_at(ts), model);
            let expected = h
                .versions
                .iter()
                .enumerate()
                .filter(|(i, v)| {
                    let until = h.versions.get(i + 1).map_or(i64::MAX, |n| n.effective_from);
                    v.effective_from < ts + len && until > ts
                })
                .count();
            proptest::prop_assert_eq!(r.over(ts, ts + len).unwrap().len(), expected);
        }
    }

    #[test]
    fn region_definitions_read_back_and_bad_ones_are_refused() {
        let mut c = cfg("");
        c.routing.regions[1].url = Some("http://10.0.0.2:8086".into());
        c.routing.regions[1].replicas = vec!["https://10.0.0.3:8086".into()];
        c.routing.regions[1].export = Export::Raw;
        let defs = Definitions::from_config(&c.routing, 7);
        let back = Definitions::parse(&defs.to_json()).unwrap();
        assert_eq!(back, defs);
        let eu = back.get("eu").unwrap();
        assert_eq!(
            eu.urls(),
            vec!["http://10.0.0.2:8086", "https://10.0.0.3:8086"]
        );
        assert_eq!(
            back.get("us").unwrap().export,
            Export::Aggregates {
                min_every_ns: 60_000_000_000
            }
        );
        assert_eq!(back.get("mars"), None);
        // Published at another time, the same definitions.
        assert!(Definitions::from_config(&c.routing, 8).same_as(&defs));
        c.routing.regions[0].export = Export::Raw;
        assert!(!Definitions::from_config(&c.routing, 7).same_as(&defs));

        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&defs).unwrap();
            f(&mut v);
            Definitions::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err()
        };
        let eu = |v: &mut serde_json::Value| v["regions"][1]["reach"].take();
        let cases: Vec<(String, &str)> = vec![
            (edit(&|v| v["format"] = 2.into()), "format 2"),
            (
                edit(&|v| v["regions"][0]["name"] = "eu".into()),
                "defined twice",
            ),
            (
                edit(&|v| {
                    let mut r = eu(v);
                    r["url"] = "ftp://x".into();
                    v["regions"][1]["reach"] = r;
                }),
                "must start with http",
            ),
            (
                edit(&|v| {
                    let mut r = eu(v);
                    r["url"] = serde_json::Value::Null;
                    v["regions"][1]["reach"] = r;
                }),
                "replicas need a url",
            ),
            (
                edit(&|v| {
                    v["regions"][0]["reach"]["export"] =
                        serde_json::json!({"aggregates": {"min_every_ns": 0}});
                }),
                "not positive",
            ),
            (
                edit(&|v| v["regions"][1]["reach"]["export"] = "everything".into()),
                "not readable",
            ),
        ];
        for (err, want) in cases {
            assert!(err.contains(want), "{err} (want {want})");
        }
    }
}
