//! Answers end to end: a real llama.cpp server (`.local/llm/llama-server`,
//! installed by `make setup`) with SmolLM2-135M on a free loopback port, a
//! real `cairn serve` configured with it as a backend over the fixture repos
//! (acme-auth, and acme-billing with its planted prompt injections), and
//! real clients: HTTP SSE for `/v1/answer`, the `openai` Python SDK for the
//! gateway, tonic for gRPC `Answer`. The backend's window is set to 1024
//! tokens to keep prompts short: prompt processing dominates on small CPUs.
//! `CAIRN_TEST_LLAMA_SERVER` may point at another llama-server binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, copy_dir, fixture_repo, git, run};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path under `.local/` that `make setup` installs; a clear failure when absent.
fn installed(rel: &str) -> PathBuf {
    let p = project().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (it installs llama-server, the SmolLM2 model and the Python test clients into .local/)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running llama-server, killed on drop.
struct Llama {
    child: Child,
    base_url: String,
}

impl Llama {
    async fn start() -> Llama {
        // CAIRN_TEST_LLAMA_SERVER points at another llama-server build.
        let bin = match std::env::var_os("CAIRN_TEST_LLAMA_SERVER") {
            Some(p) => PathBuf::from(p),
            None => installed(".local/llm/llama-server"),
        };
        let model = installed(".local/llm/SmolLM2-135M-Instruct.Q4_1.gguf");
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&bin)
            .arg("-m")
            .arg(&model)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-c",
                "2048",
                "-np",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", bin.display()));
        let mut llama = Llama {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let health = format!("http://127.0.0.1:{port}/health");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = llama.child.try_wait() {
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("llama-server exited ({status}):\n{log}");
            }
            let ok = match reqwest::get(&health).await {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            };
            if ok {
                return llama;
            }
            assert!(
                Instant::now() < deadline,
                "llama-server did not become healthy in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn billing_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&project().join("fixtures/repos/acme-billing"), dir.path());
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    dir
}

/// (event, data) pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

fn is_label(label: &str) -> bool {
    // repo/path#Lstart-Lend@commit12
    let Some((loc, commit)) = label.rsplit_once('@') else {
        return false;
    };
    let Some((_, lines)) = loc.rsplit_once("#L") else {
        return false;
    };
    commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) && lines.contains("-L")
}

const OPENAI_SCRIPT: &str = r#"
import json, sys
import openai
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=120)
out = {"models": [m.id for m in client.models.list()]}
messages = [{"role": "user", "content": "How does AuthService verify a session token?"}]
r = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=48, temperature=0)
out["text"] = r.choices[0].message.content
out["finish"] = r.choices[0].finish_reason
out["model"] = r.model
parts, finish = [], None
for chunk in client.chat.completions.create(model="smollm2", messages=messages, max_tokens=48, stream=True):
    if chunk.choices:
        if chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
out["stream_parts"] = len(parts)
out["stream_text"] = "".join(parts)
out["stream_finish"] = finish
try:
    client.chat.completions.create(model="gpt-4", messages=messages)
    out["unknown_model"] = None
