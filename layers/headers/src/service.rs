use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use serde_json::Value;
use tower_openai_core::ApiRoute;
use tower_openai_core::extensions::{HeaderStep, UpstreamHeaders};
use tower_openai_core::{Payload, RequestedModel, SelectedConnection, User};
use tower_openai_settings::SettingsSnapshot;
use tower_service::Service;

use crate::config::HeadersConfig;
use crate::encode::encode_user_name;
use crate::layer::HeadersLayer;
use crate::options::ConnectionHeaders;

/// Adds attribution, user-info and per-connection headers. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Headers<S> {
    inner: S,
    config: Arc<HeadersConfig>,
    /// The user-info header values of the last user seen by this instance (one per
    /// connection, behind a server): a connection's requests usually come from one user,
    /// whose values are then made once, not per request.
    last_user: Option<UserHeaders>,
}

/// A user's `name`, `id` and `email` header values (`None`: not a valid value, not sent).
#[derive(Clone, Debug)]
struct UserHeaders {
    user: User,
    values: [Option<HeaderValue>; 3],
}

impl UserHeaders {
    fn of(user: &User) -> Self {
        // The encoded name is only unreserved characters, spaces and `%XX`: always a valid
        // value, handed over without a copy.
        let name =
            HeaderValue::from_maybe_shared(bytes::Bytes::from(encode_user_name(&user.name))).ok();
        Self {
            user: user.clone(),
            values: [
                name,
                HeaderValue::from_str(&user.id).ok(),
                HeaderValue::from_str(&user.email).ok(),
            ],
        }
    }

    /// Whether these are `user`'s (the same shared text, not merely equal text).
    fn are_of(&self, user: &User) -> bool {
        Arc::ptr_eq(&self.user.id, &user.id)
            && Arc::ptr_eq(&self.user.name, &user.name)
            && Arc::ptr_eq(&self.user.email, &user.email)
    }
}

impl<S> Headers<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, config: HeadersConfig) -> Self {
        Self::from_shared(inner, Arc::new(config))
    }

    pub(crate) fn from_shared(inner: S, config: Arc<HeadersConfig>) -> Self {
        Self {
            inner,
            config,
            last_user: None,
        }
    }

    /// A layer with this configuration.
    pub fn layer(config: HeadersConfig) -> HeadersLayer {
        HeadersLayer::new(config)
    }

    tower_openai_util::define_inner_service_accessors!();
}

/// H-4: a truthy `metadata.chat_id` (a non-empty string, or a number).
fn chat_id_of(metadata: &Value) -> Option<String> {
    match metadata.get("chat_id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a custom header's `{{…}}` placeholders are filled from.
struct Fill<'a> {
    user: Option<&'a User>,
    /// The chat's `metadata` (chat completions only; other calls have none).
    metadata: Option<&'a Value>,
    chat_id: Option<&'a str>,
    model: Option<&'a str>,
    user_agent: Option<&'a str>,
}

impl Fill<'_> {
    fn meta(&self, pointer: &str) -> Cow<'_, str> {
        match self.metadata.and_then(|m| m.pointer(pointer)) {
            Some(Value::String(s)) => Cow::Borrowed(s),
            Some(Value::Number(n)) => Cow::Owned(n.to_string()),
            _ => Cow::Borrowed(""),
        }
    }
}

