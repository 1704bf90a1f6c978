//! Microsoft Entra ID tokens (rule A-5, done for real).
//!
//! A [`TokenSource`] fetches a token for a scope; [`EntraTokens`] caches them per scope and
//! refreshes them ahead of expiry, one fetch at a time. [`EntraTokens::from_env`] builds the
//! chain Azure's `DefaultAzureCredential` uses, from the same variables:
//!
//! 1. **Client secret** — `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`
//!    (OAuth2 client credentials against `AZURE_AUTHORITY_HOST`, default
//!    `https://login.microsoftonline.com`).
//! 2. **Workload identity** — `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_FEDERATED_TOKEN_FILE` (client credentials with the file's token as a JWT
//!    client assertion; the file is re-read on every fetch, as Kubernetes rotates it).
//! 3. **Managed identity** — App Service's `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, else the
//!    instance metadata endpoint (`AZURE_POD_IDENTITY_AUTHORITY_HOST`, default
//!    `http://169.254.169.254`); `AZURE_CLIENT_ID` picks a user-assigned identity.
//!
//! The first source that yields a token is remembered and asked first from then on.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::FutureExt;
use http::{HeaderValue, Request};
use tower_openai_core::Body;
use tower_openai_core::client::HttpClient;

use crate::http::{exchange, form, post_form, token_from};
use crate::token::{DEFAULT_REFRESH_MARGIN, TokenCache, TokenError, TokenFuture, TokenLookup};

/// The scope Azure OpenAI accepts, and the default of Entra ID connections.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Fetches an access token for a scope. Implement it to plug in any credential.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetch a new token for `scope` (no caching: [`EntraTokens`] caches).
    fn fetch(&self, scope: &str) -> TokenFuture;

    /// A short name for logs and errors (`client secret`, `managed identity`, …).
    fn name(&self) -> &str;
}

/// A tenant's OAuth2 token endpoint, as a client: the part client credentials share.
#[derive(Clone)]
struct Tenant {
    client: HttpClient,
    authority: String,
    tenant: String,
    client_id: String,
}

impl Tenant {
    fn new(client: HttpClient, authority: &str, tenant: &str, client_id: &str) -> Self {
        Self {
            client,
            authority: authority.trim_end_matches('/').to_owned(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    /// The client-credentials grant for `scope`, with the credential's own form fields.
    async fn client_credentials(
        &self,
        scope: &str,
        credential: &[(&str, &str)],
        what: &str,
    ) -> Result<crate::token::AccessToken, TokenError> {
        let uri = format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant);
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope),
        ];
        pairs.extend_from_slice(credential);
        let req = post_form(&uri, form(&pairs), what)?;
        let json = exchange(&self.client, req, what).await?;
        token_from(&json, what)
    }

    fn debug_fields<'a, 'b>(
        &self,
        d: &'a mut fmt::DebugStruct<'a, 'b>,
    ) -> &'a mut fmt::DebugStruct<'a, 'b> {
        d.field("authority", &self.authority)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
    }
}

/// OAuth2 client credentials with a client secret.
#[derive(Clone)]
pub struct ClientSecret {
    tenant: Tenant,
    secret: String,
}

impl ClientSecret {
    /// A credential for this tenant, client and secret against `authority`
    /// (e.g. `https://login.microsoftonline.com`).
    pub fn new(
        client: HttpClient,
        authority: &str,
        tenant: &str,
        client_id: &str,
        secret: &str,
    ) -> Self {
        Self {
            tenant: Tenant::new(client, authority, tenant, client_id),
            secret: secret.to_owned(),
        }
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tenant
            .debug_fields(&mut f.debug_struct("ClientSecret"))
            .finish_non_exhaustive()
    }
}

impl TokenSource for ClientSecret {
    fn fetch(&self, scope: &str) -> TokenFuture {
        let this = self.clone();
        let scope = scope.to_owned();
        async move {
            this.tenant
                .client_credentials(
                    &scope,
                    &[("client_secret", &this.secret)],
                    "Entra ID client secret",
                )
                .await
        }
        .boxed()
    }

    fn name(&self) -> &str {
        "client secret"
    }
}

