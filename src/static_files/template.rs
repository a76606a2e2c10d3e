//! The Mustache subset of `replace`: variables (`{{x}}` escaped, `{{{x}}}`/`{{& x}}` raw, dotted
//! names), sections, inverted sections and comments, with mustache.js's lookup and standalone lines.

use serde_json::Value;

#[cfg(test)]
mod tests;

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unclosed tag at byte {0}")]
    UnclosedTag(usize),
    #[error("unclosed section {0:?}")]
    UnclosedSection(String),
    #[error("unopened section {name:?} at byte {at}")]
    UnopenedSection { name: String, at: usize },
    #[error("section {open:?} closed by {close:?} at byte {at}")]
    MismatchedSection { open: String, close: String, at: usize },
    #[error("empty tag at byte {0}")]
    EmptyTag(usize),
    #[error("changing the delimiters is not supported (byte {0})")]
    Delimiters(usize),
    /// The file is larger than templates may be (4 MiB).
    #[error("{0} bytes is more than a template may have")]
    TooLarge(u64),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Escaped(String),
    Raw(String),
    Section {
        name: String,
        inverted: bool,
        nodes: Vec<Node>,
    },
}

/// One tag as the tokenizer found it.
enum Tag<'t> {
    Escaped(&'t str),
    Raw(&'t str),
    Open(&'t str, bool),
    Close(&'t str),
    /// A comment or a partial (no partials are ever given, so mustache.js renders it empty).
    Nothing,
}

impl Tag<'_> {
    /// Tags that disappear with their whole line when they stand alone on it.
    fn standalone_kind(&self) -> bool {
        matches!(self, Tag::Open(..) | Tag::Close(_) | Tag::Nothing)
    }
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// An unclosed tag or section, a section closed by another name, an empty tag, a change of
    /// delimiters.
    pub fn parse(text: &str) -> Result<Template, Error> {
        // Stack of open sections: (name, inverted, nodes before it).
        let mut stack: Vec<(String, bool, Vec<Node>)> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut rest_start = 0;
        while let Some(offset) = text[rest_start..].find("{{") {
            let open = rest_start + offset;
            let (tag, end) = read_tag(text, open)?;
            let mut before = &text[rest_start..open];
            let mut after = end;
            if tag.standalone_kind() {
                let line_start = text[..open].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
                let left = &text[line_start.max(rest_start)..open];
                let right = &text[end..line_end];
                // Standalone only if the line holds nothing but this tag and blanks (and the line's
                // start was not already consumed by an earlier tag on the same line).
                if line_start >= rest_start && is_blank(left) && is_blank(right) {
                    before = &text[rest_start..line_start];
                    after = line_end;
                }
            }
            if !before.is_empty() {
                nodes.push(Node::Text(before.to_string()));
            }
            match tag {
                Tag::Escaped(name) => nodes.push(Node::Escaped(name.to_string())),
                Tag::Raw(name) => nodes.push(Node::Raw(name.to_string())),
                Tag::Nothing => {}
                Tag::Open(name, inverted) => {
                    stack.push((name.to_string(), inverted, std::mem::take(&mut nodes)));
                }
                Tag::Close(name) => {
                    let Some((open_name, inverted, outer)) = stack.pop() else {
                        return Err(Error::UnopenedSection {
                            name: name.to_string(),
                            at: open,
                        });
                    };
                    if open_name != name {
                        return Err(Error::MismatchedSection {
                            open: open_name,
                            close: name.to_string(),
                            at: open,
                        });
                    }
                    let inner = std::mem::replace(&mut nodes, outer);
                    nodes.push(Node::Section {
                        name: open_name,
                        inverted,
                        nodes: inner,
                    });
                }
            }
            rest_start = after;
        }
        if let Some((name, _, _)) = stack.pop() {
            return Err(Error::UnclosedSection(name));
        }
        if rest_start < text.len() {
            nodes.push(Node::Text(text[rest_start..].to_string()));
        }
        Ok(Template { nodes })
    }

    /// Renders the template with `view` as the outermost context.
    pub fn render(&self, view: &Value) -> String {
        let mut out = String::new();
        let mut contexts = vec![view];
        render_nodes(&self.nodes, &mut contexts, &mut out);
        out
    }
}

fn is_blank(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The tag opening at `open` (`{{`) and the byte after it.
fn read_tag(text: &str, open: usize) -> Result<(Tag<'_>, usize), Error> {
    let inside = open + 2;
    if text[inside..].starts_with('{') {
        let close = text[inside + 1..].find("}}}").ok_or(Error::UnclosedTag(open))?;
        let name = text[inside + 1..inside + 1 + close].trim();
        if name.is_empty() {
            return Err(Error::EmptyTag(open));
        }
        return Ok((Tag::Raw(name), inside + 1 + close + 3));
    }
    let close = text[inside..].find("}}").ok_or(Error::UnclosedTag(open))?;
    let end = inside + close + 2;
    let body = text[inside..inside + close].trim();
    let (sigil, name) = match body.chars().next() {
        Some(sigil @ ('#' | '^' | '/' | '&' | '!' | '>' | '=')) => (Some(sigil), body[1..].trim()),
        _ => (None, body),
    };
    let tag = match sigil {
        Some('!') => return Ok((Tag::Nothing, end)),
        Some('=') => return Err(Error::Delimiters(open)),
        Some('>') => Tag::Nothing,
        Some('#') => Tag::Open(name, false),
        Some('^') => Tag::Open(name, true),
        Some('/') => Tag::Close(name),
        Some(_) => Tag::Raw(name),
        None => Tag::Escaped(name),
    };
    if name.is_empty() {
        return Err(Error::EmptyTag(open));
    }
    Ok((tag, end))
}

fn render_nodes<'v>(nodes: &'v [Node], contexts: &mut Vec<&'v Value>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Escaped(name) => {
                if let Some(value) = lookup(contexts, name) {
                    escape_into(&display(value), out);
                }
            }
            Node::Raw(name) => {
                if let Some(value) = lookup(contexts, name) {
                    out.push_str(&display(value));
                }
            }
            Node::Section { name, inverted, nodes } => {
                let value = lookup(contexts, name);
                match (inverted, value) {
                    (true, value) => {
                        if !value.is_some_and(truthy) {
                            render_nodes(nodes, contexts, out);
                        }
                    }
                    (false, Some(Value::Array(items))) => {
                        for item in items {
                            contexts.push(item);
                            render_nodes(nodes, contexts, out);
                            contexts.pop();
                        }
                    }
                    (false, Some(value)) if truthy(value) => {
                        contexts.push(value);
                        render_nodes(nodes, contexts, out);
                        contexts.pop();
                    }
                    (false, _) => {}
                }
            }
        }
    }
}

/// JavaScript truthiness, with an empty list false as mustache.js treats it.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

/// mustache.js's lookup: `.` is the current context; otherwise each context from the innermost
/// is walked along the dotted name, and the first in which the last part exists wins.
fn lookup<'v>(contexts: &[&'v Value], name: &str) -> Option<&'v Value> {
    if name == "." {
        return contexts.last().copied();
    }
    for context in contexts.iter().rev() {
        let mut current = Some(*context);
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            let object = current.and_then(Value::as_object);
            if parts.peek().is_none() {
                if let Some(found) = object.and_then(|object| object.get(part)) {
                    return Some(found);
                }
                break;
            }
            current = object.and_then(|object| object.get(part));
        }
    }
    None
}

/// A value as JavaScript's `String(value)` writes it; `null` is empty, as in mustache.js.
fn display(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        Value::Object(_) => "[object Object]".to_string(),
    }
}

/// mustache.js's escaping: eight characters.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '/' => out.push_str("&#x2F;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            c => out.push(c),
        }
    }
}
