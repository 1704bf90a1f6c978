//! The admin API's reads and writes. Every write is one transaction that first moves the
//! store's version (which also orders writers: Postgres locks the row, SQLite the file) and
//! records itself in the audit log; an error rolls all of it back.

use std::sync::Arc;

use base64::Engine;
use sqlx::{AnyConnection, Row};
use tower_openai_acl::AccessControl;
use tower_openai_core::Role;

use super::SqlStore;
use super::rows::{self, hex};
use crate::StoreError;
use crate::directory::now;
use crate::records::{
    Access, AuditEntry, Budget, CreateKey, CreateUser, Group, KeyInfo, ModelRecord, NewKey,
    PutModel, SeedUser, UpdateUser, UserInfo, check_id, check_text, parse_role,
};

/// Move the version and write the audit entry: the first statements of every write.
async fn begin_write(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    target: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE meta SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, $3, $4)")
        .bind(now())
        .bind(actor.to_owned())
        .bind(action.to_owned())
        .bind(target.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn count(conn: &mut AnyConnection, sql: &str, arg: Option<&str>) -> Result<i64, StoreError> {
    let mut q = sqlx::query(sql);
    if let Some(arg) = arg {
        q = q.bind(arg.to_owned());
    }
    Ok(q.fetch_one(&mut *conn).await?.try_get::<i64, _>(0)?)
}

async fn admins(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    count(
        conn,
        "SELECT COUNT(*) FROM users WHERE role = 'admin'",
        None,
    )
    .await
}

async fn check_groups(conn: &mut AnyConnection, groups: &[String]) -> Result<(), StoreError> {
    for g in groups {
        if count(conn, "SELECT COUNT(*) FROM groups WHERE id = $1", Some(g)).await? == 0 {
            return Err(StoreError::UnknownGroup(g.clone()));
        }
    }
    Ok(())
}

async fn set_groups(
    conn: &mut AnyConnection,
    user: &str,
    groups: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
        .bind(user.to_owned())
        .execute(&mut *conn)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    for g in groups.iter().filter(|g| seen.insert(g.as_str())) {
        sqlx::query("INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2)")
            .bind(user.to_owned())
            .bind(g.clone())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

/// `n` random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}").into()))?;
    Ok(out)
}

async fn insert_key(
    conn: &mut AnyConnection,
    user: &str,
    name: &str,
    expires_at: Option<i64>,
    budget: Option<Budget>,
) -> Result<NewKey, StoreError> {
    let key = format!(
        "sk-gw-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?)
    );
    let id: String = random::<12>()?.iter().map(|b| format!("{b:02x}")).collect();
    let prefix = key[..10].to_owned();
    let created_at = now();
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, prefix, sha256, created_at, expires_at, revoked, budget) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
    )
    .bind(id.clone())
    .bind(user.to_owned())
    .bind(name.to_owned())
    .bind(prefix.clone())
    .bind(hex(&tower_openai_identity::digest(key.as_bytes())))
    .bind(created_at)
    .bind(expires_at)
    .bind(to_json(&budget))
    .execute(&mut *conn)
    .await?;
    Ok(NewKey {
        id,
        key,
        prefix,
        user: user.to_owned(),
        name: name.to_owned(),
        created_at,
        expires_at,
        budget,
    })
}

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
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $6)",
            )
            .bind(u.id.clone())
            .bind(u.name.clone())
            .bind(u.email.clone())
            .bind(u.role.as_str().to_owned())
            .bind(to_json(&u.rate_limit))
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
            let digest = hex(&u.key_sha256);
            if count(
                &mut tx,
                "SELECT COUNT(*) FROM api_keys WHERE sha256 = $1",
                Some(&digest),
            )
            .await?
                == 0
            {
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

async fn write_model(conn: &mut AnyConnection, record: &ModelRecord) -> Result<(), StoreError> {
    let access = serde_json::to_string(&Access(record.access.0.clone()))
        .map_err(|e| StoreError::invalid(e.to_string()))?;
    sqlx::query("DELETE FROM models WHERE id = $1")
        .bind(record.id.clone())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO models (id, owner, access, updated_at) VALUES ($1, $2, $3, $4)")
        .bind(record.id.clone())
        .bind(record.owner.clone())
        .bind(access)
        .bind(now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
