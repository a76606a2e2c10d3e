//! The top-level modules of `src/` form an acyclic graph: a module that reaches back to one that
//! depends on it cannot be understood, tested or moved alone. Test code is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An edge `from → to` between top-level modules, with the places (`file:line`) that make it.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    let cycles: Vec<_> = components(&graph).into_iter().filter(|c| c.len() > 1).collect();
    if cycles.is_empty() {
        return;
    }
    let mut report = String::new();
    for cycle in &cycles {
        report.push_str(&format!("cycle between {}; its edges:\n", cycle.join(", ")));
        if let Some(shortest) = cycle
            .iter()
            .filter_map(|start| shortest_cycle(&graph, start))
            .min_by_key(Vec::len)
        {
            report.push_str(&format!("  shortest: {}\n", shortest.join(" -> ")));
        }
        for from in cycle {
            for (to, places) in &graph[from] {
                if cycle.contains(to) {
                    report.push_str(&format!("  {from} -> {to}: {}\n", places.join(", ")));
                }
            }
        }
    }
    panic!("the top-level modules form a cycle:\n{report}");
}

#[test]
fn references_are_found_in_every_form() {
    let code = r#"
use crate::metrics::Metrics;
use crate::{body::{self, Body}, error, proxy::headers};
pub(crate) use crate::routing as r;
fn f() { crate::util::uuid(); let x = "crate::quoted"; }
// crate::commented
/// [`crate::documented`]
#[cfg(test)]
mod tests {
    use crate::testonly;
}
fn g() { super::state::x(); }
"#;
    let found: BTreeSet<String> = references(code, true).into_iter().map(|(module, _)| module).collect();
    let expected = ["body", "error", "metrics", "proxy", "routing", "state", "util"];
    assert_eq!(found, expected.iter().map(|m| m.to_string()).collect());
}

/// The graph of the top-level modules under `src`.
fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let mut components = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let Some(first) = components.next() else { continue };
        let file_name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if matches!(first.as_str(), "lib.rs" | "main.rs") || matches!(file_name.as_str(), "tests.rs" | "proptests.rs") {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        // `super::` names the crate root only in `src/<module>.rs` and `src/<module>/mod.rs`.
        let top = relative.components().count() == 1 || (relative.components().count() == 2 && file_name == "mod.rs");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let edges = graph.entry(module.clone()).or_default();
        for (target, line) in references(&text, top) {
            if target != module {
                edges
                    .entry(target)
                    .or_default()
                    .push(format!("{}:{line}", relative.display()));
            }
        }
    }
    let targets: BTreeSet<String> = graph.values().flat_map(|edges| edges.keys().cloned()).collect();
    for target in targets {
        graph.entry(target).or_default();
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules `code` names through `crate::` (and `super::` when `super_is_crate`),
/// with the line of each mention; comments, string literals and `#[cfg(test)]` items are skipped.
fn references(code: &str, super_is_crate: bool) -> Vec<(String, usize)> {
    let code = strip_tests(&strip_comments_and_strings(code));
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut prefixes = vec!["crate::"];
    if super_is_crate {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            // A whole path segment: not `my_crate::`, and not `super::super::`'s second half.
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            let rest = &code[at + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for name in group_heads(group) {
                    found.push((name, line));
                }
            } else if let Some(name) = ident(rest) {
                found.push((name, line));
            }
        }
    }
    found.retain(|(name, _)| name != "self" && name != "super");
    found
}

/// The first segment of each path in the group that `group` opens (after its `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut expect_head) = (0usize, true);
    for (i, c) in group.char_indices() {
        match c {
            '{' => {
                depth += 1;
                expect_head = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && (c.is_alphabetic() || c == '_') => {
                if let Some(name) = ident(&group[i..]) {
                    heads.push(name);
                }
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> Option<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| text[..end].to_string())
}

/// `code` with comments and the contents of string literals blanked, newlines kept.
fn strip_comments_and_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            'r' if matches!(chars.peek(), Some('#') | Some('"'))
                && !out.ends_with(|c: char| c.is_alphanumeric() || c == '_') =>
            {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.peek() != Some(&'"') {
                    out.push('r');
                    out.extend(std::iter::repeat_n('#', hashes));
                    continue;
                }
                chars.next();
                out.push_str("\"\"");
                let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let mut tail = String::new();
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    tail.push(c);
                    if tail.ends_with(&closing) {
                        break;
                    }
                }
            }
            '"' => {
                out.push_str("\"\"");
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            // A character literal such as '"' or '{'; a lifetime has no closing quote.
            '\'' => {
                let ahead: Vec<char> = chars.clone().take(3).collect();
                let close = match ahead.as_slice() {
                    ['\\', _, '\''] => Some(3),
                    [_, '\'', ..] => Some(2),
                    _ => None,
                };
                out.push('\'');
                if let Some(close) = close {
                    for _ in 0..close {
                        chars.next();
                    }
                    out.push('\'');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `code` without the items under `#[cfg(test)]` (an inline test module, a test-only function).
fn strip_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its `;` (`mod tests;`) or at the brace that closes its body.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(item[..end].chars().filter(|&c| c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The shortest path from `start` back to itself (breadth first), as the modules it passes.
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for to in graph[node].keys() {
            if to == start {
                let mut path = vec![start.to_string()];
                let mut at = node;
                while at != start {
                    path.push(at.to_string());
                    at = came_from[at];
                }
                path[1..].reverse();
                path.push(start.to_string());
                return Some(path);
            }
            if !came_from.contains_key(to.as_str()) {
                came_from.insert(to, node);
                queue.push_back(to);
            }
        }
    }
    None
}

/// The strongly connected components of `graph` (Tarjan), each sorted.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for to in state.graph[node].keys() {
            let to = to.as_str();
            if !state.index.contains_key(to) {
                visit(state, to);
                let low = state.low[node].min(state.low[to]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(to) {
                let low = state.low[node].min(state.index[to]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            component.sort();
            state.found.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}
