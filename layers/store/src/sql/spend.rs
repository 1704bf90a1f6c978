//! The spend table: batches added, reports read, and the sums budgets are seeded from.

use std::collections::HashMap;

use sqlx::Row;

use super::SqlStore;
use crate::StoreError;
use crate::spend::{SpendGroup, SpendGroupTotal, SpendRow, SpendTotals};

/// A count as stored (the databases' integers are signed).
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counted(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Sums in both dialects: Postgres sums a BIGINT as NUMERIC, which is cast back.
const SUMS: &str = "COALESCE(CAST(SUM(requests) AS BIGINT), 0) AS requests, \
     COALESCE(CAST(SUM(input_tokens) AS BIGINT), 0) AS input_tokens, \
     COALESCE(CAST(SUM(output_tokens) AS BIGINT), 0) AS output_tokens, \
     COALESCE(CAST(SUM(cached_tokens) AS BIGINT), 0) AS cached_tokens, \
     COALESCE(CAST(SUM(estimated) AS BIGINT), 0) AS estimated, \
     COALESCE(SUM(cost_usd), 0.0) AS cost_usd";

impl SqlStore {
    /// Add `rows` to the spend table, all or nothing (one transaction; a row that is there
    /// already is added to). Not an admin write: no version, no audit entry.
    pub async fn add_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in rows {
            let t = &row.totals;
            sqlx::query(
                "INSERT INTO spend (day, user_id, key_id, model, requests, input_tokens, \
                 output_tokens, cached_tokens, estimated, cost_usd) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (day, user_id, key_id, model) DO UPDATE SET \
                 requests = spend.requests + excluded.requests, \
                 input_tokens = spend.input_tokens + excluded.input_tokens, \
                 output_tokens = spend.output_tokens + excluded.output_tokens, \
                 cached_tokens = spend.cached_tokens + excluded.cached_tokens, \
                 estimated = spend.estimated + excluded.estimated, \
                 cost_usd = spend.cost_usd + excluded.cost_usd",
            )
            .bind(row.day.clone())
            .bind(row.user.clone())
            .bind(row.key.clone())
            .bind(row.model.clone())
            .bind(stored(t.requests))
            .bind(stored(t.input_tokens))
            .bind(stored(t.output_tokens))
            .bind(stored(t.cached_tokens))
            .bind(stored(t.estimated_requests))
            .bind(t.cost_usd)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spend from day `from` to day `to` (inclusive, `YYYY-MM-DD`), grouped, in the group's
    /// order.
    pub async fn spend(
        &self,
        from: &str,
        to: &str,
        group_by: SpendGroup,
    ) -> Result<Vec<SpendGroupTotal>, StoreError> {
        let column = group_by.column();
        let sql = format!(
            "SELECT {column} AS grp, {SUMS} FROM spend WHERE day >= $1 AND day <= $2 \
             GROUP BY {column} ORDER BY {column}"
        );
        let rows = sqlx::query(&sql)
            .bind(from.to_owned())
            .bind(to.to_owned())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SpendGroupTotal {
                    group: row.try_get("grp")?,
                    totals: totals(row)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// USD spent since day `since` (inclusive; `""` for all time) per user and per key:
    /// what budgets are held to.
    pub async fn spent_since(
        &self,
        since: &str,
    ) -> Result<(HashMap<String, f64>, HashMap<String, f64>), StoreError> {
        let mut out = (HashMap::new(), HashMap::new());
        for (column, into) in [("user_id", &mut out.0), ("key_id", &mut out.1)] {
            let sql = format!(
                "SELECT {column} AS account, COALESCE(SUM(cost_usd), 0.0) AS cost_usd \
                 FROM spend WHERE day >= $1 GROUP BY {column}"
            );
            for row in sqlx::query(&sql)
                .bind(since.to_owned())
                .fetch_all(&self.pool)
                .await?
            {
                let account: String = row.try_get("account")?;
                if !account.is_empty() {
                    into.insert(account, row.try_get("cost_usd")?);
                }
            }
        }
        Ok(out)
    }
}

fn totals(row: &sqlx::any::AnyRow) -> Result<SpendTotals, sqlx::Error> {
    Ok(SpendTotals {
        requests: counted(row.try_get("requests")?),
        input_tokens: counted(row.try_get("input_tokens")?),
        output_tokens: counted(row.try_get("output_tokens")?),
        cached_tokens: counted(row.try_get("cached_tokens")?),
        estimated_requests: counted(row.try_get("estimated")?),
        cost_usd: row.try_get("cost_usd")?,
    })
}
