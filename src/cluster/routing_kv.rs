//! Cluster mode's routing versions, kept in JetStream KV (bucket `MERIDIAN_ROUTING`, key
//! `history`: every version, as `routing::History` JSON).
//!
//! ```text
//!  meridian routing publish ── CAS update (revision) ──▶ KV MERIDIAN_ROUTING/history
//!                                                           │ read every second
//!  every node: compile against its regions.toml ◀───────────┘ → RoutingTable::install,
//!                                                               RoutingTable::confirm
//! ```
//!
//! Invariants:
//! - The history only grows: `publish` appends one version with a compare-and-set on the
//!   entry's revision, so two operators publishing at once cannot lose a version.
//! - A version takes effect no sooner than `cluster.routing_lead` after it is published; a
//!   node confirms the time it last read the history, and routes only points its horizon
//!   covers (`routing::RoutingTable::horizon`). A node that cannot read the history stops
//!   routing new points within three quarters of the lead rather than misroute them.
//! - The first node to start records the config's routing as version 1 (create-if-absent);
//!   afterwards regions.toml's routing is not read, and a node whose config differs from
//!   the latest version says so at start-up.
//!
//! Region *definitions* (each region's `url`, `replicas` and `export`: where its nodes are
//! and what they answer) are a second key, `regions` (`routing::Definitions` JSON). They
//! have no effective time: `publish` replaces them (compare-and-set), and every node puts
//! them in force within a second of reading them, for queries, deletes and the residency
//! rule it enforces. Until some are published, each node uses its regions.toml. A node
//! keeps the definitions it has when newer ones would leave it unable to reach a region
//! (no url for a region it does not host, `https://` without `http.node_ca`, a url with
//! client tokens but no node token), and says why.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::config::{ClusterConfig, Export, RoutingConfig};
use crate::routing::{Definitions, History, HistoryError, Reach, Routing, Rules, Version};

pub const BUCKET: &str = "MERIDIAN_ROUTING";
const KEY: &str = "history";
/// The key of the published region definitions.
const DEFINITIONS_KEY: &str = "regions";
/// How often a node reads the history.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Opens the routing bucket, creating it if it does not exist (idempotent on every node).
pub async fn bucket(js: &jetstream::Context, cfg: &ClusterConfig) -> Result<kv::Store, String> {
    open_bucket(
        js,
        cfg,
        BUCKET,
        "Meridian's routing versions",
        cfg.nats_cluster.as_deref(),
    )
    .await
}

/// Opens a KV bucket, creating it if it does not exist (idempotent on every node), placed
/// in NATS cluster `placed` (`None`: where JetStream puts it). The
/// bucket's stream is made here with the KV conventions (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, roll-ups; no direct gets): the client's own bucket creation first asks
/// for account details that nats-server 2.9 (Debian's) answers in a form it cannot read.
pub async fn open_bucket(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    name: &str,
    description: &str,
    placed: Option<&str>,
) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    super::jetstream::ensure_stream(
        js,
        jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some(description.into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: cfg.replicas,
            allow_rollup: true,
            deny_delete: true,
            // Reads go to the stream's leader: a direct get may be answered by a replica
            // that lags, and a node must not act on an entry older than the latest.
            allow_direct: false,
            discard: jetstream::stream::DiscardPolicy::New,
            placement: placed.map(|c| jetstream::stream::Placement {
                cluster: Some(c.to_string()),
                tags: Vec::new(),
            }),
            ..Default::default()
        },
    )
    .await?;
    js.get_key_value(name)
        .await
        .map_err(|e| format!("opening KV bucket {name}: {e}"))
}

/// The bytes and revision of `key` in the routing bucket; `None` when it holds no value.
async fn read_value(store: &kv::Store, key: &str) -> Result<Option<(Bytes, u64)>, String> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| format!("reading {BUCKET}/{key}: {e}"))?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| (e.value, e.revision)))
}

