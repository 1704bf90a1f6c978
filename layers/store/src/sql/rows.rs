//! Reading the tables.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::StoreError;
use crate::directory::{Directory, KeyEntry};
use crate::records::{Access, AuditEntry, Group, KeyInfo, ModelRecord, Price, UserInfo};

/// Hex of a digest, as stored.
pub(crate) fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    serde_json::from_str(text.as_deref()?).ok()
}

const USER_COLUMNS: &str = "id, name, email, role, rate_limit, budget, created_at, updated_at";

fn user(row: &AnyRow, groups: &mut HashMap<String, Vec<String>>) -> Result<UserInfo, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(UserInfo {
        groups: groups.remove(&id).unwrap_or_default(),
        id,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        rate_limit: json(row.try_get("rate_limit")?),
        budget: json(row.try_get("budget")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn memberships(
    conn: &mut AnyConnection,
    user: Option<&str>,
) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    let rows =
        match user {
            Some(id) => sqlx::query(
                "SELECT user_id, group_id FROM user_groups WHERE user_id = $1 ORDER BY group_id",
            )
            .bind(id.to_owned())
            .fetch_all(&mut *conn)
            .await?,
            None => {
                sqlx::query("SELECT user_id, group_id FROM user_groups ORDER BY group_id")
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        groups
            .entry(row.try_get("user_id")?)
            .or_default()
            .push(row.try_get("group_id")?);
    }
    Ok(groups)
}

/// Every user, by id.
pub(crate) async fn users(conn: &mut AnyConnection) -> Result<Vec<UserInfo>, StoreError> {
    let mut groups = memberships(conn, None).await?;
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| user(r, &mut groups))
        .collect::<Result<_, _>>()?)
}

/// The user `id`.
pub(crate) async fn user_by_id(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<UserInfo>, StoreError> {
    let mut groups = memberships(conn, Some(id)).await?;
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| user(&r, &mut groups)).transpose()?)
}

/// Every group.
pub(crate) async fn groups(conn: &mut AnyConnection) -> Result<Vec<Group>, StoreError> {
    let rows = sqlx::query("SELECT id, name FROM groups ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(Group {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Every model access record.
pub(crate) async fn models(conn: &mut AnyConnection) -> Result<Vec<ModelRecord>, StoreError> {
    let rows = sqlx::query("SELECT id, owner, access FROM models ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get("id")?;
        // A record that does not read is private: fail closed.
        let access = json::<Access>(r.try_get("access")?).unwrap_or_else(|| {
            tracing::error!(model = %id, "unreadable access record; treated as private");
            Access(tower_openai_acl::AccessControl::Private)
        });
        out.push(ModelRecord {
            id,
            owner: r.try_get("owner")?,
            access,
        });
    }
    Ok(out)
}

const KEY_COLUMNS: &str =
    "id, user_id, prefix, name, created_at, expires_at, last_used_at, revoked, budget";

fn key_info(r: &AnyRow) -> Result<KeyInfo, sqlx::Error> {
    Ok(KeyInfo {
        id: r.try_get("id")?,
        prefix: r.try_get("prefix")?,
        user: r.try_get("user_id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        budget: json(r.try_get("budget")?),
    })
}

/// The keys, of one user or all, newest first; never the key.
pub(crate) async fn keys(
    conn: &mut AnyConnection,
    user: Option<&str>,
) -> Result<Vec<KeyInfo>, StoreError> {
    let rows =
        match user {
            Some(u) => sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id"
            ))
            .bind(u.to_owned())
            .fetch_all(&mut *conn)
            .await?,
            None => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
                ))
                .fetch_all(&mut *conn)
                .await?
            }
        };
    Ok(rows.iter().map(key_info).collect::<Result<_, _>>()?)
}

/// The key `id`.
pub(crate) async fn key_by_id(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<KeyInfo>, StoreError> {
    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(key_info).transpose()?)
}

/// Every price, by model.
pub(crate) async fn prices(conn: &mut AnyConnection) -> Result<Vec<Price>, StoreError> {
    let rows = sqlx::query("SELECT model, input, output, cached_input FROM prices ORDER BY model")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(Price {
                model: r.try_get("model")?,
                input: r.try_get("input")?,
                output: r.try_get("output")?,
                cached_input: r.try_get("cached_input")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// The newest `limit` audit entries.
pub(crate) async fn audit(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows =
        sqlx::query("SELECT id, at, actor, action, target FROM audit ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// What the request path serves: the users, their usable keys, the records.
pub(crate) async fn directory(pool: &AnyPool) -> Result<Directory, StoreError> {
    let mut conn = pool.acquire().await?;
    let users = users(&mut conn).await?;
    let rows = sqlx::query(
        "SELECT id, user_id, sha256, expires_at, budget FROM api_keys WHERE revoked = 0",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in rows {
        let digest: String = r.try_get("sha256")?;
        let Some(digest) = unhex(&digest) else {
            continue;
        };
        let id: String = r.try_get("id")?;
        let user: String = r.try_get("user_id")?;
        keys.push((
            digest,
            KeyEntry {
                id: id.into(),
                user: user.into(),
                expires_at: r.try_get("expires_at")?,
                budget: json(r.try_get("budget")?),
            },
        ));
    }
    let records = models(&mut conn).await?;
    let prices = prices(&mut conn).await?;
    let names = sqlx::query("SELECT id, name FROM groups")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect::<Result<HashMap<String, String>, sqlx::Error>>()?;
    Ok(Directory::new(users, keys, records)
        .with_prices(prices)
        .with_group_names(&names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_through_hex() {
        let d = tower_openai_identity::digest(b"sk-test");
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
