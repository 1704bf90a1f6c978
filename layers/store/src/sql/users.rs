//! The users: read, created, changed, removed, and seeded from the gateway's file.

use tower_openai_core::Role;

use super::SqlStore;
use super::rows::{self, hex};
use super::write::{
    admins, begin_write, check_groups, count, insert_key, random, set_groups, to_json, write_model,
};
use crate::StoreError;
use crate::directory::now;
use crate::records::{
    CreateUser, ModelRecord, NewKey, SeedUser, UpdateUser, UserInfo, check_id, check_text,
    parse_role,
};

impl SqlStore {
    /// Every user.
    pub async fn users(&self) -> Result<Vec<UserInfo>, StoreError> {
        rows::users(&mut *self.pool.acquire().await?).await
    }

    /// The user `id`.
    pub async fn user(&self, id: &str) -> Result<UserInfo, StoreError> {
        rows::user_by_id(&mut *self.pool.acquire().await?, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// Create a user; with `create_key`, or when it is the first user, a key for them too.
    pub async fn create_user(
        &self,
        actor: &str,
        new: CreateUser,
    ) -> Result<(UserInfo, Option<NewKey>), StoreError> {
        check_id("id", &new.id)?;
        let role = parse_role(&new.role)?;
        let name = new.name.unwrap_or_else(|| new.id.clone());
        let email = new.email.unwrap_or_default();
        check_text("name", &name)?;
        check_text("email", &email)?;
        if let Some(b) = &new.budget {
            b.check()?;
        }
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "user.create", &new.id).await?;
        let first = count(&mut tx, "SELECT COUNT(*) FROM users", None).await? == 0;
        if first && role != Role::Admin {
            return Err(StoreError::AdminRequired);
        }
        if rows::user_by_id(&mut tx, &new.id).await?.is_some() {
            return Err(StoreError::Conflict(format!("user {}", new.id)));
        }
        check_groups(&mut tx, &new.groups).await?;
        let at = now();
        sqlx::query(
            "INSERT INTO users (id, name, email, role, rate_limit, budget, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(new.id.clone())
        .bind(name)
        .bind(email)
        .bind(role.as_str().to_owned())
        .bind(to_json(&new.rate_limit))
        .bind(to_json(&new.budget))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        set_groups(&mut tx, &new.id, &new.groups).await?;
        let key = if new.create_key || first {
            Some(insert_key(&mut tx, &new.id, "", None, None).await?)
        } else {
            None
        };
        let user = rows::user_by_id(&mut tx, &new.id).await?;
        tx.commit().await?;
        Ok((
            user.ok_or_else(|| StoreError::NotFound(format!("user {}", new.id)))?,
            key,
        ))
    }

    /// Change the members of user `id` that `patch` names.
    pub async fn update_user(
        &self,
        actor: &str,
        id: &str,
        patch: UpdateUser,
    ) -> Result<UserInfo, StoreError> {
        let role = patch.role.as_deref().map(parse_role).transpose()?;
        for (what, text) in [("name", &patch.name), ("email", &patch.email)] {
            if let Some(text) = text {
                check_text(what, text)?;
            }
        }
        if let Some(Some(b)) = &patch.budget {
            b.check()?;
        }
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "user.update", id).await?;
        let Some(old) = rows::user_by_id(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("user {id}")));
        };
        if old.role == "admin"
            && role.is_some_and(|r| r != Role::Admin)
            && admins(&mut tx).await? <= 1
        {
            return Err(StoreError::LastAdmin);
        }
        if let Some(groups) = &patch.groups {
            check_groups(&mut tx, groups).await?;
            set_groups(&mut tx, id, groups).await?;
        }
        let rate_limit = match &patch.rate_limit {
            Some(r) => to_json(r),
            None => to_json(&old.rate_limit),
        };
        let budget = match &patch.budget {
            Some(b) => to_json(b),
            None => to_json(&old.budget),
        };
        sqlx::query(
            "UPDATE users SET name = $1, email = $2, role = $3, rate_limit = $4, budget = $5, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(patch.name.unwrap_or(old.name))
        .bind(patch.email.unwrap_or(old.email))
        .bind(role.map_or(old.role, |r| r.as_str().to_owned()))
        .bind(rate_limit)
        .bind(budget)
        .bind(now())
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        let user = rows::user_by_id(&mut tx, id).await?;
        tx.commit().await?;
        user.ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// Remove user `id` and revoke their keys.
    pub async fn delete_user(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, actor, "user.delete", id).await?;
        let Some(old) = rows::user_by_id(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("user {id}")));
        };
        if old.role == "admin" && admins(&mut tx).await? <= 1 {
            return Err(StoreError::LastAdmin);
        }
        for sql in [
            "UPDATE api_keys SET revoked = 1 WHERE user_id = $1",
            "DELETE FROM user_groups WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Insert each seed user and record that is not in the store yet (a user's key as a key
    /// named `config`, their missing groups created); what is there is left as it is.
    /// Returns the ids left alone.
    pub async fn seed(
        &self,
        users: &[SeedUser],
        models: &[ModelRecord],
    ) -> Result<Vec<String>, StoreError> {
        if users.is_empty() && models.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        begin_write(&mut tx, "config", "seed", "").await?;
        let mut kept = Vec::new();
        let at = now();
        for u in users {
            if rows::user_by_id(&mut tx, &u.id).await?.is_some() {
                kept.push(u.id.clone());
                continue;
            }
            sqlx::query(
                "INSERT INTO users (id, name, email, role, rate_limit, budget, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(u.id.clone())
            .bind(u.name.clone())
            .bind(u.email.clone())
            .bind(u.role.as_str().to_owned())
            .bind(to_json(&u.rate_limit))
            .bind(to_json(&u.budget))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            for g in &u.groups {
                if count(
                    &mut tx,
                    "SELECT COUNT(*) FROM groups WHERE id = $1",
                    Some(g),
                )
                .await?
                    == 0
                {
                    sqlx::query("INSERT INTO groups (id, name, created_at) VALUES ($1, $1, $2)")
                        .bind(g.clone())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            set_groups(&mut tx, &u.id, &u.groups).await?;
            for key in &u.keys {
                let digest = hex(key);
                if count(
                    &mut tx,
                    "SELECT COUNT(*) FROM api_keys WHERE sha256 = $1",
                    Some(&digest),
                )
                .await?
                    > 0
                {
                    continue;
                }
                let id: String = random::<12>()?.iter().map(|b| format!("{b:02x}")).collect();
                sqlx::query(
                    "INSERT INTO api_keys (id, user_id, name, prefix, sha256, created_at, revoked) \
                     VALUES ($1, $2, 'config', '', $3, $4, 0)",
                )
                .bind(id)
                .bind(u.id.clone())
                .bind(digest)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
        }
        for m in models {
            if count(
                &mut tx,
                "SELECT COUNT(*) FROM models WHERE id = $1",
                Some(&m.id),
            )
            .await?
                > 0
            {
                kept.push(m.id.clone());
                continue;
            }
            write_model(&mut tx, m).await?;
        }
        tx.commit().await?;
        Ok(kept)
    }
}
