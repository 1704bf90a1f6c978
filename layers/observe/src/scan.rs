//! Finding `"usage": {…}` and `"model": "…"` in an answer as its bytes pass, without holding
//! the answer.
//!
//! A JSON answer and an event stream are both UTF-8 JSON text in which a string's own quotes
//! are escaped, so the seven bytes `"usage"` followed by `:` can only be a member name. The
//! scanner looks for them with `memchr`'s substring search (also across frame boundaries),
//! copies the value that follows (at most [`MAX_USAGE_BYTES`]) and reads it.
//! `"usage": null` (every chunk of a stream with usage on, but the last) is skipped. The last
//! usage object seen wins: a stream's final chunk carries the totals. For `"model"` the first
//! string wins (every chunk of a stream repeats it), and scanning for it then stops.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;
use tower_openai_core::TokenUsage;

/// Both keys the scanner looks for are seven bytes long, quotes included.
const KEY_LEN: usize = 7;
const USAGE: &[u8; KEY_LEN] = b"\"usage\"";
const MODEL: &[u8; KEY_LEN] = b"\"model\"";

/// The longest response model name read.
const MAX_MODEL_BYTES: usize = 256;

/// The largest usage object read; a larger one is ignored (real ones are under 300 bytes,
/// details included).
pub(crate) const MAX_USAGE_BYTES: usize = 4096;

/// The searchers, built once per process (building one costs more than a short search).
fn finder_of(key: &'static [u8; KEY_LEN]) -> &'static Finder<'static> {
    static USAGE_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(USAGE));
    static MODEL_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(MODEL));
    if key == USAGE {
        &USAGE_FINDER
    } else {
        &MODEL_FINDER
    }
}

/// What follows the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// An object (`usage`); the last one wins.
    Object,
    /// A string (`model`); the first one wins.
    String,
}

#[derive(Debug)]
struct KeyScanner {
    key: &'static [u8; KEY_LEN],
    want: Want,
    max: usize,
    finder: &'static Finder<'static>,
    state: State,
    /// The last bytes of the previous frame (while searching), to find a key split in two.
    tail: [u8; KEY_LEN - 1],
    tail_len: usize,
    capture: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A value was completed (for `Want::String`, scanning stops).
    done: bool,
}

/// The usage and the response model of one answer.
#[derive(Debug)]
pub(crate) struct UsageScanner {
    usage: KeyScanner,
    model: KeyScanner,
    found: Option<TokenUsage>,
    response_model: Option<String>,
}

impl Default for UsageScanner {
    fn default() -> Self {
        Self {
            usage: KeyScanner::new(USAGE, Want::Object, MAX_USAGE_BYTES),
            model: KeyScanner::new(MODEL, Want::String, MAX_MODEL_BYTES),
            found: None,
            response_model: None,
        }
    }
}

impl UsageScanner {
    /// A scanner for the usage, and for the answer's model when `model`.
    pub(crate) fn new(model: bool) -> Self {
        let mut scanner = Self::default();
        scanner.model.done = !model;
        scanner
    }

    /// Feed the next bytes; whether a usage object was completed in them.
    pub(crate) fn feed(&mut self, data: &[u8]) -> bool {
        if !self.model.done
            && let Some(raw) = self.model.feed(data).last()
        {
            self.response_model = serde_json::from_slice::<String>(raw).ok();
        }
        let mut found = false;
        for object in self.usage.feed(data) {
            match parse(&object) {
                Some(Found::Full(usage)) => self.found = Some(usage),
                // Anthropic's `message_delta`: the output so far, the input given before.
                Some(Found::Output(output)) => {
                    let usage = self.found.get_or_insert_with(TokenUsage::default);
                    usage.output_tokens = output;
                }
                None => continue,
            }
            found = true;
        }
        found
    }

    /// The usage last completed.
    pub(crate) fn usage(&self) -> Option<TokenUsage> {
        self.found
    }

    /// The first `model` string of the answer.
    pub(crate) fn take_response_model(&mut self) -> Option<String> {
        self.response_model.take()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Search,
    /// After the key: whitespace, then `:`.
    Key,
    /// After the colon: whitespace, then `{` (else not a usage object).
    Colon,
    /// Inside the value.
    Value,
}

#[derive(Deserialize)]
struct Counts {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    /// Anthropic's: prompt tokens read from its cache, not counted in `input_tokens`.
    cache_read_input_tokens: Option<u64>,
    /// Anthropic's: prompt tokens written to its cache, not counted in `input_tokens`.
    cache_creation_input_tokens: Option<u64>,
}

/// What one usage object says.
enum Found {
    /// The whole usage.
    Full(TokenUsage),
    /// Only the output tokens so far (Anthropic's `message_delta`).
    Output(u64),
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

impl KeyScanner {
    fn new(key: &'static [u8; KEY_LEN], want: Want, max: usize) -> Self {
        Self {
            key,
            want,
            max,
            finder: finder_of(key),
            state: State::Search,
            tail: [0; KEY_LEN - 1],
            tail_len: 0,
            capture: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            done: false,
        }
    }

