//! Fuzz check: arbitrary headers, body, secrets and clock through every
//! signature preset (`inbound::verify::SignatureRule::verify`, which calls
//! `verify_signature`): header parsing, hex/base64 decoding, timestamps,
//! `whsec_` keys. Any input must give `Ok` or a `VerifyError`, never a panic.
//!
//! Then a round trip: the same body and secrets, signed the way each
//! provider (or hookyard's own `deliver::sign`) signs, must verify.
//!
//! Input (text-like, so seeds can be written by hand): byte 0 picks the
//! preset, byte 1 the tolerance; a line of tab-separated secrets; a line
//! with `now` in unix seconds; `Name: value` header lines up to an empty
//! line; the rest is the body.
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/signature.rs` and by
//! `cargo test` (`tests/it/fuzz_corpus.rs`), which replays the committed
//! corpus so an input that once crashed stays fixed.

use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use hookyard::config::{KeySource, SignedTimestamp};
use hookyard::deliver::sign::{Scheme, Signing, sign};
use hookyard::inbound::verify::{Encoding, Preset, SignatureRule};
use hookyard::model::mac::{base64_encode, hex_encode, hmac_sha256};
use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;

/// The Ed25519 key the public-key presets check with (the fuzzer signs
/// with it in the round trip).
fn ed25519_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn stamp(at: &str) -> Option<SignedTimestamp> {
    let source = match at.strip_prefix("header:") {
        Some(h) => KeySource::Header(h.to_owned()),
        None => KeySource::Path(serde_json_path::JsonPath::parse(at).ok()?),
    };
    Some(SignedTimestamp {
        at: source,
        shown: at.to_owned(),
    })
}

/// Every preset, each with where its signed timestamp is (public-key
/// presets only).
fn presets() -> [(Preset, Option<SignedTimestamp>); 13] {
    let ed25519 = || Preset::Ed25519 {
        header: HeaderName::from_static("x-sig-ed"),
        encoding: Encoding::Base64,
        key: Some(ed25519_key().verifying_key()),
    };
    let [a, b, c, d, e, f, g, h, i] = presets_without_keys();
    [
        (a, None),
        (b, None),
        (c, None),
        (d, None),
        (e, None),
        (f, None),
        (g, None),
        (h, None),
        (i, None),
        (ed25519(), None),
        (ed25519(), stamp("header:x-ts")),
        (ed25519(), stamp("$.ts")),
        (
            Preset::Highlevel {
                key: Some(ed25519_key().verifying_key()),
                legacy_key: None,
            },
            None,
        ),
    ]
}

fn presets_without_keys() -> [Preset; 9] {
    let generic = |header: &'static str, encoding, prefix: Option<&str>| Preset::HmacSha256 {
        header: HeaderName::from_static(header),
        encoding,
        prefix: prefix.map(str::to_owned),
    };
    [
        generic("x-hmac-signature", Encoding::Hex, None),
        generic("x-hmac-signature", Encoding::Hex, Some("sha256=")),
        generic("x-sig", Encoding::Base64, None),
        generic("x-sig", Encoding::Base64, Some("v1=")),
        Preset::Github,
        Preset::Stripe,
        Preset::Shopify,
        Preset::Slack,
        Preset::StandardWebhooks,
    ]
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Run one input; any input must return, never panic.
pub fn check(data: &[u8]) {
    let [preset_byte, tolerance_byte, rest @ ..] = data else {
        return;
    };
    let presets = presets();
    let (preset, timestamp) = presets[usize::from(*preset_byte) % presets.len()].clone();
    let tolerance = Duration::from_secs(u64::from(*tolerance_byte) * 10);
    let (secrets, rest) = split_line(rest);
    let secrets: Vec<Vec<u8>> = secrets.split(|&b| b == b'\t').map(<[u8]>::to_vec).collect();
    let (now, mut rest) = split_line(rest);
    let now = std::str::from_utf8(now)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut headers = HeaderMap::new();
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let body = rest;
    let rule = SignatureRule {
        preset,
        secrets,
        tolerance,
        timestamp,
    };
    if let Err(e) = rule.verify(&headers, body, now) {
        // The 401 answer carries the error text and code.
        drop((e.to_string(), e.code(), e.status()));
    }
    round_trip(&rule, body, now);
}

/// Sign `body` with the rule's secrets as its sender would; it must verify.
fn round_trip(rule: &SignatureRule, body: &[u8], now: Timestamp) {
    let secrets = &rule.secrets;
    let ts = now.as_second();
    if let Preset::Ed25519 { .. } = &rule.preset {
        return ed25519_round_trip(rule, body, now);
    }
    if secrets.is_empty() || ts < 0 {
        return; // nothing can pass; signed timestamps are whole positive seconds
    }
    let ts = ts.to_string();
    let hex = |parts: &[&[u8]]| -> Vec<String> {
        secrets
            .iter()
            .filter_map(|k| hmac_sha256(k, parts))
            .map(|t| hex_encode(&t))
            .collect()
    };
    let pairs: Vec<(&str, String)> = match &rule.preset {
        Preset::HmacSha256 {
            header,
            encoding,
            prefix,
        } => {
            let prefix = prefix.as_deref().unwrap_or("");
            let sigs: Vec<String> = secrets
                .iter()
                .filter_map(|k| hmac_sha256(k, &[body]))
                .map(|t| match encoding {
                    Encoding::Hex => format!("{prefix}{}", hex_encode(&t)),
                    Encoding::Base64 => format!("{prefix}{}", base64_encode(&t)),
                })
                .collect();
            vec![(header.as_str(), sigs.join(","))]
        }
        Preset::Github => {
            // hookyard's own hmac-sha256 signing is GitHub's format.
            let signing = Signing::new(Scheme::HmacSha256, &secrets[..]);
            let Some((_, value)) = sign(&signing, "evt_fuzz", now, body)
                .ok()
                .and_then(|h| h.into_iter().next())
            else {
                panic!("hmac-sha256 signing refused non-empty secrets");
            };
            vec![("x-hub-signature-256", value)]
        }
        Preset::Stripe => {
            let v1: Vec<String> = hex(&[ts.as_bytes(), b".", body])
                .into_iter()
                .map(|s| format!("v1={s}"))
                .collect();
            vec![("stripe-signature", format!("t={ts},{}", v1.join(",")))]
        }
        Preset::Shopify => {
            // Shopify sends one signature; the first secret signs.
            let Some(tag) = hmac_sha256(&secrets[0], &[body]) else {
                return;
            };
            vec![("x-shopify-hmac-sha256", base64_encode(&tag))]
        }
        Preset::Slack => {
            let Some(sig) = hex(&[b"v0:", ts.as_bytes(), b":", body]).into_iter().next() else {
                return;
            };
            vec![
                ("x-slack-signature", format!("v0={sig}")),
                ("x-slack-request-timestamp", ts.clone()),
            ]
        }
        // RSA: signed with a private key the fuzzer does not have;
        // HighLevel: its timestamp is in the fuzzed body. No round trip.
        Preset::Ed25519 { .. } | Preset::RsaSha256 { .. } | Preset::Highlevel { .. } => return,
        Preset::StandardWebhooks => {
            // A `whsk_` secret signs Ed25519 (`v1a`), which an inbound
            // HMAC secret list does not verify: not a round trip.
            if secrets.iter().any(|s| s.starts_with(b"whsk_")) {
                return;
            }
            let signing = Signing::new(Scheme::StandardWebhooks, &secrets[..]);
            // A broken `whsec_` secret is refused by both sides.
            let Ok(headers) = sign(&signing, "msg_fuzz", now, body) else {
                return;
            };
            headers.into_iter().collect()
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            panic!("a signed header is not valid HTTP");
        };
        headers.append(name, value);
    }
    if let Err(e) = rule.verify(&headers, body, now) {
        panic!("{} rejects what its sender signs: {e}", rule.preset.name());
    }
}

/// `ed25519` signed as its sender would: the body, or the timestamp header
/// followed by the body. A body timestamp is the fuzzer's: no round trip.
fn ed25519_round_trip(rule: &SignatureRule, body: &[u8], now: Timestamp) {
    // Senders stamp whole seconds of this era (from 10^11 on it reads as
    // milliseconds).
    if !(0..100_000_000_000).contains(&now.as_second()) {
        return;
    }
    let ts = now.as_second().to_string();
    let signed = match rule.timestamp.as_ref().map(|t| &t.at) {
        None => body.to_vec(),
        Some(KeySource::Header(_)) => [ts.as_bytes(), body].concat(),
        Some(KeySource::Path(_)) => return,
    };
    let mut headers = HeaderMap::new();
    let sig = base64_encode(&ed25519_key().sign(&signed).to_bytes());
    let (Ok(value), Ok(ts_value)) = (HeaderValue::try_from(sig), HeaderValue::try_from(ts)) else {
        panic!("a signed header is not valid HTTP");
    };
    headers.insert("x-sig-ed", value);
    headers.insert("x-ts", ts_value);
    if let Err(e) = rule.verify(&headers, body, now) {
        panic!("ed25519 rejects what its sender signs: {e}");
    }
}
