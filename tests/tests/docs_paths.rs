//! The documentation names paths that exist.
//!
//! - `ARCHITECTURE.md`: every backticked repository path exists (rule below).
//! - `README.md` and `docs/*.md`: every relative markdown link `](target)`
//!   resolves to a file or directory, and a `#fragment` on a markdown target
//!   names one of its headings.
//!
//! Each failure names the document and the path it got wrong; all failures
//! are reported together. Plain std: no process, network or cluster.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// First path components of backticked tokens that are not repository
/// folders, so such tokens are not checked: `warden/...` and `members/...`
/// are DCS keys under the cluster prefix (`warden/archiver`), `global/...`
/// and `pg_wal/...` are entries of a PostgreSQL data directory
/// (`global/pg_control`), `target/...` is cargo's build output
/// (`target/test-logs/`).
const NOT_IN_REPO: &[&str] = &["warden", "members", "global", "pg_wal", "target"];

/// Characters that, like whitespace (prose, commands), mark a backticked
/// token as something other than a literal repository path: placeholders and
/// globs (`<scope>`, `backup_*.rs`, `{a,b}`), `::` item paths and
/// `host:port`, assignments, variables, queries and fragments.
const NOT_A_PATH_CHARS: &[char] = &['<', '>', '*', '{', '}', ':', '=', '$', '%', '?', '#', '|'];

/// The repository root: the parent of this crate's directory (`tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the warden-tests crate lives in a folder of the repository")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The text outside fenced code blocks (lines from one ``` fence to the next
/// are dropped); line breaks are kept.
fn outside_fences(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether a ``` fence is left open: everything after it would be skipped
/// by both checks.
fn has_unclosed_fence(text: &str) -> bool {
    text.lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count()
        % 2
        == 1
}

/// Inline code spans: the text between a backtick and the next one (outside
/// fenced blocks). A span broken across lines contains a line break and so
/// never qualifies as a path.
fn backticked(text: &str) -> Vec<String> {
    outside_fences(text)
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Whether a backticked token of ARCHITECTURE.md names a repository path that
/// must exist. The rule:
///
/// 1. it contains a `/`;
/// 2. it does not start with `/` (DCS keys such as `/<namespace>/<scope>/`,
///    URL paths such as `/primary`) nor with `./` or `../` (outside the
///    repository, such as `../shared/DESIGN.md`);
/// 3. it contains no whitespace and none of [`NOT_A_PATH_CHARS`];
/// 4. its first component is not one of [`NOT_IN_REPO`].
///
/// Such a token is always resolved against the repository root: a path is
/// written in full (`agent/src/ha/archiver.rs`), never relative to a folder
/// named earlier in the same table row (`ha/archiver.rs` is reported).
fn is_repo_path(token: &str) -> bool {
    token.contains('/')
        && !token.starts_with('/')
        && !token.starts_with("./")
        && !token.starts_with("../")
        && !token.chars().any(char::is_whitespace)
        && !token.contains(NOT_A_PATH_CHARS)
        && !NOT_IN_REPO.contains(&token.split('/').next().unwrap_or(""))
}

/// The repository paths ARCHITECTURE.md names that do not exist.
fn architecture_problems(root: &Path) -> Vec<String> {
    let text = read(&root.join("ARCHITECTURE.md"));
    let mut problems = Vec::new();
    if has_unclosed_fence(&text) {
        problems.push("ARCHITECTURE.md: a ``` code fence is never closed".to_string());
    }
    let mut seen = HashSet::new();
    problems.extend(
        backticked(&text)
            .into_iter()
            .filter(|t| is_repo_path(t) && seen.insert(t.clone()))
            .filter(|t| !root.join(t).exists())
            .map(|t| {
                format!(
                    "ARCHITECTURE.md: `{t}` does not exist (paths are written from the repository \
                 root; a name that is not a repository path belongs in NOT_IN_REPO)"
                )
            }),
    );
    problems
}

/// Targets of inline markdown links `[text](target)` outside fenced blocks,
/// without an optional `"title"`.
fn link_targets(text: &str) -> Vec<String> {
    let text = outside_fences(text);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
        rest = &rest[end..];
    }
    targets
}

