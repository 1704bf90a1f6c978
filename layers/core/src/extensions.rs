//! Typed values layers hand to each other through `http::Extensions`: down the stack in the
//! request's, up in the response's. Nothing else is shared between layers.
//!
//! Each cell names the crates (`tower-openai-<name>`)
//! that write or read a type; a crate that edits a value in place (the payload, the upstream
//! headers) both reads and writes it. A test checks this table, and each crate's own
//! `# Extensions` docs, against what the crates' code reads and writes.
//!
//! In the request:
//!
//! | type | written by | read by |
//! |---|---|---|
//! | [`User`] | `identity`, or your own auth | `identity` (leaves a request a step above decided on), `policy`, `collect` (the per-user buffer budget), `ratelimit`, `acl`, `group`, `headers`, `observe` |
//! | `Unidentified` (`tower-openai-identity`: the answer owed to a caller it could not identify) | `identity`, or a guard above it | `identity`; the application's router (refuses the routes that need a caller) |
//! | [`ApiRoute`] | `policy`; `anthropic` (a translated Messages request becomes `ChatCompletions`) | `collect`, `ratelimit`, `acl`, `select`, `group`, `anthropic`, `observe` (usage), `speech-cache`, `reasoning`, `responses`, `azure`, `headers`, `upstream` (the terminal event's shape) |
//! | [`MeterUsage`] | `ratelimit` (a caller with a token limit or a budget) | `observe` (usage) |
//! | [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot) | `settings`; `models`, for a list fetch | `acl`, `models`, `select`, `group`, `headers` |
//! | [`Payload`](crate::Payload) | `collect`; edited by `select`, `group`, `observe` (usage), `reasoning`, `azure`, `headers`; replaced by `anthropic` and `responses` (converted) | `acl`, `select`, `group`, `anthropic`, `observe` (usage), `speech-cache`, `reasoning`, `responses`, `azure`, `headers`, `upstream` (sends it) |
//! | [`Form`](crate::payload::Form) | `collect`; its `model` edited by `select` | `acl`, `select`, `azure`, `upstream` (sends it) |
//! | [`ListFilter`] | `acl` | `models` (filters the listed models per request) |
//! | [`SelectedConnection`] | `select`; `group`, per attempt; `models`, for a list fetch | `select`, `anthropic`, `observe` (usage), `reasoning`, `responses`, `azure`, `auth`, `headers`, `upstream` |
//! | [`RequestedModel`] | `select`; `group`, per attempt | `observe` (usage), `headers` |
//! | [`ConnectionGroup`] | `select` (a grouped model, instead of a connection) | `group` (binds each attempt) |
//! | [`ReasoningModel`] | `reasoning` (only for a reasoning model) | `azure` |
//! | [`UpstreamHeaders`] | `azure`, `auth`, `headers` (each adds its own) | `azure`, `auth`, `headers`, `upstream` (set last, over the request's) |
//! | [`RequestTimeout`] | `models`, `auth` (its token fetches), the gateway's admin checks | `upstream` |
//!
//! In the response:
//!
//! | type | written by | read by |
//! |---|---|---|
//! | [`ApiRoute`] | `policy` (every answer, its own refusals included) | `observe` |
//! | [`RequestedModel`], [`SelectedConnection`] | `observe` (usage, copied from the request) | `observe` |
//! | [`UsageReport`](crate::UsageReport) | `observe` (usage, filled in as the body passes) | `observe`, `ratelimit` |
//! | [`EndingReport`](crate::EndingReport) | `upstream` (an event stream's hidden early end) | `observe` |
//! | [`UpstreamFailure`](crate::error::UpstreamFailure) | `rescue` | `observe` |

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use tower_openai_settings::Connection;

/// A caller's role (rule AC-5): admins see every model and may call admin routes; a
/// pending user (an account not approved yet) is refused on every route (the identity
/// layer says so).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// An ordinary user.
    #[default]
    User,
    /// An administrator.
    Admin,
    /// Not approved yet: identified, and refused.
    Pending,
}

