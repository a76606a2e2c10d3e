//! `localDir` routes: files streamed from disk with ETag/Last-Modified, conditional requests,
//! single byte ranges (`range`), `index.html` for folders, traversal refused, GET/HEAD only;
//! templates rendered for `replace` (`replace`, `template`).

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use futures_util::TryStreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::StreamBody;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::body::{self, Body};
use range::Plan;
pub use replace::Replace;

mod range;
mod replace;
pub mod template;

/// The read size when streaming a file.
const CHUNK: u64 = 64 * 1024;

/// Why a file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("file not found")]
    NotFound,
    #[error("only GET and HEAD are allowed on static files")]
    MethodNotAllowed,
    #[error("path leaves the folder")]
    Forbidden,
    /// `If-Match` or `If-Unmodified-Since` does not hold for the file.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The one range asked for starts beyond the end of the file (`length` bytes).
    #[error("range not satisfiable")]
    RangeNotSatisfiable { length: u64 },
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    /// A `replace` template that does not parse.
    #[error("template {} cannot be rendered", file.display())]
    Template {
        file: PathBuf,
        #[source]
        source: template::Error,
    },
}

/// A static file request.
pub struct StaticRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The folder of the route.
    pub dir: &'a Path,
    /// Path (and query) after the `target` rewrite, relative to `dir`.
    pub url: &'a str,
    /// The path the client asked for, for the trailing-slash redirect of folders.
    pub original_path: &'a str,
    pub cache_control: Option<&'a HeaderValue>,
    /// The route's `replace`: files it names are rendered templates.
    pub replace: Option<&'a Replace>,
}

/// Serves one file.
///
/// # Errors
/// [`Error::NotFound`], [`Error::MethodNotAllowed`], [`Error::Forbidden`],
/// [`Error::RangeNotSatisfiable`] or [`Error::Io`].
pub async fn serve(request: StaticRequest<'_>) -> Result<Response<Body>, Error> {
    if request.method != Method::GET && request.method != Method::HEAD {
        return Err(Error::MethodNotAllowed);
    }
    let path = request.url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Error::NotFound)?;
    let mut file_path = resolve(request.dir, &decoded)?;
    let mut metadata = tokio::fs::metadata(&file_path).await.map_err(not_found)?;
    let folder = metadata.is_dir();
    if folder {
        if !request.original_path.ends_with('/') {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            // One leading slash only: `//host/` would be a protocol-relative redirect to another site.
            let location = format!("/{}/", request.original_path.trim_start_matches('/'));
            let value = HeaderValue::from_str(&location).map_err(|_| Error::NotFound)?;
            response.headers_mut().insert(header::LOCATION, value);
            return Ok(response);
        }
        file_path.push("index.html");
        metadata = tokio::fs::metadata(&file_path).await.map_err(not_found)?;
        if !metadata.is_file() {
            return Err(Error::NotFound);
        }
    }
    let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let length = metadata.len();
    if let Some(replace) = request.replace {
        // The URL's path as the reference sees it: with a leading `/`, `index.html` for a folder.
        let pathname = format!(
            "{}{}{}",
            if decoded.starts_with('/') { "" } else { "/" },
            decoded,
            if folder { "index.html" } else { "" }
        );
        if replace.applies(&pathname) {
            return Box::pin(replace.serve(
                request.method,
                request.headers,
                &file_path,
                length,
                modified,
                request.cache_control,
            ))
            .await;
        }
    }
    let etag = etag(length, modified);

    // As serve-static: a failed precondition first (RFC 9110 §13.2.2), then freshness.
    if precondition_failed(request.headers, &etag, modified) {
        return Err(Error::PreconditionFailed);
    }
    let mut response = if not_modified(request.headers, &etag, modified) {
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        // Only here: a 304 wins over Range, and folder redirects never get this far.
        match range::plan(request.headers, length, &etag, modified) {
            Plan::Full => file_response(request.method, &file_path, 0, length).await?,
            Plan::Part { start, end } => {
                let mut response = file_response(request.method, &file_path, start, end - start + 1).await?;
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let content_range = format!("bytes {start}-{end}/{length}");
                if let Ok(value) = HeaderValue::from_str(&content_range) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                response
            }
            Plan::Unsatisfiable => return Err(Error::RangeNotSatisfiable { length }),
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(value) = content_type(&file_path) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        request
            .cache_control
            .cloned()
            .unwrap_or(HeaderValue::from_static("public, max-age=0")),
    );
    Ok(response)
}

/// `count` bytes of the file from `start` with their `Content-Length`; no body for HEAD. Only those
/// bytes are read, whatever the size of the file.
async fn file_response(method: &Method, path: &Path, start: u64, count: u64) -> Result<Response<Body>, Error> {
    let mut response = if method == Method::HEAD {
        Response::new(body::empty())
    } else {
        let mut file = tokio::fs::File::open(path).await.map_err(not_found)?;
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        // `take` also keeps a file that grew since its metadata was read within `Content-Length`.
        let capacity = usize::try_from(count.clamp(1, CHUNK)).unwrap_or(1);
        let stream = ReaderStream::with_capacity(file.take(count), capacity).map_ok(http_body::Frame::data);
        Response::new(body::boxed(StreamBody::new(stream)))
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    Ok(response)
}

fn not_found(error: std::io::Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Error::NotFound,
        std::io::ErrorKind::PermissionDenied => Error::Forbidden,
        _ => Error::Io(error),
    }
}

/// Joins a decoded URL path onto `dir`, refusing anything that would leave it.
fn resolve(dir: &Path, decoded: &str) -> Result<PathBuf, Error> {
    let mut full = dir.to_path_buf();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => full.push(part),
            Component::CurDir => {}
            _ => return Err(Error::Forbidden),
        }
    }
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(Error::Forbidden);
    }
    Ok(full)
}

/// A weak validator from size and modification time, like serve-static's.
fn etag(length: u64, modified: SystemTime) -> String {
    let millis = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("W/\"{length:x}-{millis:x}\"")
}

/// `If-Match` (any listed tag, or `*`), else `If-Unmodified-Since` (the file not changed after it),
/// does not hold. Tags compare weakly, as serve-static's do (its validators, like these, are weak);
/// dates to the second. An `If-Unmodified-Since` that is not a date is ignored (RFC 9110 §13.1.4).
fn precondition_failed(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    let mut if_match = headers.get_all(header::IF_MATCH).iter().peekable();
    if if_match.peek().is_some() {
        let held = if_match.any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .any(|tag| tag == "*" || weakly_equal(tag, etag))
            })
        });
        return !held;
    }
    if let Some(since) = headers
        .get(header::IF_UNMODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        return unix_secs(modified) > unix_secs(since);
    }
    false
}

/// The weak comparison of entity tags (RFC 9110 §8.8.3.2): equal once any `W/` is set aside.
fn weakly_equal(tag: &str, etag: &str) -> bool {
    tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return value.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || weakly_equal(tag, etag)
        });
    }
    if let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        return unix_secs(modified) <= unix_secs(since);
    }
    false
}

fn content_type(path: &Path) -> Option<HeaderValue> {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = if mime.type_() == mime_guess::mime::TEXT
        || mime.essence_str() == "application/javascript"
        || mime.essence_str() == "application/json"
    {
        format!("{}; charset=UTF-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    HeaderValue::from_str(&text).ok()
}
