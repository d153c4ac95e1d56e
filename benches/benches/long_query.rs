//! What a long query costs (`cargo bench -p cairn-benches --bench long_query`):
//! the fixture repo `acme-auth` with the default model behind
//! `cairn serve`'s whole HTTP path, asked three kinds of question in turn:
//!
//! - **short**: a few words, as most searches are;
//! - **200 B**: a question of a couple of sentences;
//! - **20 KiB**: a pasted bug report (title, paragraphs, a Python traceback,
//!   a code block and a log), once as chunks and once with `group_by: "file"`.
//!
//! The kinds alternate within each round, so machine load falls on all of
//! them alike. Prints p50/p99 of each and their ratio to the short query;
//! nothing here asserts a time.

use std::time::Instant;

use cairn_benches::{Served, percentile};
use cairn_services::state::AppState;
use serde_json::{Value, json};

const SHORT: &str = "verify a password hash";
const MEDIUM: &str = "When a user logs in with a correct password right after their session expired, \
the login is refused once and then accepted on retry. Where is the session expiry checked during login?";

/// A bug report of `bytes` bytes: prose, a traceback, code and a log, the
/// way people paste them.
fn report(bytes: usize) -> String {
    let mut r = String::from(
        "Login refused after session expiry\n\nAfter a session expires, the next login with the right \
         password fails once with \"invalid credentials\" and succeeds on retry. Seen with 2.3.1 on Linux.\n\n",
    );
    let trace = "Traceback (most recent call last):\n  File \"/srv/app/auth/login.py\", line 42, in login\n    \
                 session = create_session(user)\n  File \"/srv/app/auth/session.py\", line 88, in create_session\n    \
                 check_token_expiry(token)\nValueError: token expired\n\n";
    let code =
        "```python\nfor attempt in range(3):\n    resp = client.login(user, password)\n    print(resp.status)\n```\n\n";
    let log = "2024-05-01T10:00:00Z WARN auth rate limiter refill bucket=login tokens=0\n";
    let mut i = 0;
    while r.len() < bytes {
        r.push_str(match i % 3 {
            0 => trace,
            1 => code,
            _ => log,
        });
        i += 1;
    }
    let mut cut = bytes.min(r.len());
    while !r.is_char_boundary(cut) {
        cut -= 1;
    }
    r.truncate(cut);
    r
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("long_query: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let (_tmp, config, engine) = cairn_benches::indexed_fixture().await?;
    let served = Served::start(AppState::for_engine(&engine, &config)).await?;
    let long = report(20 * 1024);
    let kinds: [(&str, Value); 4] = [
        ("short", json!({"query": SHORT, "k": 10})),
        ("200 B", json!({"query": MEDIUM, "k": 10})),
        ("20 KiB", json!({"query": long, "k": 10})),
        ("20 KiB, files", json!({"query": long, "k": 10, "group_by": "file"})),
    ];
    let client = reqwest::Client::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let rounds = 60;
    for round in 0..rounds {
        for j in 0..kinds.len() {
            let i = (j + round) % kinds.len();
            let started = Instant::now();
            let resp = client
                .post(format!("http://{}/v1/search", served.addr))
                .json(&kinds[i].1)
                .send()
                .await?;
            anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
            resp.bytes().await?;
            times[i].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    println!("## Search latency by query length, {rounds} requests each, interleaved");
    let (base50, base99) = (percentile(&mut times[0], 50.0), percentile(&mut times[0], 99.0));
    for (i, (name, _)) in kinds.iter().enumerate() {
        let (p50, p99) = (percentile(&mut times[i], 50.0), percentile(&mut times[i], 99.0));
        println!(
            "{name:>14}: p50 {p50:.2} ms  p99 {p99:.2} ms  (x{:.2} / x{:.2} of short)",
            p50 / base50,
            p99 / base99
        );
    }
    served.stop().await?;
    Ok(())
}
