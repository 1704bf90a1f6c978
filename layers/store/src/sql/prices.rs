//! Model prices: read, set, removed, and seeded from the gateway's file.

use super::SqlStore;
use super::rows;
use super::write::{begin_write, count};
use crate::StoreError;
use crate::directory::now;
use crate::records::{Price, PutPrice};

async fn write_price(conn: &mut sqlx::AnyConnection, price: &Price) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM prices WHERE model = $1")
        .bind(price.model.clone())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO prices (model, input, output, cached_input, updated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(price.model.clone())
    .bind(price.input)
    .bind(price.output)
    .bind(price.cached_input)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqlStore {
    /// Every price, by model.
    pub async fn prices(&self) -> Result<Vec<Price>, StoreError> {
        rows::prices(&mut *self.pool.acquire().await?).await
    }

    /// Set `model`'s price (a trailing `*` prices every model with that prefix).
    pub async fn put_price(
        &self,
        actor: &str,
        model: &str,
        put: PutPrice,
    ) -> Result<Price, StoreError> {
        let price = Price {
            model: model.to_owned(),
            input: put.input,
            output: put.output,
            cached_input: put.cached_input,
        };
        price.check()?;
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "price.put", model).await?;
        write_price(&mut tx, &price).await?;
        tx.commit().await?;
        Ok(price)
    }

    /// Remove `model`'s price: it costs nothing again.
    pub async fn delete_price(&self, actor: &str, model: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "price.delete", model).await?;
        if count(
            &mut tx,
            "SELECT COUNT(*) FROM prices WHERE model = $1",
            Some(model),
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("price {model}")));
        }
        sqlx::query("DELETE FROM prices WHERE model = $1")
            .bind(model.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Insert each price whose model has none in the store yet; what is there is left as it
    /// is. Returns the models left alone.
    pub async fn seed_prices(&self, prices: &[Price]) -> Result<Vec<String>, StoreError> {
        if prices.is_empty() {
            return Ok(Vec::new());
        }
        for price in prices {
            price.check()?;
        }
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, "config", "seed.prices", "").await?;
        let mut kept = Vec::new();
        for price in prices {
            if count(
                &mut tx,
                "SELECT COUNT(*) FROM prices WHERE model = $1",
                Some(&price.model),
            )
            .await?
                > 0
            {
                kept.push(price.model.clone());
                continue;
            }
            write_price(&mut tx, price).await?;
        }
        tx.commit().await?;
        Ok(kept)
    }
}
