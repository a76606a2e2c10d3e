use super::*;

#[test]
fn placeholder_compiles() {
    assert!(has_token(b"keep-alive, Close", b"close"));
}
