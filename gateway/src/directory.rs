//! The identity store's admin routes (`/admin/users`, `/admin/groups`, `/admin/keys`,
//! `/admin/models`, `/admin/prices`, `/admin/audit`): typed bodies, one transaction a write,
//! the change served here at once and by every other process within the store's poll.

// The refusals are the answers themselves, on the admin path only: not worth a box.
#![allow(clippy::result_large_err)]

use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::routing::{get, put};
use axum::{Extension, Router};
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tower_openai_core::{BoxBody, ErrorResponse, User};
use tower_openai_store::{
    CreateKey, CreateUser, Group, LiveDirectory, PutModel, PutPrice, SpendGroup, SqlStore,
    StoreError, UpdateUser,
};

use crate::admin::{Admin, error, json_body, read_body};

type Answer = Response<BoxBody>;
/// A route's answer, or the refusal it was owed (both already responses).
type Answered = Result<Answer, Answer>;

/// A store route's JSON body as `T`: a member that is unknown, missing or of the wrong type
/// is 400 `invalid_body`, its message naming the member.
struct Json<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Admin> for Json<T> {
    type Rejection = Answer;

    async fn from_request(req: axum::extract::Request, admin: &Admin) -> Result<Self, Answer> {
        read_body(req.into_body(), admin.max_body())
            .await
            .map(Json)
            .map_err(|e| {
                error(if e.code() == Some("invalid_value") {
                    ErrorResponse::bad_request(e.message().to_owned()).with_code("invalid_body")
                } else {
                    e
                })
            })
    }
}

/// A query string as `T`, or 400 `invalid_request`.
struct Params<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<Admin> for Params<T> {
    type Rejection = Answer;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Answer> {
        match Query::<T>::from_request_parts(parts, admin).await {
            Ok(Query(q)) => Ok(Params(q)),
            Err(e) => Err(error(
                ErrorResponse::bad_request(format!("Bad query string: {}", e.body_text()))
                    .with_code("invalid_request"),
            )),
        }
    }
}

/// The store, and the directory this process serves from it.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) store: SqlStore,
    pub(crate) live: LiveDirectory,
    /// This process's spend not yet written (a report writes it first).
    pub(crate) spend: crate::spend::SpendLedger,
}

impl Identity {
    /// After a write: serve it here now (the others see it at their next poll).
    async fn wrote<T>(&self, result: Result<T, StoreError>) -> Result<T, Answer> {
        let value = result.map_err(refused)?;
        if let Err(e) = self.store.reload(&self.live).await {
            tracing::warn!(error = %e, "identity store: reload after a write failed; the poll will catch up");
        }
        Ok(value)
    }
}

/// The gateway's identity store, or 503 `identity_store_unavailable` when it has none.
struct Store(Identity);

impl FromRequestParts<Admin> for Store {
    type Rejection = Answer;

    async fn from_request_parts(_: &mut Parts, admin: &Admin) -> Result<Self, Answer> {
        match admin.identity() {
            Some(identity) => Ok(Store(identity.clone())),
            None => Err(refused(StoreError::Unavailable(
                "no identity store is configured".into(),
            ))),
        }
    }
}

fn refused(e: StoreError) -> Answer {
    error(e.to_response())
}