    /// Feed the next bytes; the values completed in them (raw JSON text).
    fn feed(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        if self.done {
            return found;
        }
        let mut i = 0;
        if self.state == State::Search
            && let Some(end) = self.split_key(data)
        {
            i = end;
            self.tail_len = 0;
            self.state = State::Key;
        }
        while i < data.len() {
            match self.state {
                State::Search => match self.finder.find(&data[i..]) {
                    Some(at) => {
                        i += at + KEY_LEN;
                        self.tail_len = 0;
                        self.state = State::Key;
                    }
                    None => {
                        self.keep_tail(&data[i..]);
                        return found;
                    }
                },
                State::Key => {
                    match data[i] {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b':' => self.state = State::Colon,
                        _ => self.state = State::Search,
                    }
                    i += 1;
                }
                State::Colon => match (data[i], self.want) {
                    (b' ' | b'\t' | b'\r' | b'\n', _) => i += 1,
                    (b'{', Want::Object) | (b'"', Want::String) => {
                        self.capture.clear();
                        self.depth = 0;
                        self.in_string = false;
                        self.escaped = false;
                        self.state = State::Value;
                    }
                    // `null`, or anything else: not the value wanted; search on from here.
                    _ => self.state = State::Search,
                },
                State::Value => {
                    let (used, complete) = self.value_bytes(&data[i..]);
                    i += used;
                    if complete {
                        self.state = State::Search;
                        found.push(std::mem::take(&mut self.capture));
                        if self.want == Want::String {
                            self.done = true;
                            return found;
                        }
                    }
                }
            }
        }
        found
    }

    /// A key begun in the previous frames' tail and finished in `data`: the index in `data`
    /// just past it.
    fn split_key(&self, data: &[u8]) -> Option<usize> {
        if self.tail_len == 0 {
            return None;
        }
        let tail = &self.tail[..self.tail_len];
        let key = self.key;
        (1..KEY_LEN).find(|&in_data| {
            let in_tail = KEY_LEN - in_data;
            in_tail <= tail.len()
                && data.len() >= in_data
                && tail[tail.len() - in_tail..] == key[..in_tail]
                && data[..in_data] == key[in_tail..]
        })
    }

    fn keep_tail(&mut self, data: &[u8]) {
        let n = data.len().min(self.tail.len());
        if n == self.tail.len() {
            self.tail.copy_from_slice(&data[data.len() - n..]);
            self.tail_len = n;
        } else {
            // A frame shorter than the tail: keep the old tail's end and this frame.
            let mut joined = Vec::with_capacity(self.tail_len + n);
            joined.extend_from_slice(&self.tail[..self.tail_len]);
            joined.extend_from_slice(data);
            let keep = joined.len().min(self.tail.len());
            self.tail[..keep].copy_from_slice(&joined[joined.len() - keep..]);
            self.tail_len = keep;
        }
    }

