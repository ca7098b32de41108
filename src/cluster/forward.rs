//! Single-node mode and `--region` deployments without `[cluster]`: parts of hosted
//! regions are committed here (WAL, durable); parts of other regions are sent to the node at
//! the region's `url` as line protocol, and the write is acknowledged once every node has.

use std::collections::HashMap;
use std::sync::Arc;

use super::remote::RemoteClient;
use super::{Dispatch, DispatchError, DispatchFuture, WriteDispatch};
use crate::model::{RegionId, ShardId};
use crate::region::Engine;
use crate::region::prepare::ShardBatch;

/// Commits locally, forwards over HTTP.
pub struct Direct {
    engine: Arc<Engine>,
    remote: RemoteClient,
}

impl Direct {
    pub fn new(engine: Arc<Engine>, remote: RemoteClient) -> Direct {
        Direct { engine, remote }
    }

    async fn run(&self, w: Dispatch) -> Result<(), DispatchError> {
        let (local, elsewhere): (Vec<_>, Vec<_>) = w
            .parts
            .into_iter()
            .partition(|((r, _), _)| self.engine.regions()[r.0].hosted());
        let forwards = forward_bodies(&self.engine, elsewhere, w.forwarded)?;
        let local_commit = async {
            if local.is_empty() {
                Ok(())
            } else {
                self.engine
                    .commit(local, w.sync)
                    .await
                    .map_err(DispatchError::from)
            }
        };
        let remote_commits = join_all_spawned(forwards.into_iter().map(|(url, region, body)| {
            let remote = self.remote.clone();
            let db = w.db.clone();
            let sync = w.sync;
            async move {
                remote
                    .forward_write(&url, &db, body, sync)
                    .await
                    .map_err(|(status, msg)| DispatchError::Remote {
                        status,
                        message: format!("region {region:?}: {msg}; nothing was acknowledged"),
                    })
            }
        }));
        let (l, r) = tokio::join!(local_commit, remote_commits);
        l?;
        r.into_iter().collect()
    }
}

impl WriteDispatch for Direct {
    fn dispatch(&self, write: Dispatch) -> DispatchFuture<'_> {
        Box::pin(self.run(write))
    }
}

/// Line protocol bodies (timestamps in ns) for parts of regions hosted by other nodes:
/// (url, region name, body).
fn forward_bodies(
    engine: &Engine,
    parts: Vec<((RegionId, ShardId), ShardBatch)>,
    already_forwarded: bool,
) -> Result<Vec<(String, String, String)>, DispatchError> {
    let unavailable = |message: String| DispatchError::Remote {
        status: 503,
        message,
    };
    let mut by_region: HashMap<usize, String> = HashMap::new();
    for ((r, _), b) in parts {
        let region = &engine.regions()[r.0];
        if already_forwarded {
            return Err(unavailable(format!(
                "region {:?} is not hosted by this node, which received the points from another node (check the regions' url settings)",
                region.name
            )));
        }
        if region.reach().url.is_none() {
            return Err(unavailable(format!(
                "region {:?} is not hosted by this node and has no url in the config",
                region.name
            )));
        }
        super::wire::payload_lines(&b.payload, by_region.entry(r.0).or_default());
    }
    Ok(by_region
        .into_iter()
        .filter_map(|(r, body)| {
            let region = &engine.regions()[r];
            region
                .reach()
                .url
                .clone()
                .map(|u| (u, region.name.to_string(), body))
        })
        .collect())
}

/// Runs futures concurrently as tasks and collects their outputs in order.
async fn join_all_spawned<F>(futs: impl Iterator<Item = F>) -> Vec<Result<(), DispatchError>>
where
    F: std::future::Future<Output = Result<(), DispatchError>> + Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| {
            Err(DispatchError::Remote {
                status: 503,
                message: format!("forwarding task failed: {e}"),
            })
        }));
    }
    out
}
