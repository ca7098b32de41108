//! Retention and downsampling run by the server itself, from the config's `[[retention]]`
//! rules: every minute, each hosted region's partitions that ended before what a rule keeps
//! are dropped, and windows of a rolled-up measurement older than its `downsample_after`
//! are rolled up. The same units as `meridian-compact` (`exec`): each under its lease, one
//! manifest edit each, replaced files retired and deleted by the server after the query
//! grace. Queries hide expired points at once (`query::scan`); this makes it physical.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::catalog::manifest::now_ns;
use crate::config::{RetentionRule, RetentionRules};

use super::datadir::{RegionDir, wal_floors};
use super::exec::{ExecSettings, drop_partition, roll_up_window};
use super::plan::{Filters, Policy, plan_retention, plan_rollups};
use super::{CompactionError, Event};

/// How often the rules are applied.
pub const EVERY: Duration = Duration::from_secs(60);
/// Size of rollup outputs (as `meridian-compact --target-size`).
const TARGET_BYTES: u64 = 256 << 20;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub partitions_dropped: u64,
    pub windows_rolled_up: u64,
    pub failures: u64,
}

/// Starts the background thread (none without rules); it ends soon after `stopping` is set.
pub fn spawn(
    regions: Vec<RegionDir>,
    rules: Arc<RetentionRules>,
    partition_duration_ns: i64,
    time_unit: crate::config::FileTimeUnit,
    stopping: Arc<AtomicBool>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Option<std::thread::JoinHandle<()>> {
    if rules.is_empty() {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("meridian-retention".into())
        .spawn(move || {
            // The first pass soon after start, then every minute.
            let mut wait = Duration::from_secs(5);
            loop {
                let step = Duration::from_millis(250);
                let mut waited = Duration::ZERO;
                while waited < wait {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(step);
                    waited += step;
                }
                wait = EVERY;
                let p = run_once(&regions, &rules, partition_duration_ns, time_unit, now_ns());
                let m = &metrics;
                m.retention_passes.fetch_add(1, Ordering::Relaxed);
                m.retention_partitions_dropped
                    .fetch_add(p.partitions_dropped, Ordering::Relaxed);
                m.retention_windows_rolled_up
                    .fetch_add(p.windows_rolled_up, Ordering::Relaxed);
                m.retention_failures
                    .fetch_add(p.failures, Ordering::Relaxed);
                if p != Pass::default() {
                    info!(
                        dropped = p.partitions_dropped,
                        rolled_up = p.windows_rolled_up,
                        failures = p.failures,
                        "retention pass"
                    );
                }
            }
        });
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            warn!(
                "cannot start retention in the background: expired points stay hidden but stored: {e}"
            );
            None
        }
    }
}

fn policy(rule: &RetentionRule, pd: i64, now: i64) -> Policy {
    Policy {
        now_ns: now,
        partition_duration_ns: pd,
        grace_ns: 0,
        target_bytes: TARGET_BYTES,
        filters: Filters {
            dbs: vec![rule.db.clone()],
            measurements: rule.measurement.iter().cloned().collect(),
            partitions: Vec::new(),
        },
        compact: false,
        retain_ns: rule.keep_ns,
        downsample: rule.downsample.clone(),
    }
}

/// Applies every rule once to every region, as of `now`.
pub fn run_once(
    regions: &[RegionDir],
    rules: &RetentionRules,
    pd: i64,
    time_unit: crate::config::FileTimeUnit,
    now: i64,
) -> Pass {
    let mut pass = Pass::default();
    let settings = ExecSettings {
        time_unit,
        ..ExecSettings::default()
    };
    // Steps and notes of a unit are for `meridian-compact`'s progress display; the server
    // logs each unit's outcome below.
    let mut quiet = |_: &Event<'_>| {};
    for r in regions {
        if r.shared.as_ref().is_some_and(|l| l.epoch() == 0) {
            continue;
        }
        let floors = match wal_floors(&r.dir) {
            Ok(f) => f,
            Err(e) => {
                warn!(region = %r.name, "retention: cannot read the WAL positions: {e}");
                pass.failures += 1;
                continue;
            }
        };
        for rule in &rules.rules {
            let policy = policy(rule, pd, now);
            if rule.keep_ns.is_some() {
                let files = r.manifest.files();
                for d in plan_retention(&files, &floors, &policy) {
                    // A database's keep leaves measurements that keep by a rule of their own.
                    if rules.keep_rule(&d.partition.db, &d.partition.measurement) != Some(rule) {
                        continue;
                    }
                    match drop_partition(r, &d, &settings, &mut quiet) {
                        Ok(_) => pass.partitions_dropped += 1,
                        // Another compactor holds or did this unit.
                        Err(CompactionError::Busy(_)) => {}
                        Err(error) => {
                            pass.failures += 1;
                            warn!(region = %r.name, db = %d.partition.db, measurement = %d.partition.measurement, %error, "retention: dropping a partition failed; retried next pass");
                        }
                    }
                }
            }
            if rule.downsample.is_some() {
                let files = r.manifest.files();
                let (rollups, _) = plan_rollups(&files, &policy);
                for ro in rollups {
                    match roll_up_window(r, &ro, &policy, &settings, pd, &mut quiet) {
                        Ok(report) if report.files_out > 0 => pass.windows_rolled_up += 1,
                        Ok(_) | Err(CompactionError::Busy(_)) => {}
                        Err(error) => {
                            pass.failures += 1;
                            warn!(region = %r.name, db = %ro.db, measurement = %ro.source_measurement, %error, "retention: a rollup failed; retried next pass");
                        }
                    }
                }
            }
        }
    }
    pass
}
