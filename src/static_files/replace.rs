//! `replace` on a `localDir` route: files whose path ends with a listed suffix are rendered as
//! Mustache templates (`template`) over a view built at start-up, once per file version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value};

use super::template::Template;
use super::Error;
use crate::body::{self, Body};

/// Rendered bytes kept per route; past it the cache starts over (a folder rarely holds more).
const MAX_CACHED_BYTES: usize = 32 * 1024 * 1024;
/// A template file larger than this is refused (500, logged): it would be read and rendered
/// whole, and kept.
pub const MAX_TEMPLATE_BYTES: u64 = 4 * 1024 * 1024;

/// A route's `replace`: which files are templates, and what they are rendered with.
pub struct Replace {
    /// `pathSuffixes`: a file is rendered when its URL path ends with one of them.
    suffixes: Vec<String>,
    /// `vars` and `services` resolved at start-up.
    view: Value,
    /// Rendered files by path, each with the version (length, modification time) it was made from.
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    files: HashMap<PathBuf, Arc<Rendered>>,
    /// Rendered bytes in `files`.
    bytes: usize,
}

impl std::fmt::Debug for Replace {
    // The view holds service credentials: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replace")
            .field("suffixes", &self.suffixes)
            .finish_non_exhaustive()
    }
}

/// One version of a file, rendered.
struct Rendered {
    length: u64,
    modified: SystemTime,
    body: Bytes,
    etag: HeaderValue,
}

impl Replace {
    /// `pathSuffixes` and the view (`vars` by name, `services` by alias).
    pub fn new(suffixes: Vec<String>, view: Map<String, Value>) -> Replace {
        Replace {
            suffixes,
            view: Value::Object(view),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// True when the file at URL path `pathname` is a template: as the reference, a plain
    /// "ends with", so `some.html` also takes `awesome.html`.
    pub fn applies(&self, pathname: &str) -> bool {
        self.suffixes.iter().any(|suffix| pathname.ends_with(suffix.as_str()))
    }

    /// The rendered file: from the cache when its version is unchanged.
    async fn rendered(&self, path: &Path, length: u64, modified: SystemTime) -> Result<Arc<Rendered>, Error> {
        if let Some(found) = self.cached(path) {
            if found.length == length && found.modified == modified {
                return Ok(found);
            }
        }
        if length > MAX_TEMPLATE_BYTES {
            return Err(Error::Template {
                file: path.to_path_buf(),
                source: super::template::Error::TooLarge(length),
            });
        }
        let bytes = tokio::fs::read(path).await.map_err(super::not_found)?;
        let text = String::from_utf8_lossy(&bytes);
        let template = Template::parse(&text).map_err(|source| Error::Template {
            file: path.to_path_buf(),
            source,
        })?;
        let body = Bytes::from(template.render(&self.view));
        let rendered = Arc::new(Rendered {
            length,
            modified,
            etag: etag(&body),
            body,
        });
        if let Ok(mut cache) = self.cache.lock() {
            if let Some(old) = cache.files.remove(path) {
                cache.bytes -= old.body.len();
            }
            if cache.bytes + rendered.body.len() > MAX_CACHED_BYTES {
                *cache = Cache::default();
            }
            if rendered.body.len() <= MAX_CACHED_BYTES {
                cache.bytes += rendered.body.len();
                cache.files.insert(path.to_path_buf(), rendered.clone());
            }
        }
        Ok(rendered)
    }

    fn cached(&self, path: &Path) -> Option<Arc<Rendered>> {
        self.cache.lock().ok()?.files.get(path).cloned()
    }

    /// Answers a GET or HEAD of the template at `path` (`length` bytes, modified at `modified`).
    ///
    /// # Errors
    /// [`Error::Template`] for a template that does not parse, [`Error::NotFound`] or
    /// [`Error::Io`] when it cannot be read.
    pub(super) async fn serve(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &Path,
        length: u64,
        modified: SystemTime,
        cache_control: Option<&HeaderValue>,
    ) -> Result<Response<Body>, Error> {
        let rendered = self.rendered(path, length, modified).await?;
        let mut response = if not_modified(headers, &rendered.etag) {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = match *method == Method::HEAD {
                true => Response::new(body::empty()),
                false => Response::new(body::full(rendered.body.clone())),
            };
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rendered.body.len()));
            headers.insert(header::CONTENT_TYPE, content_type(path));
            response
        };
        // No Last-Modified: the content also changes with the view, which the file's date
        // does not tell; the ETag follows the rendered bytes.
        let headers = response.headers_mut();
        headers.insert(header::ETAG, rendered.etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            cache_control
                .cloned()
                .unwrap_or(HeaderValue::from_static("public, max-age=0")),
        );
        Ok(response)
    }
}

/// A weak validator, as the other static files have, from a digest of the rendered bytes.
fn etag(body: &[u8]) -> HeaderValue {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let short = digest.as_ref().get(..16).unwrap_or(digest.as_ref());
    let tag = format!(
        "W/\"{:x}-{}\"",
        body.len(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(short)
    );
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || super::weakly_equal(tag, etag))
}

/// The reference's types for rendered files: by extension, `text/html` for any other.
fn content_type(path: &Path) -> HeaderValue {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    HeaderValue::from_static(match extension.to_ascii_lowercase().as_str() {
        "json" => "application/json; charset=UTF-8",
        "txt" => "text/plain; charset=UTF-8",
        "js" => "application/javascript; charset=UTF-8",
        "css" => "text/css; charset=UTF-8",
        _ => "text/html; charset=UTF-8",
    })
}
