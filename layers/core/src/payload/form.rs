use std::convert::Infallible;
use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;

use crate::error::ErrorResponse;

/// A `multipart/form-data` body of a model route (`audio/transcriptions`, `images/edits`,
/// …), read once: the caller's bytes, and where its one `model` field's value lies in them.
///
/// The form is parsed twice, and both readings must agree before it is admitted: once by
/// [`multer`] (the kept parser: boundaries, headers, field names) and once by a scan that
/// locates the `model` field's value in the original bytes. The upstream is sent the
/// caller's bytes unchanged, except the `model` value when a layer set another
/// ([`set_model`](Form::set_model): routing strips a connection's prefix), so what the
/// gateway checked is what the upstream reads.
///
/// ```
/// use bytes::Bytes;
/// use tower_openai_core::payload::Form;
///
/// let body = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nlocal.whisper\r\n\
///             --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n";
/// let mut form = Form::parse(Bytes::from(body), "multipart/form-data; boundary=b").unwrap();
/// assert_eq!(form.model(), "local.whisper");
/// form.set_model("whisper");
/// assert_eq!(form.to_bytes(), Bytes::from(body.replace("local.whisper", "whisper")));
/// ```
#[derive(Clone)]
pub struct Form {
    original: Bytes,
    /// The `model` field's value in `original`.
    model_range: Range<usize>,
    /// The value a layer set, if any.
    replaced: Option<Box<str>>,
}

/// Why a multipart body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// The form has no `model` field.
    #[error("you must provide a model parameter")]
    MissingModel,
    /// The form has more than one `model` field.
    #[error("The form has more than one `model` field")]
    DuplicateModel,
    /// The body is not a form this gateway can read unambiguously.
    #[error("The request body is not a valid multipart form: {0}")]
    Invalid(String),
}

impl FormError {
    /// The 400 response a caller should see.
    pub fn to_response(&self) -> ErrorResponse {
        let code = match self {
            FormError::MissingModel => "missing_model",
            FormError::DuplicateModel | FormError::Invalid(_) => "invalid_body",
        };
        ErrorResponse::bad_request(self.to_string()).with_code(code)
    }
}

fn invalid(what: impl Into<String>) -> FormError {
    FormError::Invalid(what.into())
}

impl Form {
    /// Read `body`, sent with this `Content-Type`.
    pub fn parse(body: Bytes, content_type: &str) -> Result<Self, FormError> {
        let boundary = plain_boundary(content_type)?;
        let by_multer = models_by_multer(&body, &boundary)?;
        let by_scan = scan(&body, &boundary)?;
        // Both readings must see the same `model` fields with the same values.
        let same = by_multer.len() == by_scan.len()
            && by_multer
                .iter()
                .zip(&by_scan)
                .all(|(value, range)| value[..] == body[range.clone()]);
        if !same {
            return Err(invalid("its fields cannot be read unambiguously"));
        }
        let mut ranges = by_scan.into_iter();
        let (Some(model_range), None) = (ranges.next(), ranges.next()) else {
            return Err(if by_multer.is_empty() {
                FormError::MissingModel
            } else {
                FormError::DuplicateModel
            });
        };
        if std::str::from_utf8(&body[model_range.clone()]).is_err() {
            return Err(invalid("the `model` field is not UTF-8 text"));
        }
        Ok(Self {
            original: body,
            model_range,
            replaced: None,
        })
    }

    /// The `model` field's value (as a layer set it, or as sent).
    pub fn model(&self) -> &str {
        match &self.replaced {
            Some(m) => m,
            // Checked to be UTF-8 in `parse`.
            None => std::str::from_utf8(&self.original[self.model_range.clone()]).unwrap_or(""),
        }
    }

    /// Send `model` as the `model` field's value instead.
    pub fn set_model(&mut self, model: &str) {
        self.replaced = Some(model.into());
    }

    /// Whether a layer set another model.
    pub fn is_changed(&self) -> bool {
        self.replaced.is_some()
    }

    /// The bytes the caller sent.
    pub fn original(&self) -> &Bytes {
        &self.original
    }

