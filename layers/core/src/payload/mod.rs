//! The request payload: the body of a model route, read once under a size cap (by the
//! collector, `tower-openai-collect`) and parsed at most once.
//!
//! - [`Payload`]: a JSON body: the caller's bytes, a lazily built index of its top-level
//!   members, and a "changed" flag. Layers read and edit fields through it; the upstream
//!   sends the caller's bytes when nothing changed and serializes once when something did.
//! - [`Form`]: a `multipart/form-data` body with one `model` field, read by a kept parser.
//!
//! Both travel in the request extensions; the request body below the collector is then
//! empty (see [`Body`](crate::Body)).

mod form;
mod index;
mod value;

pub use self::form::{Form, FormError};
pub use self::value::{MAX_MEMBERS, Payload, PayloadError};
