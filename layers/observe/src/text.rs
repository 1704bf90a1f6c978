//! Counting the text in JSON (or an event stream of JSON) as its bytes pass: the bytes of the
//! string values of some members, for a token estimate when an answer carries no usage.

/// The members whose text a request is charged for.
pub(crate) const INPUT_KEYS: &[&[u8]] = &[
    b"content",
    b"text",
    b"prompt",
    b"input",
    b"instructions",
    b"system",
];

/// The members whose text an answer is charged for (Chat Completions deltas, tool-call
/// arguments, Responses text deltas).
pub(crate) const OUTPUT_KEYS: &[&[u8]] = &[
    b"content",
    b"reasoning_content",
    b"text",
    b"arguments",
    b"refusal",
    b"delta",
];

/// The longest member name compared.
const MAX_KEY: usize = 24;

/// Bytes per token in an estimate (OpenAI's rule of thumb for English text).
pub(crate) const BYTES_PER_TOKEN: u64 = 4;

/// Counts the bytes of the string values of `keys` in JSON text fed in pieces (a piece may
/// end anywhere: inside a string, an escape, a name). Not a validator: text that is not JSON
/// gives some count, never an error.
#[derive(Debug)]
pub(crate) struct TextMeter {
    keys: &'static [&'static [u8]],
    in_string: bool,
    escaped: bool,
    /// The string being read is a value of one of `keys`.
    counting: bool,
    /// The name being read (while not counting), up to [`MAX_KEY`] bytes.
    name: [u8; MAX_KEY],
    name_len: usize,
    /// The last string closed was one of `keys` (a `:` next makes the next string count).
    key_closed: bool,
    /// A `:` followed a key: the next string is its value.
    value_next: bool,
    bytes: u64,
}

impl TextMeter {
    pub(crate) fn new(keys: &'static [&'static [u8]]) -> Self {
        Self {
            keys,
            in_string: false,
            escaped: false,
            counting: false,
            name: [0; MAX_KEY],
            name_len: 0,
            key_closed: false,
            value_next: false,
            bytes: 0,
        }
    }

    /// Read `data`.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.bytes += u64::from(self.counting);
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.counting {
                        self.counting = false;
                    } else {
                        self.key_closed = self.name_len <= MAX_KEY
                            && self.keys.contains(&&self.name[..self.name_len]);
                    }
                } else if self.counting {
                    self.bytes += 1;
                } else {
                    if self.name_len < MAX_KEY {
                        self.name[self.name_len] = b;
                    }
                    self.name_len = self.name_len.saturating_add(1);
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    self.counting = self.value_next;
                    self.value_next = false;
                    self.key_closed = false;
                    self.name_len = 0;
                }
                b':' => {
                    self.value_next = self.key_closed;
                    self.key_closed = false;
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => {
                    self.value_next = false;
                    self.key_closed = false;
                }
            }
        }
    }

    /// The bytes counted so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The tokens `bytes` of text are estimated at (at least 1 for any text).
    pub(crate) fn tokens(bytes: u64) -> u64 {
        bytes.div_ceil(BYTES_PER_TOKEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(keys: &'static [&'static [u8]], text: &str) -> u64 {
        let mut m = TextMeter::new(keys);
        m.feed(text.as_bytes());
        m.bytes()
    }

    #[test]
    fn counts_the_values_of_the_named_members_only() {
        let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello"},{"role":"user","content":[{"type":"text","text":"abc"}]}],"input":"x"}"#;
        assert_eq!(count(INPUT_KEYS, chat), 5 + 3 + 1);
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"He\\\"y\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n\
                      data: [DONE]\n\n";
        // `He"y` is 4 bytes; `{"a":1}` 7.
        assert_eq!(count(OUTPUT_KEYS, stream), 4 + 7);
        // A member named like a key inside a value is not a key.
        assert_eq!(count(OUTPUT_KEYS, r#"{"name":"content","x":"yyyy"}"#), 0);
    }

    #[test]
    fn any_split_of_the_text_counts_the_same() {
        let stream = "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"ab\\\\cd\",\"content\":\"ef\"}}]}\n\n";
        let whole = count(OUTPUT_KEYS, stream);
        assert_eq!(whole, 5 + 2);
        for cut in 0..stream.len() {
            let mut m = TextMeter::new(OUTPUT_KEYS);
            m.feed(&stream.as_bytes()[..cut]);
            m.feed(&stream.as_bytes()[cut..]);
            assert_eq!(m.bytes(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn tokens_round_up() {
        assert_eq!(
            (
                TextMeter::tokens(0),
                TextMeter::tokens(1),
                TextMeter::tokens(8)
            ),
            (0, 1, 2)
        );
    }
}
