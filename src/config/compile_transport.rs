//! Compile how a YAML target is reached (SPEC §14): `tls:` (a client
//! certificate for mTLS, a private CA) and `proxy:` (an HTTP CONNECT
//! proxy), and `egress.proxy` for every target without its own.
//!
//! Everything that can be checked without a network is checked here, so a
//! bad certificate is a load error with a position, not a dead letter
//! hours later: the PEM must hold what its key says, and a proxy URL must be
//! `http://host:port` with credentials only when it comes from a secret
//! (the URL is then itself a credential, and is shown by the secret's name).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::leaf::Ctx;
use super::node::{Sp, StrOr};
use super::raw_items::{RawFileRef, RawSecretRef, RawTls};
use super::runtime::{Proxy, Tls, Transport};
use super::secret::Secret;

/// `tls:` and `proxy:` of the target `target` ("action `a`"); `None` when it
/// sets neither (it then uses the default clients) or when either is wrong
/// (the error is recorded).
pub(crate) fn transport(
    target: &str,
    tls: Option<&Sp<RawTls>>,
    proxy: Option<&Sp<StrOr<RawSecretRef>>>,
    ctx: &mut Ctx<'_>,
) -> Option<Arc<Transport>> {
    if tls.is_none() && proxy.is_none() {
        return None;
    }
    // Both are compiled before either failure returns, so every mistake
    // is reported in one pass.
    let compiled_tls = tls.map(|raw| compile_tls(target, raw, ctx));
    let compiled_proxy = proxy.map(|raw| compile_proxy(&format!("{target}: `proxy`"), raw, ctx));
    let tls = match compiled_tls {
        Some(t) => Some(t?),
        None => None,
    };
    let proxy = match compiled_proxy {
        Some(p) => Some(p?),
        None => None,
    };
    Some(Arc::new(Transport { tls, proxy }))
}

/// `egress.proxy`.
pub(crate) fn egress_proxy(
    raw: Option<&Sp<StrOr<RawSecretRef>>>,
    ctx: &mut Ctx<'_>,
) -> Option<Proxy> {
    compile_proxy("`egress.proxy`", raw?, ctx)
}

fn compile_tls(target: &str, raw: &Sp<RawTls>, ctx: &mut Ctx<'_>) -> Option<Tls> {
    let t = &raw.value;
    let mut ok = true;
    let mut pem = |raw: &Option<Sp<StrOr<RawFileRef>>>,
                   what: &str,
                   check: fn(&[u8]) -> Result<(), String>| {
        let raw = raw.as_ref()?;
        let (secret, shown) = pem_source(target, what, raw, ctx)?;
        // `validate --no-env` reads no secret values: nothing to check.
        let checked = if ctx.no_env {
            Ok(())
        } else {
            check(secret.expose())
        };
        match checked {
            Ok(()) => Some(secret),
            Err(why) => {
                ctx.error(&raw.pos, format!("{target}: `tls.{what}`: {shown} {why}"));
                None
            }
        }
    };
    let cert = pem(&t.client_cert, "client_cert", certificates);
    let key = pem(&t.client_key, "client_key", private_key);
    let ca = pem(&t.ca, "ca", certificates);
    if t.client_cert.is_some() && cert.is_none()
        || t.client_key.is_some() && key.is_none()
        || t.ca.is_some() && ca.is_none()
    {
        ok = false;
    }
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ if !ok => None,
        _ => {
            ctx.error(
                &raw.pos,
                format!(
                    "{target}: `tls` needs both `client_cert` and `client_key` for a client \
                     certificate, or neither"
                ),
            );
            return None;
        }
    };
    if !ok {
        return None;
    }
    if client.is_none() && ca.is_none() {
        ctx.error(
            &raw.pos,
            format!("{target}: `tls` needs `client_cert` and `client_key`, or `ca`, or all three"),
        );
        return None;
    }
    Some(Tls { client, ca })
}

