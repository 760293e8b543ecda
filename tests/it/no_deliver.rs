//! `hookyard run --no-deliver`: an ingest-only replica of the real binary
//! on a shared Redis queue accepts and queues events but sends nothing; a
//! normal replica started later on the same queue delivers every one.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Receiver, free_port, http, received_event_ids, redis_available};

const TOKEN: &str = "no-deliver-token-value";
const EVENTS: usize = 20;

/// Kills the child on every exit path, panics included.
struct Replica {
    child: Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    async fn start(dir: &Path, name: &str, prefix: &str, rx: &Receiver, args: &[&str]) -> Self {
        let port = free_port();
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:{port}" }}
queue: {{ backend: redis, url: "redis://127.0.0.1:6379", prefix: "{prefix}" }}
reload: {{ watch: false }}
secrets: {{ app_token: {{ env: ND_TOKEN }} }}
tokens: [ {{ name: app, secret: app_token, scopes: [events:write] }} ]
subscriptions:
  - {{ id: rx, url: "{url}", events: ["*"] }}
"#,
            url = rx.url("/hook"),
        );
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("ND_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let replica = Replica { child, port };
        for _ in 0..400 {
            if let Ok(r) = http().get(replica.url("/readyz")).send().await {
                if r.status() == 200 {
                    return replica;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{name} not ready within 10s");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

#[tokio::test]
async fn ingest_only_replica_queues_and_a_delivering_replica_sends() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("hy-nodeliver-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    let rx = Receiver::start().await;
    let ingest = Replica::start(dir.path(), "ingest", &prefix, &rx, &["--no-deliver"]).await;

    let mut accepted = std::collections::HashSet::new();
    for n in 0..EVENTS {
        let resp = http()
            .post(ingest.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({ "type": "order.created", "data": { "n": n } }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        accepted.insert(body["event_id"].as_str().unwrap().to_string());
    }
    assert_eq!(accepted.len(), EVENTS);
    // A normal daemon delivers within milliseconds; give the ingest-only
    // one ample time to prove it sends nothing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        rx.received().is_empty(),
        "an ingest-only replica delivered {} requests",
        rx.received().len()
    );

    let deliver = Replica::start(dir.path(), "deliver", &prefix, &rx, &[]).await;
    rx.wait_for(EVENTS, Duration::from_secs(15)).await;
    assert_eq!(received_event_ids(&rx), accepted);
    drop(deliver);
    drop(ingest);
}