    /// Copy value bytes from `data`; how many were used and whether the value closed.
    ///
    /// The value's end is found by jumping between the bytes that matter (`memchr`: quotes
    /// and escapes in a string, quotes and braces outside one; brackets cannot close an
    /// object, so they need no count), then its bytes are copied in one piece.
    fn value_bytes(&mut self, data: &[u8]) -> (usize, bool) {
        let room = self.max - self.capture.len();
        let window = &data[..data.len().min(room)];
        let mut i = 0;
        if self.capture.is_empty() && !window.is_empty() {
            // The opening quote or brace (the state was set up for it).
            if self.want == Want::Object {
                self.depth = 1;
            } else {
                self.in_string = true;
            }
            i = 1;
        }
        let mut end = None;
        while i < window.len() {
            if self.escaped {
                self.escaped = false;
                i += 1;
                continue;
            }
            let rest = &window[i..];
            let found = if self.in_string {
                memchr::memchr2(b'"', b'\\', rest)
            } else {
                memchr::memchr3(b'"', b'{', b'}', rest)
            };
            let Some(at) = found else {
                break;
            };
            i += at;
            match window[i] {
                b'\\' => self.escaped = true,
                b'"' if self.in_string => {
                    self.in_string = false;
                    if self.want == Want::String {
                        end = Some(i + 1);
                        break;
                    }
                }
                b'"' => self.in_string = true,
                b'{' => self.depth += 1,
                _ => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
            }
            i += 1;
        }
        match end {
            Some(end) => {
                self.capture.extend_from_slice(&data[..end]);
                self.in_string = false;
                (end, true)
            }
            None if data.len() < room => {
                self.capture.extend_from_slice(data);
                (data.len(), false)
            }
            None => {
                // Too large to be the value wanted: give it up, search on after it.
                self.capture.clear();
                self.in_string = false;
                self.escaped = false;
                self.state = State::Search;
                (room, false)
            }
        }
    }
}

fn parse(object: &[u8]) -> Option<Found> {
    let counts: Counts = serde_json::from_slice(object).ok()?;
    let output = counts.completion_tokens.or(counts.output_tokens);
    let Some(input) = counts.prompt_tokens.or(counts.input_tokens) else {
        return output.map(Found::Output);
    };
    // Anthropic counts cached prompt tokens apart from `input_tokens`.
    let read = counts.cache_read_input_tokens.unwrap_or(0);
    let written = counts.cache_creation_input_tokens.unwrap_or(0);
    let cached = counts
        .prompt_tokens_details
        .or(counts.input_tokens_details)
        .and_then(|d| d.cached_tokens)
        .unwrap_or(read);
    Some(Found::Full(TokenUsage {
        input_tokens: input.saturating_add(read).saturating_add(written),
        output_tokens: output.unwrap_or(0),
        cached_tokens: cached,
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tower_openai_core::TokenUsage;

    use super::UsageScanner;

    fn scan(frames: &[&[u8]]) -> Option<TokenUsage> {
        scan_both(frames).0
    }

    fn scan_both(frames: &[&[u8]]) -> (Option<TokenUsage>, Option<String>) {
        let mut s = UsageScanner::default();
        for f in frames {
            s.feed(f);
        }
        (s.usage(), s.take_response_model())
    }

    #[test]
    fn reads_the_first_response_model() {
        let chat = br#"{"id":"x","model" : "gpt-4o-2024-08-06","choices":[{"message":{"content":""model": "fake""}}],"model":"later"}"#;
        assert_eq!(scan_both(&[chat]).1.as_deref(), Some("gpt-4o-2024-08-06"));
        let escaped = br#"{"model":"a\"b\\c"}"#;
        assert_eq!(scan_both(&[escaped]).1.as_deref(), Some("a\"b\\c"));
        assert_eq!(scan_both(&[br#"{"model":null,"x":1}"#]).1, None);
    }

    fn usage(input: u64, output: u64) -> Option<TokenUsage> {
        Some(TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: 0,
        })
    }

    #[test]
    fn reads_chat_responses_and_embeddings_usage() {
        let chat = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(scan(&[chat]), usage(12, 5));
        let responses = br#"{"output":[],"usage" : {"input_tokens":3,"output_tokens":4}}"#;
        assert_eq!(scan(&[responses]), usage(3, 4));
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(scan(&[embeddings]), usage(8, 0));
    }

    #[test]
    fn reads_cached_tokens_of_chat_and_responses_usage() {
        let cached = |input, output, cached| {
            Some(TokenUsage {
                input_tokens: input,
                output_tokens: output,
                cached_tokens: cached,
            })
        };
        let chat = br#"{"usage":{"prompt_tokens":2006,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}}}"#;
        assert_eq!(scan(&[chat]), cached(2006, 300, 1920));
        let responses = br#"{"usage":{"input_tokens":50,"output_tokens":4,"input_tokens_details":{"cached_tokens":32}}}"#;
        assert_eq!(scan(&[responses]), cached(50, 4, 32));
        let nulls =
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":null}}"#;
        assert_eq!(scan(&[nulls]), cached(5, 1, 0));
        let null_count = br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":null}}}"#;
        assert_eq!(scan(&[null_count]), cached(5, 1, 0));
    }

    #[test]
    fn reads_anthropic_usage_the_delta_adding_the_output() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        );
        assert_eq!(
            scan(&[stream.as_bytes()]),
            Some(TokenUsage {
                input_tokens: 130,
                output_tokens: 15,
                cached_tokens: 100,
            })
        );
        let json = br#"{"type":"message","usage":{"input_tokens":9,"output_tokens":3}}"#;
        assert_eq!(scan(&[json]), usage(9, 3));
    }

    #[test]
    fn skips_nulls_strings_and_escaped_text_and_keeps_the_last() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"say \\\"usage\\\": {\\\"prompt_tokens\\\": 99}\"}}],\"usage\":null}\n\n",
            "data: {\"role\":\"usage\",\"choices\":[]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9}}\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(scan(&[stream.as_bytes()]), usage(7, 9));
        assert_eq!(scan(&[br#"{"usage":{"total_tokens":3}}"#]), None);
        assert_eq!(scan(&[br#"{"usage":"none"}"#]), None);
    }

    #[test]
    fn an_oversized_object_is_given_up() {
        let big = format!(
            r#"{{"usage":{{"prompt_tokens":1,"x":"{}"}},"usage":{{"prompt_tokens":2}}}}"#,
            "a".repeat(super::MAX_USAGE_BYTES)
        );
        assert_eq!(scan(&[big.as_bytes()]), usage(2, 0));
    }

    proptest! {
        /// However the answer is cut into frames, the same usage is found.
        #[test]
        fn any_framing_finds_the_same_usage(cuts in proptest::collection::vec(0usize..200, 0..12)) {
            let body = br#"data: {"model":"m-1","choices":[],"usage":null}

data: {"choices":[],"usage": {"prompt_tokens":41,"completion_tokens":43,"details":{"a":[1,{"b":"}"}]}}}

data: [DONE]

"#;
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % body.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut frames = Vec::new();
            let mut at = 0;
            for c in cuts {
                frames.push(&body[at..c]);
                at = c;
            }
            frames.push(&body[at..]);
            let (found, model) = scan_both(&frames);
            prop_assert_eq!(found, usage(41, 43));
            prop_assert_eq!(model.as_deref(), Some("m-1"));
        }
    }
}
