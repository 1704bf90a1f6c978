//! The route table and the path rules.

use http::Method;
use tower_openai_core::{ApiRoute, ErrorResponse};

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPath(&'static str);

impl InvalidPath {
    /// The 400 `invalid_path` a caller should see.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse::bad_request(format!("The request path is not accepted: {}", self.0))
            .with_code("invalid_path")
    }
}

/// Classify a request by its method and its path below the API prefix (`/chat/completions`),
/// refusing paths that different servers could read differently.
///
/// Refused: an empty segment (`//`, a trailing `/`), a dot segment, a percent-encoded `/` or
/// `\` or unreserved character (`%2e`, `%2F`, `%61`: a canonical path never encodes them),
/// a raw `\` or `;`, a malformed escape, and a model route spelt in another case. The id of
/// `GET /models/{id}` may hold `/`, raw or as `%2F` (`meta-llama/Llama-3-8B`).
pub fn classify(method: &Method, path: &str) -> Result<ApiRoute, InvalidPath> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(InvalidPath("it does not start with `/`"));
    };
    if *method == Method::GET && (rest == "models" || rest.starts_with("models/")) {
        if let Some(id) = rest.strip_prefix("models/") {
            check_segments(id, true)?;
        }
        return Ok(ApiRoute::Models);
    }
    if !rest.is_empty() {
        check_segments(rest, false)?;
    }
    if *method == Method::POST
        && let Some(route) = ApiRoute::model_route(path)
    {
        return Ok(route);
    }
    let spelt_otherwise = ApiRoute::JSON_MODEL_ROUTES
        .iter()
        .chain(&ApiRoute::FORM_MODEL_ROUTES)
        .chain(&[ApiRoute::Models])
        .map(|r| r.as_str())
        .any(|r| {
            rest.len() >= r.len()
                && rest.as_bytes()[..r.len()].eq_ignore_ascii_case(r.as_bytes())
                && !rest.starts_with(r)
                && matches!(rest.as_bytes().get(r.len()), None | Some(b'/'))
        });
    if spelt_otherwise {
        return Err(InvalidPath("an API route is spelt in another case"));
    }
    Ok(ApiRoute::Passthrough)
}

/// Whether `path` (below the prefix) names an Azure deployment: a `deployments` segment, in
/// any case, anywhere. Only the checked model may name the deployment a request reaches.
pub fn names_deployment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment.eq_ignore_ascii_case("deployments"))
}

fn check_segments(rest: &str, slash_allowed: bool) -> Result<(), InvalidPath> {
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(InvalidPath("it has an empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(InvalidPath("it has a dot segment"));
        }
        let bytes = segment.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => return Err(InvalidPath("it has a backslash")),
                b';' if !slash_allowed => return Err(InvalidPath("it has a `;` parameter")),
                b'%' => {
                    let decoded = bytes
                        .get(i + 1..i + 3)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .ok_or(InvalidPath("it has a malformed percent escape"))?;
                    match decoded {
                        b'/' if slash_allowed => {}
                        b'/' | b'\\' => return Err(InvalidPath("it has an encoded slash")),
                        b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                            return Err(InvalidPath(
                                "it percent-encodes a character that needs no encoding",
                            ));
                        }
                        _ => {}
                    }
                    i += 3;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_openai_core::RouteKind;

    fn kind(method: Method, path: &str) -> Result<RouteKind, InvalidPath> {
        classify(&method, path).map(|r| r.kind())
    }

    #[test]
    fn the_route_table() {
        for r in ApiRoute::JSON_MODEL_ROUTES.map(ApiRoute::as_str) {
            assert_eq!(
                kind(Method::POST, &format!("/{r}")),
                Ok(RouteKind::ModelJson)
            );
            // Another method on a model route's path is the passthrough.
            assert_eq!(
                kind(Method::GET, &format!("/{r}")),
                Ok(RouteKind::Passthrough)
            );
        }
        for r in ApiRoute::FORM_MODEL_ROUTES.map(ApiRoute::as_str) {
            assert_eq!(
                kind(Method::POST, &format!("/{r}")),
                Ok(RouteKind::ModelForm)
            );
        }
        for p in [
            "/models",
            "/models/0",
            "/models/gpt-4o",
            "/models/meta-llama/Llama-3-8B",
        ] {
            assert_eq!(kind(Method::GET, p), Ok(RouteKind::Models), "{p}");
        }
        for (m, p) in [
            (Method::GET, "/files"),
            (Method::POST, "/batches"),
            (Method::DELETE, "/models/ft:x"),
            (Method::POST, "/models"),
            (Method::GET, "/responses/resp_1"),
            (Method::POST, "/fine_tuning/jobs"),
            (Method::GET, "/"),
        ] {
            assert_eq!(kind(m.clone(), p), Ok(RouteKind::Passthrough), "{m} {p}");
        }
    }

    #[test]
    fn odd_paths_are_refused() {
        for p in [
            "//chat/completions",
            "/chat//completions",
            "/chat/completions/",
            "/./chat/completions",
            "/x/../chat/completions",
            "/%2e%2e/chat/completions",
            "/%2E/chat/completions",
            "/.%2e/files",
            "/chat%2fcompletions",
            "/chat%2Fcompletions",
            "/chat%5ccompletions",
            "/chat\\completions",
            "/chat/complet%69ons",
            "/chat/completions;a=b",
            "/files/%zz",
            "/files/%4",
            "/Chat/Completions",
            "/AUDIO/transcriptions",
            "/Models",
            "chat/completions",
        ] {
            assert!(classify(&Method::POST, p).is_err(), "{p}");
        }
        // Encoded characters that must be encoded are fine.
        assert_eq!(
            kind(Method::GET, "/files/a%20b"),
            Ok(RouteKind::Passthrough)
        );
    }

    #[test]
    fn a_model_id_may_hold_slashes_but_no_dot_segments() {
        for p in ["/models/org%2Fmodel", "/models/org/model", "/models/a;b"] {
            assert_eq!(kind(Method::GET, p), Ok(RouteKind::Models), "{p}");
        }
        for p in [
            "/models/../files",
            "/models/a//b",
            "/models/a%5cb",
            "/models/%2e%2e",
        ] {
            assert!(classify(&Method::GET, p).is_err(), "{p}");
        }
    }

    #[test]
    fn deployments_are_found_in_any_case_and_place() {
        assert!(names_deployment("/openai/deployments/x/chat/completions"));
        assert!(names_deployment("/OpenAI/Deployments/x"));
        assert!(names_deployment("/deployments/x/chat/completions"));
        assert!(!names_deployment("/chat/completions"));
        assert!(!names_deployment("/files/deployments-list"));
    }
}