    /// The body to send: the caller's bytes, with the `model` value a layer set.
    pub fn to_bytes(&self) -> Bytes {
        let Some(model) = &self.replaced else {
            return self.original.clone();
        };
        let Range { start, end } = self.model_range.clone();
        let mut out = BytesMut::with_capacity(self.original.len() - (end - start) + model.len());
        out.put_slice(&self.original[..start]);
        out.put_slice(model.as_bytes());
        out.put_slice(&self.original[end..]);
        out.freeze()
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Uploads carry personal data: show the shape only.
        f.debug_struct("Form")
            .field("len", &self.original.len())
            .field("model", &self.model())
            .finish_non_exhaustive()
    }
}

/// The values of every field multer names `model`, in order. A field whose name is `model`
/// in another case is refused: some servers compare form names case-insensitively.
fn models_by_multer(body: &Bytes, boundary: &str) -> Result<Vec<Bytes>, FormError> {
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(body.clone())));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut models = Vec::new();
    loop {
        // The whole body is one ready chunk: every step completes on its first poll.
        let field = multipart
            .next_field()
            .now_or_never()
            .ok_or_else(|| invalid("the form is incomplete"))?
            .map_err(|e| invalid(e.to_string()))?;
        let Some(field) = field else { break };
        let is_model = match field.name() {
            Some("model") => true,
            Some(name) if name.eq_ignore_ascii_case("model") => {
                return Err(invalid(format!("a field is named {name:?}")));
            }
            _ => false,
        };
        let value = field
            .bytes()
            .now_or_never()
            .ok_or_else(|| invalid("the form is incomplete"))?
            .map_err(|e| invalid(e.to_string()))?;
        if is_model {
            models.push(value);
        }
    }
    Ok(models)
}

/// The ranges of the values of the parts named `model`, found by walking the delimiters
/// (RFC 7578, RFC 2046 §5.1.1).
fn scan(body: &[u8], boundary: &str) -> Result<Vec<Range<usize>>, FormError> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let finder = memchr::memmem::Finder::new(next_delimiter.as_bytes());
    // The first delimiter starts the body or follows a preamble line.
    let mut at = if body.starts_with(delimiter.as_bytes()) {
        0
    } else {
        finder
            .find(body)
            .map(|i| i + 2)
            .ok_or_else(|| invalid("no boundary found"))?
    };
    let mut models = Vec::new();
    loop {
        let after = at + delimiter.len();
        let rest = &body[after..];
        if rest.starts_with(b"--") {
            return Ok(models);
        }
        // Transport padding (spaces and tabs) may follow a delimiter.
        let padding = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(invalid("a boundary line is malformed"));
        }
        let start = after + padding + 2;
        let end = finder
            .find(&body[start..])
            .map(|i| start + i)
            .ok_or_else(|| invalid("the form has no closing boundary"))?;
        let part = &body[start..end];
        let head_len = if part.starts_with(b"\r\n") {
            0
        } else {
            memchr::memmem::find(part, b"\r\n\r\n")
                .ok_or_else(|| invalid("a part's headers do not end"))?
                + 2
        };
        if part_name(&part[..head_len])?.as_deref() == Some("model") {
            models.push(start + head_len + 2..end);
        }
        at = end + 2;
    }
}

