//! What the model catalog may fetch model lists through.

/// A service that sends a request to its selected connection **with that connection's
/// credentials and headers**, as chat requests are sent.
///
/// The model catalog fetches every connection's `GET /models` through one, so discovery
/// authenticates exactly as requests do. A bare upstream service does not implement it: an
/// upstream that checks keys would answer 401, the list would stay empty and every chat
/// would be a 404. The facade's `tower_openai::endpoint::Endpoint` (azure → auth →
/// headers → upstream) implements it; a stack of your own that applies the credentials
/// itself opts in with the models layer's `AppliesCredentials`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply each connection's credentials: a catalog fetching through it would list no models from an upstream that checks keys",
    note = "build the endpoint stack with `tower_openai::endpoint::Endpoint::builder(upstream).build()` and give it to `Catalog::new` (and use it below routing too), or wrap a stack of your own that applies the credentials in `tower_openai::models::AppliesCredentials`"
)]
pub trait ConnectionEndpoint {}