impl Role {
    /// `"user"`, `"admin"` or `"pending"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Pending => "pending",
        }
    }

    /// Parse `"user"`, `"admin"` or `"pending"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "pending" => Some(Role::Pending),
            _ => None,
        }
    }
}

/// The caller, as identified above the stack.
///
/// Cheap to clone (each request carries one): its text is shared, not copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// Stable id (access records name it).
    pub id: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// Email address.
    pub email: Arc<str>,
    /// Role.
    pub role: Role,
    /// Group ids (access records name them).
    pub groups: Arc<[String]>,
    /// The groups' display names, in the order of `groups` (a group whose name is not known
    /// is named by its id): the `{{USER_GROUPS}}` header placeholder. Empty when not given.
    pub group_names: Arc<[String]>,
    /// The id of the API key the request came with, when the key store names its keys (spend
    /// is recorded, and key budgets are kept, per key).
    pub key: Option<Arc<str>>,
}

impl User {
    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The connection the request goes to.
#[derive(Clone, Debug)]
pub struct SelectedConnection(pub Arc<Connection>);

impl SelectedConnection {
    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.0
    }
}

/// The steps of rule H-5, in merge order: a header set at a later step replaces the same
/// header set at an earlier one, whatever order the layers ran in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeaderStep {
    /// 1. `Content-Type`.
    ContentType,
    /// 2. OpenRouter attribution (`HTTP-Referer`, `X-Title`).
    OpenRouter,
    /// 3. User-info headers.
    UserInfo,
    /// 4. The chat id header.
    ChatId,
    /// 5. Upstream credentials (`Authorization`, and the cookies some auth types forward).
    Auth,
    /// 6. The connection's custom `headers`.
    Custom,
    /// 7. Azure's `api-key` and `api-version`.
    Azure,
}

/// Headers for the upstream request, each tagged with its [`HeaderStep`]. The upstream service
/// applies them after copying the caller's headers, in step order, so they win over the
/// caller's; the caller's own `Authorization`, `Cookie` and `api-key` are never copied.
///
/// ```
/// use http::HeaderValue;
/// use tower_openai_core::extensions::{HeaderStep, UpstreamHeaders};
///
/// let mut h = UpstreamHeaders::default();
/// h.insert(HeaderStep::Custom, "authorization", HeaderValue::from_static("Bearer custom"));
/// h.insert(HeaderStep::Auth, "authorization", HeaderValue::from_static("Bearer key"));
/// // Custom headers come later in H-5, so they win although they were set first.
/// assert_eq!(h.merged()["authorization"], "Bearer custom");
/// ```
#[derive(Clone, Debug, Default)]
pub struct UpstreamHeaders {
    entries: Vec<(HeaderStep, HeaderName, HeaderValue)>,
}

impl UpstreamHeaders {
    /// Set `name` at `step` (replacing what this step set for it before).
    pub fn insert(&mut self, step: HeaderStep, name: impl IntoHeaderName, value: HeaderValue) {
        let name = name.into_header_name();
        if self.entries.capacity() == 0 {
            // Room for a typical request's headers (user info, credentials) at once.
            self.entries.reserve(8);
        }
        self.entries.retain(|(s, n, _)| !(*s == step && *n == name));
        self.entries.push((step, name, value));
    }