/// Fill `{{…}}` placeholders (Open WebUI's list, in its order; a missing value is empty);
/// `None` when the value has none (the prepared value is used).
fn fill(template: &HeaderValue, ctx: &Fill<'_>) -> Option<String> {
    let text = template.to_str().ok()?;
    if !text.contains("{{") {
        return None;
    }
    let user = ctx.user;
    let mut out = text.to_owned();
    let user_message_id = match ctx.meta("/user_message_id") {
        id if !id.is_empty() => id,
        _ => ctx.meta("/user_message/id"),
    };
    let user_agent = match ctx.user_agent {
        Some(agent) => Cow::Borrowed(agent),
        None => ctx.meta("/user_agent"),
    };
    let pairs: [(&str, Cow<'_, str>); 16] = [
        ("{{CHAT_ID}}", ctx.chat_id.unwrap_or("").into()),
        ("{{MESSAGE_ID}}", ctx.meta("/message_id")),
        ("{{USER_MESSAGE_ID}}", user_message_id),
        (
            "{{USER_MESSAGE_PARENT_ID}}",
            ctx.meta("/user_message/parentId"),
        ),
        ("{{FILE_ID}}", ctx.meta("/file_id")),
        ("{{FILE_NAME}}", ctx.meta("/file_name")),
        ("{{FILE_CONTENT_TYPE}}", ctx.meta("/file_content_type")),
        ("{{TASK}}", ctx.meta("/task")),
        ("{{USER_ID}}", user.map_or("".into(), |u| (*u.id).into())),
        (
            "{{USER_NAME}}",
            user.map_or("".into(), |u| encode_user_name(u.name.trim()).into()),
        ),
        (
            "{{USER_EMAIL}}",
            user.map_or("".into(), |u| u.email.trim().into()),
        ),
        (
            "{{USER_ROLE}}",
            user.map_or("".into(), |u| u.role.as_str().into()),
        ),
        (
            "{{USER_GROUPS}}",
            user.map_or("".into(), |u| {
                let names: Vec<&str> = u.group_names.iter().map(|n| n.trim()).collect();
                names.join(",").into()
            }),
        ),
        (
            "{{USER_GROUP_IDS}}",
            user.map_or("".into(), |u| u.groups.join(",").into()),
        ),
        ("{{USER_AGENT}}", user_agent),
        ("{{MODEL_ID}}", ctx.model.unwrap_or("").into()),
    ];
    for (placeholder, value) in pairs {
        if out.contains(placeholder) {
            out = out.replace(placeholder, &value);
        }
    }
    Some(out)
}

/// `value` as a header value: as it is when valid, else with every byte a header value
/// cannot hold percent-encoded (never sent raw, never dropped).
fn header_value(value: &str) -> Option<HeaderValue> {
    if let Ok(v) = HeaderValue::from_str(value) {
        return Some(v);
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

impl<S> Headers<S> {
    fn apply<B>(&mut self, req: &mut Request<B>) {
        if req.extensions().get::<SelectedConnection>().is_none() {
            return;
        }
        let forward = req
            .extensions()
            .get::<SettingsSnapshot>()
            .is_some_and(|s| s.0.forward_user_info_headers());
        // CC-1: chat completions lose `metadata`, which is kept aside for the chat id.
        let is_chat = ApiRoute::of(req) == Some(ApiRoute::ChatCompletions);
        let mut chat_id = None;
        // The chat's metadata, for the custom headers' placeholders (chat completions only).
        let mut metadata = None;
        if let Some(payload) = req.extensions_mut().get_mut::<Payload>()
            && let Ok(Some(found)) = payload.get::<Value>("metadata")
        {
            chat_id = chat_id_of(&found);
            if is_chat {
                let _ = payload.remove("metadata");
                metadata = Some(found);
            }
        }
        // Gathered apart and added at the end (the extensions are borrowed meanwhile):
        // appended to what an earlier layer set, not taken out and put back.
        let mut headers = UpstreamHeaders::default();
        // Borrowed, not cloned: nothing below changes the extensions until the end.
        let Some(SelectedConnection(connection)) = req.extensions().get::<SelectedConnection>()
        else {
            return;
        };
        let user = req.extensions().get::<User>();
        let model = req
            .extensions()
            .get::<RequestedModel>()
            .map(|m| &*m.requested);
        let names = &self.config.names;

        if connection.is_openrouter() {
            headers.insert(
                HeaderStep::OpenRouter,
                "http-referer",
                self.config.openrouter_referer.clone(),
            );
            headers.insert(
                HeaderStep::OpenRouter,
                "x-title",
                self.config.openrouter_title.clone(),
            );
        }
        let token = match (&self.config.jwt, user) {
            (Some(jwt), Some(user)) if forward => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                jwt.mint(user, now).map(|t| (&jwt.header, t))
            }
            _ => None,
        };
        if forward {
            if let Some((header, token)) = token {
                // The four user headers, as one signed token.
                headers.insert(HeaderStep::UserInfo, header, token);
            } else if let Some(user) = user {
                if !self.last_user.as_ref().is_some_and(|u| u.are_of(user)) {
                    self.last_user = Some(UserHeaders::of(user));
                }
                if let Some(cached) = &self.last_user {
                    let [name, id, email] = &cached.values;
                    for (header, value) in [
                        (&names.user_name, name),
                        (&names.user_id, id),
                        (&names.user_email, email),
                    ] {
                        match value {
                            Some(v) => headers.insert(HeaderStep::UserInfo, header, v.clone()),
                            None => {
                                tracing::warn!(header = %header, "user field is not a valid header value; not sent")
                            }
                        }
                    }
                }
                headers.insert(
                    HeaderStep::UserInfo,
                    &names.user_role,
                    HeaderValue::from_static(user.role.as_str()),
                );
            }
            // Sent with the token too.
            if let Some(id) = chat_id
                .as_deref()
                .and_then(|id| HeaderValue::from_str(id).ok())
            {
                headers.insert(HeaderStep::ChatId, &names.chat_id, id);
            }
        }
        // A config that does not parse was refused when it was loaded
        // (`Settings::check::<ConnectionHeaders>`); one that got past that sends none.
        let custom: &[(HeaderName, HeaderValue)] = match connection.options::<ConnectionHeaders>() {
            Ok(options) => &options.headers,
            Err(e) => {
                tracing::error!(connection = connection.index(), error = %e, "custom headers not sent");
                &[]
            }
        };
        let ctx = Fill {
            user,
            metadata: metadata.as_ref(),
            chat_id: chat_id.as_deref(),
            model,
            user_agent: req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        };
        for (name, value) in custom {
            match fill(value, &ctx) {
                None => headers.insert(HeaderStep::Custom, name, value.clone()),
                Some(filled) => match header_value(&filled) {
                    Some(v) => headers.insert(HeaderStep::Custom, name, v),
                    None => {
                        tracing::warn!(header = %name, "a filled-in custom header is not a valid header value; not sent")
                    }
                },
            }
        }
        if !headers.is_empty() {
            match req.extensions_mut().get_mut::<UpstreamHeaders>() {
                Some(earlier) => earlier.append(headers),
                None => {
                    req.extensions_mut().insert(headers);
                }
            }
        }
    }
}

impl<S, B> Service<Request<B>> for Headers<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.apply(&mut req);
        self.inner.call(req)
    }
}
