//! Pure checks on a rendered request: no smuggling, no host swap, no secrets
//! in the attempt record.
//!
//! - [`check_headers`]: header names must be tokens, values may not carry
//!   CR, LF, NUL or other control bytes (a rendered `"x\r\nHost: evil"`
//!   would otherwise split into a second header), and the framing and
//!   routing headers (`Host`, `Content-Length`, `Transfer-Encoding`,
//!   `Connection`, ...) are set by the HTTP client only: a template that sets
//!   them could make the receiver or a proxy in front of it read a different
//!   request than the one signed.
//! - [`url_safety`]: the rendered URL's scheme, host and port must equal the
//!   ones written literally in the URL template (SPEC §5: event data may not
//!   change them).
//! - [`redact_headers`]: what the attempt record may show of the headers.

use url::Url;

/// A rendered request the HTTP client must not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeRequest {
    /// Header name is not a valid HTTP token.
    #[error("header name {0:?} is not a valid HTTP header name")]
    HeaderName(String),
    /// Header value with CR/LF/NUL or other control characters. The value
    /// itself is not shown: it may contain a secret.
    #[error(
        "header {0:?} has a value with a line break or control character; \
         header values may not contain CR, LF or NUL (request smuggling)"
    )]
    HeaderValue(String),
    /// A header the HTTP client must set itself.
    #[error(
        "header {0:?} is set by hookyard's HTTP client and may not be set by an action; remove it"
    )]
    ReservedHeader(String),
    /// The URL template does not fix scheme and host in literal text.
    #[error(
        "the URL template does not spell out its scheme and host before the first \
         merge tag; write them literally (https://host/...) or use `url: {{ secret: NAME }}`"
    )]
    HostNotLiteral,
    /// Event data changed the scheme, host or port.
    #[error(
        "the rendered URL's {0} differs from the URL template's; event data may not \
         change the scheme, host or port"
    )]
    HostChanged(&'static str),
    /// Only http and https are sent.
    #[error("only http and https URLs can be delivered to")]
    Scheme,
}

/// Headers that decide how the message is framed or routed.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Check every header of a rendered request before anything is sent.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), UnsafeRequest> {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(UnsafeRequest::HeaderName(name.clone()));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
        {
            return Err(UnsafeRequest::ReservedHeader(name.clone()));
        }
        // from_bytes refuses CR, LF, NUL and the other control bytes but
        // keeps UTF-8 text (obs-text), which rendered names legitimately hold.
        if http::HeaderValue::from_bytes(value.as_bytes()).is_err() {
            return Err(UnsafeRequest::HeaderValue(name.clone()));
        }
    }
    Ok(())
}

/// The part of a template before its first tag (`{{`, `{%` or `{#`).
pub fn literal_prefix(template: &str) -> &str {
    let end = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|tag| template.find(tag))
        .min()
        .unwrap_or(template.len());
    &template[..end]
}

/// Scheme, host and port as written literally in a URL template.
///
/// Accepts either the whole template or just its literal prefix. The
/// authority counts as literal only when the literal text ends it with `/`,
/// `?` or `#`, or when there is no tag at all: in
/// `https://hooks.example.com{{ path }}` the data could render
/// `.evil.com/...` and extend the host.
pub fn literal_origin(template: &str) -> Result<Url, UnsafeRequest> {
    let literal = literal_prefix(template);
    let has_tag = literal.len() < template.len();
    let Some(sep) = literal.find("://") else {
        return Err(UnsafeRequest::HostNotLiteral);
    };
    let scheme = &literal[..sep];
    let rest = &literal[sep + 3..];
    let authority = match rest.find(['/', '?', '#', '\\']) {
        Some(end) => &rest[..end],
        None if !has_tag => rest,
        None => return Err(UnsafeRequest::HostNotLiteral),
    };
    let origin = Url::parse(&format!("{scheme}://{authority}/"))
        .map_err(|_| UnsafeRequest::HostNotLiteral)?;
    if origin.host().is_none() {
        return Err(UnsafeRequest::HostNotLiteral);
    }
    if !matches!(origin.scheme(), "http" | "https") {
        return Err(UnsafeRequest::Scheme);
    }
    Ok(origin)
}

/// Refuse a rendered URL whose scheme, host or port differ from those
/// written literally in its template (or its literal prefix).
pub fn url_safety(template: &str, rendered: &Url) -> Result<(), UnsafeRequest> {
    let origin = literal_origin(template)?;
    if rendered.scheme() != origin.scheme() {
        return Err(UnsafeRequest::HostChanged("scheme"));
    }
    if rendered.host() != origin.host() {
        return Err(UnsafeRequest::HostChanged("host"));
    }
    if rendered.port_or_known_default() != origin.port_or_known_default() {
        return Err(UnsafeRequest::HostChanged("port"));
    }
    // user:password@ can only come from data when the template had none.
    if rendered.username() != origin.username() || rendered.password() != origin.password() {
        return Err(UnsafeRequest::HostChanged("user information"));
    }
    Ok(())
}

/// What the attempt record shows instead of a secret header value.
pub const REDACTED: &str = "[redacted]";