/// OAuth2 client credentials with a federated token file (Kubernetes workload identity).
#[derive(Clone)]
pub struct WorkloadIdentity {
    tenant: Tenant,
    token_file: String,
}

impl WorkloadIdentity {
    /// A credential for this tenant and client, asserting the token in `token_file`.
    pub fn new(
        client: HttpClient,
        authority: &str,
        tenant: &str,
        client_id: &str,
        token_file: &str,
    ) -> Self {
        Self {
            tenant: Tenant::new(client, authority, tenant, client_id),
            token_file: token_file.to_owned(),
        }
    }
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tenant
            .debug_fields(&mut f.debug_struct("WorkloadIdentity"))
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl TokenSource for WorkloadIdentity {
    fn fetch(&self, scope: &str) -> TokenFuture {
        let this = self.clone();
        let scope = scope.to_owned();
        async move {
            let what = "Entra ID workload identity";
            // Re-read on every fetch: Kubernetes rotates the file.
            let assertion = tokio::fs::read_to_string(&this.token_file)
                .await
                .map_err(|e| {
                    TokenError::new(format!("{what}: cannot read {}: {e}", this.token_file))
                })?;
            let credential = [
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.trim()),
            ];
            this.tenant
                .client_credentials(&scope, &credential, what)
                .await
        }
        .boxed()
    }

    fn name(&self) -> &str {
        "workload identity"
    }
}

/// A managed identity: App Service's identity endpoint, or the instance metadata endpoint.
#[derive(Clone)]
pub struct ManagedIdentity {
    client: HttpClient,
    kind: MiKind,
    client_id: Option<String>,
}

#[derive(Clone)]
enum MiKind {
    AppService { endpoint: String, header: String },
    Imds { host: String },
}

impl ManagedIdentity {
    /// App Service (and Functions, Container Apps): `IDENTITY_ENDPOINT` with `IDENTITY_HEADER`.
    pub fn app_service(client: HttpClient, endpoint: &str, header: &str) -> Self {
        Self {
            client,
            kind: MiKind::AppService {
                endpoint: endpoint.to_owned(),
                header: header.to_owned(),
            },
            client_id: None,
        }
    }

    /// The instance metadata service at `host` (`http://169.254.169.254` on Azure VMs).
    pub fn imds(client: HttpClient, host: &str) -> Self {
        Self {
            client,
            kind: MiKind::Imds {
                host: host.trim_end_matches('/').to_owned(),
            },
            client_id: None,
        }
    }

    /// Use this user-assigned identity instead of the system-assigned one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            MiKind::AppService { endpoint, .. } => format!("app service at {endpoint}"),
            MiKind::Imds { host } => format!("instance metadata at {host}"),
        };
        f.debug_struct("ManagedIdentity")
            .field("kind", &kind)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentity {
    fn request(&self, resource: &str) -> Result<Request<Body>, TokenError> {
        let what = "Entra ID managed identity";
        let mut query = form_urlencoded::Serializer::new(String::new());
        let (base, header_name, header_value) = match &self.kind {
            MiKind::AppService { endpoint, header } => {
                query.append_pair("api-version", "2019-08-01");
                (endpoint.clone(), "x-identity-header", header.clone())
            }
            MiKind::Imds { host } => {
                query.append_pair("api-version", "2018-02-01");
                (
                    format!("{host}/metadata/identity/oauth2/token"),
                    "metadata",
                    "true".to_owned(),
                )
            }
        };
        query.append_pair("resource", resource);
        if let Some(id) = &self.client_id {
            query.append_pair("client_id", id);
        }
        let uri = format!("{base}?{}", query.finish());
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri
            .parse()
            .map_err(|_| TokenError::new(format!("{what}: {base:?} is not a URL")))?;
        let value = HeaderValue::from_str(&header_value).map_err(|_| {
            TokenError::new(format!(
                "{what}: IDENTITY_HEADER is not a valid header value"
            ))
        })?;
        req.headers_mut().insert(header_name, value);
        Ok(req)
    }
}

impl TokenSource for ManagedIdentity {
    fn fetch(&self, scope: &str) -> TokenFuture {
        // Managed identity takes a resource, not a scope.
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let request = self.request(resource);
        let client = self.client.clone();
        async move {
            let what = "Entra ID managed identity";
            let json = exchange(&client, request?, what).await?;
            token_from(&json, what)
        }
        .boxed()
    }

