//! Secret values taken out of text that history, the console and `render`
//! show: URLs and bodies of attempts (SPEC §2, §11).
//!
//! A secret can reach a URL in many spellings: raw, percent-encoded by the
//! `url` crate (which encodes only some bytes), percent-encoded in full, with
//! upper- or lower-case hex, or form-encoded with `+` for a space. Listing
//! spellings would always miss one, so the text is decoded instead, keeping
//! for every decoded byte the span of text it came from; a secret found in
//! the decoded bytes has its original span replaced. The readings searched
//! are the text as is, then up to three rounds of `%XX` decoding, each also
//! with `+` read as a space.

use crate::send::REDACTED;

/// Whether `text` holds any spelling of any secret.
pub fn holds(text: &str, secrets: &[&[u8]]) -> bool {
    !spans(text.as_bytes(), secrets).is_empty()
}

/// Replace every spelling of every secret in `text` with `[redacted]`.
pub fn text(text: &str, secrets: &[&[u8]]) -> String {
    let bytes = text.as_bytes();
    let spans = spans(bytes, secrets);
    if spans.is_empty() {
        return text.to_owned();
    }
    replace(bytes, spans)
}

/// The byte spans of `bytes` that spell a secret, in no order.
fn spans(bytes: &[u8], secrets: &[&[u8]]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        spans.extend(find_all(bytes, secret).map(|start| (start, start + secret.len())));
    }
    // Every delivery attempt redacts its URL and each header, which rarely
    // hold an escape: without `%` or `+` the decoded readings are the text.
    if secrets.iter().any(|s| !s.is_empty()) && (bytes.contains(&b'%') || bytes.contains(&b'+')) {
        decoded_spans(bytes, secrets, &mut spans);
    }
    spans
}

/// `bytes` with every span replaced by `[redacted]` (overlaps merged).
fn replace(bytes: &[u8], mut spans: Vec<(usize, usize)>) -> String {
    spans.sort_unstable();
    // Bytes, not `str` slices: a span found in a decoded reading may end
    // inside a multi-byte character, and slicing there would panic.
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek() {
            if next_start >= end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.extend_from_slice(&bytes[at..start.max(at)]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = at.max(end);
    }
    out.extend_from_slice(&bytes[at..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Add the original spans of every secret found in a decoded reading.
fn decoded_spans(bytes: &[u8], secrets: &[&[u8]], spans: &mut Vec<(usize, usize)>) {
    let mut found = |decoded: &[u8], origin: &[(usize, usize)]| {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            for start in find_all(decoded, secret) {
                let end = start + secret.len() - 1;
                spans.push((origin[start].0, origin[end].1));
            }
        }
    };
    let mut reading: Vec<u8> = bytes.to_vec();
    let mut origin: Vec<(usize, usize)> = (0..reading.len()).map(|i| (i, i + 1)).collect();
    // A value encoded twice (an operator's `urlencode` under the URL's own
    // encoding) decodes twice; three rounds cover any sensible nesting.
    for _ in 0..3 {
        let (form, form_origin) = decode(&reading, &origin, true);
        found(&form, &form_origin);
        let (next, next_origin) = decode(&reading, &origin, false);
        if next.len() == reading.len() {
            break;
        }
        found(&next, &next_origin);
        (reading, origin) = (next, next_origin);
    }
}

/// `bytes` with every `%XX` decoded (and `+` read as a space when `form`),
/// and for each decoded byte the span of the original text it came from
/// (`origin` gives the spans of `bytes`). Only `%XX` (ASCII) is ever
/// merged, but a span may still end inside a multi-byte character when
/// escapes and raw bytes mix, so callers cut the text as bytes.
fn decode(bytes: &[u8], origin: &[(usize, usize)], form: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut spans = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => hex_pair(bytes.get(i + 1..i + 3)),
            _ => None,
        };
        if let Some(byte) = escaped {
            decoded.push(byte);
            spans.push((origin[i].0, origin[i + 2].1));
            i += 3;
        } else {
            decoded.push(if form && bytes[i] == b'+' {
                b' '
            } else {
                bytes[i]
            });
            spans.push(origin[i]);
            i += 1;
        }
    }
    (decoded, spans)
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = pair?;
    let digit = |b: u8| (b as char).to_digit(16);
    u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
}

/// Start offsets of every occurrence of `needle` in `haystack`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// At most `limit` bytes of `text`, ending on a character boundary, and
/// whether anything was cut.
pub fn cut_at(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// `text` with the user information of every URL in it (`scheme://user:
/// password@host`) replaced by `[redacted]`: config files may hold a Redis
/// or proxy URL with its password written inline.
pub fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | '}' | ']')
            })
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str(super::REDACTED);
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::text;

    const R: &str = "[redacted]";

    #[test]
    fn every_spelling_is_redacted() {
        let secret: &[u8] = b"p@ss w/rd+x";
        let cases = [
            ("https://h/x?k=p@ss w/rd+x", "https://h/x?k=[redacted]"),
            // the url crate's query encoding and form encoding
            (
                "https://h/x?k=p%40ss+w%2Frd%2Bx",
                "https://h/x?k=[redacted]",
            ),
            // path encoding: only some bytes encoded
            ("https://h/p@ss%20w/rd+x/y", "https://h/[redacted]/y"),
            // every byte encoded, lower-case hex
            (
                "https://h/%70%40%73%73%20%77%2f%72%64%2b%78",
                "https://h/[redacted]",
            ),
            // twice in one text
            (
                "a=p@ss w/rd+x&b=p%40ss%20w%2Frd%2Bx",
                "a=[redacted]&b=[redacted]",
            ),
            // encoded twice
            ("k=p%2540ss%2520w%252Frd%252Bx&z=1", "k=[redacted]&z=1"),
        ];
        for (input, want) in cases {
            assert_eq!(text(input, &[secret]), want, "{input}");
        }
    }

    #[test]
    fn other_text_is_kept_as_is() {
        assert_eq!(
            text("https://h/x?k=v%20w", &[b"secret"]),
            "https://h/x?k=v%20w"
        );
        assert_eq!(text("nothing", &[b""]), "nothing");
        assert_eq!(text("bad %zz and %4", &[b"zz"]), format!("bad %{R} and %4"));
        assert_eq!(text("ünïcode ok", &[b"ok"]), format!("ünïcode {R}"));
    }

    #[test]
    fn overlapping_secrets_make_one_redaction() {
        assert_eq!(text("xabcdx", &[b"abc", b"bcd"]), format!("x{R}x"));
        assert_eq!(text("abc%20", &[b"abc", b"c "]), R);
    }

    #[test]
    fn url_credentials_are_redacted_in_config_text() {
        let yaml = "queue: { url: \"redis+sentinel://app:hunter2@s1:26379,s2:26379/m/0\" }\n\
                    other: redis://:pw2@h:6379/0";
        let out = super::userinfo(yaml);
        assert!(!out.contains("hunter2") && !out.contains("pw2"), "{out}");
        assert!(out.contains("s1:26379,s2:26379/m/0"), "{out}");
    }
}