/// GitHub's anchors of a markdown file's headings: lowercased, spaces turned
/// into `-`, characters other than letters, digits, `-` and `_` dropped, and
/// `-1`, `-2`, ... appended to repeated ones.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    for line in outside_fences(markdown).lines() {
        let Some(title) = line
            .strip_prefix('#')
            .map(|l| l.trim_start_matches('#'))
            .filter(|l| l.starts_with(' '))
        else {
            continue;
        };
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        found.insert(anchor);
    }
    found
}

/// What is wrong with one link of `doc` (a path relative to `root`), if
/// anything. Links with a scheme (`https:`, `mailto:`) are not checked; a
/// relative target is resolved against the linking file's folder; an
/// absolute one is refused (GitHub and local viewers disagree on it).
fn link_problem(root: &Path, doc: &str, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some(format!("{doc}: empty link target"));
    }
    let scheme = target.split_once(':').map(|(s, _)| s);
    if scheme.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())) {
        return None;
    }
    if target.starts_with('/') {
        return Some(format!(
            "{doc}: `{target}` is absolute; use a relative link"
        ));
    }
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let doc_path = root.join(doc);
    let file = if path.is_empty() {
        doc_path
    } else {
        doc_path
            .parent()
            .expect("a document is inside the repository")
            .join(path)
    };
    if !file.exists() {
        return Some(format!("{doc}: link target `{path}` does not exist"));
    }
    let fragment = fragment.filter(|f| !f.is_empty())?;
    if file.extension().is_some_and(|e| e == "md") && !anchors(&read(&file)).contains(fragment) {
        return Some(format!(
            "{doc}: link `{target}`: no heading of {} has the anchor `#{fragment}`",
            if path.is_empty() { doc } else { path }
        ));
    }
    None
}

/// README.md and every docs/*.md, as paths relative to the repository root.
fn linking_documents(root: &Path) -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let dir = root.join("docs");
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut pages: Vec<String> = entries
        .map(|e| e.expect("a readable docs/ entry").file_name())
        .filter_map(|n| n.to_str().map(str::to_string))
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    docs.extend(pages);
    docs
}

fn link_problems(root: &Path) -> Vec<String> {
    linking_documents(root)
        .into_iter()
        .flat_map(|doc| {
            let text = read(&root.join(&doc));
            let fence = has_unclosed_fence(&text)
                .then(|| format!("{doc}: a ``` code fence is never closed"));
            fence
                .into_iter()
                .chain(
                    link_targets(&text)
                        .into_iter()
                        .filter_map(|t| link_problem(root, &doc, &t)),
                )
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn architecture_paths_exist() {
    let problems = architecture_problems(&repo_root());
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn readme_and_docs_links_resolve() {
    let root = repo_root();
    let docs = linking_documents(&root);
    assert!(
        docs.len() > 1,
        "docs/ holds no markdown page: the README's links have nothing to point at"
    );
    let problems = link_problems(&root);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_path_rule_on_examples() {
    for path in [
        "agent/src/ha/",
        "consensus/src/etcd.rs",
        "ha/archiver.rs",
        "tests/src/bin/warden-bench-backup.rs",
    ] {
        assert!(is_repo_path(path), "{path} should be checked");
    }
    for other in [
        "/primary",
        "/<namespace>/<scope>/",
        "../shared/DESIGN.md",
        "members/<name>",
        "warden/archiver",
        "global/pg_control",
        "target/test-logs/",
        "agent/src/ha/execute.rs::clone_from",
        "tests/tests/backup_*.rs",
        "agent → consensus, fencing",
        "keys.rs",
    ] {
        assert!(!is_repo_path(other), "{other} should not be checked");
    }
    let links =
        link_targets("[a](docs/x.md) [b](https://e.com) [c](#top \"t\")\n```\n[d](no)\n```\n");
    assert_eq!(links, ["docs/x.md", "https://e.com", "#top"]);
    let headings = anchors("# Backups and DR\n## `wardenctl` list\n## Backups and DR\n");
    for a in ["backups-and-dr", "wardenctl-list", "backups-and-dr-1"] {
        assert!(headings.contains(a), "{a} missing from {headings:?}");
    }
}
