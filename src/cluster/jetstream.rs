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
//! Invariants:
//! - A body is one JetStream message: it is stored whole or not at all, and the client hears
//!   204 only once JetStream acknowledged it (`cluster.publish_timeout` bounds the wait).
//! - Parts of one node's bodies reach a region's log in the order the bodies were
//!   acknowledged: the splitter reads its node's bodies with an ordered consumer and purges
//!   them only after every part of them was acknowledged; after a crash it starts again
//!   from the oldest body left, publishing with the same de-duplication ids
//!   (`<node>.<body seq>.<region>`), which JetStream drops as duplicates within its window.
//! - A region's log is moved into a region's stream by JetStream's own sourcing, so a region
//!   whose stream is unreachable gets its parts when it returns, with no Meridian retry.
//! - An applier commits messages to the node's WAL (durable) before it records their stream
//!   sequence (`<data_dir>/cluster/<region>.applied`), and starts after the recorded one. A
//!   crash between the two applies the last messages again, in order: a point written twice
//!   with the same value changes nothing (last write wins), so queries never double count.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;

use super::wire::{MessageWriter, parts};
use super::{Dispatch, DispatchError, DispatchFuture, WriteDispatch};
use crate::config::ClusterConfig;
use crate::model::RegionId;
use crate::region::Engine;

/// The stream every node publishes bodies (and the splitters parts) to.
pub const IN_STREAM: &str = "MERIDIAN_IN";
/// Bodies and parts held at once by a splitter or an applier batch.
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 16 << 20;
/// How much later than its sender gave up a body may still be stored and split: covers the
/// clocks of the nodes and the NATS servers disagreeing by up to this much.
const CLOCK_MARGIN: Duration = Duration::from_secs(2);
/// The header that carries a body's deadline (Unix ns): stored later, it is never split.
const DEADLINE_HEADER: &str = "Meridian-Deadline";
/// Wait after a failure before a splitter or applier starts again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The stream holding region `r`'s log.
pub fn region_stream(region: &str) -> String {
    format!("MERIDIAN_R_{region}")
}

fn body_subject(node: &str) -> String {
    format!("meridian.in.body.{node}")
}

fn part_subject(region: &str) -> String {
    format!("meridian.in.part.{region}")
}

/// The JetStream write path of one node.
pub struct JetStream {
    js: jetstream::Context,
    node: String,
    engine: Arc<Engine>,
    publish_timeout: Duration,
    /// Largest message the NATS servers accept.
    max_payload: usize,
    applied_dir: PathBuf,
    next_id: AtomicU64,
    id_base: i64,
}

