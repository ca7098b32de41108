//! InfluxQL over the engine: the statements of `/query` executed as InfluxDB 1.x answers
//! them, as a front end of the native query layer (no second engine).
//!
//! ```text
//! q ──influxql::parse_query──▶ statements ──execute──▶ one StatementResult each
//!   SHOW …              show.rs: the schema registry (fields, tag keys) and the series
//!                       catalog (tag values, series, cardinalities); no data is read
//!   CREATE/DROP …       the database list
//!   SELECT …            select.rs: per measurement, the time range and the tag predicates
//!                       go to the native planner; simple aggregates are computed by the
//!                       regions as partial aggregates (`query::gather`), everything else
//!                       from the raw points the regions return, within the query budget
//! ```
//! A statement that fails answers its own `error`; the statements after it still run.
//! Anything InfluxDB supports and Meridian does not is an error naming it, never a
//! silently different answer.

pub mod cond;
pub mod delete;
pub mod funcs;
pub mod native;
pub mod result;
pub mod select;
pub mod show;
pub mod show_nodes;
pub mod stream;
pub mod transform;

use std::sync::Arc;
use std::time::Instant;

use crate::influxql::Statement;
use crate::query::budget::QueryMemory;
use crate::query::remote::Nodes;
use crate::region::Engine;
use result::{Chunking, StatementResult};

/// What every statement of one request can reach.
pub struct Ctx {
    pub engine: Arc<Engine>,
    pub remote: Nodes,
    pub query_memory: Arc<QueryMemory>,
    /// `query.timeout` and `query.max_rows`.
    pub timeout: std::time::Duration,
    pub max_rows: usize,
    /// The request's `db` and `rp` parameters.
    pub db: Option<String>,
    pub rp: Option<String>,
    /// `now()` of the whole request, in nanoseconds.
    pub now_ns: i64,
    /// When the request arrived (its deadline is `started + timeout`).
    pub started: Instant,
    /// Sent by another node: deletes apply to this node's regions only.
    pub forwarded: bool,
    /// Cluster mode: what a delete waits for first (see [`WriteBarrier`]).
    pub barrier: Option<Arc<dyn crate::query::remote::WriteBarrier>>,
    /// Per database, its schema over every region, asked once per request ([`Ctx::schema`]).
    /// With it, the warnings of the nodes that did not give theirs, repeated to every
    /// statement that uses it.
    pub schemas: tokio::sync::Mutex<std::collections::HashMap<String, CachedSchema>>,
    /// Warnings of the statement running (a node that did not answer), sent as its
    /// `messages`.
    pub warnings: parking_lot::Mutex<Vec<String>>,
}

/// A schema asked for in this request, and the warnings of the nodes that did not give
/// theirs.
pub type CachedSchema = (Arc<DbSchema>, Vec<String>);

/// A database's measurements and their columns, over every region.
pub type DbSchema =
    std::collections::BTreeMap<Arc<str>, Arc<crate::region::schema::MeasurementSchema>>;

impl Ctx {
    /// The database a statement works on: its own `ON db` / `FROM db..m`, else the
    /// request's `db`.
    pub fn database(&self, named: Option<&str>) -> Result<String, String> {
        match named.or(self.db.as_deref()).filter(|d| !d.is_empty()) {
            Some(db) => Ok(db.to_string()),
            None => Err("database name required".into()),
        }
    }

    /// Whether `db` exists: created, or holding data (here or in a region of another node).
    pub async fn database_exists(&self, db: &str) -> bool {
        self.database_exists_here(db) || !self.schema(db).await.is_empty()
    }

    /// Whether `db` was created, or holds data in a region of this node.
    pub fn database_exists_here(&self, db: &str) -> bool {
        self.engine.databases().contains(db)
            || self.engine.registry().get_any(db)
            || self.engine.series().databases().iter().any(|d| &**d == db)
    }

    /// Adds a warning to the statement running (sent as its `messages`).
    pub fn warn(&self, text: String) {
        self.warnings.lock().push(text);
    }

