//! Admin endpoints: `GET /api/v1/regions`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::Shared;

/// Regions, where they are hosted, and what they hold.
pub async fn regions(State(state): State<Shared>) -> Json<Value> {
    let regions: Vec<Value> = state
        .engine
        .regions()
        .iter()
        .map(|r| match &r.manifest {
            Some(m) => {
                let files = m.files();
                json!({
                    "name": &*r.name,
                    "hosted": true,
                    "url": r.url,
                    "files": files.len(),
                    "file_bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
                    "file_rows": files.iter().map(|f| f.rows).sum::<u64>(),
                })
            }
            None => json!({ "name": &*r.name, "hosted": false, "url": r.url }),
        })
        .collect();
    Json(json!({
        "regions": regions,
        "memory_bytes": state.engine.metrics().memory_bytes.load(std::sync::atomic::Ordering::Relaxed),
    }))
}
