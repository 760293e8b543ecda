//! Compile a trigger's `verify.signature` (see `compile_trigger.rs`): fill
//! in the preset's header, encoding and prefix, resolve the secrets, and for
//! `ed25519` parse the inline `public_key` (not a secret). Every mistake is
//! an error with its position; a check that ends up with no secret or key
//! fails closed at request time, never open.

use std::time::Duration;

use super::error::Pos;
use super::leaf::Ctx;
use super::raw::*;
use super::runtime::*;

/// Compile `s`, the `verify.signature` of trigger `id` at `pos`.
pub(super) fn signature(
    id: &str,
    s: &RawSignature,
    pos: &Pos,
    ctx: &mut Ctx<'_>,
) -> SignatureCheck {
    let ed25519 = s.preset == SignaturePreset::Ed25519;
    let takes_options = matches!(
        s.preset,
        SignaturePreset::HmacSha256 | SignaturePreset::Ed25519
    );
    // The position of the first secret name (or the key), else the trigger.
    let at = s
        .secret
        .as_ref()
        .and_then(|list| list.0.first().map(|p| p.pos.clone()))
        .or_else(|| s.public_key.as_ref().map(|k| k.pos.clone()))
        .unwrap_or_else(|| pos.clone());
    if !takes_options && (s.header.is_some() || s.encoding.is_some() || s.prefix.is_some()) {
        ctx.error(&at, "`header`, `encoding` and `prefix` only apply to `preset: hmac-sha256` (and `header`, `encoding` to `ed25519`); other presets fix them");
    }
    let (header, encoding, prefix) = match s.preset {
        SignaturePreset::HmacSha256 => ("X-Hmac-Signature", Encoding::Hex, ""),
        SignaturePreset::Github => ("X-Hub-Signature-256", Encoding::Hex, "sha256="),
        SignaturePreset::Stripe => ("Stripe-Signature", Encoding::Hex, ""),
        SignaturePreset::Shopify => ("X-Shopify-Hmac-Sha256", Encoding::Base64, ""),
        SignaturePreset::Slack => ("X-Slack-Signature", Encoding::Hex, "v0="),
        SignaturePreset::StandardWebhooks => ("webhook-signature", Encoding::Base64, "v1,"),
        SignaturePreset::Ed25519 => ("", Encoding::Base64, ""),
    };
    let mut public_key = None;
    let mut secrets = Vec::new();
    if ed25519 {
        if s.secret.is_some() {
            ctx.error(&at, format!("trigger `{id}`: `preset: ed25519` checks with `public_key`, not `secret`: remove `secret` (the sender keeps the private key)"));
        }
        if s.prefix.is_some() {
            ctx.error(
                &at,
                format!("trigger `{id}`: `prefix` does not apply to `preset: ed25519`"),
            );
        }
        if s.header.as_deref().is_none_or(str::is_empty) {
            ctx.error(&at, format!("trigger `{id}`: `preset: ed25519` needs `header`: the request header carrying the signature"));
        }
        match &s.public_key {
            None => ctx.error(&at, format!("trigger `{id}`: `preset: ed25519` needs `public_key`: the sender's Ed25519 public key (PEM or base64, inline)")),
            Some(text) if ctx.skip(text) => {}
            Some(text) => match crate::model::mac::ed25519_public_key(&text.value) {
                Ok(key) => public_key = Some(key),
                Err(e) => ctx.error(&text.pos, format!("trigger `{id}`: `public_key`: {e}")),
            },
        }
    } else {
        if let Some(k) = &s.public_key {
            ctx.error(
                &k.pos,
                format!("trigger `{id}`: `public_key` only applies to `preset: ed25519`"),
            );
        }
        match &s.secret {
            Some(list) => secrets = ctx.secret_list(list),
            None => ctx.error(&at, format!("trigger `{id}`: this signature preset needs `secret`: the name of the shared signing secret under `secrets:`")),
        }
    }
    SignatureCheck {
        preset: s.preset,
        secrets,
        header: s.header.clone().unwrap_or_else(|| header.to_owned()),
        encoding: s.encoding.unwrap_or(encoding),
        prefix: s.prefix.clone().unwrap_or_else(|| prefix.to_owned()),
        tolerance: ctx.duration(&s.tolerance, Duration::from_secs(300)),
        public_key,
    }
}