    fn name(&self) -> &str {
        "managed identity"
    }
}

/// Tries sources in order; the first that yields a token is tried first from then on.
pub struct Chain {
    sources: Vec<Arc<dyn TokenSource>>,
    preferred: AtomicUsize,
}

impl Chain {
    /// A chain of these sources.
    pub fn new(sources: Vec<Arc<dyn TokenSource>>) -> Self {
        Self {
            sources,
            preferred: AtomicUsize::new(usize::MAX),
        }
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|s| s.name()))
            .finish()
    }
}

impl TokenSource for Arc<Chain> {
    fn fetch(&self, scope: &str) -> TokenFuture {
        let chain = self.clone();
        let scope = scope.to_owned();
        async move {
            let preferred = chain.preferred.load(Ordering::Relaxed);
            if let Some(source) = chain.sources.get(preferred) {
                return source.fetch(&scope).await;
            }
            let mut errors = Vec::new();
            for (i, source) in chain.sources.iter().enumerate() {
                match source.fetch(&scope).await {
                    Ok(token) => {
                        chain.preferred.store(i, Ordering::Relaxed);
                        tracing::info!(credential = source.name(), "Entra ID token obtained");
                        return Ok(token);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if errors.is_empty() {
                return Err(TokenError::new("no Entra ID credential is configured"));
            }
            Err(TokenError::new(errors.join("; ")))
        }
        .boxed()
    }

    fn name(&self) -> &str {
        "credential chain"
    }
}

/// Entra ID tokens, cached per scope and refreshed ahead of expiry. Cheap to clone; clones
/// share the cache.
#[derive(Clone)]
pub struct EntraTokens {
    source: Arc<dyn TokenSource>,
    cache: Arc<TokenCache<String>>,
}

impl fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraTokens")
            .field("source", &self.source.name())
            .finish_non_exhaustive()
    }
}

impl EntraTokens {
    /// Tokens from `source`, refreshed 5 minutes ahead of expiry.
    pub fn new(source: impl TokenSource) -> Self {
        Self::with_margin(source, DEFAULT_REFRESH_MARGIN)
    }

    /// Tokens from `source`, refreshed `margin` ahead of expiry.
    pub fn with_margin(source: impl TokenSource, margin: std::time::Duration) -> Self {
        Self {
            source: Arc::new(source),
            cache: TokenCache::new(margin),
        }
    }

    /// The `DefaultAzureCredential`-style chain from the environment (see the
    /// [module docs](self)), sending its requests through `client`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>, client: HttpClient) -> Self {
        let var = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let authority = var("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| "https://login.microsoftonline.com".to_owned());
        let tenant = var("AZURE_TENANT_ID");
        let client_id = var("AZURE_CLIENT_ID");
        let mut sources: Vec<Arc<dyn TokenSource>> = Vec::new();
        if let (Some(tenant), Some(id), Some(secret)) =
            (&tenant, &client_id, var("AZURE_CLIENT_SECRET"))
        {
            sources.push(Arc::new(ClientSecret::new(
                client.clone(),
                &authority,
                tenant,
                id,
                &secret,
            )));
        }
        if let (Some(tenant), Some(id), Some(file)) =
            (&tenant, &client_id, var("AZURE_FEDERATED_TOKEN_FILE"))
        {
            sources.push(Arc::new(WorkloadIdentity::new(
                client.clone(),
                &authority,
                tenant,
                id,
                &file,
            )));
        }
        let mut managed = match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => {
                ManagedIdentity::app_service(client, &endpoint, &header)
            }
            _ => {
                let host = var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| "http://169.254.169.254".to_owned());
                ManagedIdentity::imds(client, &host)
            }
        };
        if let Some(id) = client_id {
            managed = managed.client_id(id);
        }
        sources.push(Arc::new(managed));
        Self::new(Arc::new(Chain::new(sources)))
    }

    /// A token for `scope`.
    pub fn token(&self, scope: &str) -> TokenLookup {
        let source = self.source.clone();
        let key = scope.to_owned();
        let scope = key.clone();
        self.cache.get(&key, move || source.fetch(&scope))
    }
}