/// A header value's parameters, in order.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// The parameters of a plain header value (`type; key="value"; …`): each key once (in any
/// case), each value a token or a quoted string with no `"`, `\` or `;` inside. Parsers
/// differ on everything else (a `;` inside quotes, escapes, a repeated key, RFC 2231
/// `key*`), so a value that is not plain is refused rather than read one way of several.
fn plain_params(value: &str) -> Result<(&str, Params<'_>), FormError> {
    let mut pieces = value.split(';');
    let kind = pieces.next().unwrap_or("").trim_matches([' ', '\t']);
    let mut params: Vec<(&str, &str)> = Vec::new();
    for piece in pieces {
        let piece = piece.trim_matches([' ', '\t']);
        if piece.is_empty() {
            return Err(invalid("a header has an empty parameter"));
        }
        let (key, value) = piece
            .split_once('=')
            .ok_or_else(|| invalid("a header parameter has no value"))?;
        let (key, value) = (
            key.trim_end_matches([' ', '\t']),
            value.trim_start_matches([' ', '\t']),
        );
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            return Err(invalid("a header parameter's name is not a token"));
        }
        let plain = match value.strip_prefix('"') {
            Some(quoted) => quoted
                .strip_suffix('"')
                .filter(|inner| !inner.contains(['"', '\\']))
                .is_some(),
            None => !value.is_empty() && value.bytes().all(is_token_byte),
        };
        if !plain {
            return Err(invalid("a header parameter's value is quoted oddly"));
        }
        if params.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(invalid(format!("a header repeats the `{key}` parameter")));
        }
        params.push((key, value));
    }
    Ok((kind, params))
}

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A quoted value without its quotes (a plain one is returned as it is).
fn unquoted(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// The boundary of a plain `multipart/form-data` `Content-Type` (no parameter twice: with
/// two `boundary` parameters some servers read the first and others the last).
fn plain_boundary(content_type: &str) -> Result<String, FormError> {
    let (kind, params) = plain_params(content_type)?;
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(invalid("the Content-Type is not multipart/form-data"));
    }
    let boundary = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| unquoted(v))
        .ok_or_else(|| invalid("the Content-Type has no multipart boundary"))?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(invalid(
            "the multipart boundary is empty or longer than 70 bytes",
        ));
    }
    Ok(boundary.to_owned())
}

