//! What every write does: move the version and record itself (the first statements of its
//! transaction), and the checks and inserts several writes share.

use base64::Engine;
use sqlx::{AnyConnection, Row};

use super::rows::hex;
use crate::StoreError;
use crate::directory::now;
use crate::records::{Access, Budget, ModelRecord, NewKey};

/// Move the version and write the audit entry: the first statements of every write.
pub(super) async fn begin_write(
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

pub(super) async fn count(
    conn: &mut AnyConnection,
    sql: &str,
    arg: Option<&str>,
) -> Result<i64, StoreError> {
    let mut q = sqlx::query(sql);
    if let Some(arg) = arg {
        q = q.bind(arg.to_owned());
    }
    Ok(q.fetch_one(&mut *conn).await?.try_get::<i64, _>(0)?)
}

pub(super) async fn admins(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    count(
        conn,
        "SELECT COUNT(*) FROM users WHERE role = 'admin'",
        None,
    )
    .await
}

pub(super) async fn check_groups(
    conn: &mut AnyConnection,
    groups: &[String],
) -> Result<(), StoreError> {
    for g in groups {
        if count(conn, "SELECT COUNT(*) FROM groups WHERE id = $1", Some(g)).await? == 0 {
            return Err(StoreError::UnknownGroup(g.clone()));
        }
    }
    Ok(())
}

pub(super) async fn set_groups(
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

pub(super) fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

/// `n` random bytes from the operating system.
pub(super) fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}").into()))?;
    Ok(out)
}

pub(super) async fn insert_key(
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

pub(super) async fn write_model(
    conn: &mut AnyConnection,
    record: &ModelRecord,
) -> Result<(), StoreError> {
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
