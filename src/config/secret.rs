//! Secret values: bytes that never show up in logs, errors or debug output.

use std::fmt;
use std::sync::Arc;

/// A resolved secret. `Debug` and `Display` print only its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The name it is declared under in `secrets:` (safe to show).
    pub name: String,
    value: Arc<[u8]>,
}

impl Secret {
    /// Wrap a value read from the environment or a file.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Secret {
        Secret {
            name: name.into(),
            value: Arc::from(value.into()),
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

    /// Constant-time comparison with a presented credential.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.value.len() == presented.len() && bool::from(self.value.ct_eq(presented))
    }
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
    }
}
