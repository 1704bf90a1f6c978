//! [`ServiceBuilderExt`]: one method per layer, named after its module.

use tower::ServiceBuilder;
use tower::layer::util::Stack;
use tower_openai_collect::CollectPayloadLayer;
use tower_openai_rescue::RescueLayer;
use tower_openai_settings::{LoadSettingsLayer, SettingsHandle};

/// Adds the tower-openai layers to a [`ServiceBuilder`], so a stack reads like tower-http's:
///
/// ```no_run
/// # #[cfg(feature = "full")] {
/// use tower::ServiceBuilder;
/// use tower_openai::ServiceBuilderExt;
/// use tower_openai::settings::{Settings, SettingsHandle};
/// use tower_openai::endpoint::Endpoint;
/// use tower_openai::models::Catalog;
/// use tower_openai::upstream::Upstream;
///
/// let settings = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:8000/v1"]).unwrap());
/// let endpoint = Endpoint::builder(Upstream::new()).build();
/// let catalog = Catalog::new(endpoint.clone());
/// let stack = ServiceBuilder::new()
///     .rescue()
///     .policy()
///     .load_settings(settings)
///     .collect_payload(64 << 20)
///     .models(catalog.clone())
///     .select(catalog)
///     .reasoning()
///     .service(endpoint);
/// # let _ = stack;
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Transport errors below become 502/504 OpenAI-shaped responses
    /// ([`rescue`](crate::rescue)).
    fn rescue(self) -> ServiceBuilder<Stack<RescueLayer, L>>;

    /// One settings snapshot per request ([`LoadSettingsLayer`](crate::settings::LoadSettingsLayer)).
    fn load_settings(self, settings: SettingsHandle)
    -> ServiceBuilder<Stack<LoadSettingsLayer, L>>;

    /// Read JSON bodies once, under `limit` bytes ([`payload`](crate::core::payload)).
    fn collect_payload(self, limit: usize) -> ServiceBuilder<Stack<CollectPayloadLayer, L>>;

    /// Who is calling: an API key to a user, from `store` ([`identity`](crate::identity)).
    #[cfg(feature = "identity")]
    fn identify<K: tower_openai_identity::KeyStore>(
        self,
        store: K,
    ) -> ServiceBuilder<Stack<tower_openai_identity::IdentifyLayer<K>, L>>;

    /// Model routes vs the passthrough (off), path rules ([`policy`](crate::policy)).
    #[cfg(feature = "policy")]
    fn policy(self) -> ServiceBuilder<Stack<tower_openai_policy::PolicyLayer, L>>;

    /// Per-user model access ([`acl`](crate::acl)).
    #[cfg(feature = "acl")]
    fn acl<R: tower_openai_acl::AccessRecords>(
        self,
        records: R,
    ) -> ServiceBuilder<Stack<tower_openai_acl::AclLayer<R>, L>>;

    /// `GET /models` from a catalog ([`models`](crate::models)).
    #[cfg(feature = "models")]
    fn models(
        self,
        catalog: tower_openai_models::Catalog,
    ) -> ServiceBuilder<Stack<tower_openai_models::ModelsLayer, L>>;

    /// Model → connection ([`select`](crate::select)).
    #[cfg(feature = "select")]
    fn select<R: Clone>(
        self,
        routes: R,
    ) -> ServiceBuilder<Stack<tower_openai_select::SelectLayer<R>, L>>;

    /// The text-to-speech cache ([`speech_cache`](crate::speech_cache)).
    #[cfg(feature = "speech-cache")]
    fn speech_cache(
        self,
        store: tower_openai_speech_cache::SpeechStore,
    ) -> ServiceBuilder<Stack<tower_openai_speech_cache::SpeechCacheLayer, L>>;

    /// Model groups: each attempt's connection, failover, cooldown ([`group`](crate::group)).
    #[cfg(feature = "group")]
    fn group(
        self,
        groups: &tower_openai_group::Groups,
    ) -> ServiceBuilder<Stack<tower_openai_group::GroupLayer, L>>;

    /// Requests and tokens per caller and minute ([`ratelimit`](crate::ratelimit)), counted in
    /// `store` per the caller `key` names.
    #[cfg(feature = "ratelimit")]
    fn rate_limit<St, K>(
        self,
        store: St,
        key: K,
    ) -> ServiceBuilder<Stack<tower_openai_ratelimit::RateLimitLayer<St, K>, L>>
    where
        St: tower_openai_ratelimit::LimitStore + Clone,
        K: tower_openai_ratelimit::LimitKey + Clone;

    /// The access log and metrics, written when each body ends ([`observe`](crate::observe)).
    #[cfg(feature = "observe")]
    fn observe(self) -> ServiceBuilder<Stack<tower_openai_observe::ObserveLayer, L>>;

    /// Token usage from answers and streams ([`observe`](crate::observe)).
    #[cfg(feature = "observe")]
    fn usage(self) -> ServiceBuilder<Stack<tower_openai_observe::UsageLayer, L>>;

    /// Reasoning-model rewrites with the default rule ([`reasoning`](crate::reasoning)).
    #[cfg(feature = "reasoning")]
    fn reasoning(self) -> ServiceBuilder<Stack<tower_openai_reasoning::ReasoningLayer, L>>;

    /// Anthropic's Messages API on every connection ([`anthropic`](crate::anthropic)): below
    /// select, above usage and the per-connection layers.
    #[cfg(feature = "anthropic")]
    fn anthropic(self) -> ServiceBuilder<Stack<tower_openai_anthropic::AnthropicLayer, L>>;

    /// Errors of Anthropic requests in Anthropic's shape ([`anthropic`](crate::anthropic)):
    /// above everything that can refuse a request.
    #[cfg(feature = "anthropic")]
    fn anthropic_errors(
        self,
    ) -> ServiceBuilder<Stack<tower_openai_anthropic::AnthropicErrorsLayer, L>>;

    /// Azure OpenAI ([`azure`](crate::azure)).
    #[cfg(feature = "azure")]
    fn azure(self) -> ServiceBuilder<Stack<tower_openai_azure::AzureLayer, L>>;

    /// Upstream credentials ([`auth`](crate::auth)).
    #[cfg(feature = "auth")]
    fn auth(
        self,
        layer: tower_openai_auth::AuthLayer,
    ) -> ServiceBuilder<Stack<tower_openai_auth::AuthLayer, L>>;

    /// Attribution, user-info and custom headers ([`headers`](crate::headers)).
    #[cfg(feature = "headers")]
    fn headers(
        self,
        config: tower_openai_headers::HeadersConfig,
    ) -> ServiceBuilder<Stack<tower_openai_headers::HeadersLayer, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn rescue(self) -> ServiceBuilder<Stack<RescueLayer, L>> {
        self.layer(RescueLayer::new())
    }

    fn load_settings(
        self,
        settings: SettingsHandle,
    ) -> ServiceBuilder<Stack<LoadSettingsLayer, L>> {
        self.layer(LoadSettingsLayer::new(settings))
    }

    fn collect_payload(self, limit: usize) -> ServiceBuilder<Stack<CollectPayloadLayer, L>> {
        self.layer(CollectPayloadLayer::new(limit))
    }

    #[cfg(feature = "identity")]
    fn identify<K: tower_openai_identity::KeyStore>(
        self,
        store: K,
    ) -> ServiceBuilder<Stack<tower_openai_identity::IdentifyLayer<K>, L>> {
        self.layer(tower_openai_identity::IdentifyLayer::new(store))
    }

    #[cfg(feature = "policy")]
    fn policy(self) -> ServiceBuilder<Stack<tower_openai_policy::PolicyLayer, L>> {
        self.layer(tower_openai_policy::PolicyLayer::new())
    }

    #[cfg(feature = "acl")]
    fn acl<R: tower_openai_acl::AccessRecords>(
        self,
        records: R,
    ) -> ServiceBuilder<Stack<tower_openai_acl::AclLayer<R>, L>> {
        self.layer(tower_openai_acl::AclLayer::new(records))
    }

    #[cfg(feature = "models")]
    fn models(
        self,
        catalog: tower_openai_models::Catalog,
    ) -> ServiceBuilder<Stack<tower_openai_models::ModelsLayer, L>> {
        self.layer(tower_openai_models::ModelsLayer::new(catalog))
    }

    #[cfg(feature = "select")]
    fn select<R: Clone>(
        self,
        routes: R,
    ) -> ServiceBuilder<Stack<tower_openai_select::SelectLayer<R>, L>> {
        self.layer(tower_openai_select::SelectLayer::new(routes))
    }

    #[cfg(feature = "speech-cache")]
    fn speech_cache(
        self,
        store: tower_openai_speech_cache::SpeechStore,
    ) -> ServiceBuilder<Stack<tower_openai_speech_cache::SpeechCacheLayer, L>> {
        self.layer(tower_openai_speech_cache::SpeechCacheLayer::new(store))
    }

    #[cfg(feature = "group")]
    fn group(
        self,
        groups: &tower_openai_group::Groups,
    ) -> ServiceBuilder<Stack<tower_openai_group::GroupLayer, L>> {
        self.layer(groups.layer())
    }

    #[cfg(feature = "ratelimit")]
    fn rate_limit<St, K>(
        self,
        store: St,
        key: K,
    ) -> ServiceBuilder<Stack<tower_openai_ratelimit::RateLimitLayer<St, K>, L>>
    where
        St: tower_openai_ratelimit::LimitStore + Clone,
        K: tower_openai_ratelimit::LimitKey + Clone,
    {
        self.layer(tower_openai_ratelimit::RateLimitLayer::new(store, key))
    }

    #[cfg(feature = "observe")]
    fn observe(self) -> ServiceBuilder<Stack<tower_openai_observe::ObserveLayer, L>> {
        self.layer(tower_openai_observe::ObserveLayer::new())
    }

    #[cfg(feature = "observe")]
    fn usage(self) -> ServiceBuilder<Stack<tower_openai_observe::UsageLayer, L>> {
        self.layer(tower_openai_observe::UsageLayer::new())
    }

    #[cfg(feature = "reasoning")]
    fn reasoning(self) -> ServiceBuilder<Stack<tower_openai_reasoning::ReasoningLayer, L>> {
        self.layer(tower_openai_reasoning::ReasoningLayer::new())
    }

    #[cfg(feature = "anthropic")]
    fn anthropic(self) -> ServiceBuilder<Stack<tower_openai_anthropic::AnthropicLayer, L>> {
        self.layer(tower_openai_anthropic::AnthropicLayer::new())
    }

    #[cfg(feature = "anthropic")]
    fn anthropic_errors(
        self,
    ) -> ServiceBuilder<Stack<tower_openai_anthropic::AnthropicErrorsLayer, L>> {
        self.layer(tower_openai_anthropic::AnthropicErrorsLayer::new())
    }

    #[cfg(feature = "azure")]
    fn azure(self) -> ServiceBuilder<Stack<tower_openai_azure::AzureLayer, L>> {
        self.layer(tower_openai_azure::AzureLayer::new())
    }

    #[cfg(feature = "auth")]
    fn auth(
        self,
        layer: tower_openai_auth::AuthLayer,
    ) -> ServiceBuilder<Stack<tower_openai_auth::AuthLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "headers")]
    fn headers(
        self,
        config: tower_openai_headers::HeadersConfig,
    ) -> ServiceBuilder<Stack<tower_openai_headers::HeadersLayer, L>> {
        self.layer(tower_openai_headers::HeadersLayer::new(config))
    }
}