except openai.NotFoundError as e:
    out["unknown_model"] = e.status_code
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn answers_through_a_real_llama_server() {
    let python = installed(".local/test-venv/bin/python");
    let llama = Llama::start().await;

    let auth = fixture_repo();
    let billing = billing_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    for (repo, name) in [(auth.path(), "acme-auth"), (billing.path(), "acme-billing")] {
        let (ok, _, err) = run(&["index", repo.to_str().unwrap(), "--repo", name, "--data-dir", d]);
        assert!(ok, "{err}");
    }
    let config = data.path().join("cairn.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        "[[backends]]\nname = \"smollm2\"\nbase_url = \"{}\"\nmodel = \"smollm2\"\nmax_sensitivity = \"restricted\"\ncontext_tokens = 1024\nanswer_tokens = 128\nfirst_token_timeout_ms = 120000\n",
        llama.base_url
    )
    .unwrap();
    drop(f);
    let server = Server::start_with_config(data.path(), Some(&config));

    // /v1/answer: streamed tokens, then citations.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let resp = client
        .post(server.url("/v1/answer"))
        .json(&json!({"query": "How does AuthService verify a session token?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = resp.text().await.unwrap();
    eprintln!("/v1/answer took {:.1}s", started.elapsed().as_secs_f64());
    let events = sse_events(&body);
    let tokens: Vec<&(String, String)> = events.iter().filter(|(e, _)| e == "token").collect();
    assert!(tokens.len() > 1, "streamed in several events: {body}");
    let text: String = tokens
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!text.trim().is_empty(), "{body}");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{body}");
    let done: Value = serde_json::from_str(done).unwrap();
    eprintln!("/v1/answer done: {done}");
    assert_eq!(done["backend"], "smollm2");
    let citations = done["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{done}");
    for c in citations {
        assert!(is_label(c["label"].as_str().unwrap()), "{c}");
    }
    if done["cited"] == false {
        // No [n] in the answer: every piece of the context is listed, the AuthService code among them.
        assert!(citations.iter().any(|c| c["path"] == "src/lib.rs"), "{done}");
    }

    // The planted repo: whatever the model makes of it, no image or remote link survives.
    let (status, body) = {
        let r = client
            .post(server.url("/v1/answer"))
            .json(&json!({"query": "How is an invoice total computed? Follow the notes in the code.", "repos": ["acme-billing"]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200, "{body}");
    let text: String = sse_events(&body)
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!text.contains("evil.example") && !text.contains("!["), "{text}");

    // The OpenAI gateway through the official Python SDK.
    let out = Command::new(&python)
        .arg("-c")
        .arg(OPENAI_SCRIPT)
        .arg(server.url("/v1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"], json!(["smollm2"]));
    assert_eq!(v["model"], "smollm2");
    assert!(!v["text"].as_str().unwrap().trim().is_empty(), "{v}");
    assert!(v["finish"].is_string(), "{v}");
    assert!(v["stream_parts"].as_u64().unwrap() > 1, "{v}");
    assert!(!v["stream_text"].as_str().unwrap().trim().is_empty(), "{v}");
    assert!(v["stream_finish"].is_string(), "{v}");
    assert_eq!(v["unknown_model"], 404, "{v}");

    // gRPC Answer.
    use cairn_proto::v1::AnswerRequest;
    use cairn_proto::v1::answer_event::Event;
    use cairn_proto::v1::retrieval_client::RetrievalClient;
    let mut grpc = RetrievalClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let mut stream = grpc
        .answer(AnswerRequest {
            query: "How is the request rate limited?".into(),
            repos: vec!["acme-auth".into()],
            backend: "smollm2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (mut n_tokens, mut text, mut done) = (0, String::new(), None);
    while let Some(ev) = stream.message().await.unwrap() {
        match ev.event.unwrap() {
            Event::Token(t) => {
                n_tokens += 1;
                text.push_str(&t);
            }
            Event::Done(d) => done = Some(d),
        }
    }
    assert!(n_tokens > 1 && !text.trim().is_empty(), "{text}");
    let done = done.expect("a done event");
    assert!(!done.citations.is_empty(), "{done:?}");
    assert!(
        done.citations
            .iter()
            .all(|c| c.repo == "acme-auth" && is_label(&c.label))
    );

    // The backend gone: 502 naming it, UNAVAILABLE over gRPC.
    drop(llama);
    let r = client
        .post(server.url("/v1/answer"))
        .json(&json!({"query": "verify a token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("backend smollm2"), "{v}");
    let err = grpc
        .answer(AnswerRequest {
            query: "verify a token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    // Every answer and gateway call is in the audit log, with backend,
    // model and the pieces sent; the failed ones with their outcome.
    let mut server = server;
    server.terminate();
    let log = std::fs::read_to_string(data.path().join("audit/audit.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "request")
        .collect();
    let answers: Vec<&Value> = records.iter().filter(|r| r["surface"] == "http.answer").collect();
    assert_eq!(answers.len(), 3, "{log}");
    assert_eq!(answers[0]["backend"], "smollm2");
    assert_eq!(answers[0]["model"], "smollm2");
    assert_eq!(answers[0]["outcome"], "ok");
    assert!(!answers[0]["results"].as_array().unwrap().is_empty(), "{}", answers[0]);
    assert_eq!(answers[1]["repos_allowed"], json!(["acme-billing"]));
    assert_eq!(answers[2]["outcome"], "bad_gateway");
    let grpc_answers: Vec<&Value> = records.iter().filter(|r| r["surface"] == "grpc.answer").collect();
    assert_eq!(grpc_answers.len(), 2);
    assert_eq!(grpc_answers[1]["outcome"], "bad_gateway");
    assert!(
        records
            .iter()
            .any(|r| r["surface"] == "http.chat_completions" && r["outcome"] == "ok"),
        "{log}"
    );
}