/// The history and its revision; `None` when no version was recorded yet.
pub async fn read(store: &kv::Store) -> Result<Option<(History, u64)>, String> {
    match read_value(store, KEY).await? {
        Some((bytes, revision)) => {
            let h = decode_history(&bytes)?;
            Ok(Some((h, revision)))
        }
        None => Ok(None),
    }
}

/// Records `rules` as version 1, with the cluster's lead, unless a version exists; returns
/// the history and its revision.
pub async fn seed(
    store: &kv::Store,
    rules: &Rules,
    lead: Duration,
    now_ns: i64,
) -> Result<(History, u64), String> {
    if let Some(found) = read(store).await? {
        return Ok(found);
    }
    let mut first = History::first(rules, now_ns);
    first.lead_ns = Some(nanos(lead));
    match store.create(KEY, encode_history(&first)?).await {
        Ok(revision) => Ok((first, revision)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => read(store)
            .await?
            .ok_or_else(|| format!("{BUCKET}/{KEY} was created and then deleted")),
        Err(e) => Err(format!("recording the first routing version: {e}")),
    }
}

/// Appends `rules` as a version in force from `effective_from` (default: the cluster's
/// lead from now, rounded up to the second), which must be at least the cluster's lead
/// after now (the history's lead; `lead` if it records none), checked against the clock
/// just before the compare-and-set, which must land within a quarter of the lead. Fails if
/// another version was published meanwhile (run it again). `None`: the rules are those of
/// the latest version already; else the version and whether the history is now stored
/// compressed.
pub async fn publish(
    store: &kv::Store,
    rules: &Rules,
    effective_from: Option<i64>,
    lead: Duration,
    max_payload: Option<usize>,
) -> Result<Option<(Version, bool)>, String> {
    let (mut history, revision) = read(store)
        .await?
        .ok_or("no routing version is recorded yet: start a node first")?;
    let lead_ns = history.lead_ns.unwrap_or(nanos(lead));
    let now_ns = crate::catalog::manifest::now_ns();
    // The compare-and-set must land within a quarter of the lead from this clock reading,
    // encoding included.
    let within = Duration::from_nanos(u64::try_from(lead_ns / 4).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + within;
    let effective_from = effective_from.unwrap_or_else(|| {
        let at = now_ns.saturating_add(lead_ns);
        at.saturating_add(999_999_999) / 1_000_000_000 * 1_000_000_000
    });
    if effective_from < now_ns.saturating_add(lead_ns) {
        return Err(format!(
            "a version takes effect at least the cluster's routing lead ({} s, cluster.routing_lead of the first node) after it is published, so that every node knows it in time: {} is sooner",
            lead_ns / 1_000_000_000,
            chrono::DateTime::from_timestamp_nanos(effective_from).to_rfc3339()
        ));
    }
    let version = match history.push(rules, effective_from, now_ns) {
        Ok(v) => v,
        Err(HistoryError::Unchanged(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let bytes = encode_history(&history)?;
    let compressed = bytes.starts_with(&ZSTD_MAGIC);
    if let Some(max) = max_payload
        && bytes.len() > max
    {
        return Err(format!(
            "the routing history would be {} bytes ({} versions{}), more than the NATS servers take in one message (max_payload {max}): raise max_payload on every NATS server",
            bytes.len(),
            history.versions.len(),
            if compressed { ", zstd-compressed" } else { "" },
        ));
    }
    let update = store.update(KEY, bytes, revision);
    match tokio::time::timeout_at(deadline, update).await {
        Ok(Ok(_)) => Ok(Some((version, compressed))),
        Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(
            "another version was published meanwhile: look at it (meridian routing show) and publish again".to_string(),
        ),
        Ok(Err(e)) => Err(format!("publishing the routing version: {e}")),
        Err(_) => Err(format!(
            "NATS did not confirm the version within a quarter of the routing lead ({within:?}): it may or may not be recorded; look with `meridian routing show` before publishing again"
        )),
    }
}

/// The published region definitions and their revision; `None` while none were published.
/// Definitions this build cannot read are an error naming why.
pub async fn read_definitions(store: &kv::Store) -> Result<Option<(Definitions, u64)>, String> {
    match read_value(store, DEFINITIONS_KEY).await? {
        Some((bytes, revision)) => Ok(Some((Definitions::parse(&bytes)?, revision))),
        None => Ok(None),
    }
}

/// Reads the published definitions at start-up and puts them in force (an error only when
/// the bucket cannot be read); says when this node's regions.toml differs from them.
/// Returns the revision read (0: none published).
pub async fn start_definitions(
    store: &kv::Store,
    engine: &crate::region::Engine,
    cfg: &RoutingConfig,
    access: NodeAccess,
) -> Result<u64, String> {
    let Some((bytes, revision)) = read_value(store, DEFINITIONS_KEY).await? else {
        return Ok(0);
    };
    let Some(defs) = take_definitions(engine, &bytes, access, revision) else {
        return Ok(revision);
    };
    let own = Definitions::from_config(cfg, 0);
    let differs = own
        .regions
        .iter()
        .any(|r| defs.get(&r.name).is_some_and(|d| *d != r.reach));
    if differs {
        tracing::warn!(
            revision,
            "the url, replicas or export of this node's regions.toml differ from the cluster's published region definitions, which are in force: publish a change with `meridian routing publish`"
        );
    }
    Ok(revision)
}

/// Publishes `defs` in place of the cluster's (compare-and-set on the revision read, also
/// over definitions this build cannot read); `None` when they define every region as the
/// published ones do already.
pub async fn publish_definitions(
    store: &kv::Store,
    defs: &Definitions,
) -> Result<Option<u64>, String> {
    let current = read_value(store, DEFINITIONS_KEY).await?;
    if let Some((bytes, _)) = &current
        && Definitions::parse(bytes).is_ok_and(|d| d.same_as(defs))
    {
        return Ok(None);
    }
    let raced = || {
        "other region definitions were published meanwhile: look at them (meridian routing show) and publish again".to_string()
    };
    let bytes = Bytes::from(defs.to_json());
    let put = match current {
        Some((_, revision)) => store
            .update(DEFINITIONS_KEY, bytes, revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => raced(),
                _ => format!("publishing the region definitions: {e}"),
            }),
        None => store
            .create(DEFINITIONS_KEY, bytes)
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => raced(),
                _ => format!("publishing the region definitions: {e}"),
            }),
    };
    put.map(Some)
}

/// What this node's own config lets it use of published definitions.
#[derive(Debug, Clone, Copy)]
pub struct NodeAccess {
    /// `http.node_ca` is set: `https://` nodes can be reached.
    pub https: bool,
    /// `auth.tokens` is set and `auth.node_token` is not: this node has no token to ask
    /// other nodes with.
    pub no_node_token: bool,
}

impl NodeAccess {
    pub fn from_config(cfg: &crate::config::Config) -> NodeAccess {
        NodeAccess {
            https: cfg.http.node_ca.is_some(),
            no_node_token: !cfg.http.tokens.is_empty() && cfg.http.node_token.is_none(),
        }
    }
}

/// Why this node cannot use `reach` for a region (`hosted` here or not), if it cannot.
fn unusable(reach: &Reach, hosted: bool, access: NodeAccess) -> Option<String> {
    let urls = reach.urls();
    if !hosted && reach.url.is_none() {
        Some("it is not hosted by this node and would have no url".into())
    } else if !access.https && urls.iter().any(|u| u.starts_with("https://")) {
        Some("it would be reached over HTTPS but this node has no http.node_ca".into())
    } else if access.no_node_token && !urls.is_empty() {
        Some(format!(
            "it would be reached at {} but this node has auth.tokens and no auth.node_token to ask other nodes with",
            urls.join(", ")
        ))
    } else {
        None
    }
}

/// Puts `defs` in force on `engine`'s regions, region by region. A region they define
/// takes their export rule always (residency never waits on reachability), and their url
/// and replicas unless this node could not use them (it keeps its own then); a region they
/// do not define keeps what it has. Returns what was not taken, one line each: urls refused
/// and regions this node does not know.
pub fn install_definitions(
    engine: &crate::region::Engine,
    defs: &Definitions,
    access: NodeAccess,
) -> Vec<String> {
    let mut problems = Vec::new();
    for r in engine.regions() {
        let Some(new) = defs.get(&r.name) else {
            continue;
        };
        let old = r.reach();
        let mut reach = new.clone();
        if let Some(why) = unusable(new, r.hosted(), access) {
            problems.push(format!(
                "region {:?}: url and replicas not taken ({why}); its export rule is",
                &*r.name
            ));
            reach.url = old.url.clone();
            reach.replicas = old.replicas.clone();
        }
        if *old != reach {
            tracing::info!(region = %r.name, url = ?reach.url, replicas = ?reach.replicas, export = ?reach.export, "region definition in force");
            r.set_reach(reach);
        }
    }
    for d in &defs.regions {
        if !engine.regions().iter().any(|r| *r.name == d.name) {
            problems.push(format!(
                "region {:?} is not in this node's regions.toml: not used here",
                d.name
            ));
        }
    }
    problems
}

/// Puts back regions.toml's export rule on every region `defs` does not define (after the
/// hold-back of [`follow`], which restricted them all).
fn restore_undefined(
    engine: &crate::region::Engine,
    defs: Option<&Definitions>,
    cfg: &RoutingConfig,
) {
    for (r, rc) in engine.regions().iter().zip(&cfg.regions) {
        if defs.is_none_or(|d| d.get(&r.name).is_none()) {
            set_export(r, rc.export);
        }
    }
}

/// Puts `export` in force on one region, its url and replicas as they are.
fn set_export(region: &crate::region::RegionHandle, export: Export) {
    let reach = region.reach();
    if reach.export != export {
        let mut changed = (*reach).clone();
        changed.export = export;
        region.set_reach(changed);
    }
}

/// Keeps every region's raw points on this node: what the cluster publishes cannot be read
/// (a newer format, a damaged value), so it may have tightened a region's export rule.
fn restrict_exports(engine: &crate::region::Engine) {
    let tighter = Export::Aggregates {
        min_every_ns: crate::config::DEFAULT_EXPORT_MIN_EVERY_NS,
    };
    for r in engine
        .regions()
        .iter()
        .filter(|r| r.reach().export == Export::Raw)
    {
        tracing::warn!(region = %r.name, "export = \"aggregates\" here until the published region definitions can be read");
        set_export(r, tighter);
    }
}

/// Parses published definitions (`revision`) and puts them in force, logged; `None` when
/// they cannot be read, after [`restrict_exports`].
fn take_definitions(
    engine: &crate::region::Engine,
    bytes: &[u8],
    access: NodeAccess,
    revision: u64,
) -> Option<Definitions> {
    match Definitions::parse(bytes) {
        Ok(defs) => {
            engine
                .metrics()
                .cluster
                .definitions_revision
                .store(revision, std::sync::atomic::Ordering::Relaxed);
            for p in install_definitions(engine, &defs, access) {
                tracing::error!(revision, "published region definitions: {p}");
            }
            Some(defs)
        }
        Err(e) => {
            tracing::error!(revision, error = %e, "the published region definitions cannot be read here: urls stay as they are, and no region's raw points leave this node");
            restrict_exports(engine);
            None
        }
    }
}

/// Histories larger than this are kept zstd-compressed (smaller ones as JSON, readable by
/// eye with the `nats` tool and by builds that predate compression: half of NATS's default
/// max_payload, so that only histories near what such builds could store are compressed).
pub const COMPRESS_ABOVE: usize = 512 << 10;
/// The largest history a node decompresses (a damaged or hostile value must not take its
/// memory): far above what any NATS server's max_payload lets a compressed one expand to
/// with directory entries (about 10:1).
const MAX_HISTORY_BYTES: usize = 256 << 20;
/// zstd's frame magic, little-endian: JSON never starts with it.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The history as stored: JSON, zstd-compressed from [`COMPRESS_ABOVE`] bytes on.
pub fn encode_history(history: &History) -> Result<Bytes, String> {
    let json = history.to_json();
    if json.len() <= COMPRESS_ABOVE {
        return Ok(Bytes::from(json));
    }
    zstd::bulk::compress(&json, 9)
        .map(Bytes::from)
        .map_err(|e| format!("compressing the routing history: {e}"))
}

/// Reads a stored history, compressed or not.
pub fn decode_history(bytes: &[u8]) -> Result<History, String> {
    let history = if bytes.starts_with(&ZSTD_MAGIC) {
        let json = zstd::bulk::decompress(bytes, MAX_HISTORY_BYTES).map_err(|e| {
            format!("the cluster's routing history is not readable (zstd, at most {MAX_HISTORY_BYTES} bytes): {e}")
        })?;
        History::parse(&json)
    } else {
        History::parse(bytes)
    };
    history.map_err(|e| e.to_string())
}

pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Installs `history` in `table` (its versions and the cluster's lead; `lead` if it records
/// none), logging versions this node does not know.
pub fn install(
    engine: &crate::region::Engine,
    history: &History,
    cfg: &RoutingConfig,
    lead: Duration,
) {
    let table = engine.routing_table();
    let routing = Routing::compile(history, cfg);
    for v in &history.versions {
        if let Err(e) = routing.at(v.effective_from) {
            tracing::error!(
                effective_from = %chrono::DateTime::from_timestamp_nanos(v.effective_from).to_rfc3339(),
                "{e}: points of its time are refused here and queries over it ask every region"
            );
        }
    }
    table.set_lead(history.lead_ns.unwrap_or(nanos(lead)));
    let latest = routing.latest();
    table.install(routing);
    engine
        .metrics()
        .cluster
        .routing_version
        .store(latest, std::sync::atomic::Ordering::Relaxed);
}

/// Reads the history every second, forever: installs each newer revision, and confirms
/// the time of every read that found the newest revision seen (never an older one). Reads
/// the region definitions with it, and puts each newer revision in force.
pub async fn follow(
    store: kv::Store,
    engine: Arc<crate::region::Engine>,
    cfg: RoutingConfig,
    lead: Duration,
    mut seen: u64,
    access: NodeAccess,
    mut defs_seen: u64,
) {
    let mut last_error: Option<String> = None;
    let mut defs_error: Option<String> = None;
    // When the definitions were last read, and whether exports are held back for want of
    // a read (see below).
    let mut defs_read_at = std::time::Instant::now();
    let mut held_back = false;
    let mut tick = tokio::time::interval(READ_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = crate::catalog::manifest::now_ns();
        let outcome = match read_value(&store, KEY).await {
            Ok(Some((_, revision))) if revision < seen => Err(format!(
                "{BUCKET}/{KEY} answered revision {revision}, older than {seen} read before"
            )),
            Ok(Some((_, revision))) if revision == seen => Ok(()),
            Ok(Some((bytes, revision))) => match decode_history(&bytes) {
                Ok(history) => {
                    let v = history.latest();
                    tracing::info!(
                        version = v.map_or(0, |v| v.number),
                        effective_from = %v.map_or(String::new(), |v| chrono::DateTime::from_timestamp_nanos(v.effective_from).to_rfc3339()),
                        "a new routing version was read"
                    );
                    install(&engine, &history, &cfg, lead);
                    seen = revision;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Ok(None) => Err(format!("{BUCKET}/{KEY} is missing")),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                engine.routing_table().confirm(started);
                last_error = None;
            }
            Err(e) => report(&mut last_error, e),
        }
        let defs = match read_value(&store, DEFINITIONS_KEY).await {
            // Read again after exports were held back: the published ones come back, and
            // regions they do not define go back to this node's regions.toml.
            Ok(Some((bytes, revision))) if revision > defs_seen || held_back => {
                let taken = take_definitions(&engine, &bytes, access, revision);
                defs_seen = defs_seen.max(revision);
                if held_back && let Some(defs) = taken {
                    restore_undefined(&engine, Some(&defs), &cfg);
                    tracing::info!(
                        "the cluster's region definitions are read again: the published export rules are in force"
                    );
                }
                Ok(())
            }
            // No definitions any more (the key was removed): regions.toml's rules.
            Ok(None) if held_back => {
                restore_undefined(&engine, None, &cfg);
                tracing::info!(
                    "the cluster's region definitions are gone: this node's regions.toml export rules are in force"
                );
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match defs {
            Ok(()) => {
                defs_error = None;
                defs_read_at = std::time::Instant::now();
                held_back = false;
            }
            Err(e) => {
                if defs_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot read the cluster's region definitions; the ones in force stay");
                    defs_error = Some(e);
                }
                // Published definitions may have tightened a region's export meanwhile: a
                // node that has not read them for three quarters of the routing lead (as
                // long as it routes points without reading the versions) keeps every
                // region's raw points in until it reads them again.
                let limit = Duration::from_nanos(
                    u64::try_from(engine.routing_table().lead_ns() / 4 * 3).unwrap_or(0),
                );
                if defs_seen > 0 && !held_back && defs_read_at.elapsed() >= limit {
                    tracing::error!(
                        secs = limit.as_secs(),
                        "the cluster's region definitions could not be read for three quarters of the routing lead: no region's raw points leave this node until they are read again"
                    );
                    restrict_exports(&engine);
                    held_back = true;
                }
            }
        }
    }
}

fn report(last: &mut Option<String>, e: String) {
    if last.as_deref() != Some(e.as_str()) {
        tracing::warn!(error = %e, "cannot read the cluster's routing versions; points past this node's horizon are refused until it can");
        *last = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::DirectoryEntry;

    /// Rules with `n` directory entries (tenants spread over two regions).
    fn rules(n: usize, shift: usize) -> Rules {
        Rules {
            geo_tag: "region".into(),
            lat_tag: "lat".into(),
            lon_tag: "lon".into(),
            default_region: "global".into(),
            regions: Vec::new(),
            directory: (0..n)
                .map(|i| DirectoryEntry {
                    tag: "tenant".into(),
                    value: format!("customer-{i:06}"),
                    region: if (i + shift).is_multiple_of(3) {
                        "eu"
                    } else {
                        "us"
                    }
                    .into(),
                })
                .collect(),
        }
    }

    #[test]
    fn large_histories_are_stored_compressed_and_read_back() {
        // Small (up to half a MiB): JSON as before.
        let small = History::first(&rules(3_000, 0), 1);
        assert!(small.to_json().len() > 64 << 10);
        let bytes = encode_history(&small).unwrap();
        assert_eq!(&bytes[..], &small.to_json()[..]);
        assert_eq!(decode_history(&bytes).unwrap(), small);

        // 20,000 directory entries in each of three versions: 7.3 MB of JSON, which
        // no NATS server with the default max_payload (1 MiB) would take in one message.
        let mut h = History::first(&rules(20_000, 0), 1);
        h.push(&rules(20_000, 1), 10, 2).unwrap();
        h.push(&rules(20_000, 2), 20, 3).unwrap();
        let json = h.to_json().len();
        let bytes = encode_history(&h).unwrap();
        assert!(json > 4 << 20, "{json}");
        assert!(bytes.len() < 1 << 20, "{} of {json}", bytes.len());
        assert!(bytes.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_history(&bytes).unwrap(), h);

        // Damaged: an error, not a panic.
        let mut broken = bytes.to_vec();
        broken.truncate(broken.len() / 2);
        assert!(
            decode_history(&broken)
                .unwrap_err()
                .contains("not readable")
        );
        assert!(decode_history(b"{\"versions\": []}").is_err());
    }
}
