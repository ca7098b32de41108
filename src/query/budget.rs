//! Memory of queries: each query's partial answers (raw rows, aggregate states) are counted
//! as they grow, against a per-query budget (`query.max_memory`) and against one budget
//! shared by every query running at once (`query.total_memory`), so neither one huge query
//! nor many concurrent ones can take the host's memory.
//!
//! Scans charge the growth of their partial answer at every batch of rows they fold; a
//! query over its own budget stops with [`OVER_QUERY_MEMORY`] (the whole answer is a 413:
//! it would never fit), one that finds the shared budget spent stops with
//! [`OVER_TOTAL_MEMORY`] (a 503: it may fit later). What a query charged is given back when
//! it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Start of the error of a query whose answer would pass its own budget (or
/// `query.max_rows`): it can never be answered as asked.
pub const OVER_QUERY_MEMORY: &str = "the answer is too large:";
/// Start of the error of a query refused because running queries hold the shared budget.
pub const OVER_TOTAL_MEMORY: &str = "queries are busy:";

/// The budget shared by every query of the server.
#[derive(Debug)]
pub struct QueryMemory {
    used: AtomicU64,
    total: u64,
    per_query: u64,
}

impl QueryMemory {
    pub fn new(total: u64, per_query: u64) -> Arc<QueryMemory> {
        Arc::new(QueryMemory {
            used: AtomicU64::new(0),
            total,
            per_query,
        })
    }

    /// Bytes held by running queries now.
    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// `query.max_memory`: what one query may hold.
    pub fn per_query(&self) -> u64 {
        self.per_query
    }

    /// A new query's budget.
    pub fn budget(self: &Arc<Self>) -> QueryBudget {
        QueryBudget {
            shared: self.clone(),
            held: AtomicU64::new(0),
        }
    }
}

/// One query's memory: what it holds, charged to the shared budget; given back on drop.
#[derive(Debug)]
pub struct QueryBudget {
    shared: Arc<QueryMemory>,
    held: AtomicU64,
}

impl QueryBudget {
    /// Charges `more` bytes (the growth of a partial answer), or refuses (nothing charged).
    pub fn charge(&self, more: u64) -> Result<(), String> {
        let s = &self.shared;
        let held = self.held.load(Relaxed).saturating_add(more);
        if held > s.per_query {
            return Err(format!(
                "{OVER_QUERY_MEMORY} it would hold more than query.max_memory ({} bytes) in memory; narrow the time range or the where clause, use fewer group_by tags, a wider every, an aggregate or a limit (a partition of many overlapping files is merged in memory: meridian-compact makes it one)",
                s.per_query
            ));
        }
        if s.used
            .fetch_update(Relaxed, Relaxed, |u| {
                let next = u.saturating_add(more);
                (next <= s.total).then_some(next)
            })
            .is_err()
        {
            return Err(format!(
                "{OVER_TOTAL_MEMORY} the queries running now hold query.total_memory ({} bytes); retry shortly",
                s.total
            ));
        }
        self.held.fetch_add(more, Relaxed);
        Ok(())
    }
}

impl Drop for QueryBudget {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        let _ = self
            .shared
            .used
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(held)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_query_and_shared_budgets() {
        let m = QueryMemory::new(1000, 600);
        let a = m.budget();
        a.charge(500).unwrap();
        let e = a.charge(200).unwrap_err();
        assert!(
            e.starts_with(OVER_QUERY_MEMORY) && e.contains("query.max_memory"),
            "{e}"
        );
        let b = m.budget();
        b.charge(400).unwrap();
        let e = b.charge(200).unwrap_err();
        assert!(e.starts_with(OVER_TOTAL_MEMORY), "{e}");
        assert_eq!(m.used(), 900);
        drop(a);
        assert_eq!(m.used(), 400);
        b.charge(200).unwrap();
        drop(b);
        assert_eq!(m.used(), 0);
    }
}
