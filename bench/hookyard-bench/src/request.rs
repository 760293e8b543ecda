//! What the load generator sends: body and header templates with `{{n}}`
//! (request counter) and `{{now}}` (RFC 3339 time of sending), optional
//! HMAC-SHA256 signing of the body, and the loopback-only address check
//! shared by every subcommand.
//!
//! Templates are split once into literal and placeholder parts so that a
//! run of 100k requests does no string searching per request, and a body
//! without placeholders is sent as one shared `Bytes` without copying.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use hmac::{KeyInit, Mac};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    /// `{{n}}`: the 0-based request number, unique within a run.
    Counter,
    /// `{{now}}`: the time the request is built, RFC 3339.
    Now,
}

/// A string with `{{n}}` / `{{now}}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// Set when there are no placeholders: rendered once, shared.
    fixed: Option<Bytes>,
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let (part, len) = if after.starts_with("n}}") {
                (Part::Counter, 3)
            } else if after.starts_with("now}}") {
                (Part::Now, 5)
            } else {
                // Not ours (e.g. a minijinja template in the payload): keep.
                push_literal(&mut parts, &rest[..start + 2]);
                rest = after;
                continue;
            };
            push_literal(&mut parts, &rest[..start]);
            parts.push(part);
            rest = &after[len..];
        }
        push_literal(&mut parts, rest);
        let fixed = match parts.as_slice() {
            [] => Some(Bytes::new()),
            [Part::Literal(s)] => Some(Bytes::from(s.clone())),
            _ => None,
        };
        Template { parts, fixed }
    }

    /// The text for request number `n`.
    pub fn render(&self, n: u64) -> Bytes {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Counter => out.push_str(&n.to_string()),
                Part::Now => out.push_str(&jiff::Timestamp::now().to_string()),
            }
        }
        Bytes::from(out)
    }
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Literal(last)) = parts.last_mut() {
        last.push_str(text);
    } else {
        parts.push(Part::Literal(text.to_string()));
    }
}

/// A JSON event of about `size` bytes, valid for `POST /v1/events`:
/// `{"type":"bench.event","data":{"n":{{n}},"pad":"xxx…"}}`.
pub fn sized_event_body(size: usize) -> String {
    let head = r#"{"type":"bench.event","data":{"n":{{n}},"pad":""#;
    let tail = r#""}}"#;
    // `{{n}}` renders as a few digits; count it as 5 bytes.
    let used = head.len() - "{{n}}".len() + 5 + tail.len();
    let pad = "x".repeat(size.saturating_sub(used));
    format!("{head}{pad}{tail}")
}

/// How the body is signed, like the `hmac-sha256` signature preset.
#[derive(Debug, Clone)]
pub struct Signer {
    pub secret: Vec<u8>,
    pub header: String,
    pub prefix: String,
    pub base64: bool,
}

impl Signer {
    /// The header value for `body`: prefix + hex (or base64) HMAC-SHA256.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let encoded = if self.base64 {
            base64::engine::general_purpose::STANDARD.encode(digest)
        } else {
            digest.iter().map(|b| format!("{b:02x}")).collect()
        };
        format!("{}{}", self.prefix, encoded)
    }
}

/// Everything needed to build request number `n`.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub body: Template,
    pub headers: Vec<(String, Template)>,
    pub signer: Option<Signer>,
}

/// One built request: body and extra headers (content type not included).
pub struct Built {
    pub body: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl RequestSpec {
    pub fn build(&self, n: u64) -> Built {
        let body = self.body.render(n);
        let mut headers: Vec<(String, Bytes)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.render(n)))
            .collect();
        if let Some(signer) = &self.signer {
            headers.push((signer.header.clone(), Bytes::from(signer.sign(&body))));
        }
        Built { body, headers }
    }
}

