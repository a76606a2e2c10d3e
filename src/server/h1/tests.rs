use super::*;

#[test]
fn placeholder_compiles() {
    assert!(has_token(b"keep-alive, Close", b"close"));
}

#[test]
fn sizes() {
    eprintln!("CompressionBody {}", std::mem::size_of::<tower_http::compression::CompressionBody<Body>>());
    eprintln!("Response<Body> {}", std::mem::size_of::<Response<Body>>());
    eprintln!("Request<Empty> {}", std::mem::size_of::<Request<Empty<Bytes>>>());
}
