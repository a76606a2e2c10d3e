//! Property tests of the session id's text form: only the ids it writes parse, and every id reads back.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_session_id_parses_only_from_its_own_spelling(text in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[A-Za-z0-9_-]{42,44}".prop_map(String::into_bytes),
    ]) {
        if let Some(id) = SessionId::parse(&text) {
            prop_assert_eq!(id.to_cookie_value().into_bytes(), text);
        }
    }

    #[test]
    fn every_session_id_reads_back(bytes in any::<[u8; 32]>()) {
        let value = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let id = SessionId::parse(value.as_bytes());
        prop_assert_eq!(id.map(|id| *id.as_bytes()), Some(bytes));
    }
}
