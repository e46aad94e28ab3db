//! The daemon's call graph from service-mesh request metrics, read from a real Prometheus.
//!
//! Istio's `istio_requests_total` and Linkerd's `request_total` name the calling and the
//! called workload; an analysis turns every pair with requests into an edge, keeps the
//! symptom's namespace, and records which mesh the edges came from.

use std::time::Duration;

use anyhow::Result;
use chrono::{TimeZone, Utc};
use warden_agent::analysis::graph::mesh_graphs;
use warden_connectors::prometheus::{PrometheusClient, PrometheusConfig};
use warden_tests::config::unix_now;
use warden_tests::procs::{PromSeries, Prometheus};

/// A request counter over `[from, to]` every 15 s, rising by `rate` per sample.
fn counter(metric: &str, labels: &[(&str, &str)], from: i64, to: i64, rate: f64) -> PromSeries {
    let mut s = PromSeries::new(metric, labels);
    let mut t = from - from.rem_euclid(15);
    let mut v = 100.0;
    while t <= to {
        s.samples.push((t, v));
        v += rate;
        t += 15;
    }
    s
}

fn istio(src: &str, src_ns: &str, dst: &str, dst_ns: &str, from: i64, to: i64, rate: f64) -> PromSeries {
    counter(
        "istio_requests_total",
        &[
            ("source_workload", src),
            ("source_workload_namespace", src_ns),
            ("destination_workload", dst),
            ("destination_workload_namespace", dst_ns),
            ("response_code", "200"),
        ],
        from,
        to,
        rate,
    )
}

#[tokio::test]
async fn mesh_request_metrics_become_the_call_graph() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let now = unix_now();
    let from = now - 1800;
    let series = vec![
        istio("frontend", "shop", "checkout", "shop", from, now, 2.0),
        istio("checkout", "shop", "payments", "shop", from, now, 1.0),
        // Another namespace, a caller outside the mesh, and a pair without requests.
        istio("batch", "jobs", "reports", "jobs", from, now, 1.0),
        istio("unknown", "unknown", "checkout", "shop", from, now, 1.0),
        istio("frontend", "shop", "legacy", "shop", from, now, 0.0),
        // Linkerd: the outbound side names both workloads; the inbound side is not read.
        counter(
            "request_total",
            &[
                ("direction", "outbound"),
                ("deployment", "checkout"),
                ("namespace", "shop"),
                ("dst_deployment", "cart"),
                ("dst_namespace", "shop"),
            ],
            from,
            now,
            1.0,
        ),
        counter(
            "request_total",
            &[
                ("direction", "inbound"),
                ("deployment", "cart"),
                ("namespace", "shop"),
                ("dst_deployment", "db"),
                ("dst_namespace", "shop"),
            ],
            from,
            now,
            1.0,
        ),
    ];
    let mut prometheus = Prometheus::start(dir.path(), &series).await?;
    let client = PrometheusClient::new(PrometheusConfig {
        url: prometheus.url().parse()?,
        auth: None,
        timeout: Duration::from_secs(5),
        tls: Default::default(),
    })?;
    let end = Utc.timestamp_opt(now, 0).single().expect("now");
    let start = Utc.timestamp_opt(now - 900, 0).single().expect("start");

    let (graphs, gaps) = mesh_graphs(&client, Some("shop"), start, end).await;
    assert!(gaps.is_empty(), "{gaps:?}");
    let names: Vec<&str> = graphs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mesh:istio", "mesh:linkerd"]);
    let edges = |g: &warden_detectors::rca::CallGraph| -> Vec<(String, String)> {
        g.edges.iter().flat_map(|(a, bs)| bs.iter().map(move |b| (a.clone(), b.clone()))).collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(edges(&graphs[0].1), [pair("checkout", "payments"), pair("frontend", "checkout")]);
    assert_eq!(edges(&graphs[1].1), [pair("checkout", "cart")]);

    // Without a namespace every pair with requests counts (the unknown caller still does not).
    let (all, _) = mesh_graphs(&client, None, start, end).await;
    assert!(edges(&all[0].1).contains(&pair("batch", "reports")));
    assert!(!edges(&all[0].1).iter().any(|(a, _)| a == "unknown"));

    // A Prometheus that cannot be read is a gap, not an empty graph.
    prometheus.stop().await?;
    let (none, gaps) = mesh_graphs(&client, Some("shop"), start, end).await;
    assert!(none.is_empty());
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(gaps[0].starts_with("mesh:istio: "), "{gaps:?}");
    Ok(())
}
