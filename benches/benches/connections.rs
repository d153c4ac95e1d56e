//! What the lingering close (`cairn_server::linger`) costs a connection
//! (`cargo bench -p cairn-benches --bench connections`): one trivial route
//! served twice, on a plain listener and on a `LingeringListener`, and
//! requests that each open a new connection sent to both, alternating (and
//! alternating which goes first), so machine load falls on both alike.
//! Prints p50/p99 of each and the ratio.
//!
//! It prints timings; nothing here asserts a time.

use std::future::IntoFuture;
use std::time::Instant;

use axum::routing::get;
use cairn_benches::percentile;
use cairn_server::linger::LingeringListener;

const WARMUP: usize = 200;
const REQUESTS: usize = 3000;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("connections: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let app = axum::Router::new().route("/", get(|| async { "ok" }));
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let lingering = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let urls = [
        format!("http://{}/", plain.local_addr()?),
        format!("http://{}/", lingering.local_addr()?),
    ];
    tokio::spawn(axum::serve(plain, app.clone()).into_future());
    tokio::spawn(axum::serve(LingeringListener(lingering), app).into_future());
    // no idle connections kept: every request connects, and the client
    // closes after the answer (the server's side then drains nothing)
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let mut samples = [Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS)];
    for i in 0..WARMUP + REQUESTS {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let started = Instant::now();
            let body = client
                .get(&urls[which])
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(body == "ok", "unexpected answer {body:?}");
            if i >= WARMUP {
                samples[which].push(ms);
            }
        }
    }
    let [mut plain, mut lingering] = samples;
    let (p50, p99) = (percentile(&mut plain, 50.0), percentile(&mut plain, 99.0));
    let (l50, l99) = (percentile(&mut lingering, 50.0), percentile(&mut lingering, 99.0));
    println!("{REQUESTS} requests each, a new connection per request");
    println!("plain      p50 {p50:.3} ms  p99 {p99:.3} ms");
    println!("lingering  p50 {l50:.3} ms  p99 {l99:.3} ms");
    println!("ratio      p50 {:.3}  p99 {:.3}", l50 / p50, l99 / p99);
    Ok(())
}
