//! Outbound credentials (SPEC §14): the `Authorization` header that an
//! action's or a YAML subscription's `auth:` adds to every request, the
//! subscription verification handshake included. `oauth2` needs a token
//! fetched at send time, so rendering only clears the header and the
//! worker adds `Bearer <token>` (deliver/oauth2.rs). API subscriptions have no
//! `auth` (their options are compiled with none). History and previews show
//! the header redacted: [`crate::send::redact_headers`] redacts
//! `Authorization` by name.

use crate::config::OutboundAuth;
use crate::model::mac::base64_encode;

/// The `(name, value)` of the header `auth` sends, if known before
/// sending (`oauth2`'s bearer token is added by the worker).
pub fn header(auth: &OutboundAuth) -> Option<(String, String)> {
    match auth {
        OutboundAuth::Basic { user, password } => {
            // RFC 7617: base64 of `user:password` (the password's bytes as
            // the secret holds them).
            let mut pair = Vec::with_capacity(user.len() + 1 + password.expose().len());
            pair.extend_from_slice(user.as_bytes());
            pair.push(b':');
            pair.extend_from_slice(password.expose());
            Some((
                "Authorization".to_owned(),
                format!("Basic {}", base64_encode(&pair)),
            ))
        }
        OutboundAuth::OAuth2(_) => None,
    }
}

/// Add `auth`'s header to `headers`, replacing any `Authorization` there
/// (the config refuses both on one target; this keeps one header anyway).
pub fn apply(auth: Option<&OutboundAuth>, headers: &mut Vec<(String, String)>) {
    let Some(auth) = auth else { return };
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    headers.extend(header(auth));
}

/// Set `Authorization: <value>` in `headers`, replacing any there.
pub fn set(headers: &mut Vec<(String, String)>, value: String) {
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    headers.push(("Authorization".to_owned(), value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn basic(user: &str, password: &str) -> OutboundAuth {
        OutboundAuth::Basic {
            user: user.to_owned(),
            password: Secret::new("crm_password", password.as_bytes()),
        }
    }

    #[test]
    fn basic_is_base64_of_user_colon_password() {
        // The example of RFC 7617 §2.
        let (name, value) = header(&basic("Aladdin", "open sesame")).unwrap();
        assert_eq!(name, "Authorization");
        assert_eq!(value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn apply_replaces_an_authorization_header_and_leaves_others() {
        let mut headers = vec![
            ("authorization".to_owned(), "Bearer old".to_owned()),
            ("X-Other".to_owned(), "1".to_owned()),
        ];
        apply(Some(&basic("u", "p")), &mut headers);
        assert_eq!(
            headers,
            vec![
                ("X-Other".to_owned(), "1".to_owned()),
                ("Authorization".to_owned(), "Basic dTpw".to_owned()),
            ]
        );
        apply(None, &mut headers);
        assert_eq!(headers.len(), 2);
    }
}
