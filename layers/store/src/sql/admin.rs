//! The admin API's reads and writes. Every write is one transaction that first moves the
//! store's version (which also orders writers: Postgres locks the row, SQLite the file) and
//! records itself in the audit log; an error rolls all of it back.

use std::sync::Arc;

use tower_openai_acl::AccessControl;

use super::SqlStore;
use super::rows;
use super::write::{begin_write, count, insert_key, write_model};
use crate::StoreError;
use crate::directory::now;
use crate::records::{
    AuditEntry, CreateKey, Group, KeyInfo, ModelRecord, NewKey, PutModel, check_id, check_text,
};

impl SqlStore {
    /// Every group.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        rows::groups(&mut *self.pool.acquire().await?).await
    }

    /// Create a group.
    pub async fn create_group(&self, actor: &str, mut group: Group) -> Result<Group, StoreError> {
        check_id("id", &group.id)?;
        if group.name.is_empty() {
            group.name = group.id.clone();
        }
        check_text("name", &group.name)?;
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "group.create", &group.id).await?;
        if count(
            &mut tx,
            "SELECT COUNT(*) FROM groups WHERE id = $1",
            Some(&group.id),
        )
        .await?
            > 0
        {
            return Err(StoreError::Conflict(format!("group {}", group.id)));
        }
        sqlx::query("INSERT INTO groups (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(group.id.clone())
            .bind(group.name.clone())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Remove group `id` from every user and every access record, then the group.
    pub async fn delete_group(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "group.delete", id).await?;
        if count(
            &mut tx,
            "SELECT COUNT(*) FROM groups WHERE id = $1",
            Some(id),
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        for sql in [
            "DELETE FROM user_groups WHERE group_id = $1",
            "DELETE FROM groups WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        for mut record in rows::models(&mut tx).await? {
            if let AccessControl::Read { groups, .. } = &mut record.access.0
                && groups.iter().any(|g| g == id)
            {
                groups.retain(|g| g != id);
                write_model(&mut tx, &record).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Create a key for a user: the answer is the only place the key appears.
    pub async fn create_key(&self, actor: &str, new: CreateKey) -> Result<NewKey, StoreError> {
        let name = new.name.unwrap_or_default();
        check_text("name", &name)?;
        if let Some(b) = &new.budget {
            b.check()?;
        }
        if new.expires_at.is_some_and(|at| at <= now()) {
            return Err(StoreError::invalid("expires_at must be in the future"));
        }
        let mut tx = self.pool.begin().await?;
        // The audit names the user, not the key.
        begin_write(&mut tx, actor, "key.create", &new.user).await?;
        if rows::user_by_id(&mut tx, &new.user).await?.is_none() {
            return Err(StoreError::NotFound(format!("user {}", new.user)));
        }
        let key = insert_key(&mut tx, &new.user, &name, new.expires_at, new.budget).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// The keys of `user` (or every key), newest first.
    pub async fn keys(&self, user: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        rows::keys(&mut *self.pool.acquire().await?, user).await
    }

    /// Revoke key `id`: refused from then on.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "key.revoke", id).await?;
        if rows::key_by_id(&mut tx, id).await?.is_none() {
            return Err(StoreError::NotFound(format!("key {id}")));
        }
        sqlx::query("UPDATE api_keys SET revoked = 1 WHERE id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Write when these keys were last used (`at`, Unix seconds): not a change the
    /// directory serves, so no new version and no audit entry.
    pub async fn touch_keys(&self, ids: &[Arc<str>], at: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every model access record.
    pub async fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        rows::models(&mut *self.pool.acquire().await?).await
    }

    /// Set model `id`'s record (its owner defaults to `actor`).
    pub async fn put_model(
        &self,
        actor: &str,
        id: &str,
        put: PutModel,
    ) -> Result<ModelRecord, StoreError> {
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                "a model id is 1 to 256 characters, without control characters",
            ));
        }
        let record = ModelRecord {
            id: id.to_owned(),
            owner: put.owner.unwrap_or_else(|| actor.to_owned()),
            access: put.access,
        };
        check_id("owner", &record.owner)?;
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "model.put", id).await?;
        write_model(&mut tx, &record).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Remove model `id`'s record: it is admin-only again.
    pub async fn delete_model(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "model.delete", id).await?;
        if count(
            &mut tx,
            "SELECT COUNT(*) FROM models WHERE id = $1",
            Some(id),
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("model {id}")));
        }
        sqlx::query("DELETE FROM models WHERE id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` (1 to 1000) audit entries.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        rows::audit(
            &mut *self.pool.acquire().await?,
            i64::from(limit.clamp(1, 1000)),
        )
        .await
    }

    /// Record an admin write the store does not make itself (a settings update).
    pub async fn record(&self, actor: &str, action: &str, target: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, $3, $4)")
            .bind(now())
            .bind(actor.to_owned())
            .bind(action.to_owned())
            .bind(target.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
