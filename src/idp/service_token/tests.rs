use super::*;

#[test]
fn token_answers_are_checked() {
    let token = parse_token(br#"{"access_token":"a","token_type":"bearer","expires_in":3600}"#, 1000).expect("token");
    assert_eq!(&*token.access_token, "a");
    assert_eq!(token.expires_in, Duration::from_secs(3600));
    assert_eq!(token.seconds_left(1000), 3600 - 60);
    let token = parse_token(br#"{"access_token":"a","expires_in":"40"}"#, 0).expect("string expires_in");
    assert_eq!(token.seconds_left(0), 20, "a short token is renewed at half its life");

    let rows: &[(&[u8], &str)] = &[
        (br#"{"expires_in":3600}"#, "no access_token"),
        (br#"{"access_token":"","expires_in":3600}"#, "no access_token"),
        (br#"{"access_token":"a"}"#, "no expires_in"),
        (br#"{"access_token":"a","expires_in":"soon"}"#, "no expires_in"),
        (br#"{"access_token":"a","expires_in":-1}"#, "no expires_in"),
        (b"<html>", "not valid JSON"),
        (b"[]", "not valid JSON"),
    ];
    for (body, expected) in rows {
        let error = parse_token(body, 0).expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
