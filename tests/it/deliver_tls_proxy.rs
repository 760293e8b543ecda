//! Outbound `tls:` and `proxy:` (SPEC §14) with the real binary and real
//! peers on loopback: an HTTPS receiver that requires a client certificate
//! from a private CA (certificates made by the test with the openssl CLI),
//! and an HTTP CONNECT proxy that logs what it is asked for and can refuse.
//!
//! Checked: mTLS delivers and the receiver sees the client certificate; a
//! missing client certificate, an untrusted server certificate and a
//! refusing proxy each dead-letter with a reason that says so; the proxy is
//! asked to CONNECT to the *address* hookyard resolved (not the name) while
//! the receiver still sees the name in `Host` and SNI; `egress.proxy`
//! carries API subscriptions too, and the egress policy still refuses a
//! denied target before the proxy hears of it.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::admin_support::{Proc, authed, free_port};
use crate::inbound::{JsonReq, JsonResp};
use crate::support::http;

pub const API_TOKEN: &str = "api-token-tls-proxy-test";

/// Make a CA, a server certificate for `localhost`/127.0.0.1 and a client
/// certificate signed by it, and a second CA's client certificate.
pub fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "rogue-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let key = format!("{ca}.key");
        let pem = format!("{ca}.pem");
        let subj = format!("/CN=hookyard test {ca}");
        args.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        run(&args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca, subj) in [
        ("server", "ca", "/CN=localhost"),
        ("client", "ca", "/CN=hookyard-client"),
        ("rogue", "rogue-ca", "/CN=rogue-client"),
    ] {
        let mut args = vec!["req"];
        args.extend(ec);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        run(&args);
        let ext = if name == "server" {
            "server.ext"
        } else {
            "client.ext"
        };
        let (ca_pem, ca_key, pem) = (
            format!("{ca}.pem"),
            format!("{ca}.key"),
            format!("{name}.pem"),
        );
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
}

/// What the peers saw.
#[derive(Default, Clone)]
pub struct Seen {
    /// `(request line, Host, client certificate presented)` per request.
    pub requests: Vec<(String, String, bool)>,
    /// TLS handshakes the receiver refused.
    pub refused_handshakes: usize,
    /// CONNECT targets the proxy was asked for.
    pub connects: Vec<String>,
}

pub type Shared = Arc<Mutex<Seen>>;

/// Read one HTTP/1.1 request, note it, answer 200.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: &Shared, client_cert: bool) {
    let head = read_head(&mut s).await;
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default().to_owned();
    let mut host = String::new();
    let mut length = 0usize;
    for l in lines {
        let (k, v) = l.split_once(':').unwrap_or_default();
        if k.eq_ignore_ascii_case("host") {
            host = v.trim().to_owned();
        }
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = s.read_exact(&mut body).await;
    seen.lock()
        .unwrap()
        .requests
        .push((line, host, client_cert));
    let _ = s
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .await;
    let _ = s.shutdown().await;
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An HTTPS receiver that requires a client certificate from `ca.pem`.
pub async fn mtls_receiver(dir: &Path, seen: Shared) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let cert = tls.get_ref().1.peer_certificates().is_some();
                        answer(tls, &seen, cert).await;
                    }
                    Err(_) => seen.lock().unwrap().refused_handshakes += 1,
                }
            });
        }
    });
    port
}

/// A plain HTTP receiver.
pub async fn plain_receiver(seen: Shared) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move { answer(tcp, &seen, false).await });
        }
    });
    port
}

/// How the test proxy treats a CONNECT.
#[derive(Clone)]
pub enum ProxyMode {
    Open,
    /// 403 to every CONNECT.
    Refuse,
    /// 407 unless `Proxy-Authorization` is exactly this value.
    RequireAuth(String),
}

/// An HTTP CONNECT proxy that notes each target it is asked for.
pub async fn connect_proxy(seen: Shared, mode: ProxyMode) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let (seen, mode) = (Arc::clone(&seen), mode.clone());
            tokio::spawn(async move {
                let head = read_head(&mut client).await;
                if let ProxyMode::RequireAuth(want) = &mode {
                    let given = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("proxy-authorization")
                            .then(|| v.trim().to_owned())
                    });
                    if given.as_deref() != Some(want.as_str()) {
                        let _ = client
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                            .await;
                        return;
                    }
                }
                let target = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().connects.push(target.clone());
                if matches!(mode, ProxyMode::Refuse) || target.is_empty() {
                    let _ = client
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    port
}

