//! Response builders shared by the fakes: exact bodies with exact (or deliberately absent)
//! content types, and JSON string quoting for values echoed into hand-written bodies.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;

pub(crate) const JSON: &str = "application/json";
pub(crate) const HTML: &str = "text/html; charset=UTF-8";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// A status from a mode's number; a number HTTP cannot carry is a bug in the test.
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code)
        .unwrap_or_else(|_| panic!("testkit: {code} is not an HTTP status code (100..=999)"))
}

/// `body` with the given status and content type (`None`: no Content-Type header at all).
pub(crate) fn with(
    status: StatusCode,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Response {
    let mut builder = Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder
        .body(body.into())
        .expect("testkit: a response from a valid status and content type")
}

/// A JSON body, written out by hand so that key order matches the real service.
pub(crate) fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    with(status, Some(JSON), body)
}

/// An HTML body.
pub(crate) fn html(status: StatusCode, body: impl Into<Body>) -> Response {
    with(status, Some(HTML), body)
}

/// Adds a header to a built response.
pub(crate) fn header(mut response: Response, name: &'static str, value: &str) -> Response {
    let value = value
        .parse()
        .expect("testkit: header values the fakes set are visible ASCII");
    response
        .headers_mut()
        .insert(HeaderName::from_static(name), value);
    response
}

/// `s` as a JSON string literal, quotes and escapes included, for echoing client input.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A bare proxy error page such as a load balancer in front of an API returns.
pub(crate) fn proxy_error_page(status: StatusCode) -> String {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    )
}
