//! A reload applied while requests are flowing: no request fails, requests
//! served after the swap see the new config, nothing is lost, and a broken
//! config written under the same load is refused while the last good one
//! keeps serving.

#![allow(clippy::unwrap_used)] // tests may unwrap

use crate::support::get_text;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::admin_support::*;
use crate::support::http;

const WATCH: &str = "reload: { watch: true, debounce: 100ms }";

/// Two triggers (the second one only in later generations) whose mapping
/// stamps the config generation into every event.
fn body(generation: u32, with_second: bool) -> String {
    let mut s = format!(
        "triggers:\n  - id: orders\n    verify: none\n    event: order.created\n    mapping:\n      n: \"$.n\"\n      generation: {{ value: {generation} }}\n"
    );
    if with_second {
        s.push_str("  - id: refunds\n    verify: none\n    event: refund.created\n");
    }
    s.push_str("subscriptions:\n");
    s.push_str(&paused_sub("hold", "*"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    let d = start(&body(1, false), WATCH).await;
    let path = config_path(&d);
    let url = d.url("/hooks/orders");
    let stop = Arc::new(AtomicBool::new(false));
    // Answers so far: each generation is written only after the senders
    // got answers under the previous one, so the reloads really happen
    // under load however slow the machine is.
    let answered = Arc::new(AtomicUsize::new(0));

    // 8 senders posting continuously while the config is rewritten.
    let mut senders = vec![];
    for s in 0..8 {
        let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
        senders.push(tokio::spawn(async move {
            let client = http();
            let mut statuses = vec![];
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(serde_json::json!({ "n": s * 100_000 + n }).to_string())
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
                answered.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            statuses
        }));
    }

    // Five generations, alternately adding and removing the second trigger;
    // each must be served before the next is written.
    for generation in 2..=6u32 {
        let before = answered.load(Ordering::Relaxed);
        eventually(
            Duration::from_secs(15),
            "requests answered before the next reload",
            || {
                let answered = answered.clone();
                async move { answered.load(Ordering::Relaxed) >= before + 10 }
            },
        )
        .await;
        let with_second = generation % 2 == 0;
        std::fs::write(
            &path,
            config_text(d.dir.path(), &body(generation, with_second), WATCH),
        )
        .unwrap();
        let refunds = d.url("/hooks/refunds");
        eventually(
            Duration::from_secs(15),
            &format!("generation {generation} served"),
            || {
                let refunds = refunds.clone();
                async move {
                    let status = http()
                        .post(&refunds)
                        .body("{}")
                        .send()
                        .await
                        .unwrap()
                        .status();
                    (status == 202) == with_second
                }
            },
        )
        .await;
    }
    // A broken config written under the same load: refused and counted,
    // generation 6 keeps serving, and no request fails.
    std::fs::write(
        &path,
        config_text(
            d.dir.path(),
            "triggers:\n  - id: orders\n    verify: none\n    event: order.created\n    mapping: { n: \"$.[[\" }\n    bogus_key: 1\n",
            WATCH,
        ),
    )
    .unwrap();
    let metrics_url = d.url("/metrics");
    eventually(
        Duration::from_secs(15),
        "the broken config counted as a failed reload",
        || {
            let url = metrics_url.clone();
            async move {
                let text = get_text(&url).await;
                text.contains("hookyard_config_reloads_total{result=\"failure\"} 1")
            }
        },
    )
    .await;
    let before = answered.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(15),
        "requests answered after the broken config",
        || {
            let answered = answered.clone();
            async move { answered.load(Ordering::Relaxed) >= before + 10 }
        },
    )
    .await;
    let refunds = http()
        .post(d.url("/hooks/refunds"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refunds.status(), 202, "generation 6 no longer served");
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for s in senders {
        let statuses = s.await.unwrap();
        total += statuses.len();
        assert!(
            statuses.iter().all(|&st| st == 202),
            "a request failed during reloads: {:?}",
            statuses.iter().filter(|&&st| st != 202).collect::<Vec<_>>()
        );
    }
    assert!(
        total > 50,
        "only {total} requests were sent during the reloads"
    );
    assert_eq!(
        metric(&d, "hookyard_config_reloads_total{result=\"failure\"}").await,
        Some(1.0)
    );
    assert!(metric(&d, "hookyard_config_reloads_total{result=\"success\"}").await >= Some(6.0));

    // Every accepted event is in the queue, and the last ones carry the
    // newest generation's mapping.
    let (status, page) = get_json(&d, "/v1/events?type=order.created&limit=1").await;
    assert_eq!(status, 200, "{page}");
    let newest = &page["events"][0]["data"];
    assert_eq!(newest["generation"], 6, "{page}");
    d.stop().await;
}
