//! One attempt's record and verdict: the history entry of SPEC §8, the
//! retry outcome of a response or send error, and the dead-letter reason
//! codes (`http_404`, `attempts_exhausted`, `egress_denied`, …).
//! Pure functions.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::deliver::retry::{Outcome, TransportError};
use crate::queue::{Attempt, StepResponse};
use crate::send::{Response, SendError, redact_headers};

/// Headers as a JSON object; repeated names are joined with `, `.
pub fn headers_json(headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in headers {
        match map.get_mut(k) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(v);
            }
            _ => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(map)
}

/// `request` of an attempt: `{method, url, headers}` with credential
/// headers and secret values redacted, plus `body` (as text, at most
/// `limit` bytes, redacted too) when history keeps this attempt's body
/// (`history.request_body`); `body_truncated` says a body was cut.
pub fn request_json(
    method: &reqwest::Method,
    url_display: &str,
    headers: &[(String, String)],
    secrets: &[&[u8]],
    body: Option<(&[u8], u64)>,
) -> Value {
    let mut v = json!({
        "method": method.as_str(),
        "url": crate::send::redact::text(url_display, secrets),
        "headers": headers_json(&redact_headers(headers, secrets)),
    });
    if let (Some((body, limit)), Value::Object(map)) = (body, &mut v) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        // Redact the whole body first: a cut must not split a secret into
        // a prefix that no longer matches it.
        let text = crate::send::redact::text(&String::from_utf8_lossy(body), secrets);
        let (kept, cut) = crate::send::redact::cut_at(&text, limit);
        map.insert("body".into(), Value::String(kept.to_owned()));
        if cut {
            map.insert("body_truncated".into(), Value::Bool(true));
        }
    }
    v
}

/// The body an attempt's history keeps under `history.request_body`, with
/// its limit (`test_mode`: the attempt of a `mode: test` workflow).
pub fn kept_body<'b>(
    history: &crate::config::History,
    test_mode: bool,
    body: &'b [u8],
) -> Option<(&'b [u8], u64)> {
    use crate::config::RequestBody;
    let keep = match history.request_body {
        RequestBody::Always => true,
        RequestBody::Test => test_mode,
        RequestBody::Never => false,
    };
    keep.then_some((body, history.request_body_limit))
}

/// `response` of an attempt: `{status, headers, body}` (body as text, at
/// most `history.response_body_limit` bytes, already cut by the sender).
pub fn response_json(r: &Response) -> Value {
    json!({
        "status": r.status,
        // A receiver's Set-Cookie is a credential too.
        "headers": headers_json(&redact_headers(&r.headers, &[])),
        "body": String::from_utf8_lossy(&r.body),
    })
}

/// Assemble an attempt record.
pub fn record(
    number: u32,
    at: Timestamp,
    request: Value,
    response: Option<&Response>,
    duration_ms: u64,
    error: Option<String>,
) -> Attempt {
    Attempt {
        attempt: number,
        at,
        request,
        response: response.map(response_json),
        duration_ms,
        error,
    }
}

/// The retry outcome of a send error.
pub fn transport_outcome(e: &SendError) -> Outcome {
    Outcome::from_transport(match e {
        // A failed token request is retried like a failed connection.
        SendError::Connect(_) | SendError::Auth(_) => TransportError::Connect,
        SendError::Timeout(_) => TransportError::Timeout,
        SendError::Egress(_) => TransportError::EgressDenied,
        SendError::InvalidRequest(_) => TransportError::InvalidRequest,
        SendError::Other(_) => TransportError::Interrupted,
    })
}

/// The dead-letter reason code for a permanent failure.
pub fn permanent_reason(result: &Result<Response, SendError>) -> String {
    match result {
        Ok(r) => format!("http_{}", r.status),
        Err(SendError::Egress(_)) => "egress_denied".to_owned(),
        Err(SendError::InvalidRequest(_)) => "invalid_request".to_owned(),
        Err(_) => "send_failed".to_owned(),
    }
}

