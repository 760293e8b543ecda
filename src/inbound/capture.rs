//! What the `/hooks/*` handler notes about a request it samples for the
//! console (`runtime::captures`): the request as received, the verification
//! result, the mapped event and the answer. Only a sampled request pays for
//! any of it; redaction happens here, before a sample is kept anywhere.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::http::HeaderMap;
use jiff::Timestamp;
use serde_json::Value;

use crate::config::{Config, Trigger};
use crate::runtime::captures::Sample;

/// A sampled request's notes, filled in as the handler goes.
pub struct Seen {
    pub method: String,
    pub headers: Option<HeaderMap>,
    pub body: Option<Bytes>,
    pub query: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// `passed`, or the refusal, once verification ran.
    pub verification: Option<String>,
    pub event: Option<Value>,
}

impl Seen {
    /// The notes of a request made with `method`, nothing seen yet.
    pub fn new(method: &axum::http::Method) -> Seen {
        Seen {
            method: method.as_str().to_owned(),
            headers: None,
            body: None,
            query: None,
            client_ip: None,
            verification: None,
            event: None,
        }
    }

    /// The sample, redacted: credential headers and every configured
    /// secret's value, in the headers, the query and the body.
    pub fn sample(
        self,
        config: &Config,
        trigger: &Trigger,
        status: u16,
        error: Option<String>,
    ) -> Sample {
        let secrets: Vec<&[u8]> = config.secrets.values().map(|s| s.expose()).collect();
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let limit = usize::try_from(config.history.request_body_limit).unwrap_or(usize::MAX);
        let body = self.body.as_deref().unwrap_or_default();
        let text = crate::send::redact::text(&String::from_utf8_lossy(body), &secrets);
        let (kept, body_truncated) = crate::send::redact::cut_at(&text, limit);
        let body = kept.to_owned();
        Sample {
            at: Timestamp::now(),
            method: self.method,
            path: trigger.shown_path(),
            query: self.query.map(|q| crate::send::redact::text(&q, &secrets)),
            headers: without_signatures(crate::send::redact_headers(&headers, &secrets), trigger),
            body,
            body_truncated,
            client_ip: self.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            verification: self
                .verification
                .unwrap_or_else(|| "not reached".to_owned()),
            status,
            event: self.event.map(|e| redact_value(e, &secrets)),
            error: error.map(|e| crate::send::redact::text(&e, &secrets)),
        }
    }
}

/// Signature headers hidden too: a sample holds the body and the time it
/// was sent, and a signature without a timestamp could be replayed from it.
fn without_signatures(
    mut headers: Vec<(String, String)>,
    trigger: &Trigger,
) -> Vec<(String, String)> {
    let configured = trigger
        .verify
        .signature
        .as_ref()
        .map(|s| s.header.to_ascii_lowercase());
    for (name, value) in &mut headers {
        let lower = name.to_ascii_lowercase();
        if lower.contains("signature")
            || lower.contains("hmac")
            || configured.as_deref() == Some(lower.as_str())
        {
            *value = crate::send::REDACTED.to_owned();
        }
    }
    headers
}

/// `value` with every secret's value redacted wherever it appears.
fn redact_value(value: Value, secrets: &[&[u8]]) -> Value {
    let text = value.to_string();
    let redacted = crate::send::redact::text(&text, secrets);
    if redacted == text {
        return value;
    }
    serde_json::from_str(&redacted).unwrap_or(Value::String(redacted))
}
