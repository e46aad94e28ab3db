//! Streaming throughput of the detectors: points per second through `Detector::update` on
//! one core. Run with `cargo bench -p warden-detectors --bench throughput`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warden_detectors::harness::XorShift64;
use warden_detectors::registry;

const POINTS: usize = 10_000;

/// A daily-seasonal series at 5-minute resolution with noise.
fn series() -> Vec<(i64, f64)> {
    let mut rng = XorShift64::new(42);
    (0..POINTS)
        .map(|i| {
            let day = (i as f64 * 2.0 * std::f64::consts::PI / 288.0).sin();
            (1_700_000_000_000 + i as i64 * 300_000, 100.0 + 20.0 * day + rng.uniform(-2.0, 2.0))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = series();
    let mut group = c.benchmark_group("update");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.sample_size(10);
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("robust_baseline", vec![("window".into(), "60".into())]),
        ("robust_baseline", vec![("window".into(), "1000".into())]),
        ("seasonal_baseline", vec![("periods".into(), "[288]".into()), ("window".into(), "2016".into())]),
        ("change_point", vec![]),
        ("auto", vec![]),
        ("sigma", vec![]),
        ("spectral_residual", vec![]),
    ];
    for (name, params) in cases {
        let label = format!("{name}/{}", params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
        group.bench_with_input(BenchmarkId::from_parameter(label), &params, |b, params| {
            b.iter(|| {
                let mut d = match registry::build(name, params) {
                    Ok(d) => d,
                    Err(e) => panic!("bench detector {name}: {e}"),
                };
                for (t, v) in &data {
                    black_box(d.update(*t, *v));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
