/// rule H-3: a display name as Open WebUI sends it: UTF-8, percent-encoded, with only the
/// space and the unreserved characters `A–Z a–z 0–9 _ . - ~` left literal.
///
/// ```
/// use tower_openai_headers::encode_user_name;
///
/// assert_eq!(encode_user_name("José Müller"), "Jos%C3%A9 M%C3%BCller");
/// assert_eq!(encode_user_name("a/b c"), "a%2Fb c");
/// ```
pub fn encode_user_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' | b' ' => {
                out.push(b as char)
            }
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_user_name;

    #[test]
    fn h3_every_reserved_character_is_escaped() {
        assert_eq!(
            encode_user_name("O'Brien, Jr. @home +1"),
            "O%27Brien%2C Jr. %40home %2B1"
        );
        assert_eq!(encode_user_name("Zoë_~-."), "Zo%C3%AB_~-.");
        assert_eq!(encode_user_name("日本"), "%E6%97%A5%E6%9C%AC");
        assert_eq!(encode_user_name("tab\there"), "tab%09here");
        assert_eq!(encode_user_name(""), "");
    }
}
