//! `cairn search QUERY`: the search every surface runs, through the facade.

use cairn_engine::engine::Engine;
use cairn_services::config::Config;
use cairn_services::search::SearchRequest;
use cairn_services::state::AppState;

pub async fn run(
    config: Config,
    query: String,
    repos: Vec<String>,
    languages: Vec<String>,
    path_prefix: Option<String>,
    k: i64,
    json: bool,
) -> anyhow::Result<()> {
    let engine = Engine::open(&config, "cairn search")?;
    let state = AppState::for_engine(&engine, &config);
    let resp = state
        .search(
            &cairn_services::facade::Caller::local("cli.search"),
            SearchRequest {
                query,
                k,
                repos,
                languages,
                path_prefix,
                group_by: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        for (i, h) in resp.results.iter().enumerate() {
            println!(
                "{:>2}. {:.4}  {}/{}#L{}-L{}  {} {}",
                i + 1,
                h.score,
                h.repo,
                h.path,
                h.start_line,
                h.end_line,
                h.kind,
                h.symbol.as_deref().unwrap_or("")
            );
            for line in h.content.lines().take(3) {
                println!("      {line}");
            }
        }
        println!("({} results in {:.1} ms)", resp.results.len(), resp.took_ms);
    }
    Ok(())
}
