//! Secret values: bytes that never show up in logs, errors or debug output.

use std::fmt;
use std::sync::Arc;

/// A resolved secret. `Debug` and `Display` print only its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The name it is declared under in `secrets:` (safe to show).
    pub name: String,
    value: Arc<[u8]>,
    /// SHA-256 of the value, hashed once here rather than on every
    /// comparison (see [`credentials_equal`]).
    digest: [u8; 32],
}

impl Secret {
    /// Wrap a value read from the environment or a file.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Secret {
        let value: Arc<[u8]> = Arc::from(value.into());
        Secret {
            name: name.into(),
            digest: digest(&value),
            value,
        }
    }

    /// The raw value, for HMAC keys and comparisons. Never log it.
    pub fn expose(&self) -> &[u8] {
        &self.value
    }

    /// The value as text (URLs, tokens, template `secrets.*`), if UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// Whether a presented credential equals this secret, by
    /// [`credentials_equal`] (constant time, blind to length and position).
    /// An empty secret matches nothing (config refuses empty secrets; this
    /// holds whatever built the value).
    pub fn matches(&self, presented: &[u8]) -> bool {
        position_of([self], presented).is_some()
    }
}

/// The value of a secret file: its bytes with ONE trailing line ending
/// (`\n` or `\r\n`) cut, since editors and `echo` add one that is not part
/// of the secret. Anything before it is kept, even a second newline.
/// An empty result is refused by the loader (SPEC §11).
pub fn file_value(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    bytes
}

/// The one comparison for every credential hookyard checks (API tokens,
/// basic auth, verify tokens, URL tokens, SPEC §11).
///
/// Both values are hashed with SHA-256 and the fixed-size digests compared
/// with `subtle`: comparing the raw bytes would stop at the first difference
/// (leaking its position) or at a length mismatch (leaking the length).
pub fn credentials_equal(a: &[u8], b: &[u8]) -> bool {
    digests_equal(&digest(a), &digest(b))
}

fn digest(value: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(value).into()
}

fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// A configured credential [`position_of`] compares against: a [`Secret`]
/// (its digest made once) or plain bytes (hashed per comparison).
pub trait Credential {
    /// SHA-256 of the value.
    fn digest(&self) -> [u8; 32];
    /// An empty value is never a credential, whatever built it.
    fn is_blank(&self) -> bool;
}

impl Credential for Secret {
    fn digest(&self) -> [u8; 32] {
        self.digest
    }
    fn is_blank(&self) -> bool {
        self.value.is_empty()
    }
}

impl Credential for Vec<u8> {
    fn digest(&self) -> [u8; 32] {
        digest(self)
    }
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

/// The index of the first of `values` equal to `presented`, by the
/// comparison of [`credentials_equal`]. Every value is compared whatever
/// matched first, so the time taken does not say which; an empty value
/// matches nothing.
pub fn position_of<'a, C: Credential + 'a>(
    values: impl IntoIterator<Item = &'a C>,
    presented: &[u8],
) -> Option<usize> {
    let presented = digest(presented);
    let mut found = None;
    for (index, value) in values.into_iter().enumerate() {
        if digests_equal(&value.digest(), &presented) && !value.is_blank() && found.is_none() {
            found = Some(index);
        }
    }
    found
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, <redacted>)", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret {}>", self.name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("shop_hmac", "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(format!("{s:?}").contains("shop_hmac"));
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
        assert_eq!(s.expose_str(), Some("hunter2"));
        assert!(!Secret::new("empty", "").matches(b""));
    }

    #[test]
    fn file_value_cuts_one_trailing_newline() {
        assert_eq!(file_value(b"key\n".to_vec()), b"key");
        assert_eq!(file_value(b"key\r\n".to_vec()), b"key");
        assert_eq!(file_value(b"key".to_vec()), b"key");
        assert_eq!(file_value(b"key\n\n".to_vec()), b"key\n");
        // Files that hold nothing but a newline are empty secrets.
        assert_eq!(file_value(b"\n".to_vec()), b"");
        assert_eq!(file_value(b"\r\n".to_vec()), b"");
        assert_eq!(file_value(Vec::new()), b"");
        assert_eq!(file_value(b"\n\n".to_vec()), b"\n");
    }

    #[test]
    fn credentials_compare_by_content_only() {
        assert!(credentials_equal(b"", b""));
        assert!(credentials_equal(b"token", b"token"));
        assert!(!credentials_equal(b"token", b"tokeN"));
        assert!(!credentials_equal(b"token", b"token "));
        assert!(!credentials_equal(b"", b"x"));
    }

    #[test]
    fn position_of_finds_the_first_match() {
        let list = [
            Secret::new("a", "one"),
            Secret::new("b", "two"),
            Secret::new("c", "two"),
        ];
        assert_eq!(position_of(&list, b"two"), Some(1));
        assert_eq!(position_of(&list, b"one"), Some(0));
        assert_eq!(position_of(&list, b"three"), None);
    }
}