/// The PEM of one `tls:` value: the secret it names, or the file
/// `{ file: PATH }` (relative to the config file that says it; certificates
/// are usually files beside the config, and a CA is not a secret). Also how
/// messages name it.
fn pem_source(
    target: &str,
    what: &str,
    raw: &Sp<StrOr<RawFileRef>>,
    ctx: &mut Ctx<'_>,
) -> Option<(Secret, String)> {
    match &raw.value {
        StrOr::Str(name) => {
            let sp = Sp {
                value: name.clone(),
                pos: raw.pos.clone(),
            };
            let secret = ctx.secret(&sp)?;
            let shown = format!("the secret `{}`", secret.name);
            Some((secret, shown))
        }
        StrOr::Map(f) => {
            let dir = std::path::Path::new(&*raw.pos.file)
                .parent()
                .unwrap_or(std::path::Path::new("."));
            let path = dir.join(&f.file.value);
            let shown = format!("the file `{}`", path.display());
            let name = format!("file:{}", path.display());
            if ctx.no_env {
                // Like secret files: not read by `validate --no-env`.
                return Some((Secret::new(name, Vec::new()), shown));
            }
            match std::fs::read(&path) {
                Ok(bytes) => Some((Secret::new(name, bytes), shown)),
                Err(e) => {
                    ctx.error(
                        &f.file.pos,
                        format!("{target}: `tls.{what}`: cannot read {shown}: {e}"),
                    );
                    None
                }
            }
        }
    }
}

/// One or more PEM certificates, and nothing unreadable.
fn certificates(pem: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("is not readable PEM ({e})"))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no `-----BEGIN CERTIFICATE-----` block".to_owned());
    }
    Ok(())
}

/// One PEM private key (PKCS#8, PKCS#1 or SEC1).
fn private_key(pem: &[u8]) -> Result<(), String> {
    PrivateKeyDer::from_pem_slice(pem).map(|_| ()).map_err(|_| {
        "holds no readable PEM private key (`-----BEGIN PRIVATE KEY-----`, RSA or EC)".to_owned()
    })
}

