//! Cluster mode: every write travels through NATS JetStream.
//!
//! ```text
//!  node that receives a body              JetStream                     nodes hosting region r
//!  ─────────────────────────             ─────────                     ──────────────────────
//!  check + route (prepare)
//!  one message, every part  ──▶ MERIDIAN_IN  meridian.in.body.<node>
//!  204 once JetStream acks                   │
//!  splitter (same node, in order) ◀──────────┘
//!    a message per region   ──▶ MERIDIAN_IN  meridian.in.part.<r>
//!    then purges the bodies                  │ sourced by JetStream (store-and-forward)
//!                                            ▼
//!                               MERIDIAN_R_<r>  (the region's log) ──▶ applier: commit to the
//!                                                                     WAL, then record the
//!                                                                     stream sequence
//! ```
//!
//! With `[cluster] site`, the intake is the site's own `MERIDIAN_IN_<site>` (subjects
//! `meridian.site.<site>.…`, placed in that NATS cluster) instead of the one `MERIDIAN_IN`,
//! and each region's stream sources every site's intake ([`Intake`]).
//!
//! Invariants:
//! - A body is one JetStream message: it is stored whole or not at all, and the client hears
//!   204 only once JetStream acknowledged it (`cluster.publish_timeout` bounds the wait).
//!   While the connection to NATS is down nothing is published (503 at once). A body carries
//!   a deadline (`Meridian-Deadline`: sent + `publish_timeout` + [`CLOCK_MARGIN`]); one that
//!   JetStream stored after it (its sender answered 503) is dropped by the splitter.
//! - Parts of one node's bodies reach a region's log in the order the bodies were
//!   acknowledged: the splitter reads its node's bodies with an ordered consumer, keeps one
//!   message per region in flight (the next is sent only once the one before it was
//!   acknowledged, so a lost message is never overtaken), and purges the bodies only after
//!   every part was acknowledged; after a failure it starts again from the oldest body left.
//! - Each part carries its body's sequence, and an applier records per node the last body
//!   it applied: a part published again after a failure is skipped, whenever it comes.
//! - A region's log is moved into a region's stream by JetStream's own sourcing, so a region
//!   whose stream is unreachable gets its parts when it returns (within `cluster.max_age`),
//!   with no Meridian retry.
//! - An applier commits messages to the node's WAL (durable) before it records their stream
//!   sequence and the bodies' (`<data_dir>/cluster/<region>.applied`), and starts after the
//!   recorded sequence, skipping any message at or below it. A crash in between applies the
//!   last messages again, in order: a point written twice with the same value changes
//!   nothing (last write wins), so queries never double count.
//! - What comes from the network is bounded: a part is decompressed only if it declares a
//!   size of at most twice `http.max_body_bytes`; an unreadable message or part is skipped
//!   and counted (`meridian_cluster_messages_unreadable_total`), never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;

use super::routing_kv;
use super::wire::{MessageWriter, parse};
use super::{Dispatch, DispatchError, DispatchFuture, WriteDispatch};
use crate::config::{ClusterConfig, RoutingConfig};
use crate::model::RegionId;
use crate::region::Engine;
use crate::routing::Rules;

/// The stream every node publishes bodies (and the splitters parts) to.
pub const IN_STREAM: &str = "MERIDIAN_IN";
/// Messages read at once by a splitter or an applier (bytes as stored: compressed).
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 16 << 20;
/// How much later than its sender gave up a body may still be stored and split: covers the
/// clocks of the nodes and the NATS servers disagreeing by up to this much.
const CLOCK_MARGIN: Duration = Duration::from_secs(2);
/// The header that carries a body's deadline (Unix ns): stored later, it is never split.
const DEADLINE_HEADER: &str = "Meridian-Deadline";
/// A region's message is sent once it holds this much (NATS handles messages of a few
/// MiB best: larger ones cost the server more CPU than they save in round trips).
const REGION_MESSAGE_BYTES: usize = 2 << 20;
/// Room left in `max_payload` for a message's headers.
const HEADERS_ROOM: usize = 1024;
/// How long a splitter or applier waits for messages before it checks that it is not
/// stuck behind a lost server.
const STALL_CHECK: Duration = Duration::from_secs(3);
/// Wait after a failure before a splitter or applier starts again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often a node checks that every region stream sources its intake (a concurrent
/// update by a node of another site can drop it).
const SOURCES_CHECK: Duration = Duration::from_secs(10);

/// The stream holding region `r`'s log.
pub fn region_stream(region: &str) -> String {
    format!("MERIDIAN_R_{region}")
}

/// Where bodies wait to be split: the one `MERIDIAN_IN` (subjects `meridian.in.…`), or a
/// site's own `MERIDIAN_IN_<site>` (subjects `meridian.site.<site>.…`, placed in the NATS
/// cluster of that name) when nodes give `[cluster] site`.
#[derive(Debug, Clone, PartialEq)]
pub struct Intake {
    pub stream: String,
    prefix: String,
    site: Option<String>,
}

impl Intake {
    pub fn of(site: Option<&str>) -> Intake {
        match site {
            None => Intake {
                stream: IN_STREAM.into(),
                prefix: "meridian.in".into(),
                site: None,
            },
            Some(s) => Intake {
                stream: format!("{IN_STREAM}_{s}"),
                prefix: format!("meridian.site.{s}"),
                site: Some(s.to_string()),
            },
        }
    }

    /// The intake a stream name stands for (`None`: not an intake stream).
    pub fn from_stream(name: &str) -> Option<Intake> {
        match name.strip_prefix(IN_STREAM)? {
            "" => Some(Intake::of(None)),
            // A site is a name as `cluster.site` allows (another stream named alike is not
            // an intake).
            rest => {
                let site = rest.strip_prefix('_')?;
                crate::config::check_node_name(site).ok()?;
                Some(Intake::of(Some(site)))
            }
        }
    }

    fn subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }

    fn body_subject(&self, node: &str) -> String {
        format!("{}.body.{node}", self.prefix)
    }

    /// The node a body's subject names (the subject itself if it is not a body's).
    fn body_node<'s>(&self, subject: &'s str) -> &'s str {
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix(".body."))
            .unwrap_or(subject)
    }

    fn bodies(&self) -> String {
        format!("{}.body.>", self.prefix)
    }

    fn part_subject(&self, region: &str) -> String {
        format!("{}.part.{region}", self.prefix)
    }

    /// The region stream's source of this intake's parts.
    fn source(&self, region: &str) -> stream::Source {
        stream::Source {
            name: self.stream.clone(),
            filter_subject: Some(self.part_subject(region)),
            ..Default::default()
        }
    }
}