    /// The header values in effect, in step order.
    pub fn merged(&self) -> HeaderMap {
        let mut sorted: Vec<&(HeaderStep, HeaderName, HeaderValue)> = self.entries.iter().collect();
        sorted.sort_by_key(|(step, _, _)| *step);
        let mut out = HeaderMap::with_capacity(sorted.len());
        for (_, name, value) in sorted {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// Set every header `other` sets, at the step it sets it.
    pub fn append(&mut self, other: UpstreamHeaders) {
        if self.entries.is_empty() {
            self.entries = other.entries;
            return;
        }
        // `other` holds each (step, name) once (its `insert` saw to it): drop what it
        // replaces here, then add its entries in their order.
        self.entries.retain(|(s, n, _)| {
            !other
                .entries
                .iter()
                .any(|(step, name, _)| step == s && name == n)
        });
        self.entries.extend(other.entries);
    }

    /// The headers in step order, to be set one after the other with `HeaderMap::insert`
    /// (a later step replaces an earlier one's value): what [`merged`](Self::merged) holds,
    /// without building a map and without copying.
    pub fn into_ordered(mut self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        // Stable: within a step, the order they were set in.
        self.entries.sort_by_key(|(step, _, _)| *step);
        self.entries
            .into_iter()
            .map(|(_, name, value)| (name, value))
    }

    /// The value in effect for `name`.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.entries
            .iter()
            .filter(|(_, n, _)| n.as_str().eq_ignore_ascii_case(name))
            .max_by_key(|(step, _, _)| *step)
            .map(|(_, _, v)| v)
    }

    /// Whether nothing was set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A header name given as a `HeaderName` or a static lower-case string.
pub trait IntoHeaderName {
    /// The name.
    fn into_header_name(self) -> HeaderName;
}

impl IntoHeaderName for HeaderName {
    fn into_header_name(self) -> HeaderName {
        self
    }
}

impl IntoHeaderName for &HeaderName {
    fn into_header_name(self) -> HeaderName {
        self.clone()
    }
}

impl IntoHeaderName for &'static str {
    fn into_header_name(self) -> HeaderName {
        HeaderName::from_static(self)
    }
}

/// Overrides the selected connection's idle-read timeout for this request (`None`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Option<Duration>);

/// Which models a request may see in a model list. The acl layer inserts it; the models
/// layer keeps only the ids for which it returns true. Absent: every model is listed.
#[derive(Clone)]
pub struct ListFilter(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl ListFilter {
    /// A filter from a closure.
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Whether `model` is listed.
    pub fn allows(&self, model: &str) -> bool {
        (self.0)(model)
    }
}

impl std::fmt::Debug for ListFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListFilter(..)")
    }
}

/// The model a request asked for and what the upstream is sent, once select routed it.
/// Cheap to clone: the usage layer copies it into the response for the layers above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedModel {
    /// As the caller named it (with any `prefix_id`).
    pub requested: Arc<str>,
    /// As sent upstream (prefix stripped).
    pub upstream: Arc<str>,
}

/// The connections that serve the routed model, in list order, when there are several (model
/// groups are on). Written by select *instead of* a [`SelectedConnection`]: the group layer
/// binds each attempt to one of them (its [`SelectedConnection`] and [`RequestedModel`], the
/// payload's model as that connection is sent it). A stack without a group layer below select
/// sends such a request nowhere (the upstream refuses a request with no connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionGroup {
    /// The connections' indexes.
    pub connections: Arc<[usize]>,
    /// The model as the caller named it (prefix included).
    pub model: Arc<str>,
}

/// Set by the reasoning layer when the outgoing model is a reasoning model (absent when it
/// is not), so the layers below (azure) use the same decision and its replaceable rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasoningModel(pub bool);

/// Which API route a request is, written once by the policy layer (which also refuses the
/// paths that servers could read two ways). Layers below read it instead of matching paths
/// again: the collector reads a model route's body whatever its content type says, select
/// refuses a model route without a model, metrics label by it. It is on every answer too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiRoute {
    /// `POST chat/completions`.
    ChatCompletions,
    /// `POST completions`.
    Completions,
    /// `POST embeddings`.
    Embeddings,
    /// `POST responses`.
    Responses,
    /// `POST audio/speech`.
    AudioSpeech,
    /// `POST images/generations`.
    ImagesGenerations,
    /// `POST moderations`.
    Moderations,
    /// `POST messages`: Anthropic's Messages API.
    Messages,
    /// `POST messages/count_tokens`: Anthropic's token count.
    MessagesCountTokens,
    /// `POST audio/transcriptions` (a form).
    AudioTranscriptions,
    /// `POST audio/translations` (a form).
    AudioTranslations,
    /// `POST images/edits` (a form).
    ImagesEdits,
    /// `POST images/variations` (a form).
    ImagesVariations,
    /// `GET models`, `GET models/{url_idx}`, `GET models/{id}`.
    Models,
    /// Anything else.
    Passthrough,
}