pub async fn post_event(p: &Proc, trigger: &str) -> String {
    let r = http()
        .post(format!("{}/hooks/{trigger}", p.base))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The event's deliveries once every one is finished (succeeded or dead
/// letter), sorted by target, read with this module's token.
pub async fn finished(p: &Proc, event: &str) -> Vec<Value> {
    let v = finished_event(p, API_TOKEN, event).await;
    let mut ds = v["deliveries"].as_array().cloned().unwrap_or_default();
    ds.sort_by_key(|d| d["target"].to_string());
    ds
}

/// `GET /v1/events/{event}` (with `token`) once the event has deliveries
/// and none is pending; at most 15 s.
pub async fn finished_event(p: &Proc, token: &str, event: &str) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = authed(http().get(format!("{}/v1/events/{event}", p.base)), token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ds = v["deliveries"].as_array().cloned().unwrap_or_default();
        let done = !ds.is_empty()
            && ds
                .iter()
                .all(|d| matches!(d["state"].as_str(), Some("succeeded" | "dead_letter")));
        if done {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The delivery to subscription `id` among `ds`.
pub fn to<'a>(ds: &'a [Value], id: &str) -> &'a Value {
    let label = format!("subscription/{id}");
    ds.iter()
        .find(|d| d["target"].as_str() == Some(label.as_str()))
        .unwrap_or_else(|| panic!("no delivery to {id}: {ds:?}"))
}

pub fn error_of(d: &Value) -> String {
    d["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn start_config(dir: &Path, port: u16, body: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
secrets:
  api: {{ env: HOOKYARD_T_API }}
  ca: {{ file: "{d}/ca.pem" }}
  client_cert: {{ file: "{d}/client.pem" }}
  client_key: {{ file: "{d}/client.key" }}
  rogue_cert: {{ file: "{d}/rogue.pem" }}
  rogue_key: {{ file: "{d}/rogue.key" }}
tokens:
  - {{ name: ops, secret: api, scopes: [admin, deliveries:read, webhooks:read, webhooks:write] }}
queue: {{ backend: embedded, path: "{d}/data" }}
reload: {{ watch: false }}
{body}"#,
        d = dir.display(),
    );
    let path = dir.join("hookyard.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test]
async fn mtls_private_ca_and_a_proxy_deliver_and_each_failure_says_why() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let seen = Shared::default();
    let https = mtls_receiver(dir.path(), Arc::clone(&seen)).await;
    let plain = plain_receiver(Arc::clone(&seen)).await;
    let proxy = connect_proxy(Arc::clone(&seen), ProxyMode::Open).await;
    let refusing = connect_proxy(Arc::clone(&seen), ProxyMode::Refuse).await;
    let port = free_port();
    let body = format!(
        r#"triggers:
  - {{ id: a, verify: none, event: a.created }}
subscriptions:
  - id: mtls
    url: "https://localhost:{https}/mtls"
    events: ["*"]
    tls: {{ client_cert: client_cert, client_key: client_key, ca: ca }}
  - id: no-client-cert
    url: "https://localhost:{https}/nocert"
    events: ["*"]
    retry: {{ schedule: [] }}
    tls: {{ ca: ca }}
  - id: wrong-ca-client
    url: "https://localhost:{https}/rogue"
    events: ["*"]
    retry: {{ schedule: [] }}
    tls: {{ client_cert: rogue_cert, client_key: rogue_key, ca: ca }}
  - id: untrusted-server
    url: "https://localhost:{https}/untrusted"
    events: ["*"]
    retry: {{ schedule: [] }}
  - id: via-proxy
    url: "http://localhost:{plain}/proxied"
    events: ["*"]
    proxy: "http://127.0.0.1:{proxy}"
  - id: mtls-via-proxy
    url: "https://localhost:{https}/both"
    events: ["*"]
    proxy: "http://127.0.0.1:{proxy}"
    # Files (beside the config) instead of secrets.
    tls: {{ client_cert: {{ file: client.pem }}, client_key: {{ file: client.key }}, ca: {{ file: ca.pem }} }}
  - id: refused-by-proxy
    url: "http://localhost:{plain}/refused"
    events: ["*"]
    retry: {{ schedule: [] }}
    proxy: "http://127.0.0.1:{refusing}"
"#
    );
    let path = start_config(dir.path(), port, &body);
    let env = [("HOOKYARD_T_API", API_TOKEN)];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;
    let event = post_event(&p, "a").await;
    let ds = finished(&p, &event).await;

    assert_eq!(to(&ds, "mtls")["state"], "succeeded", "{ds:?}");
    assert_eq!(to(&ds, "via-proxy")["state"], "succeeded", "{ds:?}");
    assert_eq!(to(&ds, "mtls-via-proxy")["state"], "succeeded", "{ds:?}");
    for (id, says) in [
        ("no-client-cert", "CertificateRequired"),
        ("wrong-ca-client", "UnknownCA"),
        ("untrusted-server", "UnknownIssuer"),
        (
            "refused-by-proxy",
            "the proxy did not open a tunnel to 127.0.0.1:",
        ),
    ] {
        let d = to(&ds, id);
        assert_eq!(d["state"], "dead_letter", "{id}: {d}");
        let error = error_of(d);
        assert!(error.contains(says), "{id}: `{error}` should say `{says}`");
    }
    assert!(
        error_of(to(&ds, "refused-by-proxy")).contains("it answered 403 Forbidden to the CONNECT")
    );

    let s = seen.lock().unwrap().clone();
    let paths: Vec<&str> = s
        .requests
        .iter()
        .map(|(line, _, _)| line.split(' ').nth(1).unwrap_or_default())
        .collect();
    // Only the three that should arrive did; each refused handshake was
    // counted by the receiver (no client cert, a foreign one, and
    // hookyard hanging up on an untrusted server certificate).
    let mut arrived = paths.clone();
    arrived.sort_unstable();
    assert_eq!(arrived, ["/both", "/mtls", "/proxied"], "{:?}", s.requests);
    assert!(s.refused_handshakes >= 3, "{}", s.refused_handshakes);
    for (line, host, cert) in &s.requests {
        // The name stays in Host (and in SNI: the certificate for
        // `localhost` verified), even through the proxy.
        assert!(host.starts_with("localhost:"), "{line}: Host {host}");
        // Origin-form through the tunnel, not a proxy's absolute-form.
        assert!(line.contains(" /"), "{line}");
        assert_eq!(*cert, !line.contains("/proxied"), "{line}");
    }
    // The proxy was asked for the resolved address, never the name.
    let mut connects = s.connects.clone();
    connects.sort_unstable();
    let mut want = vec![
        format!("127.0.0.1:{https}"),
        format!("127.0.0.1:{plain}"),
        format!("127.0.0.1:{plain}"),
    ];
    want.sort_unstable();
    assert_eq!(connects, want);
    p.stop().await;
}

#[tokio::test]
async fn egress_proxy_carries_api_subscriptions_and_the_policy_still_judges_the_target() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let seen = Shared::default();
    let plain = plain_receiver(Arc::clone(&seen)).await;
    let proxy = connect_proxy(Arc::clone(&seen), ProxyMode::Open).await;
    let port = free_port();
    // API targets may reach 127.0.0.1 only; 127.0.0.2 is denied to all.
    let body = format!(
        r#"egress: {{ allow: ["127.0.0.1/32"], deny: ["127.0.0.2/32"], proxy: "http://127.0.0.1:{proxy}" }}
triggers:
  - {{ id: a, verify: none, event: a.created }}
subscriptions:
  - id: yaml
    url: "http://localhost:{plain}/yaml"
    events: ["*"]
  - id: denied
    url: "http://127.0.0.2:{plain}/denied"
    events: ["*"]
    retry: {{ schedule: [] }}
"#
    );
    let path = start_config(dir.path(), port, &body);
    let env = [("HOOKYARD_T_API", API_TOKEN)];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;
    let r = authed(http().post(format!("{}/v1/webhooks", p.base)), API_TOKEN)
        .json(&json!({"id": "api-sub", "url": format!("http://127.0.0.1:{plain}/api"), "events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let event = post_event(&p, "a").await;
    let ds = finished(&p, &event).await;
    assert_eq!(to(&ds, "yaml")["state"], "succeeded", "{ds:?}");
    assert_eq!(to(&ds, "api-sub")["state"], "succeeded", "{ds:?}");
    let denied = to(&ds, "denied");
    assert_eq!(denied["state"], "dead_letter", "{denied}");
    assert!(error_of(denied).contains("127.0.0.2"), "{denied}");

    let s = seen.lock().unwrap().clone();
    let mut connects = s.connects.clone();
    connects.sort_unstable();
    // Both allowed targets went through the proxy; the denied one never
    // reached it.
    assert_eq!(
        connects,
        [format!("127.0.0.1:{plain}"), format!("127.0.0.1:{plain}")]
    );
    p.stop().await;
}