/// Parses `K: V` into a header name and value template.
pub fn parse_header(text: &str) -> anyhow::Result<(String, Template)> {
    let Some((name, value)) = text.split_once(':') else {
        bail!("header {text:?} is not `Name: value`");
    };
    let name = name.trim();
    if name.is_empty() {
        bail!("header {text:?} has an empty name");
    }
    Ok((name.to_string(), Template::parse(value.trim())))
}

/// Resolves `host:port` and refuses anything that is not loopback: this
/// tool must never send or accept traffic beyond the machine.
pub async fn loopback_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let Some(first) = addrs.first() else {
        bail!("{host} resolved to no address");
    };
    if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        bail!(
            "{host} resolves to {}, which is not a loopback address; hookyard-bench only talks to 127.0.0.0/8 or ::1",
            bad.ip()
        );
    }
    Ok(*first)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Checks a `--listen` address: loopback only, like every target.
pub fn loopback_listen(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !is_loopback(addr.ip()) {
        bail!("--listen {addr} is not a loopback address; use 127.0.0.1:PORT");
    }
    Ok(addr)
}

/// Checks that a URL (http:// or redis://) points at a loopback host.
pub async fn loopback_url(url: &url::Url) -> anyhow::Result<SocketAddr> {
    let host = url
        .host_str()
        .with_context(|| format!("{url} has no host"))?;
    let port = url
        .port_or_known_default()
        .or(if url.scheme() == "redis" {
            Some(6379)
        } else {
            None
        })
        .with_context(|| format!("{url} has no port"))?;
    loopback_addr(host, port).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;

    #[test]
    fn template_substitutes_counter_and_keeps_foreign_braces() {
        let t = Template::parse(r#"{"id":"k-{{n}}","x":"{{ body.a }}"}"#);
        assert_eq!(
            t.render(42),
            Bytes::from(r#"{"id":"k-42","x":"{{ body.a }}"}"#)
        );
        assert_eq!(
            t.render(7),
            Bytes::from(r#"{"id":"k-7","x":"{{ body.a }}"}"#)
        );
    }

    #[test]
    fn template_without_placeholders_is_shared() {
        let t = Template::parse("plain");
        assert!(t.fixed.is_some());
        assert_eq!(t.render(1), Bytes::from("plain"));
    }

    #[test]
    fn now_placeholder_is_rfc3339() {
        let t = Template::parse("{{now}}");
        let text = String::from_utf8(t.render(0).to_vec()).unwrap();
        assert!(text.parse::<jiff::Timestamp>().is_ok(), "{text}");
    }

    #[test]
    fn sized_body_is_close_to_size_and_valid_json() {
        let t = Template::parse(&sized_event_body(1024));
        let body = t.render(12345);
        assert_eq!(body.len(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"]["n"], 12345);
        assert_eq!(v["type"], "bench.event");
    }

    #[test]
    fn hmac_matches_known_answer() {
        // RFC 4231 test case 2.
        let signer = Signer {
            secret: b"Jefe".to_vec(),
            header: "X-Hmac-Signature".into(),
            prefix: "sha256=".into(),
            base64: false,
        };
        assert_eq!(
            signer.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn header_parsing() {
        let (name, value) = parse_header("Idempotency-Key: k-{{n}}").unwrap();
        assert_eq!(name, "Idempotency-Key");
        assert_eq!(value.render(3), Bytes::from("k-3"));
        assert!(parse_header("no colon").is_err());
    }

    #[tokio::test]
    async fn only_loopback_is_accepted() {
        assert!(loopback_addr("127.0.0.1", 80).await.is_ok());
        assert!(loopback_addr("[::1]", 80).await.is_ok());
        assert!(loopback_addr("10.0.0.1", 80).await.is_err());
        assert!(loopback_addr("8.8.8.8", 80).await.is_err());
        assert!(loopback_listen("0.0.0.0:80".parse().unwrap()).is_err());
        assert!(loopback_listen("127.0.0.1:0".parse().unwrap()).is_ok());
    }
}
