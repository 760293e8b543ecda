//! Credential checks for triggers: `verify.bearer` and `verify.basic`.
//!
//! Both compare with the one credential comparison of
//! [`crate::config::secret::credentials_equal`], so neither the content nor
//! the length of a configured token leaks through response timing.

use axum::http::HeaderMap;

use super::VerifyError;
use crate::config::secret::credentials_equal as ct_equal;
use crate::model::mac::base64_decode;

pub use crate::config::verify_rules::BasicAuth;

/// The credentials after `Authorization: <scheme> `, scheme case-insensitive.
fn credentials<'h>(headers: &'h HeaderMap, scheme: &'static str) -> Result<&'h str, VerifyError> {
    let value = headers
        .get("authorization")
        .ok_or(VerifyError::MissingCredentials { scheme })?;
    let text = value
        .to_str()
        .map_err(|_| VerifyError::BadCredentials { scheme })?
        .trim();
    let (given, rest) = text
        .split_once(' ')
        .ok_or(VerifyError::MissingCredentials { scheme })?;
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(VerifyError::MissingCredentials { scheme });
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(VerifyError::BadCredentials { scheme });
    }
    Ok(rest)
}

/// Check `Authorization: Bearer <token>` against the accepted `tokens`.
///
/// Returns the index of the matching token, so a caller holding named
/// tokens (the event API) learns which one was used. Every token is compared,
/// whatever matched first.
pub fn check_bearer(headers: &HeaderMap, tokens: &[Vec<u8>]) -> Result<usize, VerifyError> {
    const SCHEME: &str = "Bearer";
    let given = credentials(headers, SCHEME)?;
    crate::config::secret::position_of(tokens, given.as_bytes())
        .ok_or(VerifyError::BadCredentials { scheme: SCHEME })
}

/// Check `Authorization: Basic base64(user:password)` against `expected`.
///
/// User and password are both compared before deciding, so the time taken
/// does not say which of the two was wrong.
pub fn check_basic(headers: &HeaderMap, expected: &BasicAuth) -> Result<(), VerifyError> {
    const SCHEME: &str = "Basic";
    let bad = VerifyError::BadCredentials { scheme: SCHEME };
    let encoded = credentials(headers, SCHEME)?;
    let decoded = base64_decode(encoded).ok_or_else(|| bad.clone())?;
    // RFC 7617: the user name cannot contain a colon; the password can.
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad.clone())?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = ct_equal(user, expected.user.as_bytes());
    let password_ok = ct_equal(password, &expected.password);
    if user_ok & password_ok {
        Ok(())
    } else {
        Err(bad)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn bearer_accepts_any_configured_token_and_reports_which() {
        let tokens = vec![b"new-token".to_vec(), b"old-token".to_vec()];
        assert_eq!(check_bearer(&with_auth("Bearer new-token"), &tokens), Ok(0));
        assert_eq!(check_bearer(&with_auth("bearer old-token"), &tokens), Ok(1));
    }

    #[test]
    fn bearer_rejects_wrong_missing_and_other_schemes() {
        let tokens = vec![b"tok".to_vec()];
        let bad = Err(VerifyError::BadCredentials { scheme: "Bearer" });
        let missing = Err(VerifyError::MissingCredentials { scheme: "Bearer" });
        assert_eq!(check_bearer(&with_auth("Bearer tok2"), &tokens), bad);
        assert_eq!(check_bearer(&with_auth("Bearer to"), &tokens), bad);
        assert_eq!(check_bearer(&with_auth("Bearer "), &tokens), missing);
        assert_eq!(check_bearer(&with_auth("Basic dG9r"), &tokens), missing);
        assert_eq!(check_bearer(&with_auth("tok"), &tokens), missing);
        assert_eq!(check_bearer(&HeaderMap::new(), &tokens), missing);
        assert_eq!(check_bearer(&with_auth("Bearer tok"), &[]), bad);
    }

    fn basic() -> BasicAuth {
        BasicAuth {
            user: "Aladdin".into(),
            password: b"open sesame".to_vec(),
        }
    }

    #[test]
    fn basic_accepts_rfc7617_example() {
        // RFC 7617 §2: "Aladdin:open sesame" → QWxhZGRpbjpvcGVuIHNlc2FtZQ==
        let headers = with_auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(check_basic(&headers, &basic()), Ok(()));
    }

    #[test]
    fn basic_password_may_contain_colons() {
        let expected = BasicAuth {
            user: "u".into(),
            password: b"a:b".to_vec(),
        };
        // base64("u:a:b")
        assert_eq!(check_basic(&with_auth("Basic dTphOmI="), &expected), Ok(()));
    }

    #[test]
    fn basic_rejects_wrong_user_password_and_garbage() {
        let bad = Err(VerifyError::BadCredentials { scheme: "Basic" });
        // base64("Aladdin:open sesamE"), base64("aladdin:open sesame")
        assert_eq!(
            check_basic(&with_auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtRQ=="), &basic()),
            bad
        );
        assert_eq!(
            check_basic(&with_auth("Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="), &basic()),
            bad
        );
        assert_eq!(check_basic(&with_auth("Basic !!!"), &basic()), bad);
        // base64("no colon")
        assert_eq!(check_basic(&with_auth("Basic bm8gY29sb24="), &basic()), bad);
        assert_eq!(
            check_basic(&HeaderMap::new(), &basic()),
            Err(VerifyError::MissingCredentials { scheme: "Basic" })
        );
    }
}