/// Headers that carry credentials by convention.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// Headers as the attempt record may show them: credential headers and any
/// header whose value contains one of `secret_values` are replaced with
/// [`REDACTED`]. Signature headers stay visible: they reveal nothing about
/// the key and help a receiver debug verification.
pub fn redact_headers(
    headers: &[(String, String)],
    secret_values: &[&[u8]],
) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let credential = CREDENTIAL_HEADERS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c));
            // Any spelling: a header may carry a percent-encoded value.
            let holds_secret = crate::send::redact::holds(value, secret_values);
            if credential || holds_secret {
                (name.clone(), REDACTED.to_owned())
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn header_smuggling_is_refused() {
        assert_eq!(check_headers(&h(&[("X-Name", "José Müller\tok")])), Ok(()));
        for value in [
            "a\r\nHost: evil",
            "a\nX-Injected: 1",
            "a\rb",
            "a\0b",
            "a\x7fb",
        ] {
            assert_eq!(
                check_headers(&h(&[("X-Name", value)])),
                Err(UnsafeRequest::HeaderValue("X-Name".into())),
                "{value:?}"
            );
        }
        for name in ["X Bad", "X-Bad\r\n", "", "X:Y"] {
            assert_eq!(
                check_headers(&h(&[(name, "v")])),
                Err(UnsafeRequest::HeaderName(name.into()))
            );
        }
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "TE",
        ] {
            assert_eq!(
                check_headers(&h(&[(name, "v")])),
                Err(UnsafeRequest::ReservedHeader(name.into()))
            );
        }
    }

    #[test]
    fn header_error_does_not_show_the_value() {
        let err = check_headers(&h(&[("Authorization", "Bearer s3cret\r\nX: y")])).unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn literal_prefix_stops_at_any_tag() {
        assert_eq!(literal_prefix("https://a.com/{{ x }}/y"), "https://a.com/");
        assert_eq!(literal_prefix("https://a.com/{% if x %}"), "https://a.com/");
        assert_eq!(literal_prefix("https://a.com/{# c #}"), "https://a.com/");
        assert_eq!(literal_prefix("{{ url }}"), "");
        assert_eq!(literal_prefix("https://a.com"), "https://a.com");
    }

    #[test]
    fn same_origin_passes() {
        let ok = [
            (
                "https://hooks.zapier.com/hooks/catch/1/{{ secrets.p }}",
                "https://hooks.zapier.com/hooks/catch/1/abc",
            ),
            (
                "https://hooks.zapier.com/hooks/catch/1/{{ secrets.p }}",
                "https://HOOKS.zapier.com:443/hooks/catch/1/x",
            ),
            ("https://a.com?x={{ v }}", "https://a.com/?x=1"),
            (
                "http://127.0.0.1:8080/in/{{ id }}",
                "http://127.0.0.1:8080/in/7",
            ),
            ("https://a.com", "https://a.com/"),
            ("https://a.com/", "https://a.com/"),
            ("https://a.com/x/{{ p }}", "https://a.com/x/@evil.com"),
        ];
        for (template, rendered) in ok {
            assert_eq!(
                url_safety(template, &url(rendered)),
                Ok(()),
                "{template} -> {rendered}"
            );
        }
    }

    #[test]
    fn host_swap_attempts_are_refused() {
        let refused = [
            (
                "https://hooks.example.com/{{ p }}",
                "https://evil.com/x",
                "host",
            ),
            (
                "https://hooks.example.com/{{ p }}",
                "http://hooks.example.com/x",
                "scheme",
            ),
            (
                "https://hooks.example.com/{{ p }}",
                "https://hooks.example.com:8443/x",
                "port",
            ),
            (
                "https://hooks.example.com/{{ p }}",
                "https://user:pw@hooks.example.com/x",
                "user information",
            ),
            (
                "http://127.0.0.1:8080/{{ p }}",
                "http://127.0.0.1:9090/",
                "port",
            ),
            ("https://a.com/", "https://a.com.evil.com/", "host"),
        ];
        for (template, rendered, what) in refused {
            assert_eq!(
                url_safety(template, &url(rendered)),
                Err(UnsafeRequest::HostChanged(what)),
                "{template} -> {rendered}"
            );
        }
    }

    #[test]
    fn templates_that_let_data_write_the_host_are_refused() {
        let not_literal = [
            // Data could continue the host: ".evil.com/..." or "@evil.com".
            "https://hooks.example.com{{ path }}",
            "https://api.{{ region }}.example.com/x",
            "https://{{ host }}/x",
            "https://user:{{ secrets.pw }}@a.com/",
            "{{ url }}",
            "http{{ s }}://a.com/",
            "https://",
        ];
        let rendered = url("https://hooks.example.com/x");
        for template in not_literal {
            assert_eq!(
                url_safety(template, &rendered),
                Err(UnsafeRequest::HostNotLiteral),
                "{template}"
            );
        }
        // Given only the literal prefix, the unfinished host is compared as
        // written and the swap is still caught.
        assert_eq!(
            url_safety(
                "https://hooks.example.com",
                &url("https://hooks.example.com.evil.com/")
            ),
            Err(UnsafeRequest::HostChanged("host"))
        );
        assert_eq!(
            url_safety("ftp://a.com/{{ p }}", &url("ftp://a.com/x")),
            Err(UnsafeRequest::Scheme)
        );
    }

    #[test]
    fn redaction() {
        let secret = b"tok_123".as_slice();
        let headers = h(&[
            ("Authorization", "Bearer anything"),
            ("proxy-authorization", "Basic xyz"),
            ("Cookie", "a=b"),
            ("X-Custom", "prefix-tok_123-suffix"),
            ("X-Hmac-Signature", "sha256=abcdef"),
            ("Content-Type", "application/json"),
            ("X-Empty-Secret-Does-Not-Match", "value"),
        ]);
        let out = redact_headers(&headers, &[secret, b"".as_slice()]);
        let values: Vec<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                REDACTED,
                REDACTED,
                REDACTED,
                REDACTED,
                "sha256=abcdef",
                "application/json",
                "value"
            ]
        );
        assert_eq!(out[0].0, "Authorization", "names are kept");
    }
}