/// The kinds of [`ApiRoute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A `POST` whose JSON body names the model (`chat/completions`, `embeddings`, …).
    ModelJson,
    /// A `POST` whose multipart form names the model (`audio/transcriptions`, …).
    ModelForm,
    /// `GET models`, `GET models/{url_idx}`, `GET models/{id}`: answered by the gateway.
    Models,
    /// Anything else: forwarded as it is to connection 0, only when the passthrough is on.
    Passthrough,
}

impl ApiRoute {
    /// The `POST` routes whose JSON body names the model.
    pub const JSON_MODEL_ROUTES: [ApiRoute; 9] = [
        ApiRoute::ChatCompletions,
        ApiRoute::Completions,
        ApiRoute::Embeddings,
        ApiRoute::Responses,
        ApiRoute::AudioSpeech,
        ApiRoute::ImagesGenerations,
        ApiRoute::Moderations,
        ApiRoute::Messages,
        ApiRoute::MessagesCountTokens,
    ];

    /// The `POST` routes whose multipart form names the model.
    pub const FORM_MODEL_ROUTES: [ApiRoute; 4] = [
        ApiRoute::AudioTranscriptions,
        ApiRoute::AudioTranslations,
        ApiRoute::ImagesEdits,
        ApiRoute::ImagesVariations,
    ];

    /// What kind of route it is.
    pub fn kind(self) -> RouteKind {
        match self {
            ApiRoute::AudioTranscriptions
            | ApiRoute::AudioTranslations
            | ApiRoute::ImagesEdits
            | ApiRoute::ImagesVariations => RouteKind::ModelForm,
            ApiRoute::Models => RouteKind::Models,
            ApiRoute::Passthrough => RouteKind::Passthrough,
            _ => RouteKind::ModelJson,
        }
    }

    /// The route's path below the API prefix, without its leading `/` (`chat/completions`,
    /// `models`), or `passthrough`: the metrics' `route` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRoute::ChatCompletions => "chat/completions",
            ApiRoute::Completions => "completions",
            ApiRoute::Embeddings => "embeddings",
            ApiRoute::Responses => "responses",
            ApiRoute::AudioSpeech => "audio/speech",
            ApiRoute::ImagesGenerations => "images/generations",
            ApiRoute::Moderations => "moderations",
            ApiRoute::Messages => "messages",
            ApiRoute::MessagesCountTokens => "messages/count_tokens",
            ApiRoute::AudioTranscriptions => "audio/transcriptions",
            ApiRoute::AudioTranslations => "audio/translations",
            ApiRoute::ImagesEdits => "images/edits",
            ApiRoute::ImagesVariations => "images/variations",
            ApiRoute::Models => "models",
            ApiRoute::Passthrough => "passthrough",
        }
    }

    /// Whether this route is routed by, and must carry, a model.
    pub fn needs_model(self) -> bool {
        matches!(self.kind(), RouteKind::ModelJson | RouteKind::ModelForm)
    }

    /// The model route a `POST` to `path` (below the API prefix, with its leading `/`) is,
    /// exactly as spelt; `None` for any other path.
    pub fn model_route(path: &str) -> Option<ApiRoute> {
        let rest = path.strip_prefix('/')?;
        Self::JSON_MODEL_ROUTES
            .into_iter()
            .chain(Self::FORM_MODEL_ROUTES)
            .find(|r| r.as_str() == rest)
    }

    /// The route of `req`: the policy layer's, or, in a stack without it, the model route its
    /// method and path name (`None` otherwise).
    pub fn of<B>(req: &http::Request<B>) -> Option<ApiRoute> {
        match req.extensions().get::<ApiRoute>() {
            Some(route) => Some(*route),
            None if req.method() == http::Method::POST => Self::model_route(req.uri().path()),
            None => None,
        }
    }
}

