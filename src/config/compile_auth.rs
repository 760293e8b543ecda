//! Compile a target's `auth:` (SPEC §14): the credentials an action or a
//! YAML subscription sends with every request. The password is a secret
//! name, resolved like every other secret reference; API subscriptions
//! never get one (they are not compiled from YAML).

use super::leaf::Ctx;
use super::node::Sp;
use std::sync::Arc;

use super::raw_items::{RawOutboundAuth, RawOutboundOAuth2};
use super::runtime::{OAuth2, OutboundAuth};
use super::templates::Template;

/// The header `auth:` sets, compared without case.
const AUTHORIZATION: &str = "authorization";

/// Whether `name` is the header `auth:` sets.
pub(crate) fn is_authorization(name: &str) -> bool {
    name.eq_ignore_ascii_case(AUTHORIZATION)
}

/// "action `a`" for the prefix `action/a`, as messages name a target.
pub(crate) fn target_name(prefix: &str) -> String {
    match prefix.split_once('/') {
        Some((kind, id)) => format!("{kind} `{id}`"),
        None => prefix.to_owned(),
    }
}

/// `auth:` of the target compiled under `prefix` (`action/<id>`,
/// `subscription/<id>`), whose own header templates are `own_headers`.
pub(crate) fn outbound_auth(
    prefix: &str,
    raw: Option<&Sp<RawOutboundAuth>>,
    own_headers: &[(String, Template)],
    ctx: &mut Ctx<'_>,
) -> Option<OutboundAuth> {
    let raw = raw?;
    let target = target_name(prefix);
    if own_headers.iter().any(|(k, _)| is_authorization(k)) {
        ctx.error(
            &raw.pos,
            format!(
                "{target}: `auth` and an `Authorization` header both set the credentials: keep one"
            ),
        );
        return None;
    }
    let basic = match (&raw.value.basic, &raw.value.oauth2) {
        (Some(_), Some(_)) => {
            ctx.error(
                &raw.pos,
                format!("{target}: `auth` has both `basic` and `oauth2`: keep one"),
            );
            return None;
        }
        (None, Some(oauth2)) => return oauth2_auth(&target, oauth2, ctx),
        (Some(basic), None) => basic,
        (None, None) => {
            ctx.error(
                &raw.pos,
                format!(
                    "{target}: `auth` needs `basic: {{ user: NAME, password: SECRET }}` or \
                     `oauth2: {{ token_url: URL, client_id: ID, client_secret: SECRET }}`"
                ),
            );
            return None;
        }
    };
    let user = &basic.user;
    if user.value.contains(':') || user.value.chars().any(char::is_control) {
        ctx.error(
            &user.pos,
            format!(
                "{target}: `auth.basic.user` must not contain `:` or control characters \
                 (HTTP basic separates user and password with `:`)"
            ),
        );
        return None;
    }
    let password = ctx.secret(&basic.password)?;
    Some(OutboundAuth::Basic {
        user: user.value.clone(),
        password,
    })
}

/// `auth.oauth2` of `target`: an absolute `http`/`https` token URL without
/// credentials in it, a client id, the client secret's name, scopes and an
/// audience without control characters.
fn oauth2_auth(
    target: &str,
    raw: &Sp<RawOutboundOAuth2>,
    ctx: &mut Ctx<'_>,
) -> Option<OutboundAuth> {
    let o = &raw.value;
    let mut ok = true;
    let token_url = match url::Url::parse(&o.token_url.value) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Some(u)
        }
        Ok(_) => {
            ctx.error(
                &o.token_url.pos,
                format!(
                    "{target}: `auth.oauth2.token_url` must be an http or https URL with a host \
                     and no user or password in it"
                ),
            );
            None
        }
        Err(e) => {
            ctx.error(
                &o.token_url.pos,
                format!("{target}: `auth.oauth2.token_url` is not a URL: {e}"),
            );
            None
        }
    };
    if o.client_id.value.is_empty() || o.client_id.value.chars().any(char::is_control) {
        ctx.error(
            &o.client_id.pos,
            format!(
                "{target}: `auth.oauth2.client_id` must be non-empty without control characters"
            ),
        );
        ok = false;
    }
    for s in &o.scopes {
        if s.value.is_empty() || s.value.chars().any(|c| c == ' ' || c.is_control()) {
            ctx.error(
                &s.pos,
                format!(
                    "{target}: an `auth.oauth2.scopes` entry must be one non-empty word \
                     (scopes are sent space-separated)"
                ),
            );
            ok = false;
        }
    }
    if let Some(a) = &o.audience {
        if a.value.is_empty() || a.value.chars().any(char::is_control) {
            ctx.error(
                &a.pos,
                format!(
                    "{target}: `auth.oauth2.audience` must be non-empty without control characters"
                ),
            );
            ok = false;
        }
    }
    let client_secret = ctx.secret(&o.client_secret);
    let (Some(token_url), Some(client_secret), true) = (token_url, client_secret, ok) else {
        return None;
    };
    Some(OutboundAuth::OAuth2(Arc::new(OAuth2 {
        token_url,
        client_id: o.client_id.value.clone(),
        client_secret,
        scopes: o.scopes.iter().map(|s| s.value.clone()).collect(),
        audience: o.audience.as_ref().map(|a| a.value.clone()),
    })))
}