/// The JetStream write path of one node.
pub struct JetStream {
    js: jetstream::Context,
    node: String,
    engine: Arc<Engine>,
    publish_timeout: Duration,
    /// Largest message the NATS servers accept.
    max_payload: usize,
    /// Largest part an applier decompresses (twice `http.max_body_bytes`).
    max_part: usize,
    applied_dir: PathBuf,
    next_id: AtomicU64,
    id_base: i64,
    /// The routing versions (KV), read every second by [`routing_kv::follow`].
    routing_store: async_nats::jetstream::kv::Store,
    routing_cfg: RoutingConfig,
    routing_lead: Duration,
    /// The revision of the versions read at start-up.
    routing_revision: u64,
    /// The revision of the region definitions read at start-up (0: none published).
    definitions_revision: u64,
    /// What this node's config lets it use of published definitions.
    access: routing_kv::NodeAccess,
    /// Shared storage: the bucket of each region's flush lease, by region index (`None`:
    /// not a shared region hosted here).
    leases: Vec<Option<async_nats::jetstream::kv::Store>>,
    lease_ttl: Duration,
    /// How long a holder's flush job may run before it gives the lease up
    /// ([`super::lease::stalled_after`]).
    stalled_after: Duration,
    /// Where this node's bodies wait to be split.
    intake: Intake,
}

impl JetStream {
    /// Connects, and creates the streams that do not exist yet (idempotent on every node).
    /// `max_body`: `http.max_body_bytes` (a part of a region holds at most a body's rows).
    /// `routing`: the config's (where each region's stream is placed, the first routing
    /// version if none was recorded). `bucket_patience`: `storage.request_timeout` +
    /// `storage.retry_timeout`, the longest a bucket that hangs holds a flush.
    pub async fn connect(
        cfg: &ClusterConfig,
        routing: &RoutingConfig,
        engine: Arc<Engine>,
        max_body: u64,
        bucket_patience: Duration,
        access: routing_kv::NodeAccess,
    ) -> Result<JetStream, String> {
        let regions = &routing.regions;
        let node = cfg
            .node
            .clone()
            .ok_or("cluster mode needs this node's name (--node or cluster.node)")?;
        let client = connect_client(cfg, &format!("meridian-{node}")).await?;
        let max_payload = client.server_info().max_payload;
        let mut js = jetstream::new(client);
        js.set_timeout(cfg.publish_timeout);
        let base = stream::Config {
            max_age: cfg.max_age,
            num_replicas: cfg.replicas,
            storage: stream::StorageType::File,
            // JetStream refuses a window longer than the age.
            duplicate_window: Duration::from_secs(120).min(cfg.max_age),
            ..Default::default()
        };
        let placed = |cluster: &Option<String>| {
            cluster.as_ref().map(|c| stream::Placement {
                cluster: Some(c.clone()),
                tags: Vec::new(),
            })
        };
        // This node's intake: in its site's NATS cluster, or the one MERIDIAN_IN. Bodies it
        // left in its former intake (its site changed, or was set) would never be split
        // from there: checked first, before the new intake is made.
        let intake = Intake::of(cfg.site.as_deref());
        let applied_dir = engine.data_dir().join("cluster");
        std::fs::create_dir_all(&applied_dir)
            .map_err(|e| format!("creating {}: {e}", applied_dir.display()))?;
        let former = read_intake(&applied_dir)?;
        if former != intake {
            check_former_intake(&js, &former, &node).await?;
        }
        ensure_stream(
            &js,
            stream::Config {
                name: intake.stream.clone(),
                subjects: vec![intake.subjects()],
                placement: placed(if cfg.site.is_some() {
                    &cfg.site
                } else {
                    &cfg.nats_cluster
                }),
                ..base.clone()
            },
        )
        .await?;
        for r in regions {
            let name = region_stream(&r.name);
            ensure_stream(
                &js,
                stream::Config {
                    name: name.clone(),
                    placement: placed(&r.nats_cluster),
                    sources: Some(vec![intake.source(&r.name)]),
                    ..base.clone()
                },
            )
            .await?;
            // A region's stream sources every site's intake: this node's is added if the
            // stream was made by a node of another site.
            ensure_sources(&js, &name, &[intake.source(&r.name)]).await?;
        }
        // Routing versions: recorded by the first node, read by every node before it takes
        // a write.
        let routing_store = routing_kv::bucket(&js, cfg).await?;
        let now = crate::catalog::manifest::now_ns();
        let own = Rules::from_config(routing);
        let (history, routing_revision) =
            routing_kv::seed(&routing_store, &own, cfg.routing_lead, now).await?;
        routing_kv::install(&engine, &history, routing, cfg.routing_lead);
        engine.routing_table().confirm(now);
        if let Some(lead) = history.lead_ns
            && lead != routing_kv::nanos(cfg.routing_lead)
        {
            tracing::warn!(
                cluster_lead_secs = lead / 1_000_000_000,
                "cluster.routing_lead differs from the cluster's, recorded with its first routing version, which is in force"
            );
        }
        if let Some(latest) = history.latest()
            && serde_json::from_value::<Rules>(latest.rules.clone())
                .ok()
                .as_ref()
                != Some(&own)
        {
            tracing::warn!(
                version = latest.number,
                "the routing of this node's regions.toml differs from the cluster's latest routing version, which is in force: publish a change with `meridian routing publish`"
            );
        }
        // Region definitions: published ones are in force before the node answers.
        let definitions_revision =
            routing_kv::start_definitions(&routing_store, &engine, routing, access).await?;
        // Shared regions' lease buckets, by region index.
        let mut leases = Vec::with_capacity(regions.len());
        for (r, rc) in engine.regions().iter().zip(regions) {
            if r.log.is_none() {
                leases.push(None);
                continue;
            }
            let store = super::lease::bucket(&js, cfg, rc, &node).await?;
            let members =
                super::lease::check_members(&store, &r.name, &node, engine.shards_per_region());
            tokio::time::timeout(super::lease::START_CHECK_TIMEOUT, members)
                .await
                .map_err(|_| {
                    format!(
                        "{} did not list region {:?}'s members within {:?}",
                        store.name,
                        &*r.name,
                        super::lease::START_CHECK_TIMEOUT
                    )
                })??;
            leases.push(Some(store));
        }
        write_intake(&applied_dir, &intake)?;
        engine.metrics().cluster.enabled.store(true, Relaxed);
        Ok(JetStream {
            js,
            node,
            engine,
            publish_timeout: cfg.publish_timeout,
            max_payload,
            max_part: (max_body as usize).saturating_mul(2).max(64 << 20),
            applied_dir,
            next_id: AtomicU64::new(0),
            id_base: crate::catalog::manifest::now_ns(),
            routing_store,
            routing_cfg: routing.clone(),
            routing_lead: cfg.routing_lead,
            routing_revision,
            definitions_revision,
            access,
            leases,
            lease_ttl: cfg.lease_ttl,
            stalled_after: super::lease::stalled_after(cfg.lease_ttl, bucket_patience),
            intake,
        })
    }