impl std::fmt::Display for ApiRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller's tokens are counted against a limit (a tokens-per-minute limit, a budget), so
/// every answer's usage must be known. Written by the layer that counts (rate limits);
/// read by the usage layer, which then asks a streamed chat for its usage and charges an
/// estimate to an answer that ends without one (the upstream broke, the caller left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterUsage;

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::{HeaderStep, UpstreamHeaders};

    #[test]
    fn each_route_is_named_once_and_found_by_its_path() {
        use super::{ApiRoute, RouteKind};
        let all = ApiRoute::JSON_MODEL_ROUTES
            .into_iter()
            .chain(ApiRoute::FORM_MODEL_ROUTES);
        for route in all {
            assert_eq!(ApiRoute::model_route(&format!("/{route}")), Some(route));
            assert!(route.needs_model());
        }
        assert_eq!(ApiRoute::AudioTranscriptions.kind(), RouteKind::ModelForm);
        assert_eq!(ApiRoute::model_route("/Chat/Completions"), None);
        assert_eq!(ApiRoute::model_route("/models"), None);
        let get = http::Request::get("/chat/completions").body(()).unwrap();
        assert_eq!(ApiRoute::of(&get), None);
        let post = http::Request::post("/embeddings").body(()).unwrap();
        assert_eq!(ApiRoute::of(&post), Some(ApiRoute::Embeddings));
    }

    #[test]
    fn h5_applying_in_order_gives_what_merged_holds() {
        let mut h = UpstreamHeaders::default();
        let v = HeaderValue::from_static;
        h.insert(HeaderStep::Custom, "authorization", v("Bearer custom"));
        h.insert(HeaderStep::Auth, "authorization", v("Bearer key"));
        h.insert(HeaderStep::Azure, "api-key", v("k"));
        h.insert(HeaderStep::UserInfo, "x-openwebui-user-id", v("u1"));
        h.insert(HeaderStep::UserInfo, "x-openwebui-user-id", v("u2"));
        h.insert(HeaderStep::Custom, "x-openwebui-user-id", v("custom"));
        h.insert(HeaderStep::OpenRouter, "x-title", v("t"));
        let merged = h.merged();
        let mut applied = HeaderMap::new();
        applied.insert("x-title", v("from the caller"));
        for (name, value) in h.into_ordered() {
            applied.insert(name, value);
        }
        assert_eq!(applied, merged);
        assert_eq!(applied["authorization"], "Bearer custom");
        assert_eq!(applied["x-openwebui-user-id"], "custom");
        assert_eq!(applied["x-title"], "t");
    }

    #[test]
    fn appended_headers_replace_the_same_step_and_keep_the_step_order() {
        let v = HeaderValue::from_static;
        let mut h = UpstreamHeaders::default();
        h.insert(HeaderStep::Custom, "authorization", v("Bearer custom"));
        h.insert(HeaderStep::Auth, "authorization", v("Bearer old"));
        let mut added = UpstreamHeaders::default();
        added.insert(HeaderStep::Auth, "authorization", v("Bearer new"));
        added.insert(HeaderStep::Azure, "api-key", v("k"));
        h.append(added);
        let merged = h.merged();
        assert_eq!(merged["authorization"], "Bearer custom");
        assert_eq!(merged["api-key"], "k");
        assert_eq!(merged.len(), 2);
        h.insert(HeaderStep::Custom, "authorization", v("Bearer other"));
        assert_eq!(h.get("authorization").unwrap(), "Bearer other");
        // The Auth step's value was replaced, not kept beside the new one.
        assert_eq!(
            h.into_ordered()
                .filter(|(n, _)| n == "authorization")
                .count(),
            2
        );
    }
}