impl JetStream {
    /// Connects, and creates the streams that do not exist yet (idempotent on every node).
    pub async fn connect(cfg: &ClusterConfig, engine: Arc<Engine>) -> Result<JetStream, String> {
        let node = cfg
            .node
            .clone()
            .ok_or("cluster mode needs this node's name (--node or cluster.node)")?;
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("meridian-{node}"))
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
        let client = opts
            .connect(cfg.nats.as_slice())
            .await
            .map_err(|e| format!("cannot connect to NATS at {:?}: {e}", cfg.nats))?;
        let max_payload = client.server_info().max_payload;
        let mut js = jetstream::new(client);
        js.set_timeout(cfg.publish_timeout);
        let base = stream::Config {
            max_age: cfg.max_age,
            num_replicas: cfg.replicas,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        ensure_stream(
            &js,
            stream::Config {
                name: IN_STREAM.into(),
                subjects: vec!["meridian.in.>".into()],
                ..base.clone()
            },
        )
        .await?;
        for r in engine.regions() {
            ensure_stream(
                &js,
                stream::Config {
                    name: region_stream(&r.name),
                    sources: Some(vec![stream::Source {
                        name: IN_STREAM.into(),
                        filter_subject: Some(part_subject(&r.name)),
                        ..Default::default()
                    }]),
                    ..base.clone()
                },
            )
            .await?;
        }
        let applied_dir = engine.data_dir().join("cluster");
        std::fs::create_dir_all(&applied_dir)
            .map_err(|e| format!("creating {}: {e}", applied_dir.display()))?;
        engine.metrics().cluster.enabled.store(true, Relaxed);
        Ok(JetStream {
            js,
            node,
            engine,
            publish_timeout: cfg.publish_timeout,
            max_payload,
            applied_dir,
            next_id: AtomicU64::new(0),
            id_base: crate::catalog::manifest::now_ns(),
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
        let mut tasks = vec![tokio::spawn(self.clone().split_forever())];
        for (i, r) in self.engine.regions().iter().enumerate() {
            if r.hosted() {
                tasks.push(tokio::spawn(self.clone().apply_forever(RegionId(i))));
            }
        }
        tasks
    }

    async fn publish(&self, w: Dispatch) -> Result<(), DispatchError> {
        // Compressing a region's rows (~1.3 MiB for a 5,000-line body) takes a few ms: off
        // the reactor.
        let regions: Vec<String> = w
            .parts
            .iter()
            .map(|((r, _), _)| self.engine.regions()[r.0].name.to_string())
            .collect();
        let parts = w.parts;
        let msg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let mut msg = MessageWriter::default();
            let mut i = 0;
            while i < parts.len() {
                // Parts come sorted by (region, shard): a region's run is one message part.
                let mut j = i;
                while j < parts.len() && parts[j].0.0 == parts[i].0.0 {
                    j += 1;
                }
                let payloads: Vec<[&[u8]; 2]> =
                    parts[i..j].iter().map(|(_, b)| b.payload.parts()).collect();
                let refs: Vec<&[&[u8]]> = payloads.iter().map(|p| &p[..]).collect();
                msg.part(&regions[i], &refs)?;
                i = j;
            }
            Ok(msg.finish())
        })
        .await
        .map_err(|e| DispatchError::Unavailable(format!("compressing the body: {e}")))?
        .map_err(DispatchError::Unavailable)?;
        if msg.len() > self.max_payload {
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
        // sender answered 503 by then (see the module docs).
        let sent = crate::catalog::manifest::now_ns();
        let deadline = sent.saturating_add((self.publish_timeout + CLOCK_MARGIN).as_nanos() as i64);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(DEADLINE_HEADER, deadline.to_string().as_str());
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(body_subject(&self.node), headers, Bytes::from(msg))
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
        let input = self
            .js
            .get_stream(IN_STREAM)
            .await
            .map_err(|e| format!("stream {IN_STREAM}: {e}"))?;
        let consumer = input
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: body_subject(&self.node),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("consumer on {IN_STREAM}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("reading {IN_STREAM}: {e}"))?;
        loop {
            let batch = next_batch(&mut messages).await?;
            let Some(last) = batch.last().map(|m| m.seq) else {
                return Err("the body stream ended".into());
            };
            let mut acks = Vec::new();
            for m in &batch {
                let seq = m.seq;
                if m.deadline.is_some_and(|d| m.stored > d) {
                    self.stats().bodies_expired.fetch_add(1, Relaxed);
                    tracing::warn!(
                        seq,
                        "a body stored after its sender gave up (503) is dropped"
                    );
                    continue;
                }
                let parts = match parts(&m.payload) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "a body in {IN_STREAM} is not readable; it is skipped");
                        continue;
                    }
                };
                for part in parts {
                    let mut msg = MessageWriter::default();
                    msg.compressed_part(part.region, part.bytes);
                    let mut headers = HeaderMap::new();
                    let id = format!("{}.{seq}.{}", self.node, part.region);
                    headers.insert("Nats-Msg-Id", id.as_str());
                    let ack = self
                        .js
                        .publish_with_headers(
                            part_subject(part.region),
                            headers,
                            msg.finish().into(),
                        )
                        .await
                        .map_err(|e| {
                            format!("publishing a part for region {:?}: {e}", part.region)
                        })?;
                    acks.push(ack);
                }
            }
            let n = acks.len() as u64;
            for ack in acks {
                ack.await
                    .map_err(|e| format!("a region part was not acknowledged: {e}"))?;
            }
            self.stats().parts_published.fetch_add(n, Relaxed);
            input
                .purge()
                .filter(body_subject(&self.node))
                .sequence(last + 1)
                .await
                .map_err(|e| format!("purging split bodies up to {last}: {e}"))?;
        }
    }

    /// Applies region `r`'s log to this node, forever.
    async fn apply_forever(self: Arc<Self>, r: RegionId) {
        loop {
            if let Err(e) = self.apply(r).await {
                let region = &self.engine.regions()[r.0].name;
                tracing::warn!(%region, error = %e, "applying the region's log stopped; starting again after the last applied message");
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn apply(&self, r: RegionId) -> Result<(), String> {
        let region = self.engine.regions()[r.0].name.to_string();
        let marker = self.applied_dir.join(format!("{region}.applied"));
        let applied = read_applied(&marker)?;
        self.stats()
            .applied_seq
            .lock()
            .insert(region.clone(), applied);
        let name = region_stream(&region);
        let log = self
            .js
            .get_stream(&name)
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        let consumer = log
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: applied + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| format!("consumer on {name}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("reading {name}: {e}"))?;
        loop {
            let batch = next_batch(&mut messages).await?;
            let Some(last) = batch.last().map(|m| m.seq) else {
                return Err(format!("stream {name} ended"));
            };
            let mut payloads = Vec::new();
            for m in &batch {
                let seq = m.seq;
                for part in parts(&m.payload).map_err(|e| format!("message {seq}: {e}"))? {
                    if part.region != region {
                        return Err(format!(
                            "message {seq} of {name} holds rows of region {:?}",
                            part.region
                        ));
                    }
                    payloads.extend(
                        part.payloads()
                            .map_err(|e| format!("message {seq} of {name}: {e}"))?,
                    );
                }
            }
            self.commit_payloads(r, &region, payloads).await?;
            let m = marker.clone();
            tokio::task::spawn_blocking(move || write_applied(&m, last))
                .await
                .map_err(|e| format!("recording the applied sequence: {e}"))??;
            self.stats().applied_seq.lock().insert(region.clone(), last);
            self.stats()
                .messages_applied
                .fetch_add(batch.len() as u64, Relaxed);
        }
    }

    /// Checks and commits payloads of region `r` here (one group commit), waiting while
    /// memory is full.
    async fn commit_payloads(
        &self,
        r: RegionId,
        region: &str,
        payloads: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let engine = self.engine.clone();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let prepared = tokio::task::spawn_blocking(move || {
            payloads
                .iter()
                .map(|p| engine.prepare_payload(p, now))
                .collect::<Option<Vec<_>>>()
        })
        .await
        .map_err(|e| format!("checking rows: {e}"))?
        .ok_or("a payload of the region's log is not readable")?;
        // One group commit for as many rows as an eighth of memory.limit holds (a batch of
        // the log can be larger than one body was).
        let budget = self.engine.memory_limit() / 8;
        let mut group = (Vec::new(), 0u64, 0u64);
        let mut prepared = prepared.into_iter().peekable();
        while let Some((db, p)) = prepared.next() {
            if p.rejected_count > 0 {
                self.stats()
                    .lines_refused
                    .fetch_add(p.rejected_count as u64, Relaxed);
                let first = p.rejected.first().map(|l| l.error_message.clone());
                tracing::error!(%region, db, refused = p.rejected_count, first = ?first, "rows of the region's log were refused here");
            }
            if let Some(((other, _), _)) = p.batches.iter().find(|((x, _), _)| *x != r) {
                // Nodes must share one regions.toml: refuse rather than misroute.
                return Err(format!(
                    "rows of region {region:?} route to region {:?} under this node's config; the nodes' regions.toml differ",
                    self.engine.regions()[other.0].name
                ));
            }
            group.0.extend(p.batches);
            group.1 += p.memory_cost;
            group.2 += p.accepted as u64;
            let next_cost = prepared.peek().map_or(u64::MAX, |(_, n)| n.memory_cost);
            if group.1.saturating_add(next_cost) > budget {
                let (batches, cost, points) = std::mem::take(&mut group);
                self.commit_group(region, batches, cost).await?;
                self.stats().points_applied.fetch_add(points, Relaxed);
            }
        }
        Ok(())
    }

    async fn commit_group(
        &self,
        region: &str,
        batches: Vec<(
            (RegionId, crate::model::ShardId),
            crate::region::prepare::ShardBatch,
        )>,
        cost: u64,
    ) -> Result<(), String> {
        if batches.is_empty() {
            return Ok(());
        }
        loop {
            match self.engine.admit(cost, 0) {
                Ok(()) => break,
                Err(crate::region::WriteError::Overloaded(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("rows of region {region:?} cannot be held: {e}")),
            }
        }
        self.engine
            .commit(batches, true)
            .await
            .map_err(|e| format!("committing rows of region {region:?}: {e}"))
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
async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<(), String> {
    let name = config.name.clone();
    if js.get_stream(&name).await.is_ok() {
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

/// A message as read from a stream.
struct Read {
    seq: u64,
    /// When JetStream stored it (Unix ns, the server's clock).
    stored: i64,
    /// A body's deadline header.
    deadline: Option<i64>,
    payload: Bytes,
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

fn read_applied(path: &Path) -> Result<u64, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{} does not hold a stream sequence", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Records the last applied sequence: a temporary file, fsynced, renamed over the marker.
fn write_applied(path: &Path, seq: u64) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("applied.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(seq.to_string().as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("recording applied sequence in {}: {e}", path.display()))
}
