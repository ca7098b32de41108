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

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::config::{ClusterConfig, RoutingConfig};
use crate::routing::{History, HistoryError, Routing, RoutingTable, Rules, Version};

pub const BUCKET: &str = "MERIDIAN_ROUTING";
const KEY: &str = "history";
/// How often a node reads the history.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Opens the routing bucket, creating it if it does not exist (idempotent on every node).
pub async fn bucket(js: &jetstream::Context, cfg: &ClusterConfig) -> Result<kv::Store, String> {
    open_bucket(js, cfg, BUCKET, "Meridian's routing versions").await
}

/// Opens a KV bucket, creating it if it does not exist (idempotent on every node). The
/// bucket's stream is made here with the KV conventions (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, roll-ups; no direct gets): the client's own bucket creation first asks
/// for account details that nats-server 2.9 (Debian's) answers in a form it cannot read.
pub async fn open_bucket(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    name: &str,
    description: &str,
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
            placement: cfg
                .nats_cluster
                .as_ref()
                .map(|c| jetstream::stream::Placement {
                    cluster: Some(c.clone()),
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

/// The history's bytes and revision; `None` when no version was recorded yet.
async fn read_entry(store: &kv::Store) -> Result<Option<(Bytes, u64)>, String> {
    let entry = store
        .entry(KEY)
        .await
        .map_err(|e| format!("reading {BUCKET}/{KEY}: {e}"))?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| (e.value, e.revision)))
}

/// The history and its revision; `None` when no version was recorded yet.
pub async fn read(store: &kv::Store) -> Result<Option<(History, u64)>, String> {
    match read_entry(store).await? {
        Some((bytes, revision)) => {
            let h = History::parse(&bytes).map_err(|err| err.to_string())?;
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
    match store.create(KEY, Bytes::from(first.to_json())).await {
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
/// another version was published meanwhile (run it again).
pub async fn publish(
    store: &kv::Store,
    rules: &Rules,
    effective_from: Option<i64>,
    lead: Duration,
) -> Result<Version, String> {
    let (mut history, revision) = read(store)
        .await?
        .ok_or("no routing version is recorded yet: start a node first")?;
    let lead_ns = history.lead_ns.unwrap_or(nanos(lead));
    let now_ns = crate::catalog::manifest::now_ns();
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
    let version = history
        .push(rules, effective_from, now_ns)
        .map_err(|e| match e {
            HistoryError::Unchanged(n) => format!("nothing to publish: {e} (version {n})"),
            other => other.to_string(),
        })?;
    let within = Duration::from_nanos(u64::try_from(lead_ns / 4).unwrap_or(0));
    let update = store.update(KEY, Bytes::from(history.to_json()), revision);
    match tokio::time::timeout(within, update).await {
        Ok(Ok(_)) => Ok(version),
        Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(
            "another version was published meanwhile: look at it (meridian routing show) and publish again".to_string(),
        ),
        Ok(Err(e)) => Err(format!("publishing the routing version: {e}")),
        Err(_) => Err(format!(
            "NATS did not confirm the version within a quarter of the routing lead ({within:?}): it may or may not be recorded; look with `meridian routing show` before publishing again"
        )),
    }
}

pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Installs `history` in `table` (its versions and the cluster's lead; `lead` if it records
/// none), logging versions this node does not know.
pub fn install(table: &RoutingTable, history: &History, cfg: &RoutingConfig, lead: Duration) {
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
    table.install(routing);
}

/// Reads the history every second, forever: installs each newer revision, and confirms
/// the time of every read that found the newest revision seen (never an older one).
pub async fn follow(
    store: kv::Store,
    engine: Arc<crate::region::Engine>,
    cfg: RoutingConfig,
    lead: Duration,
    mut seen: u64,
) {
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(READ_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = crate::catalog::manifest::now_ns();
        let outcome = match read_entry(&store).await {
            Ok(Some((_, revision))) if revision < seen => Err(format!(
                "{BUCKET}/{KEY} answered revision {revision}, older than {seen} read before"
            )),
            Ok(Some((_, revision))) if revision == seen => Ok(()),
            Ok(Some((bytes, revision))) => match History::parse(&bytes) {
                Ok(history) => {
                    let v = history.latest();
                    tracing::info!(
                        version = v.map_or(0, |v| v.number),
                        effective_from = %v.map_or(String::new(), |v| chrono::DateTime::from_timestamp_nanos(v.effective_from).to_rfc3339()),
                        "a new routing version was read"
                    );
                    install(engine.routing_table(), &history, &cfg, lead);
                    seen = revision;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
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
    }
}

fn report(last: &mut Option<String>, e: String) {
    if last.as_deref() != Some(e.as_str()) {
        tracing::warn!(error = %e, "cannot read the cluster's routing versions; points past this node's horizon are refused until it can");
        *last = Some(e);
    }
}
