use std::sync::{Arc, Mutex};

use http::Extensions;

/// One connection's spare extension map: the last answer's map, emptied, handed to the next
/// request.
///
/// A request's extension map starts empty and grows as the layers add to it (allocated,
/// then rehashed twice on the gateway's stack); the answer's grows again. The upstream
/// service hands the request's map, emptied, to its answer, and the connection keeps the
/// answer's, emptied, for its next request: after the first request of a connection,
/// neither grows. No value carries over (the map is cleared when kept), only the
/// allocation; a request that finds the spare in use (HTTP/2 streams at once) starts with
/// an empty map as before.
#[derive(Clone, Debug, Default)]
pub struct SpareExtensions(Arc<Mutex<Extensions>>);

impl SpareExtensions {
    /// A connection's slot, empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Give `extensions` (a new request's, as the server made them) the spare map, keeping
    /// what the server put in them.
    pub fn give(&self, extensions: &mut Extensions) {
        // Never waits: a slot in use means the request starts with the map it has.
        let Ok(mut spare) = self.0.try_lock() else {
            return;
        };
        let from_server = std::mem::replace(extensions, std::mem::take(&mut *spare));
        extensions.extend(from_server);
    }

    /// Keep an answer's extension map for the next request. The answer keeps the one value
    /// hyper reads from it (a reason phrase the upstream sent); every other value is
    /// dropped now instead of after the head is written.
    pub fn keep(&self, extensions: &mut Extensions) {
        let mut map = std::mem::take(extensions);
        if let Some(reason) = map.remove::<hyper::ext::ReasonPhrase>() {
            extensions.insert(reason);
        }
        map.clear();
        if let Ok(mut spare) = self.0.try_lock() {
            *spare = map;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Mark(u32);

    #[test]
    fn no_value_carries_over_and_the_servers_values_stay() {
        let slot = SpareExtensions::new();
        let mut answer = Extensions::new();
        answer.insert(Mark(1));
        answer.insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        slot.keep(&mut answer);
        // The reason phrase stays with the answer, nothing else does.
        assert!(answer.get::<Mark>().is_none());
        assert_eq!(
            answer
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes()),
            Some(&b"Fine"[..])
        );

        let mut request = Extensions::new();
        request.insert(7u8);
        slot.give(&mut request);
        assert_eq!(request.get::<u8>(), Some(&7));
        assert!(request.get::<Mark>().is_none());
        assert!(request.get::<hyper::ext::ReasonPhrase>().is_none());
    }

    #[test]
    fn a_slot_in_use_is_not_waited_for() {
        let slot = SpareExtensions::new();
        let held = slot.0.lock().unwrap();
        let mut request = Extensions::new();
        request.insert(7u8);
        slot.give(&mut request);
        let mut answer = Extensions::new();
        answer.insert(Mark(2));
        slot.keep(&mut answer);
        drop(held);
        assert_eq!(request.get::<u8>(), Some(&7));
        assert!(answer.get::<Mark>().is_none());
    }
}