/// A step's response as later steps see it: lower-case header names,
/// the body parsed as JSON when it says it is JSON (else text).
pub fn step_response(r: &Response) -> StepResponse {
    let mut headers = BTreeMap::new();
    for (k, v) in &r.headers {
        headers.insert(k.to_ascii_lowercase(), v.clone());
    }
    let is_json = headers
        .get("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let body = if is_json && !r.body_truncated {
        serde_json::from_slice(&r.body).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    StepResponse {
        status: r.status,
        headers,
        body,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(ct: &str, body: &str) -> Response {
        Response {
            status: 201,
            headers: vec![("Content-Type".into(), ct.into())],
            body: Bytes::from(body.to_owned()),
            body_truncated: false,
            retry_after: None,
        }
    }

    #[test]
    fn step_response_parses_json_bodies() {
        let s = step_response(&resp("application/json; charset=utf-8", r#"{"id":7}"#));
        assert_eq!(s.body, json!({"id": 7}));
        assert_eq!(s.headers["content-type"], "application/json; charset=utf-8");
        let s = step_response(&resp("text/plain", r#"{"id":7}"#));
        assert_eq!(s.body, json!(r#"{"id":7}"#));
    }

    #[test]
    fn request_record_redacts() {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("X-Key".to_owned(), "k-sekrit".to_owned()),
            ("X-A".to_owned(), "1".to_owned()),
            ("X-A".to_owned(), "2".to_owned()),
        ];
        let v = request_json(
            &reqwest::Method::POST,
            "https://h/sekrit/x",
            &headers,
            &[b"sekrit"],
            None,
        );
        assert_eq!(
            v,
            json!({"method": "POST", "url": "https://h/[redacted]/x",
                "headers": {"Authorization": "[redacted]", "X-Key": "[redacted]", "X-A": "1, 2"}})
        );
    }

    #[test]
    fn request_bodies_are_kept_redacted_cut_and_only_where_asked() {
        let body = "{\"token\":\"sekrit\",\"name\":\"Zoë\"}".as_bytes();
        let v = request_json(
            &reqwest::Method::POST,
            "https://h/",
            &[],
            &[b"sekrit"],
            Some((body, 1024)),
        );
        assert_eq!(
            v["body"],
            json!("{\"token\":\"[redacted]\",\"name\":\"Zoë\"}")
        );
        assert!(v.get("body_truncated").is_none());
        // Cut on a character boundary: "ë" is two bytes.
        let v = request_json(
            &reqwest::Method::POST,
            "https://h/",
            &[],
            &[b"sekrit"],
            Some((body, 33)),
        );
        assert_eq!(v["body"], json!("{\"token\":\"[redacted]\",\"name\":\"Zo"));
        assert_eq!(v["body_truncated"], json!(true));

        use crate::config::{History, RequestBody};
        let mut h = History {
            retention: std::time::Duration::from_secs(60),
            max_events: 10,
            response_body_limit: 10,
            request_body: RequestBody::Always,
            request_body_limit: 16,
        };
        assert_eq!(kept_body(&h, false, b"x"), Some((&b"x"[..], 16)));
        h.request_body = RequestBody::Test;
        assert_eq!(kept_body(&h, false, b"x"), None);
        assert!(kept_body(&h, true, b"x").is_some());
        h.request_body = RequestBody::Never;
        assert_eq!(kept_body(&h, true, b"x"), None);
    }

    #[test]
    fn reasons() {
        assert_eq!(permanent_reason(&Ok(resp("x", ""))), "http_201");
        assert_eq!(
            permanent_reason(&Err(SendError::Connect("x".into()))),
            "send_failed"
        );
        assert!(matches!(
            transport_outcome(&SendError::Timeout(std::time::Duration::from_secs(1))),
            Outcome::Retryable(_)
        ));
    }
}
