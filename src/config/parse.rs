//! Deserialisation that reports every problem with its key path instead of stopping at the first.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::Error;

/// Deserialises `value` into `T`. On an error, the offending key is recorded with its full path and
/// removed, and deserialisation is tried again, so one pass reports every unknown key and wrong type.
/// Returns `None` when the value could not be made valid (a required key is missing, for example).
pub fn parse_all<T: DeserializeOwned>(mut value: Value, prefix: &str, errors: &mut Error) -> Option<T> {
    // Each round removes one offending key, so the bound only guards against a loop on odd input.
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => return Some(parsed),
            Err(error) => {
                let segments = segments(error.path());
                let path = join(prefix, &segments);
                errors.push(path, friendly(&error.inner().to_string()));
                if segments.is_empty() || !remove(&mut value, &segments) {
                    return None;
                }
            }
        }
    }
    None
}

enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|segment| match segment {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

/// Joins a prefix and segments into `prefix.key[0].other`.
pub fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else if key.starts_with('[') || prefix.ends_with(' ') {
        format!("{prefix}{key}")
    } else {
        format!("{prefix}.{key}")
    }
}

fn join(prefix: &str, segments: &[Segment]) -> String {
    let mut path = prefix.to_string();
    for segment in segments {
        match segment {
            Segment::Key(key) => path = join_path(&path, key),
            Segment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        "(top level)".to_string()
    } else {
        path
    }
}

fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        current = match (segment, current) {
            (Segment::Key(key), Value::Object(map)) => match map.get_mut(key) {
                Some(next) => next,
                None => return false,
            },
            (Segment::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, current) {
        (Segment::Key(key), Value::Object(map)) => map.remove(key).is_some(),
        // Replacing keeps the indexes of later items, so their paths stay right.
        (Segment::Index(index), Value::Array(items)) if *index < items.len() => {
            items[*index] = Value::Null;
            false
        }
        _ => false,
    }
}

/// Turns serde's wording into ours where it is unhelpful.
fn friendly(message: &str) -> String {
    if message.contains("untagged enum Source") {
        return "must be a regular expression string or an object {\"path\", \"matchCase\"}".into();
    }
    if message.contains("untagged enum Scope") {
        return "must be a string, a list of strings, or an object of HTTP methods and \"default\"".into();
    }
    if message.contains("untagged enum OneOrMany") {
        return "must be a value or a list of values".into();
    }
    if message.contains("untagged enum PortValue") {
        return "must be a port number".into();
    }
    message.to_string()
}
