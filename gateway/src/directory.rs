//! The identity store's admin routes (`/admin/users`, `/admin/groups`, `/admin/keys`,
//! `/admin/models`, `/admin/prices`, `/admin/audit`): typed bodies, one transaction a write, the change served
//! here at once and by every other process within the store's poll.

// The refusals are the answers themselves, on the admin path only: not worth a box.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tower_openai_core::{BoxBody, User};
use tower_openai_store::{
    CreateKey, CreateUser, Group, LiveDirectory, PutModel, PutPrice, SqlStore, StoreError,
    UpdateUser,
};

use axum::extract::FromRequest;
use tower_openai_core::ErrorResponse;

use crate::admin::{Admin, error, json_body, read_body};

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
fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Answer> {
    q.map(|Query(q)| q).map_err(|e| {
        error(
            ErrorResponse::bad_request(format!("Bad query string: {}", e.body_text()))
                .with_code("invalid_request"),
        )
    })
}

/// The store, and the directory this process serves from it.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) store: SqlStore,
    pub(crate) live: LiveDirectory,
}

type Answer = Response<BoxBody>;

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

fn list<T: serde::Serialize>(data: &[T]) -> Answer {
    json_body(StatusCode::OK, &serde_json::json!({ "data": data }))
}

fn one<T: serde::Serialize>(status: StatusCode, value: &T) -> Answer {
    json_body(status, value)
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

fn identity(admin: &Admin) -> Result<&Identity, Answer> {
    admin.identity().ok_or_else(|| {
        error(StoreError::Unavailable("no identity store is configured".into()).to_response())
    })
}

macro_rules! try_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(answer) => return answer,
        }
    };
}

async fn users(State(admin): State<Admin>) -> Answer {
    let id = try_answer!(identity(&admin));
    match id.store.users().await {
        Ok(users) => list(&users),
        Err(e) => refused(e),
    }
}

async fn create_user(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Json(new): Json<CreateUser>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let (user, key) = try_answer!(id.wrote(id.store.create_user(&actor.id, new).await).await);
    let mut body = serde_json::to_value(&user).unwrap_or_default();
    if let (Some(key), Some(obj)) = (key, body.as_object_mut()) {
        obj.insert("key".into(), serde_json::to_value(key).unwrap_or_default());
    }
    json_body(StatusCode::CREATED, &body)
}

async fn user(State(admin): State<Admin>, Path(user): Path<String>) -> Answer {
    let id = try_answer!(identity(&admin));
    match id.store.user(&user).await {
        Ok(user) => one(StatusCode::OK, &user),
        Err(e) => refused(e),
    }
}

async fn update_user(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(user): Path<String>,
    Json(patch): Json<UpdateUser>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let user = try_answer!(
        id.wrote(id.store.update_user(&actor.id, &user, patch).await)
            .await
    );
    one(StatusCode::OK, &user)
}

async fn delete_user(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(user): Path<String>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    try_answer!(id.wrote(id.store.delete_user(&actor.id, &user).await).await);
    no_content()
}

async fn groups(State(admin): State<Admin>) -> Answer {
    let id = try_answer!(identity(&admin));
    match id.store.groups().await {
        Ok(groups) => list(&groups),
        Err(e) => refused(e),
    }
}

async fn create_group(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Json(group): Json<Group>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let group = try_answer!(
        id.wrote(id.store.create_group(&actor.id, group).await)
            .await
    );
    one(StatusCode::CREATED, &group)
}

async fn delete_group(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(group): Path<String>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    try_answer!(
        id.wrote(id.store.delete_group(&actor.id, &group).await)
            .await
    );
    no_content()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysQuery {
    user: Option<String>,
}

async fn keys(
    State(admin): State<Admin>,
    q: Result<Query<KeysQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let q = try_answer!(query(q));
    match id.store.keys(q.user.as_deref()).await {
        Ok(keys) => list(&keys),
        Err(e) => refused(e),
    }
}

async fn create_key(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Json(new): Json<CreateKey>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let key = try_answer!(id.wrote(id.store.create_key(&actor.id, new).await).await);
    one(StatusCode::CREATED, &key)
}

async fn revoke_key(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(key): Path<String>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    try_answer!(id.wrote(id.store.revoke_key(&actor.id, &key).await).await);
    no_content()
}

async fn models(State(admin): State<Admin>) -> Answer {
    let id = try_answer!(identity(&admin));
    match id.store.models().await {
        Ok(models) => list(&models),
        Err(e) => refused(e),
    }
}

async fn put_model(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
    Json(record): Json<PutModel>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let record = try_answer!(
        id.wrote(id.store.put_model(&actor.id, &model, record).await)
            .await
    );
    one(StatusCode::OK, &record)
}

async fn delete_model(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    try_answer!(
        id.wrote(id.store.delete_model(&actor.id, &model).await)
            .await
    );
    no_content()
}

async fn prices(State(admin): State<Admin>) -> Answer {
    let id = try_answer!(identity(&admin));
    match id.store.prices().await {
        Ok(prices) => list(&prices),
        Err(e) => refused(e),
    }
}

async fn put_price(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
    Json(price): Json<PutPrice>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let price = try_answer!(
        id.wrote(id.store.put_price(&actor.id, &model, price).await)
            .await
    );
    one(StatusCode::OK, &price)
}

async fn delete_price(
    State(admin): State<Admin>,
    Extension(actor): Extension<User>,
    Path(model): Path<String>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    try_answer!(
        id.wrote(id.store.delete_price(&actor.id, &model).await)
            .await
    );
    no_content()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit(
    State(admin): State<Admin>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let id = try_answer!(identity(&admin));
    let q = try_answer!(query(q));
    match id.store.audit(q.limit.unwrap_or(100)).await {
        Ok(entries) => list(&entries),
        Err(e) => refused(e),
    }
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
}
