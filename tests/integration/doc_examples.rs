//! Every example in the documentation runs, so the docs cannot drift from
//! the code (issue 13: "a test that runs every documented example").
//!
//! - Shell blocks (```` ```sh ````) that talk to the server
//!   (`http://127.0.0.1:8080`) run in order, per file, in one `bash`
//!   against a real `payments serve` on the default configuration; the
//!   shell's variables carry from block to block as a reader's would. A
//!   comment line `# {...}` after a command is its expected output: the
//!   fragments between `...` must appear, in order, in what the commands
//!   since the previous expectation printed.
//! - TOML blocks parse and validate as a configuration file. A block for
//!   a cargo feature says so in its fence (```` ```toml feature: otlp ````):
//!   it parses in every build, validates in a build with the feature, and
//!   elsewhere is refused saying to build with it.
//! - The embedding guide's Rust block is the shipped example
//!   (`examples/embedded.rs`, which `embedded.rs` runs as a process).
//!
//! A shell block that is not run says why in its fence (```` ```sh
//! no-run: <reason> ````): commands that need another machine (a
//! PostgreSQL server of one's own, a release build).

use crate::common::{binary, Backend, TestDb, TestServer};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents whose examples are run.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "docs/api.md",
    "docs/operations.md",
    "docs/configuration.md",
    "docs/embedding.md",
    "docs/benchmarks.md",
];
/// Where the documentation's examples expect the server.
const DOCUMENTED_BASE_URL: &str = "http://127.0.0.1:8080";
/// A marker printed between segments, so each expectation checks only
/// the output of its own commands.
const SEGMENT_MARKER: &str = "@@doc-example-segment";

/// One fenced block of a document.
#[derive(Debug)]
struct Block {
    /// The fence's info string (`sh`, `toml`, `sh no-run: ...`).
    info: String,
    /// The line the block starts on, for messages.
    line: usize,
    code: String,
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The fenced blocks of `text`, indented ones (in list items) included.
fn blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match open.take() {
            None if trimmed.starts_with("```") => {
                let block = Block {
                    info: trimmed.trim_start_matches('`').trim().to_string(),
                    line: number + 1,
                    code: String::new(),
                };
                open = Some((block, indent));
            }
            None => {}
            Some((block, _)) if trimmed.starts_with("```") => found.push(block),
            Some((mut block, fence_indent)) => {
                let cut = fence_indent.min(indent);
                block.code.push_str(&line[cut..]);
                block.code.push('\n');
                open = Some((block, fence_indent));
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    found
}

/// Whether a shell block is one to run against the server.
fn runs_against_server(block: &Block) -> bool {
    block.info == "sh" && block.code.contains(DOCUMENTED_BASE_URL)
}

/// A block split at its expectation lines: (commands, expected fragments).
fn segments(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut commands = String::new();
    for line in code.lines() {
        match line.trim().strip_prefix("# {") {
            Some(rest) => {
                let expected = format!("{{{rest}")
                    .split("...")
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
                out.push((std::mem::take(&mut commands), expected));
            }
            None => {
                commands.push_str(line);
                commands.push('\n');
            }
        }
    }
    out.push((commands, Vec::new()));
    out
}

/// Whether `fragments` appear in `output` in order.
fn contains_in_order(output: &str, fragments: &[String]) -> Result<(), String> {
    let mut rest = output;
    for fragment in fragments {
        match rest.find(fragment.as_str()) {
            Some(at) => rest = &rest[at + fragment.len()..],
            None => return Err(fragment.clone()),
        }
    }
    Ok(())
}

/// Runs a document's server blocks in one shell; returns the number run.
fn run_document(server: &TestServer, db: &TestDb, document: &str) -> usize {
    let text = std::fs::read_to_string(repo_path(document)).expect("read document");
    let runnable: Vec<Block> = blocks(&text)
        .into_iter()
        .filter(runs_against_server)
        .collect();
    let mut script = String::from("set -eo pipefail\n");
    let mut checks = Vec::new();
    for block in &runnable {
        for (commands, expected) in segments(&block.code) {
            script.push_str(&format!("echo {SEGMENT_MARKER}\n"));
            script.push_str(&commands.replace(DOCUMENTED_BASE_URL, &server.base_url));
            script.push_str("echo\n");
            checks.push((block.line, commands, expected));
        }
    }
    let binary_dir = Path::new(binary()).parent().expect("binary dir");
    let path = format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&db.data_dir)
        .envs(db.env())
        .env("PATH", path)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{document}: the examples failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Vec<&str> = stdout.split(SEGMENT_MARKER).skip(1).collect();
    assert_eq!(outputs.len(), checks.len(), "{document}: segments lost");
    for ((line, commands, expected), printed) in checks.iter().zip(outputs) {
        if let Err(missing) = contains_in_order(printed, expected) {
            panic!(
                "{document}:{line}: expected `{missing}` in the output of\n{commands}\nwhich printed\n{printed}"
            );
        }
    }
    runnable.len()
}

#[test]
fn the_block_parser_finds_indented_blocks_and_expectations() {
    let text = "intro\n```sh\ncurl x\n# {\"a\":1,...,\"b\":2}\ncurl y\n```\n- item\n  ```toml\n  a = 1\n  ```\n";
    let found = blocks(text);
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].info, "toml");
    assert_eq!(found[1].code, "a = 1\n");
    let parts = segments(&found[0].code);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].1, vec!["{\"a\":1,", ",\"b\":2}"]);
    assert!(contains_in_order("{\"a\":1,\"x\":0,\"b\":2}", &parts[0].1).is_ok());
    assert!(contains_in_order("{\"b\":2}{\"a\":1,", &parts[0].1).is_err());
}