    fn stats(&self) -> &crate::metrics::ClusterMetrics {
        &self.engine.metrics().cluster
    }

    /// The largest body message the NATS servers accept.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Starts this node's splitter and an applier per hosted region; they run until aborted.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().split_forever()),
            tokio::spawn(routing_kv::follow(
                self.routing_store.clone(),
                self.engine.clone(),
                self.routing_cfg.clone(),
                self.routing_lead,
                self.routing_revision,
                self.access,
                self.definitions_revision,
            )),
        ];
        for (i, r) in self.engine.regions().iter().enumerate() {
            if r.hosted() {
                tasks.push(tokio::spawn(self.clone().apply_forever(RegionId(i))));
            }
        }
        for lease in self.flush_leases() {
            tasks.push(tokio::spawn(lease.run()));
        }
        tasks.push(tokio::spawn(self.clone().keep_sources()));
        tasks
    }

    /// Two nodes of other sites updating a region stream at the same time can drop this
    /// node's intake from its sources (a stream update replaces the whole config); checked
    /// again every [`SOURCES_CHECK`] (only reads while it is there).
    async fn keep_sources(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SOURCES_CHECK).await;
            for r in self.engine.regions() {
                let name = region_stream(&r.name);
                if let Err(e) =
                    ensure_sources(&self.js, &name, &[self.intake.source(&r.name)]).await
                {
                    tracing::warn!(stream = %name, error = %e, "could not check this site's source of the region's stream; will retry");
                }
            }
        }
    }

    /// This node's side of the flush lease of every shared region it hosts.
    pub fn flush_leases(&self) -> Vec<super::lease::FlushLease> {
        self.engine
            .regions()
            .iter()
            .zip(&self.leases)
            .enumerate()
            .filter_map(|(i, (r, store))| {
                Some(super::lease::FlushLease {
                    engine: self.engine.clone(),
                    region_id: RegionId(i),
                    store: store.clone()?,
                    region: r.name.to_string(),
                    node: self.node.clone(),
                    ttl: self.lease_ttl,
                    stalled_after: self.stalled_after,
                    manifest: r.manifest.clone()?,
                    log: r.log.clone()?,
                })
            })
            .collect()
    }

    async fn publish(&self, w: Dispatch) -> Result<(), DispatchError> {
        // Compressing a region's rows (~1.3 MiB for a 5,000-line body) takes a few ms: off
        // the reactor.
        // One part per region (an applier takes a body's part of its region as one).
        let mut by_region: BTreeMap<usize, Vec<crate::region::prepare::ShardBatch>> =
            BTreeMap::new();
        for ((r, _), batch) in w.parts {
            by_region.entry(r.0).or_default().push(batch);
        }
        let named: Vec<(String, Vec<_>)> = by_region
            .into_iter()
            .map(|(r, b)| (self.engine.regions()[r].name.to_string(), b))
            .collect();
        let node = self.node.clone();
        let msg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let mut msg = MessageWriter::new(&node);
            for (region, batches) in &named {
                let payloads: Vec<[&[u8]; 2]> = batches.iter().map(|b| b.payload.parts()).collect();
                let refs: Vec<&[&[u8]]> = payloads.iter().map(|p| &p[..]).collect();
                msg.part(region, &refs)?;
            }
            Ok(msg.finish())
        })
        .await
        .map_err(|e| DispatchError::Unavailable(format!("compressing the body: {e}")))?
        .map_err(DispatchError::Unavailable)?;
        if msg.len() + HEADERS_ROOM > self.max_payload {
            return Err(DispatchError::TooLarge(format!(
                "the checked rows of this body take {} bytes compressed, more than the NATS servers' max_payload ({} bytes): split it into smaller batches, or raise max_payload",
                msg.len(),
                self.max_payload
            )));
        }
        let id = format!(
            "{}.{}.{}",
            self.node,
            self.id_base,
            self.next_id.fetch_add(1, Relaxed)
        );
        let unavailable = |e: String| {
            DispatchError::Unavailable(format!(
                "JetStream did not acknowledge the write ({e}); nothing was acknowledged, retrying is safe"
            ))
        };
        // While the connection is down the client would queue the body and send it on
        // reconnecting, after this write was refused: refuse without publishing.
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable("NATS is unreachable".into()));
        }
        // A body JetStream stores after its deadline is dropped unsplit by the splitter: its
        // sender answered 503 by then.
        let sent = crate::catalog::manifest::now_ns();
        let deadline = sent.saturating_add(super::routing_kv::nanos(
            self.publish_timeout + CLOCK_MARGIN,
        ));
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(DEADLINE_HEADER, deadline.to_string().as_str());
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(
                    self.intake.body_subject(&self.node),
                    headers,
                    Bytes::from(msg),
                )
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            ack.await.map_err(|e| unavailable(e.to_string()))
        };
        match tokio::time::timeout(self.publish_timeout, publish).await {
            Ok(Ok(_)) => {
                self.stats().bodies_published.fetch_add(1, Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(unavailable(format!(
                "no answer within cluster.publish_timeout ({:?})",
                self.publish_timeout
            ))),
        }
    }

    /// Splits this node's bodies into per-region parts, forever.
    async fn split_forever(self: Arc<Self>) {
        loop {
            if let Err(e) = self.split().await {
                tracing::warn!(node = %self.node, error = %e, "splitting bodies into region parts stopped; starting again");
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn split(&self) -> Result<(), String> {
        let in_stream = &self.intake.stream;
        let input = stream_named(&self.js, in_stream).await?;
        let mut messages = ordered(
            &input,
            in_stream,
            consumer::pull::OrderedConfig {
                filter_subject: self.intake.body_subject(&self.node),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await?;
        let subject = self.intake.body_subject(&self.node);
        let mut seen = 0u64;
        // Who published a region message: this node and the incarnation of MERIDIAN_IN its
        // body sequences count in (a recreated stream counts from 1 again, and its bodies
        // must not look applied already).
        let created = input.cached_info().created;
        let origin = format!(
            "{}@{}",
            self.node,
            created.timestamp_nanos_opt().unwrap_or_default()
        );
        loop {
            // Watchdog: an ordered consumer whose server was lost can wait for good; if a
            // body older than the pause is there and was not delivered, read again.
            let batch = match tokio::time::timeout(STALL_CHECK, next_batch(&mut messages)).await {
                Ok(b) => b?,
                Err(_) => {
                    if let Ok(m) = input.get_last_raw_message_by_subject(&subject).await
                        && m.sequence > seen
                    {
                        return Err(format!(
                            "body {} of this node was not delivered within {STALL_CHECK:?}: reading again",
                            m.sequence
                        ));
                    }
                    continue;
                }
            };
            let Some(last) = batch.last().map(|m| m.seq) else {
                return Err("the body stream ended".into());
            };
            seen = last;
            // Per region, one message at a time in flight: a region's parts are stored in
            // the order of the bodies, whatever fails on the way (a lost message is never
            // overtaken by the next one, which is only sent once it is acknowledged).
            let mut regions: BTreeMap<&str, Outgoing> = BTreeMap::new();
            for m in &batch {
                let seq = m.seq;
                if m.expired() {
                    self.stats().bodies_expired.fetch_add(1, Relaxed);
                    tracing::warn!(
                        seq,
                        "a body stored after its sender gave up (503) is dropped"
                    );
                    continue;
                }
                let body = match parse(&m.payload) {
                    Ok(b) => b,
                    Err(e) => {
                        self.stats().messages_unreadable.fetch_add(1, Relaxed);
                        tracing::error!(seq, error = %e, stream = %in_stream, "a body is not readable; it is skipped");
                        continue;
                    }
                };
                for part in body.parts {
                    if !self
                        .engine
                        .regions()
                        .iter()
                        .any(|r| *r.name == *part.region)
                    {
                        self.stats().messages_unreadable.fetch_add(1, Relaxed);
                        tracing::error!(
                            seq,
                            region = part.region,
                            "a body names a region this node does not know; its part is skipped"
                        );
                        continue;
                    }
                    let out = regions.entry(part.region).or_insert_with(|| Outgoing {
                        msg: MessageWriter::new(&origin),
                        origin: origin.clone(),
                        first: seq,
                        last: seq,
                        in_flight: None,
                    });
                    let limit = self.max_payload.min(REGION_MESSAGE_BYTES);
                    if !out.msg.is_empty()
                        && out.msg.len() + part.bytes.len() + HEADERS_ROOM > limit
                    {
                        self.send_part(part.region, out, seq).await?;
                    }
                    out.msg.compressed_part(part.region, seq, part.bytes);
                    out.last = seq;
                }
            }
            for (region, out) in regions.iter_mut() {
                if !out.msg.is_empty() {
                    self.send_part(region, out, last + 1).await?;
                }
            }
            for (_, out) in regions {
                if let Some(ack) = out.in_flight {
                    ack.await
                        .map_err(|e| format!("a region part was not acknowledged: {e}"))?;
                }
            }
            input
                .purge()
                .filter(self.intake.body_subject(&self.node))
                .sequence(last + 1)
                .await
                .map_err(|e| format!("purging split bodies up to {last}: {e}"))?;
        }
    }

    /// See [`WriteBarrier::settle`].
    async fn settle_writes(&self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        let wait = |what: String| async move {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{what} within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        };
        let no_message = jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        // The hosted regions' logs, and the intakes they source (every site's).
        let mut logs = Vec::new();
        let mut intakes: Vec<Intake> = vec![self.intake.clone()];
        let existing = self::intakes(&self.js).await?;
        for r in self.engine.regions().iter().filter(|r| r.hosted()) {
            let name = region_stream(&r.name);
            // An intake whose source a concurrent update dropped: its parts would reach the
            // log only after the delete. Put back first.
            let wanted: Vec<stream::Source> = existing.iter().map(|i| i.source(&r.name)).collect();
            let log = ensure_sources(&self.js, &name, &wanted).await?;
            let sourced: Vec<Intake> = log
                .cached_info()
                .config
                .sources
                .iter()
                .flatten()
                .filter_map(|s| Intake::from_stream(&s.name))
                .collect();
            for i in &sourced {
                if !intakes.contains(i) {
                    intakes.push(i.clone());
                }
            }
            logs.push((r.name.clone(), name, log, sourced));
        }
        // Every body acknowledged so far, by any node of any site, must be split: none at or
        // below its intake's last sequence now may be left (a splitter purges what it split).
        let mut inputs = Vec::new();
        for intake in intakes {
            let in_stream = intake.stream.clone();
            // An intake a region still sources but that was deleted holds nothing to wait for.
            let input = match self.js.get_stream(&in_stream).await {
                Ok(s) => s,
                Err(e) if stream_not_found(&e) => continue,
                Err(e) => return Err(format!("stream {in_stream}: {e}")),
            };
            let upto = last_sequence(&input, &in_stream).await?;
            loop {
                match input
                    .get_first_raw_message_by_subject(intake.bodies(), 1)
                    .await
                {
                    Ok(m) if m.sequence <= upto => {
                        let node = intake.body_node(&m.subject).to_string();
                        wait(format!(
                            "writes acknowledged by node {node:?} were not split into their regions' logs (is it down?)"
                        ))
                        .await?;
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == no_message => break,
                    Err(e) => return Err(format!("stream {in_stream}: {e}")),
                }
            }
            inputs.push((intake, input));
        }
        for (region, name, log, sourced) in logs {
            // The region's stream must first have sourced every part split so far (by any
            // node): its last message of an intake's parts names the sequence it came from.
            for (intake, input) in inputs.iter().filter(|(i, _)| sourced.contains(i)) {
                let subject = intake.part_subject(&region);
                let split = last_on_subject(input, &subject, &intake.stream)
                    .await?
                    .map_or(0, |m| m.sequence);
                loop {
                    let got = last_on_subject(&log, &subject, &name)
                        .await?
                        .map_or(0, |m| source_sequence(&m.headers).unwrap_or(u64::MAX));
                    if got >= split {
                        break;
                    }
                    wait(format!(
                        "the log of region {region:?} has not taken in the parts of {} up to {split}",
                        intake.stream
                    ))
                    .await?;
                }
            }
            let last = last_sequence(&log, &name).await?;
            loop {
                let applied = self
                    .stats()
                    .applied_seq
                    .lock()
                    .get(&*region)
                    .copied()
                    .unwrap_or(0);
                if applied >= last {
                    break;
                }
                wait(format!(
                    "the log of region {region:?} was not applied up to {last}"
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Publishes a region's message (after the one before it was acknowledged) and starts
    /// the next at body `next`.
    async fn send_part(&self, region: &str, out: &mut Outgoing, next: u64) -> Result<(), String> {
        if let Some(ack) = out.in_flight.take() {
            ack.await
                .map_err(|e| format!("a part for region {region:?} was not acknowledged: {e}"))?;
        }
        let msg = std::mem::replace(&mut out.msg, MessageWriter::new(&out.origin)).finish();
        let mut headers = HeaderMap::new();
        // The id names exactly what the message holds (whose bodies, which ones, which
        // region): a message published again after a failure may hold more bodies than the
        // first try, and must then not be taken for it.
        let id = format!("{}.{}-{}.{region}", out.origin, out.first, out.last);
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = self
            .js
            .publish_with_headers(self.intake.part_subject(region), headers, msg.into())
            .await
            .map_err(|e| format!("publishing a part for region {region:?}: {e}"))?;
        self.stats().parts_published.fetch_add(1, Relaxed);
        out.in_flight = Some(ack);
        out.first = next;
        out.last = next;
        Ok(())
    }

    /// Applies region `r`'s log to this node, forever.
    async fn apply_forever(self: Arc<Self>, r: RegionId) {
        // Shared storage: where this process got to (memory holds it), once started.
        let mut resume: Option<Applied> = None;
        loop {
            if let Err(e) = self.apply(r, &mut resume).await {
                let region = &self.engine.regions()[r.0].name;
                tracing::warn!(%region, error = %e, "applying the region's log stopped; starting again after the last applied message");
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn apply(&self, r: RegionId, resume: &mut Option<Applied>) -> Result<(), String> {
        let region = self.engine.regions()[r.0].name.to_string();
        let shared = self.engine.regions()[r.0].log.clone();
        let marker = self.applied_dir.join(format!("{region}.applied"));
        let name = region_stream(&region);
        let log = stream_named(&self.js, &name).await?;
        let mut applied = match (&shared, resume.as_ref()) {
            (None, _) => read_applied(&marker)?,
            (Some(_), Some(a)) => a.clone(),
            (Some(shared_log), None) => {
                let (mut a, epoch) = self.start_of_shared(r).await?;
                // No mark and no lease ever taken (a new bucket prefix): the log is read
                // from its first message kept, which is no gap (no node flushed or held
                // anything of it yet). Once a node led, messages gone without a mark are a
                // gap (another node may hold them).
                if a.seq == 0 && epoch == 0 {
                    a.seq = log.cached_info().state.first_sequence.saturating_sub(1);
                }
                let state = serde_json::to_value(&a).map_err(|e| e.to_string())?;
                shared_log.start_at(a.seq, state);
                *resume = Some(a.clone());
                a
            }
        };
        self.stats()
            .applied_seq
            .lock()
            .insert(region.clone(), applied.seq);
        let mut messages = ordered(
            &log,
            &name,
            consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: applied.seq + 1,
                },
                ..Default::default()
            },
        )
        .await?;
        loop {
            // Watchdog: an ordered consumer whose server was lost can wait for good; if the
            // log holds more than was applied and nothing came for a while, read again.
            let batch = match tokio::time::timeout(STALL_CHECK, next_batch(&mut messages)).await {
                Ok(b) => b?,
                Err(_) => {
                    let state = log
                        .get_info()
                        .await
                        .map_err(|e| format!("stream {name}: {e}"))?
                        .state;
                    // What followed the last applied message is gone (past max_age, or
                    // purged): there is nothing to wait for below the stream's first.
                    if state.first_sequence > applied.seq + 1 {
                        if let Some(log) = &shared {
                            log.note_gap(state.first_sequence);
                        }
                        self.stats().log_gaps.fetch_add(1, Relaxed);
                        tracing::error!(%region, after = applied.seq, first = state.first_sequence, "messages of the region's log expired before they were applied here");
                        applied.seq = state.first_sequence - 1;
                        self.record_applied(&marker, &applied, &region, shared.as_deref())
                            .await?;
                        if shared.is_some() {
                            *resume = Some(applied.clone());
                        }
                    }
                    let last = state.last_sequence;
                    if last > applied.seq {
                        return Err(format!(
                            "{name} holds messages up to {last}, none came after {} within {STALL_CHECK:?}: reading again",
                            applied.seq
                        ));
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                return Err(format!("stream {name} ended"));
            }
            let mut group = Group::default();
            for m in &batch {
                // An ordered consumer that recreates itself before its first message starts
                // from the stream's beginning: what was applied is skipped.
                if m.seq <= applied.seq {
                    continue;
                }
                if m.seq != applied.seq + 1 {
                    if let Some(log) = &shared {
                        log.note_gap(m.seq);
                    }
                    self.stats().log_gaps.fetch_add(1, Relaxed);
                    tracing::error!(%region, after = applied.seq, next = m.seq, "messages of the region's log are missing (expired past cluster.max_age, or the stream was recreated)");
                }
                applied.seq = m.seq;
                let msg = match parse(&m.payload) {
                    Ok(msg) => msg,
                    Err(e) => {
                        self.stats().messages_unreadable.fetch_add(1, Relaxed);
                        tracing::error!(%region, seq = m.seq, error = %e, "a message of the region's log is not readable; it is skipped");
                        continue;
                    }
                };
                for part in msg.parts {
                    // A part applied already (a splitter published it again after a
                    // failure) is skipped: bodies of one node come in order.
                    let done = applied.nodes.get(msg.node).copied().unwrap_or(0);
                    if part.body_seq <= done {
                        continue;
                    }
                    let payloads = match (part.region == region)
                        .then(|| part.payloads(self.max_part))
                    {
                        Some(Ok(p)) => p,
                        Some(Err(e)) => {
                            self.stats().messages_unreadable.fetch_add(1, Relaxed);
                            tracing::error!(%region, seq = m.seq, error = %e, "a part of the region's log is not readable; it is skipped");
                            continue;
                        }
                        None => {
                            self.stats().messages_unreadable.fetch_add(1, Relaxed);
                            tracing::error!(%region, seq = m.seq, other = part.region, "a part of another region in this region's log is skipped");
                            continue;
                        }
                    };
                    self.prepare_into(r, &region, payloads, m.seq, &mut group)
                        .await?;
                    applied.nodes.insert(msg.node.to_string(), part.body_seq);
                    if group.cost > self.engine.memory_limit() / 8 {
                        self.commit_group(&region, std::mem::take(&mut group))
                            .await?;
                    }
                }
            }
            self.commit_group(&region, group).await?;
            self.record_applied(&marker, &applied, &region, shared.as_deref())
                .await?;
            if shared.is_some() {
                *resume = Some(applied.clone());
            }
            self.stats()
                .messages_applied
                .fetch_add(batch.len() as u64, Relaxed);
        }
    }

    /// Records durably what was applied of `region`'s log (after its WAL commit), and
    /// shows its sequence on `/metrics`.
    /// On shared storage the record is the log's: the lease holder puts it in the manifest
    /// with the mark, once the rows are in files.
    async fn record_applied(
        &self,
        marker: &Path,
        applied: &Applied,
        region: &str,
        shared: Option<&crate::region::shared::SharedLog>,
    ) -> Result<(), String> {
        if let Some(log) = shared {
            let state = serde_json::to_value(applied).map_err(|e| e.to_string())?;
            log.applied(applied.seq, state);
        } else {
            let (m, a) = (marker.to_path_buf(), applied.clone());
            tokio::task::spawn_blocking(move || write_applied(&m, &a))
                .await
                .map_err(|e| format!("recording the applied sequence: {e}"))??;
        }
        self.stats()
            .applied_seq
            .lock()
            .insert(region.to_string(), applied.seq);
        Ok(())
    }

    /// Shared storage: where the region's log is read from at start-up, the shared
    /// manifest's mark (everything before it is in files) and the reader's state there.
    /// Also returns the highest lease epoch recorded (0: no node ever led).
    async fn start_of_shared(&self, r: RegionId) -> Result<(Applied, u64), String> {
        let Some(m) = self.engine.regions()[r.0].manifest.clone() else {
            return Err("the region is not hosted here".into());
        };
        let shared = tokio::task::spawn_blocking(move || m.refresh().map(|_| m.shared()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the shared manifest: {e}"))?;
        match shared.log {
            None => {
                let listed = self.engine.regions()[r.0]
                    .manifest
                    .as_ref()
                    .is_some_and(|m| !m.files().is_empty());
                if listed {
                    tracing::warn!(region = %self.engine.regions()[r.0].name, "the shared manifest lists files but no log mark (written before shared_storage, or rebuilt): the region's log is read from its first message kept, over them (points deleted since that message come back)");
                }
                Ok((Applied::default(), shared.epoch))
            }
            Some(mark) => {
                let mut a: Applied = serde_json::from_value(mark.state)
                    .map_err(|e| format!("the shared manifest's log mark is not readable: {e}"))?;
                a.seq = mark.through;
                Ok((a, shared.epoch))
            }
        }
    }

    /// Checks payloads of region `r` (from log message `seq`) here and adds their rows to
    /// `group`.
    async fn prepare_into(
        &self,
        r: RegionId,
        region: &str,
        payloads: super::wire::Payloads,
        seq: u64,
        group: &mut Group,
    ) -> Result<(), String> {
        let engine = self.engine.clone();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let prepared = tokio::task::spawn_blocking(move || {
            payloads
                .iter()
                .map(|p| engine.prepare_payload(p, now, r))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| format!("checking rows: {e}"))?;
        for p in prepared {
            let Some((db, p)) = p else {
                self.stats().messages_unreadable.fetch_add(1, Relaxed);
                tracing::error!(%region, "a payload of the region's log is not readable; it is skipped");
                continue;
            };
            if p.rejected_count > 0 {
                self.stats()
                    .lines_refused
                    .fetch_add(p.rejected_count as u64, Relaxed);
                let first = p.rejected.first().map(|l| l.error_message.clone());
                tracing::error!(%region, db, refused = p.rejected_count, first = ?first, "rows of the region's log were refused here");
            }
            group
                .batches
                .extend(p.batches.into_iter().map(|(k, mut b)| {
                    b.log_seq = Some(seq);
                    (k, b)
                }));
            group.cost += p.memory_cost;
            group.points += p.accepted as u64;
        }
        Ok(())
    }

    /// Commits a group of rows (one group commit), waiting while memory is full.
    async fn commit_group(&self, region: &str, group: Group) -> Result<(), String> {
        if group.batches.is_empty() {
            return Ok(());
        }
        loop {
            match self.engine.admit(group.cost, 0) {
                Ok(()) => break,
                Err(crate::region::WriteError::Overloaded(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("rows of region {region:?} cannot be held: {e}")),
            }
        }
        self.engine
            .commit(group.batches, true)
            .await
            .map_err(|e| format!("committing rows of region {region:?}: {e}"))?;
        self.stats().points_applied.fetch_add(group.points, Relaxed);
        Ok(())
    }
}

/// A region's message being filled by the splitter, and the one before it still awaiting
/// its acknowledgement.
struct Outgoing {
    msg: MessageWriter,
    /// `<node>@<MERIDIAN_IN's creation>`: whose body sequences its parts carry.
    origin: String,
    /// The first and last bodies it holds (they name its de-duplication id).
    first: u64,
    last: u64,
    in_flight: Option<jetstream::context::PublishAckFuture>,
}

/// Rows an applier commits together.
#[derive(Default)]
struct Group {
    batches: Vec<(
        (RegionId, crate::model::ShardId),
        crate::region::prepare::ShardBatch,
    )>,
    cost: u64,
    points: u64,
}

/// What an applier has committed of its region's log: the last stream sequence, and per
/// origin (`<node>@<MERIDIAN_IN's creation>`) the last body whose part it applied.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Applied {
    seq: u64,
    nodes: BTreeMap<String, u64>,
}

impl crate::query::remote::WriteBarrier for JetStream {
    fn settle(&self, within: Duration) -> crate::query::remote::BoxFuture<'_, Result<(), String>> {
        Box::pin(self.settle_writes(within))
    }
}

impl WriteDispatch for JetStream {
    fn dispatch(&self, write: Dispatch) -> DispatchFuture<'_> {
        Box::pin(self.publish(write))
    }
}

/// Finds a stream, or creates it (idempotent on every node: two nodes starting together may
/// race to create it, and the loser finds the winner's). A stream found is kept as it is:
/// changing the replicas or age of a live stream is the operator's call (`nats` tool).
/// Connects to NATS with the node's credentials and TLS settings (`name`: how the servers
/// list the connection).
pub async fn connect_client(cfg: &ClusterConfig, name: &str) -> Result<async_nats::Client, String> {
    // A ping a second: a hung server (SIGSTOP, a dead link) is left for another after
    // about three seconds rather than after the default's two minutes.
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .ping_interval(Duration::from_secs(1))
        .connection_timeout(cfg.publish_timeout.max(Duration::from_secs(2)));
    if let Some(path) = &cfg.credentials {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| format!("cluster.credentials {}: {e}", path.display()))?;
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts.connect(cfg.nats.as_slice())
        .await
        .map_err(|e| format!("cannot connect to NATS at {:?}: {e}", cfg.nats))
}

pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<(), String> {
    let name = config.name.clone();
    if let Ok(found) = js.get_stream(&name).await {
        let have = &found.cached_info().config;
        if have.num_replicas != config.num_replicas || have.placement != config.placement {
            tracing::warn!(
                stream = %name,
                replicas = have.num_replicas,
                placement = ?have.placement,
                configured_replicas = config.num_replicas,
                configured_placement = ?config.placement,
                "the stream exists with other replicas or placement than configured; it is kept as it is (change it with the nats tool)"
            );
        }
        return Ok(());
    }
    match js.create_stream(config).await {
        Ok(_) => Ok(()),
        Err(e) => match js.get_stream(&name).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("creating JetStream stream {name}: {e}")),
        },
    }
}

/// Stream `name`, with every one of `wanted` among its sources (a region's stream sources
/// every site's intake; the node of each site adds its own): one read when they are all
/// there, else one update adding the missing ones. A stream update replaces the whole
/// config: two nodes adding at once may overwrite each other's; each reads the stream again
/// until its own are there, and checks again later ([`JetStream::keep_sources`]).
async fn ensure_sources(
    js: &jetstream::Context,
    name: &str,
    wanted: &[stream::Source],
) -> Result<stream::Stream, String> {
    for _ in 0..20 {
        let found = stream_named(js, name).await?;
        let mut config = found.cached_info().config.clone();
        let sources = config.sources.get_or_insert_with(Vec::new);
        let missing: Vec<&stream::Source> = wanted
            .iter()
            .filter(|w| {
                !sources
                    .iter()
                    .any(|s| s.name == w.name && s.filter_subject == w.filter_subject)
            })
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let names: Vec<String> = missing.iter().map(|m| m.name.clone()).collect();
        sources.extend(missing.into_iter().cloned());
        js.update_stream(config)
            .await
            .map_err(|e| format!("adding sources {names:?} to stream {name}: {e}"))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "stream {name}: its sources were not kept (other nodes updating it at the same time?)"
    ))
}

/// Stream `name`, an error naming it when it cannot be read.
async fn stream_named(js: &jetstream::Context, name: &str) -> Result<stream::Stream, String> {
    js.get_stream(name)
        .await
        .map_err(|e| format!("stream {name}: {e}"))
}

/// The last sequence of stream `name`.
async fn last_sequence(s: &stream::Stream, name: &str) -> Result<u64, String> {
    Ok(s.get_info()
        .await
        .map_err(|e| format!("stream {name}: {e}"))?
        .state
        .last_sequence)
}

/// The last message on `subject` in stream `name` (`None`: there is none).
async fn last_on_subject(
    s: &stream::Stream,
    subject: &str,
    name: &str,
) -> Result<Option<jetstream::message::StreamMessage>, String> {
    match s.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(None)
        }
        Err(e) => Err(format!("stream {name}: {e}")),
    }
}

/// The intake this node used when it last started (`<data_dir>/cluster/intake`); before
/// sites existed, `MERIDIAN_IN`.
fn read_intake(dir: &Path) -> Result<Intake, String> {
    let path = dir.join("intake");
    match std::fs::read_to_string(&path) {
        Ok(name) => Intake::from_stream(name.trim())
            .ok_or_else(|| format!("{} names no intake stream: {name:?}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Intake::of(None)),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn write_intake(dir: &Path, intake: &Intake) -> Result<(), String> {
    let path = dir.join("intake");
    crate::storage::parquet::write_atomically(&path, intake.stream.as_bytes())
        .map_err(|e| format!("recording this node's intake in {}: {e}", path.display()))
}

/// Refuses to start while this node's acknowledged bodies wait in its former intake, or
/// while that cannot be checked (its cluster unreachable): they would never be split.
async fn check_former_intake(
    js: &jetstream::Context,
    former: &Intake,
    node: &str,
) -> Result<(), String> {
    let unreadable = |e: String| {
        format!(
            "this node's former intake {} cannot be checked for bodies it left unsplit ({e}): start it once it can be reached, or with its former site",
            former.stream
        )
    };
    let stream = match js.get_stream(&former.stream).await {
        Ok(s) => s,
        Err(e) if stream_not_found(&e) => return Ok(()),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    match last_on_subject(&stream, &former.body_subject(node), &former.stream)
        .await
        .map_err(unreadable)?
    {
        None => Ok(()),
        Some(_) => Err(format!(
            "this node's acknowledged bodies still wait in {} (its site was {}): start it once with that site (cluster.site) so that it splits them, then change it",
            former.stream,
            former
                .site
                .as_deref()
                .map_or("not set".to_string(), |s| format!("{s:?}"))
        )),
    }
}

/// Whether a stream lookup failed because the stream does not exist.
fn stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Every intake stream that exists (the one `MERIDIAN_IN` and each site's).
async fn intakes(js: &jetstream::Context) -> Result<Vec<Intake>, String> {
    let mut names = js.stream_names();
    let mut out = Vec::new();
    while let Some(n) = names.next().await {
        let n = n.map_err(|e| format!("listing streams: {e}"))?;
        if let Some(i) = Intake::from_stream(&n) {
            out.push(i);
        }
    }
    Ok(out)
}

/// The messages of an ordered consumer on `stream` (called `name` in errors).
async fn ordered(
    stream: &stream::Stream,
    name: &str,
    config: consumer::pull::OrderedConfig,
) -> Result<consumer::pull::Ordered, String> {
    stream
        .create_consumer(config)
        .await
        .map_err(|e| format!("consumer on {name}: {e}"))?
        .messages()
        .await
        .map_err(|e| format!("reading {name}: {e}"))
}

/// A message as read from a stream.
struct Read {
    seq: u64,
    /// When JetStream stored it (Unix ns, the server's clock).
    stored: i64,
    /// A body's deadline header.
    deadline: Option<i64>,
    payload: Bytes,
}

impl Read {
    /// A body JetStream stored after its deadline: its sender answered 503 by then.
    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| self.stored > d)
    }
}

/// The next messages: waits for one, then takes those already delivered, up to a bound.
async fn next_batch<S, E>(messages: &mut S) -> Result<Vec<Read>, String>
where
    S: futures::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: std::fmt::Display,
{
    fn take(m: jetstream::Message, out: &mut Vec<Read>) -> Result<usize, String> {
        let info = m
            .info()
            .map_err(|e| format!("a message without JetStream metadata: {e}"))?;
        let (seq, stored) = (
            info.stream_sequence,
            info.published.timestamp_nanos_opt().unwrap_or(i64::MAX),
        );
        let deadline = m
            .headers
            .as_ref()
            .and_then(|h| h.get(DEADLINE_HEADER))
            .and_then(|v| v.as_str().parse().ok());
        let n = m.payload.len();
        out.push(Read {
            seq,
            stored,
            deadline,
            payload: m.message.payload,
        });
        Ok(n)
    }
    let mut out = Vec::new();
    let mut bytes = match messages.next().await {
        Some(m) => take(m.map_err(|e| e.to_string())?, &mut out)?,
        None => return Ok(Vec::new()),
    };
    while out.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
        match messages.next().now_or_never() {
            Some(Some(m)) => bytes += take(m.map_err(|e| e.to_string())?, &mut out)?,
            _ => break,
        }
    }
    Ok(out)
}

/// The `MERIDIAN_IN` sequence a sourced message came from: JetStream's
/// `Nats-Stream-Source: <stream> <seq> …` header (`None` if absent or not understood).
fn source_sequence(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("Nats-Stream-Source")?;
    value.as_str().split_whitespace().nth(1)?.parse().ok()
}

fn read_applied(path: &Path) -> Result<Applied, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("{} is not an applied-sequence record: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Applied::default()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Records what was applied: a temporary file, fsynced, renamed over the marker.
fn write_applied(path: &Path, applied: &Applied) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("applied.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(applied).map_err(std::io::Error::other)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("recording applied sequence in {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The splitter drops a body stored after its deadline, and only such a body (one
    /// without a deadline, from an older sender, is split).
    #[test]
    fn bodies_stored_after_their_deadline_are_expired() {
        let read = |stored, deadline| Read {
            seq: 1,
            stored,
            deadline,
            payload: Bytes::new(),
        };
        assert!(read(101, Some(100)).expired());
        assert!(!read(100, Some(100)).expired());
        assert!(!read(99, Some(100)).expired());
        assert!(!read(i64::MAX, None).expired());
    }

    /// The intake of a stream name: the one `MERIDIAN_IN`, a site's, or none; subjects of
    /// two intakes never meet (a stream owns its subjects).
    #[test]
    fn intakes_are_named_by_site_and_keep_apart() {
        let one = Intake::of(None);
        let eu = Intake::of(Some("eu"));
        assert_eq!(Intake::from_stream("MERIDIAN_IN"), Some(one.clone()));
        assert_eq!(Intake::from_stream("MERIDIAN_IN_eu"), Some(eu.clone()));
        assert_eq!(Intake::from_stream("MERIDIAN_INX"), None);
        assert_eq!(Intake::from_stream("MERIDIAN_R_eu"), None);
        assert_eq!(one.body_subject("n1"), "meridian.in.body.n1");
        assert_eq!(one.part_subject("eu"), "meridian.in.part.eu");
        assert_eq!(eu.body_subject("n1"), "meridian.site.eu.body.n1");
        assert_eq!(eu.subjects(), "meridian.site.eu.>");
        assert!(!eu.subjects().starts_with("meridian.in."));
        assert_eq!(
            eu.source("apac").filter_subject.as_deref(),
            Some("meridian.site.eu.part.apac")
        );
    }

    /// The intake a node used last reads back; none recorded (before sites) is
    /// `MERIDIAN_IN`; a damaged record is an error naming the file.
    #[test]
    fn the_intake_used_last_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_intake(dir.path()).unwrap(), Intake::of(None));
        write_intake(dir.path(), &Intake::of(Some("eu"))).unwrap();
        assert_eq!(read_intake(dir.path()).unwrap(), Intake::of(Some("eu")));
        std::fs::write(dir.path().join("intake"), "MERIDIAN_R_eu").unwrap();
        assert!(read_intake(dir.path()).unwrap_err().contains("intake"));
    }

    /// The source header as nats-server 2.9 writes it (seen: `MERIDIAN_IN 2`), and as
    /// later versions extend it.
    #[test]
    fn source_sequences_are_read_from_the_header() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("Nats-Stream-Source", v);
            m
        };
        assert_eq!(source_sequence(&h("MERIDIAN_IN 2")), Some(2));
        assert_eq!(source_sequence(&h("MERIDIAN_IN 77 > >")), Some(77));
        assert_eq!(source_sequence(&h("MERIDIAN_IN")), None);
        assert_eq!(source_sequence(&HeaderMap::new()), None);
    }

    /// The applied record reads back what was written, and a damaged one is an error
    /// naming the file (the applier then stops rather than start over from the beginning).
    #[test]
    fn applied_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eu.applied");
        assert_eq!(read_applied(&path).unwrap().seq, 0);
        let mut a = Applied {
            seq: 42,
            ..Default::default()
        };
        a.nodes.insert("n1@7".into(), 9);
        write_applied(&path, &a).unwrap();
        let b = read_applied(&path).unwrap();
        assert_eq!((b.seq, b.nodes.get("n1@7")), (42, Some(&9)));
        std::fs::write(&path, b"{").unwrap();
        assert!(read_applied(&path).unwrap_err().contains("eu.applied"));
    }
}