    /// One list of urls (the node, then its replicas) per region hosted elsewhere; a node
    /// hosting several regions is listed once.
    pub fn remote_nodes(&self) -> Vec<Vec<String>> {
        let mut nodes: Vec<Vec<String>> = Vec::new();
        for r in self.engine.regions().iter().filter(|r| !r.hosted()) {
            let urls = r.reach().urls();
            if !urls.is_empty() && !nodes.contains(&urls) {
                nodes.push(urls);
            }
        }
        nodes
    }

    /// Forgets the schemas asked so far (a statement of the request changed them).
    pub async fn forget_schemas(&self) {
        self.schemas.lock().await.clear();
    }

    /// The measurements of `db` and their columns in the regions this node hosts (see
    /// [`Engine::live_measurements`](crate::region::Engine::live_measurements)).
    pub fn local_schema(&self, db: &str) -> DbSchema {
        self.engine.live_measurements(db).into_iter().collect()
    }

    /// The measurements of `db` and their columns over every region: this node's schema
    /// registry (the regions it hosts), and for regions hosted elsewhere what their nodes
    /// answer (asked once per request, each node once, within half the query timeout). A
    /// column two nodes know with different types keeps this node's type. A node that does
    /// not answer adds nothing: its regions' answers are partial anyway.
    pub async fn schema(&self, db: &str) -> Arc<DbSchema> {
        let mut cache = self.schemas.lock().await;
        if let Some((s, warnings)) = cache.get(db) {
            for w in warnings {
                self.warn(w.clone());
            }
            return s.clone();
        }
        let mut warnings = Vec::new();
        let mut schema = self.local_schema(db);
        // A statement another node forwarded is answered for this node's regions only.
        let nodes = if self.forwarded {
            Vec::new()
        } else {
            self.remote_nodes()
        };
        // Each node at most half the query timeout from now: a hung node must leave the
        // regions that do answer the time to (its own are then reported as timed out), and
        // costs only its own columns.
        let deadline = tokio::time::Instant::now() + self.timeout / 2;
        // A hung node is left for a replica after a quarter of the timeout, as for data.
        let hedge = self.timeout / 4;
        let asks = nodes.iter().map(|urls| async move {
            match tokio::time::timeout_at(deadline, self.remote.schema_any(urls, db, hedge)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!(
                    "no answer from {} within half the query timeout",
                    urls.join(" or ")
                )),
            }
        });
        for answer in futures::future::join_all(asks).await {
            match answer {
                Ok(wire) => merge_schema(&mut schema, wire),
                Err(e) => {
                    tracing::warn!(db, error = %e, "a node did not give its schema: its regions' columns are missing from this statement");
                    warnings.push(format!(
                        "the columns of regions on another node are missing ({e})"
                    ));
                }
            }
        }
        for w in &warnings {
            self.warn(w.clone());
        }
        let schema = Arc::new(schema);
        cache.insert(db.to_string(), (schema.clone(), warnings));
        schema
    }

    /// Checks a retention policy name: Meridian has one, `autogen`.
    pub fn check_rp(&self, db: &str, rp: Option<&str>) -> Result<(), String> {
        match rp.or(self.rp.as_deref()).filter(|r| !r.is_empty()) {
            None | Some("autogen") => Ok(()),
            Some(other) => Err(format!(
                "retention policy not found: {other} (database {db} has one policy, autogen)"
            )),
        }
    }

    /// Waits (within the request's deadline) until the series catalog has read every file
    /// of the start-up.
    pub async fn series_loaded(&self) -> Result<(), String> {
        let deadline = self.started + self.timeout;
        while !self.engine.series().is_loaded() {
            if Instant::now() >= deadline {
                return Err(
                    "the series catalog is still being loaded after start-up; retry shortly".into(),
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Adds what another node knows to `schema`; a column known already keeps its kind.
fn merge_schema(schema: &mut DbSchema, wire: crate::query::remote::WireSchema) {
    for (m, cols) in wire.measurements {
        let entry = schema.entry(Arc::from(m.as_str())).or_default();
        if cols.iter().all(|(c, _)| entry.contains_key(c.as_str())) {
            continue;
        }
        let merged = Arc::make_mut(entry);
        for (c, kind) in cols {
            merged.entry(Arc::from(c.as_str())).or_insert(kind);
        }
    }
}

/// Runs the statements in order; each gets its own result. After a statement fails, the
/// later ones are not executed (as InfluxDB: the answer ends with the failed one).
/// A statement Meridian does not support arrives as its error text.
pub async fn execute(
    ctx: &Ctx,
    statements: Vec<Result<Statement, String>>,
) -> Vec<StatementResult> {
    let mut out = Vec::with_capacity(statements.len());
    for (id, stmt) in statements.into_iter().enumerate() {
        let result = match stmt {
            Ok(s) => execute_one(ctx, id, &s).await,
            Err(e) => StatementResult::error(id, e),
        };
        let failed = result.error.is_some();
        out.push(result);
        if failed {
            break;
        }
    }
    out
}

/// A SHOW of the series catalog on this node (its own regions).
pub async fn show_catalog(ctx: &Ctx, st: Statement) -> Result<Vec<result::ResultSeries>, String> {
    match &st {
        Statement::ShowMeasurements(s) => show::measurements(ctx, s).await,
        Statement::ShowTagKeys(s) => show::tag_keys(ctx, s).await,
        Statement::ShowTagValues(s) => show::tag_values(ctx, s).await,
        Statement::ShowSeries(s) => show::series(ctx, s).await,
        _ => Err("not a SHOW of the series catalog".into()),
    }
}

/// Runs one statement, numbered `id` in its request.
pub async fn execute_one(ctx: &Ctx, id: usize, stmt: &Statement) -> StatementResult {
    let outcome = run_statement(ctx, stmt).await;
    let messages = std::mem::take(&mut *ctx.warnings.lock())
        .into_iter()
        .map(|w| ("warning".to_string(), w))
        .collect();
    match outcome {
        Ok(series) => StatementResult {
            statement_id: id,
            series,
            messages,
            chunking: match stmt {
                Statement::Select(_) | Statement::ShowSeries(_) => Chunking::Rows,
                Statement::ShowTagValues(_) => Chunking::PerSeriesWhole,
                _ => Chunking::PerSeries,
            },
            ..Default::default()
        },
        Err(e) => StatementResult::error(id, e),
    }
}

async fn run_statement(ctx: &Ctx, stmt: &Statement) -> Result<Vec<result::ResultSeries>, String> {
    match stmt {
        Statement::Select(s) => select::select(ctx, s).await,
        // Databases with data only in other nodes' regions are theirs to list.
        Statement::ShowDatabases => {
            show_nodes::across_nodes(ctx, stmt, |ctx, _| async move { Ok(show::databases(ctx)) })
                .await
        }
        Statement::ShowRetentionPolicies { database } => {
            show::retention_policies(ctx, database.as_deref()).await
        }
        // Answers from the series catalog: every node's.
        Statement::ShowMeasurements(_)
        | Statement::ShowTagKeys(_)
        | Statement::ShowTagValues(_)
        | Statement::ShowSeries(_) => show_nodes::across_nodes(ctx, stmt, show_catalog).await,
        Statement::ShowFieldKeys(s) => show::field_keys(ctx, s).await,
        Statement::ShowCardinality(s) => show_nodes::cardinality(ctx, s).await,
        Statement::ShowSystem(s) => show::system(s),
        Statement::CreateDatabase(c) => {
            if let Some(why) = crate::model::db_name_problem(&c.name) {
                return Err(why);
            }
            ctx.engine
                .databases()
                .create(&c.name)
                .map_err(|e| format!("could not create database {}: {e}", c.name))?;
            ctx.forget_schemas().await;
            Ok(Vec::new())
        }
        Statement::DropDatabase { .. }
        | Statement::DropMeasurement { .. }
        | Statement::DropSeries(_)
        | Statement::Delete(_) => delete::run(ctx, stmt, &stmt.to_string()).await,
    }
}
