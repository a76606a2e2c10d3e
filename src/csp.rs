//! `Content-Security-Policy` values: how a configured policy and a backend's are combined
//! (`MERGE_CSP_HEADERS`).

use http::HeaderValue;

/// One header value that enforces every policy of `values`: their distinct non-empty values
/// joined by `", "`, which is a list of policies (CSP Level 3, "serialized CSP list"), each
/// enforced on its own; a resource must pass them all. `None` when no value is left.
///
/// A union of the directives would loosen the stricter policy; a list never does.
pub fn merge<'v>(values: impl IntoIterator<Item = &'v HeaderValue>) -> Option<HeaderValue> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for value in values {
        let policy = value.as_bytes().trim_ascii();
        if !policy.is_empty() && !kept.contains(&policy) {
            kept.push(policy);
        }
    }
    match kept.as_slice() {
        [] => None,
        [one] => HeaderValue::from_bytes(one).ok(),
        several => HeaderValue::from_bytes(&several.join(&b", "[..])).ok(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::merge;

    #[test]
    fn policies_are_kept_side_by_side_once_each() {
        let backend = HeaderValue::from_static("default-src 'self'");
        let local = HeaderValue::from_static(" frame-ancestors 'none' ");
        assert_eq!(
            merge([&backend, &local]),
            Some(HeaderValue::from_static("default-src 'self', frame-ancestors 'none'"))
        );
        assert_eq!(merge([&backend, &backend]), Some(backend.clone()));
        assert_eq!(merge([&HeaderValue::from_static("")]), None);
    }
}
