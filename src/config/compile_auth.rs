//! Compile a target's `auth:` (SPEC §14): the credentials an action or a
//! YAML subscription sends with every request. The password is a secret
//! name, resolved like every other secret reference; API subscriptions
//! never get one (they are not compiled from YAML).

use super::leaf::Ctx;
use super::node::Sp;
use super::raw_items::RawOutboundAuth;
use super::runtime::OutboundAuth;
use super::templates::Template;

/// The header `auth:` sets, compared without case.
const AUTHORIZATION: &str = "authorization";

/// Whether `name` is the header `auth:` sets.
pub(crate) fn is_authorization(name: &str) -> bool {
    name.eq_ignore_ascii_case(AUTHORIZATION)
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
    let target = match prefix.split_once('/') {
        Some((kind, id)) => format!("{kind} `{id}`"),
        None => prefix.to_owned(),
    };
    if own_headers.iter().any(|(k, _)| is_authorization(k)) {
        ctx.error(
            &raw.pos,
            format!(
                "{target}: `auth` and an `Authorization` header both set the credentials: keep one"
            ),
        );
        return None;
    }
    let Some(basic) = &raw.value.basic else {
        ctx.error(
            &raw.pos,
            format!("{target}: `auth` needs `basic: {{ user: NAME, password: SECRET }}`"),
        );
        return None;
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
