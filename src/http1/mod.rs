//! The HTTP/1.1 codec shared by the server's fast lane (`server::h1`) and the inline upstream
//! client (`proxy::pool::inline`): head parsing and encoding, framing, and the chunked coding.
//! A leaf: it knows nothing of the router, only of the wire.

pub mod body;
pub mod common;

pub use body::{write_chunk_size, BodyReader, ChunkedDecoder, LAST_CHUNK};
pub use common::{
    content_length, content_length_list, has_token, response_has_no_body, status_has_no_body, tokens, Framing, Span,
    MAX_HEADERS,
};
