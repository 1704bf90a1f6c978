use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_openai_core::payload::Form;
use tower_openai_core::{ApiRoute, ErrorResponse, ListFilter, Payload, ResponseBody, Role, User};
use tower_openai_settings::SettingsSnapshot;
use tower_service::Service;

use crate::records::{AccessRecords, may_use};

/// Enforces per-user model access. See the [crate docs](crate).
pub struct AclLayer<R> {
    records: Arc<R>,
}

impl<R: AccessRecords> AclLayer<R> {
    /// Decide with these records (shared by every service the layer makes).
    pub fn new(records: R) -> Self {
        Self {
            records: Arc::new(records),
        }
    }
}

impl<R> Clone for AclLayer<R> {
    fn clone(&self) -> Self {
        Self {
            records: self.records.clone(),
        }
    }
}

impl<R> fmt::Debug for AclLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclLayer").finish_non_exhaustive()
    }
}

impl<S, R> Layer<S> for AclLayer<R> {
    type Service = Acl<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Acl {
            inner,
            records: self.records.clone(),
        }
    }
}

/// Enforces per-user model access. See the [crate docs](crate).
pub struct Acl<S, R> {
    inner: S,
    records: Arc<R>,
}

impl<S, R: AccessRecords> Acl<S, R> {
    /// Wrap `inner`, deciding with `records`.
    pub fn new(inner: S, records: R) -> Self {
        Self {
            inner,
            records: Arc::new(records),
        }
    }

    /// A layer deciding with `records`.
    pub fn layer(records: R) -> AclLayer<R> {
        AclLayer::new(records)
    }
}

impl<S, R> Acl<S, R> {
    tower_openai_util::define_inner_service_accessors!();
}

impl<S: Clone, R> Clone for Acl<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            records: self.records.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Acl<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acl")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R: AccessRecords> Acl<S, R> {
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), ErrorResponse> {
        let Some(user) = req.extensions().get::<User>() else {
            // Fail closed: without a caller there is nobody to allow.
            return Err(
                ErrorResponse::unauthorized("The request has no identified caller")
                    .with_code("invalid_api_key"),
            );
        };
        // A pending user (not approved yet) may use nothing, bypass or not.
        if user.role == Role::Pending {
            return Err(ErrorResponse::forbidden(
                "This account is pending: an administrator has to approve it",
            )
            .with_code("pending_user"));
        }
        // Only the settings can turn the check off: no query parameter or header can (AC-6).
        let bypass = req
            .extensions()
            .get::<SettingsSnapshot>()
            .is_some_and(|s| s.0.bypass_model_access_control());
        if bypass || user.is_admin() {
            return Ok(());
        }
        let ext = req.extensions();
        let model = match (ext.get::<Payload>(), ext.get::<Form>()) {
            (Some(payload), _) => match payload.model() {
                Ok(model) => model,
                // Fail closed: a model that cannot be read cannot be allowed.
                Err(e) => {
                    return Err(ErrorResponse::bad_request(e.to_string()).with_code("invalid_body"));
                }
            },
            (None, Some(form)) => Some(form.model()),
            (None, None) => None,
        };
        match model {
            Some(model) if !may_use(&*self.records, user, model, false) => {
                // As Open WebUI: the same words whether the model exists or not (AC-3).
                return Err(ErrorResponse::forbidden(format!(
                    "The model `{model}` does not exist or you do not have access to it."
                ))
                .with_code("model_not_found"));
            }
            Some(_) => {}
            None if ext.get::<ApiRoute>().is_some_and(|r| r.needs_model()) => {
                return Err(
                    ErrorResponse::bad_request("you must provide a model parameter")
                        .with_code("missing_model"),
                );
            }
            None => {}
        }
        if req.uri().path().starts_with("/models") {
            // The filter outlives this borrow: it takes its own copy of the caller.
            let records = self.records.clone();
            let user = user.clone();
            req.extensions_mut().insert(ListFilter::new(move |model| {
                may_use(&*records, &user, model, false)
            }));
        }
        Ok(())
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for Acl<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: AccessRecords,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.check(&mut req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}

tower_openai_util::check_response_future!(
    /// Response future of [`Acl`]: the inner service's, or the layer's own refusal.
);

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use tower::{ServiceExt, service_fn};
    use tower_openai_core::{Payload, Role, User};

    use crate::{AccessControl, AclLayer, ModelAccess, StaticRecords};

    /// A pending user (not approved yet) may use nothing: not a public model, not their own.
    #[tokio::test]
    async fn a_pending_user_is_refused_even_a_public_model() {
        let records = StaticRecords::new([(
            "open".to_owned(),
            ModelAccess {
                owner: "carol".to_owned(),
                access: AccessControl::Public,
            },
        )]);
        let svc = tower::Layer::layer(
            &AclLayer::new(records),
            service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(
                    http_body_util::Empty::<Bytes>::new(),
                ))
            }),
        );
        for (role, status) in [
            (Role::User, StatusCode::OK),
            (Role::Pending, StatusCode::FORBIDDEN),
        ] {
            let mut req = Request::post("/chat/completions").body(()).unwrap();
            req.extensions_mut().insert(User {
                id: "carol".into(),
                role,
                ..User::default()
            });
            req.extensions_mut()
                .insert(Payload::new(Bytes::from_static(br#"{"model":"open"}"#)));
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), status, "{role:?}");
        }
    }
}