#[tokio::test]
async fn every_server_example_in_the_docs_runs_and_prints_what_it_says() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_on(&db, Default::default()).await;
    // The server is another process: blocking this test's thread on bash
    // holds up nothing it needs.
    let total: usize = DOCUMENTS
        .iter()
        .map(|document| run_document(&server, &db, document))
        .sum();
    // The API reference alone has a dozen; a parser that found none would
    // pass vacuously.
    assert!(total >= 20, "only {total} runnable examples found");
}

#[test]
fn every_shell_block_is_run_or_says_why_not() {
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(repo_path(document)).expect("read document");
        for block in blocks(&text) {
            if !block.info.starts_with("sh") || runs_against_server(&block) {
                continue;
            }
            assert!(
                block.info.starts_with("sh no-run: "),
                "{document}:{}: a shell block that is not run must say why (```sh no-run: <reason>)",
                block.line
            );
        }
    }
}

/// The cargo feature a TOML block's fence names (`toml feature: NAME`),
/// if any; `None` for a plain `toml` block.
fn toml_feature(block: &Block) -> Option<&str> {
    let rest = block.info.strip_prefix("toml")?.trim();
    if rest.is_empty() {
        return None;
    }
    let feature = rest
        .strip_prefix("feature:")
        .map(str::trim)
        .unwrap_or_else(|| panic!("line {}: unknown TOML fence {:?}", block.line, block.info));
    Some(feature)
}

/// Whether this test binary was built with `feature`.
fn built_with(feature: &str) -> bool {
    match feature {
        "otlp" => cfg!(feature = "otlp"),
        "nats" => cfg!(feature = "nats"),
        other => panic!("unknown cargo feature {other:?} in a TOML fence"),
    }
}

#[test]
fn every_toml_example_is_a_valid_configuration() {
    let mut seen = 0;
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(repo_path(document)).expect("read document");
        let tomls = blocks(&text)
            .into_iter()
            .filter(|b| b.info == "toml" || b.info.starts_with("toml "));
        for block in tomls {
            let file = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(file.path(), &block.code).expect("write");
            let config = payments::Config::from_toml_file(file.path())
                .unwrap_or_else(|e| panic!("{document}:{}: {e}", block.line));
            match (toml_feature(&block), config.validate()) {
                (Some(feature), Ok(())) if !built_with(feature) => panic!(
                    "{document}:{}: accepted by a build without the {feature} feature",
                    block.line
                ),
                (Some(feature), Err(e)) if !built_with(feature) => assert!(
                    e.to_string().contains(&format!("--features {feature}")),
                    "{document}:{}: {e}",
                    block.line
                ),
                (_, Err(e)) => panic!("{document}:{}: {e}", block.line),
                (_, Ok(())) => {}
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no TOML example found");
}

#[test]
fn the_embedding_guide_shows_the_shipped_example() {
    let guide = std::fs::read_to_string(repo_path("docs/embedding.md")).expect("guide");
    let example = std::fs::read_to_string(repo_path("examples/embedded.rs")).expect("example");
    let shown: Vec<Block> = blocks(&guide)
        .into_iter()
        .filter(|b| b.info == "rust")
        .collect();
    assert_eq!(shown.len(), 1, "one Rust block in docs/embedding.md");
    assert!(
        example.contains(shown[0].code.trim()),
        "docs/embedding.md's Rust block differs from examples/embedded.rs"
    );
}