/// A part's field name, from its headers: exactly one `Content-Disposition`, which must be
/// `form-data` with a quoted `name` and optionally a quoted `filename` and an RFC 5987
/// `filename*`, each once and in lower case. A part named `model` must not be a file.
fn part_name(head: &[u8]) -> Result<Option<String>, FormError> {
    let head = std::str::from_utf8(head).map_err(|_| invalid("a part's headers are not text"))?;
    let mut name = None;
    let mut dispositions = 0;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (header, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("a part's header has no colon"))?;
        // No space before the colon, no folded line: parsers read those differently.
        if header.is_empty() || !header.bytes().all(is_token_byte) {
            return Err(invalid("a part's header name is not a token"));
        }
        if !header.eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        dispositions += 1;
        if dispositions > 1 {
            return Err(invalid("a part has two Content-Disposition headers"));
        }
        let (kind, params) = plain_params(value)?;
        if kind != "form-data" {
            return Err(invalid("a part is not form-data"));
        }
        let mut filename = false;
        for (key, value) in params {
            match key {
                "name" | "filename" if !value.starts_with('"') => {
                    return Err(invalid(format!("a part's `{key}` is not quoted")));
                }
                "name" => name = Some(unquoted(value).to_owned()),
                "filename" | "filename*" => filename = true,
                other => {
                    return Err(invalid(format!(
                        "a part's Content-Disposition has a `{other}` parameter"
                    )));
                }
            }
        }
        let Some(found) = name.as_deref() else {
            return Err(invalid("a part has no name"));
        };
        if found != "model" && found.trim().eq_ignore_ascii_case("model") {
            // `Model`, `model `: another parser may read it as `model`.
            return Err(invalid(format!("a field is named {found:?}")));
        }
        if found == "model" && filename {
            return Err(invalid("the `model` field is a file"));
        }
    }
    if dispositions == 0 {
        return Err(invalid("a part has no Content-Disposition"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn part(name: &str, value: &str) -> String {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    fn file(value: &str) -> String {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n{value}\r\n"
        )
    }

    fn form(parts: &[String]) -> Bytes {
        Bytes::from(format!("{}--XyZ--\r\n", parts.concat()))
    }

    #[test]
    fn the_model_is_found_after_a_file_and_replaced_in_place() {
        let body = form(&[
            file("RIFF\r\n--Xy not a boundary"),
            part("model", "a.whisper"),
        ]);
        let mut f = Form::parse(body.clone(), CT).unwrap();
        assert_eq!(f.model(), "a.whisper");
        assert!(!f.is_changed());
        assert_eq!(f.to_bytes(), body);
        f.set_model("whisper-1");
        let expected = form(&[
            file("RIFF\r\n--Xy not a boundary"),
            part("model", "whisper-1"),
        ]);
        assert_eq!(f.to_bytes(), expected);
    }

    #[test]
    fn a_preamble_and_padding_are_allowed() {
        let body = Bytes::from_static(
            b"preamble\r\n--XyZ  \r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--XyZ--",
        );
        assert_eq!(Form::parse(body, CT).unwrap().model(), "m");
    }

    #[test]
    fn missing_and_repeated_models_are_refused() {
        assert_eq!(
            Form::parse(form(&[file("x")]), CT).unwrap_err(),
            FormError::MissingModel
        );
        assert_eq!(
            Form::parse(form(&[part("model", "a"), part("model", "b")]), CT).unwrap_err(),
            FormError::DuplicateModel
        );
    }

    #[test]
    fn forms_read_two_ways_are_refused() {
        for parts in [
            // Another case of the name: some servers match names case-insensitively.
            vec![part("Model", "b"), part("model", "a")],
            // Spaces around the name: some servers trim it.
            vec![part("model ", "b"), part("model", "a")],
            vec![part(" model", "b")],
            // An extended name parameter.
            vec![
                "--XyZ\r\nContent-Disposition: form-data; name*=utf-8''model\r\n\r\nb\r\n".into(),
                part("model", "a"),
            ],
            // Two dispositions for one part.
            vec![
                "--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nb\r\n".into(),
                part("model", "a"),
            ],
        ] {
            let err = Form::parse(form(&parts), CT).unwrap_err();
            assert!(matches!(err, FormError::Invalid(_)), "{err:?}");
        }
        // Not multipart at all, or cut short.
        assert!(Form::parse(Bytes::from_static(b"{}"), "application/json").is_err());
        assert!(Form::parse(Bytes::from(part("model", "a")), CT).is_err());
        assert!(Form::parse(Bytes::from_static(b"garbage"), CT).is_err());
    }

    #[test]
    fn only_plain_forms_are_admitted() {
        let disposition = |d: &str| {
            form(&[
                format!("--XyZ\r\nContent-Disposition: {d}\r\n\r\nzzz\r\n"),
                part("file", "x"),
            ])
        };
        for d in [
            // Read as `zzz` by a naive split, as `model` by python-multipart.
            r#"form-data; NAME="model"; x="a;name=zzz;b""#,
            r#"form-data; name="zzz"; x="a;name=model;b""#,
            r#"form-data; Name="model""#,
            r#"form-data; name=model"#,
            r#"form-data; name="model"; name="other""#,
            r#"form-data; name="mo"del""#,
            r#"form-data; name="model"; filename="a"; filename="b""#,
            r#"form-data; name="model"; filename="a.txt""#,
            r#"Form-Data; name="model""#,
            r#"attachment; name="model""#,
            r#"form-data; name="model";"#,
            r#"form-data; name"#,
        ] {
            let err = Form::parse(disposition(d), CT).unwrap_err();
            assert!(matches!(err, FormError::Invalid(_)), "{d}: {err:?}");
        }
        // A header name with a space before its colon.
        let spaced =
            form(&["--XyZ\r\nContent-Disposition : form-data; name=\"model\"\r\n\r\na\r\n".into()]);
        assert!(Form::parse(spaced, CT).is_err());
        // Two boundaries: read by the first here, by the last elsewhere.
        let body = form(&[part("model", "a")]);
        for ct in [
            "multipart/form-data; boundary=XyZ; boundary=AAAA",
            "multipart/form-data; boundary=AAAA; BOUNDARY=XyZ",
            "multipart/form-data; boundary=\"XyZ;x\"",
            "multipart/form-data",
            "multipart/mixed; boundary=XyZ",
        ] {
            assert!(Form::parse(body.clone(), ct).is_err(), "{ct}");
        }
        // What SDKs send passes: a quoted boundary, a file with both filename forms.
        let sdk = form(&[
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"; filename*=UTF-8''a%20b.wav\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n".into(),
            part("model", "whisper-1"),
        ]);
        let f = Form::parse(sdk, "multipart/form-data; boundary=\"XyZ\"").unwrap();
        assert_eq!(f.model(), "whisper-1");
    }

    #[test]
    fn errors_are_400_with_the_contract_codes() {
        assert_eq!(
            FormError::MissingModel.to_response().code(),
            Some("missing_model")
        );
        assert_eq!(
            FormError::DuplicateModel.to_response().status(),
            http::StatusCode::BAD_REQUEST
        );
    }
}
