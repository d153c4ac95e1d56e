//! `cairn index PATH --repo NAME [--groups A,B] [--sensitivity LEVEL]`.

use std::path::PathBuf;

use anyhow::Context;
use cairn_engine::engine::Engine;
use cairn_indexer::pipeline::Progress;
use cairn_services::audit;
use cairn_services::auth;
use cairn_services::config::{Config, Sensitivity};

use crate::admin_log;

pub async fn run(
    config: Config,
    path: PathBuf,
    repo: String,
    groups: Option<String>,
    sensitivity: Option<String>,
) -> anyhow::Result<()> {
    cairn_engine::engine::validate_repo_name(&repo)?;
    let groups = groups.as_deref().map(auth::parse_groups).transpose()?;
    let sensitivity = sensitivity
        .as_deref()
        .map(|s| {
            Sensitivity::parse(s).with_context(|| {
                format!("invalid --sensitivity {s:?}: use public, internal, confidential or restricted")
            })
        })
        .transpose()?;
    let mut engine = Engine::open(&config, "cairn index")?;
    // the model changed since the last index: rebuild the others first
    engine.finish_migration(&config).await?;
    let bar = Bar::new();
    let run = engine.index_run(&path, &repo, &config, &bar).await?;
    let report = &run.index;
    bar.0.finish_and_clear();
    // access changes are admin actions: audited (see admin_log)
    if let Some(groups) = groups {
        let mut admin = admin_log(&config)?;
        let before = engine.data.registry().load()?.get(&repo).map(|r| r.groups.clone());
        let event = audit::AdminEvent::new("repo.groups", &repo)
            .detail("groups", &groups)
            .detail("previous", before);
        admin.finish(event, engine.set_groups(&repo, groups))?;
    }
    if let Some(s) = sensitivity {
        let mut admin = admin_log(&config)?;
        let before = engine.data.registry().load()?.get(&repo).map(|r| r.sensitivity.clone());
        let event = audit::AdminEvent::new("repo.sensitivity", &repo)
            .detail("sensitivity", s)
            .detail("previous", before);
        admin.finish(event, engine.set_sensitivity(&repo, s))?;
    }
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|(r, n)| format!("{} {n}", r.as_str()))
        .collect();
    println!(
        "indexed {repo}{}: {} files, {} chunks, {} tokens embedded, skipped: {} in {:.1}s",
        if report.commit.is_empty() {
            String::new()
        } else {
            format!(" @ {}", &report.commit[..12.min(report.commit.len())])
        },
        report.files,
        report.chunks,
        report.tokens,
        if skipped.is_empty() {
            "none".to_string()
        } else {
            skipped.join(", ")
        },
        report.seconds
    );
    println!(
        "{}: {} files changed, {} chunks embedded, {} reused (embedding cache or stored points)",
        if run.full { "full build" } else { "incremental" },
        run.files_changed,
        run.chunks_embedded,
        run.chunks_reused
    );
    println!("secrets redacted: {}", secrets_summary(report));
    Ok(())
}

/// `github-token 1, private-key 2`, `none`, or `off (index.redact_secrets = false)`.
fn secrets_summary(report: &cairn_indexer::pipeline::IndexReport) -> String {
    if !report.redact_secrets {
        return "off (index.redact_secrets = false)".into();
    }
    if report.secrets.is_empty() {
        return "none".into();
    }
    report
        .secrets
        .iter()
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A terminal progress bar over files (hidden when stderr is not a terminal).
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files, {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl cairn_indexer::repo::RunProgress for Bar {}

impl Progress for Bar {
    fn start(&self, files: usize) {
        self.0.set_length(files as u64);
    }

    fn advance(&self, files_done: usize, chunks_done: usize) {
        self.0.set_position(files_done as u64);
        self.0.set_message(format!("{chunks_done} chunks"));
    }
}
