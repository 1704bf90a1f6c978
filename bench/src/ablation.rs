//! `--layers`: the stack built up one layer at a time.

use super::*;

/// `--layers`: the added latency of the stack built up one layer at a time, to see what
/// each layer costs.
pub(crate) async fn ablation(up: SocketAddr, client: &HttpClient, rounds: usize, per_round: usize) {
    use tower_openai::core::{Body, SelectedConnection};
    let settings = bench_settings(up);
    let connection = settings.connection(0).expect("one connection").clone();
    let handle = SettingsHandle::new(settings);
    let upstream_svc = Upstream::new();
    let catalog = Catalog::new(AppliesCredentials(upstream_svc.clone()));
    let with_connection = move |mut req: Request<Body>| {
        req.extensions_mut()
            .insert(SelectedConnection(connection.clone()));
        req
    };

    let upstream_only = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .map_request(with_connection.clone())
        .service(upstream_svc.clone());
    let payload = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(CollectPayloadLayer::default())
        .map_request(with_connection.clone())
        .service(upstream_svc.clone());
    let select = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .service(upstream_svc.clone());
    let auth = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .layer(AuthLayer::new())
        .service(upstream_svc.clone());
    let lower = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .layer(tower_openai::reasoning::ReasoningLayer::new())
        .layer(tower_openai::azure::AzureLayer::new())
        .layer(AuthLayer::new())
        .layer(tower_openai::headers::HeadersLayer::new(Default::default()))
        .service(upstream_svc.clone());
    let mut systems = baselines(up).await;
    systems.extend([
        served("upstream", serve_stack(upstream_only), "bench-model").await,
        served("+ payload", serve_stack(payload), "bench-model").await,
        served("+ select", serve_stack(select), "bench.bench-model").await,
        served("+ auth", serve_stack(auth), "bench.bench-model").await,
        served(
            "+ rewrites, headers",
            serve_stack(lower),
            "bench.bench-model",
        )
        .await,
        System::new(
            "gateway (full)",
            gateway_full(up).await,
            "bench.bench-model",
            Some("sk-alice"),
        ),
    ]);
    let small = System::small_chat;
    warm_up(client, &systems).await;
    let mut latencies = latency_at_c1(client, &systems, rounds * per_round, &small).await;
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for _ in 0..rounds {
        for (i, sys) in systems.iter().enumerate() {
            let (s, b) = (sys.clone(), small(sys));
            let (r, c) = throughput(
                Arc::new(move || s.chat(&b)),
                64,
                Duration::from_millis(700),
                None,
            )
            .await;
            rps[i].push(r);
            cpu[i].push(c);
        }
    }
    for l in &mut latencies {
        l.sort();
    }
    let direct = us(percentile(&latencies[0], 0.5));
    println!(
        "\n{:<22} {:>10} {:>10} {:>10} {:>10}",
        "stack", "p50 µs", "+p50 µs", "rps c=64", "CPU µs/req"
    );
    for (i, sys) in systems.iter().enumerate() {
        let p50 = us(percentile(&latencies[i], 0.5));
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>10.0} {:>10.1}",
            sys.name,
            p50,
            p50 - direct,
            median(rps[i].clone()),
            median(cpu[i].clone()) * 1000.0
        );
    }
}