fn no_content() -> Answer {
    let mut res = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

/// `{"data": [...]}`, or the refusal.
fn list<T: serde::Serialize>(data: Result<Vec<T>, StoreError>) -> Answered {
    Ok(json_body(
        StatusCode::OK,
        &serde_json::json!({ "data": data.map_err(refused)? }),
    ))
}

async fn users(Store(id): Store) -> Answered {
    list(id.store.users().await)
}

async fn create_user(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Json(new): Json<CreateUser>,
) -> Answered {
    let (user, key) = id.wrote(id.store.create_user(&actor.id, new).await).await?;
    let mut body = serde_json::to_value(&user).unwrap_or_default();
    if let (Some(key), Some(obj)) = (key, body.as_object_mut()) {
        obj.insert("key".into(), serde_json::to_value(key).unwrap_or_default());
    }
    Ok(json_body(StatusCode::CREATED, &body))
}

async fn user(Store(id): Store, Path(user): Path<String>) -> Answered {
    let user = id.store.user(&user).await.map_err(refused)?;
    Ok(json_body(StatusCode::OK, &user))
}

async fn update_user(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(user): Path<String>,
    Json(patch): Json<UpdateUser>,
) -> Answered {
    let user = id
        .wrote(id.store.update_user(&actor.id, &user, patch).await)
        .await?;
    Ok(json_body(StatusCode::OK, &user))
}

async fn delete_user(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(user): Path<String>,
) -> Answered {
    id.wrote(id.store.delete_user(&actor.id, &user).await)
        .await?;
    Ok(no_content())
}

async fn groups(Store(id): Store) -> Answered {
    list(id.store.groups().await)
}

async fn create_group(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Json(group): Json<Group>,
) -> Answered {
    let group = id
        .wrote(id.store.create_group(&actor.id, group).await)
        .await?;
    Ok(json_body(StatusCode::CREATED, &group))
}

async fn delete_group(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(group): Path<String>,
) -> Answered {
    id.wrote(id.store.delete_group(&actor.id, &group).await)
        .await?;
    Ok(no_content())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysQuery {
    user: Option<String>,
}

async fn keys(Store(id): Store, Params(q): Params<KeysQuery>) -> Answered {
    list(id.store.keys(q.user.as_deref()).await)
}

async fn create_key(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Json(new): Json<CreateKey>,
) -> Answered {
    let key = id.wrote(id.store.create_key(&actor.id, new).await).await?;
    Ok(json_body(StatusCode::CREATED, &key))
}

async fn revoke_key(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(key): Path<String>,
) -> Answered {
    id.wrote(id.store.revoke_key(&actor.id, &key).await).await?;
    Ok(no_content())
}

async fn models(Store(id): Store) -> Answered {
    list(id.store.models().await)
}

async fn put_model(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
    Json(record): Json<PutModel>,
) -> Answered {
    let record = id
        .wrote(id.store.put_model(&actor.id, &model, record).await)
        .await?;
    Ok(json_body(StatusCode::OK, &record))
}

async fn delete_model(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
) -> Answered {
    id.wrote(id.store.delete_model(&actor.id, &model).await)
        .await?;
    Ok(no_content())
}

async fn prices(Store(id): Store) -> Answered {
    list(id.store.prices().await)
}

async fn put_price(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
    Json(price): Json<PutPrice>,
) -> Answered {
    let price = id
        .wrote(id.store.put_price(&actor.id, &model, price).await)
        .await?;
    Ok(json_body(StatusCode::OK, &price))
}

async fn delete_price(
    Store(id): Store,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
) -> Answered {
    id.wrote(id.store.delete_price(&actor.id, &model).await)
        .await?;
    Ok(no_content())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

/// `GET /admin/spend?from=&to=&group_by=`: this process's spend written first, so the report
/// holds every answer it has seen end. Both days default to today (UTC); `group_by` to
/// `user`.
async fn spend(Store(id): Store, Params(q): Params<SpendQuery>) -> Answered {
    use tower_openai_ratelimit::{Clock, Period, SystemClock};
    let today = Period::Day.id(SystemClock.now());
    let day = |d: Option<String>, name: &str| match d {
        None => Ok(today.clone()),
        Some(d) if tower_openai_store::is_day(&d) => Ok(d),
        Some(_) => Err(error(
            ErrorResponse::bad_request(format!("{name} must be a day, YYYY-MM-DD"))
                .with_code("invalid_request"),
        )),
    };
    let (from, to) = (day(q.from, "from")?, day(q.to, "to")?);
    let group = match q.group_by.as_deref() {
        None => SpendGroup::User,
        Some(g) => SpendGroup::parse(g).ok_or_else(|| {
            error(
                ErrorResponse::bad_request("group_by must be user, key, model or day")
                    .with_code("invalid_request"),
            )
        })?,
    };
    id.spend.flush().await.map_err(refused)?;
    let rows = id.store.spend(&from, &to, group).await.map_err(refused)?;
    let data: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| {
            let mut value = serde_json::to_value(row.totals).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert(group.as_str().to_owned(), row.group.into());
            }
            value
        })
        .collect();
    Ok(json_body(
        StatusCode::OK,
        &serde_json::json!({ "data": data }),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit(Store(id): Store, Params(q): Params<AuditQuery>) -> Answered {
    list(id.store.audit(q.limit.unwrap_or(100)).await)
}

/// The routes, for [`Admin::router`].
pub(crate) fn routes() -> Router<Admin> {
    Router::new()
        .route("/admin/users", get(users).post(create_user))
        .route(
            "/admin/users/{id}",
            get(user).patch(update_user).delete(delete_user),
        )
        .route("/admin/groups", get(groups).post(create_group))
        .route("/admin/groups/{id}", axum::routing::delete(delete_group))
        .route("/admin/keys", get(keys).post(create_key))
        .route("/admin/keys/{id}", axum::routing::delete(revoke_key))
        .route("/admin/models", get(models))
        // Model ids may hold a `/` (`org/model`).
        .route("/admin/models/{*id}", put(put_model).delete(delete_model))
        .route("/admin/prices", get(prices))
        .route(
            "/admin/prices/{*model}",
            put(put_price).delete(delete_price),
        )
        .route("/admin/audit", get(audit))
        .route("/admin/spend", get(spend))
}