/// `http://host:port`, credentials only from a secret.
fn compile_proxy(what: &str, raw: &Sp<StrOr<RawSecretRef>>, ctx: &mut Ctx<'_>) -> Option<Proxy> {
    let (text, secret): (String, Option<Secret>) = match &raw.value {
        StrOr::Str(s) => (s.clone(), None),
        StrOr::Map(r) => {
            let secret = ctx.secret(&r.secret)?;
            if ctx.no_env {
                // `validate --no-env` reads no secret values.
                return None;
            }
            let Some(text) = secret.expose_str().map(str::trim) else {
                ctx.error(
                    &raw.pos,
                    format!("{what}: the secret `{}` is not UTF-8 text", secret.name),
                );
                return None;
            };
            (text.to_owned(), Some(secret))
        }
    };
    // Never quote a secret's value in an error: it may hold a password.
    let shown = |text: &str| match &secret {
        Some(s) => format!("the URL in secret `{}`", s.name),
        None => format!("`{text}`"),
    };
    let url = match url::Url::parse(&text) {
        Ok(u) => u,
        Err(e) => {
            ctx.error(
                &raw.pos,
                format!("{what}: {} is not a URL ({e})", shown(&text)),
            );
            return None;
        }
    };
    if url.scheme() != "http" || url.host().is_none() || !matches!(url.path(), "" | "/") {
        ctx.error(
            &raw.pos,
            format!(
                "{what}: {} must be `http://host:port` (an HTTP CONNECT proxy; the tunnel \
                 carries TLS to https targets)",
                shown(&text)
            ),
        );
        return None;
    }
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if has_credentials && secret.is_none() {
        ctx.error(
            &raw.pos,
            format!(
                "{what}: a proxy URL with a user or password is a credential: put it in a \
                 secret and write `proxy: {{ secret: NAME }}`"
            ),
        );
        return None;
    }
    let shown = match &secret {
        Some(s) => format!("proxy from secret `{}`", s.name),
        None => format!("proxy {}", url.as_str().trim_end_matches('/')),
    };
    Some(Proxy { url, shown })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use std::path::Path;

    use crate::config::{LoadOptions, load_str};

    /// A CERTIFICATE block of arbitrary bytes: the loader checks the PEM
    /// framing only (rustls reads the DER when the sender is built, and
    /// `tests/it/deliver_tls_proxy.rs` uses real certificates).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUXuQq0m5n7C8oOZ0mJpYq1dT8KkUwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJaHkgdGVzdCBDQTAeFw0yNjAxMDEwMDAwMDBaFw0zNjAxMDEw
MDAwMDBaMBQxEjAQBgNVBAMMCWh5IHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT0V2xY3k2mS7Q9c8pY0vV4lRkT0Hc0mW8C7Qn3y5g2Zs6b1gq8ZlH6
V3oP9kq2c0Xz8n5Wm2i9u3h1b7cQ1JtIo1MwUTAdBgNVHQ4EFgQUq9o1f5s0wqg2
-----END CERTIFICATE-----
";

    fn opts(values: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            no_env: false,
            env: Some(
                values
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        }
    }

    fn yaml(target: &str, egress: &str) -> String {
        format!(
            "secrets: {{ c: {{ env: C }}, k: {{ env: K }}, p: {{ env: P }} }}\n{egress}\
             subscriptions:\n  - id: s\n    url: \"https://x.example/\"\n    events: \"*\"\n    {target}\n"
        )
    }

    fn error(target: &str, egress: &str, env: &[(&str, &str)]) -> String {
        load_str(&yaml(target, egress), Path::new("c.yaml"), opts(env))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn proxies_compile_and_credentials_must_come_from_a_secret() {
        let env = [("P", "http://u:pw@10.0.0.1:3128"), ("C", "c"), ("K", "k")];
        let c = load_str(
            &yaml(
                "proxy: { secret: p }",
                "egress: { proxy: \"http://10.0.0.2:3128\" }\n",
            ),
            Path::new("c.yaml"),
            opts(&env),
        )
        .unwrap();
        let t = c.subscriptions[0].delivery.transport.as_ref().unwrap();
        let proxy = t.proxy.as_ref().unwrap();
        assert_eq!(proxy.url.password(), Some("pw"));
        // Debug and messages show the secret's name, never the password.
        assert_eq!(format!("{proxy:?}"), "proxy from secret `p`");
        assert!(t.tls.is_none());
        assert_eq!(
            format!("{:?}", c.egress.proxy.as_ref().unwrap()),
            "proxy http://10.0.0.2:3128"
        );
        assert_eq!(c.transports().len(), 1);

        for (target, want) in [
            (
                "proxy: \"http://u:pw@10.0.0.1:3128\"",
                "c.yaml:6:12: subscription `s`: `proxy`: a proxy URL with a user or password is a credential",
            ),
            (
                "proxy: \"https://10.0.0.1:3128\"",
                "`proxy`: `https://10.0.0.1:3128` must be `http://host:port`",
            ),
            ("proxy: \"not a url\"", "`proxy`: `not a url` is not a URL"),
        ] {
            let text = error(target, "", &env);
            assert!(text.contains(want), "want {want} in:\n{text}");
            assert!(!text.contains(":pw@"), "{text}");
        }
        // A secret that is not a proxy URL is named, never quoted.
        let text = error(
            "proxy: { secret: p }",
            "",
            &[("P", "ftp://u:pw@h/"), ("C", "c"), ("K", "k")],
        );
        assert!(text.contains("the URL in secret `p` must be"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn tls_needs_readable_pem_and_a_whole_client_pair() {
        let env = [("C", CERT), ("K", "not a key"), ("P", "x")];
        for (target, want) in [
            (
                "tls: { client_cert: c }",
                "subscription `s`: `tls` needs both `client_cert` and `client_key`",
            ),
            (
                "tls: { client_cert: c, client_key: k }",
                "`tls.client_key`: the secret `k` holds no readable PEM private key",
            ),
            (
                "tls: { ca: k }",
                "`tls.ca`: the secret `k` holds no `-----BEGIN CERTIFICATE-----` block",
            ),
            (
                "tls: {}",
                "`tls` needs `client_cert` and `client_key`, or `ca`",
            ),
            ("tls: { ca: nope }", "unknown secret `nope`"),
        ] {
            let text = error(target, "", &env);
            assert!(text.contains(want), "want {want} in:\n{text}");
        }
        // A file instead of a secret; a missing one is named with its path.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CERT).unwrap();
        let from_file = format!("tls: {{ ca: {{ file: \"{}\" }} }}", ca.display());
        let c = load_str(&yaml(&from_file, ""), Path::new("c.yaml"), opts(&env)).unwrap();
        let tls = c.subscriptions[0].delivery.transport.as_ref().unwrap();
        let file_ca = tls.tls.as_ref().unwrap().ca.as_ref().unwrap();
        assert_eq!(file_ca.expose(), CERT.as_bytes());
        let missing = from_file.replace("ca.pem", "nope.pem");
        let text = error(&missing, "", &env);
        assert!(
            text.contains("`tls.ca`: cannot read the file `") && text.contains("nope.pem"),
            "{text}"
        );
        let c = load_str(&yaml("tls: { ca: c }", ""), Path::new("c.yaml"), opts(&env)).unwrap();
        let tls = c.subscriptions[0]
            .delivery
            .transport
            .as_ref()
            .unwrap()
            .tls
            .as_ref()
            .unwrap();
        assert_eq!(tls.ca.as_ref().unwrap().name, "c");
        assert!(tls.client.is_none());
    }
}
