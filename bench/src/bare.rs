//! The baseline: a bare axum server answering `/health/live` with the same bytes as opsdoctor,
//! with no middleware, state or logging.

use axum::http::header;
use axum::routing::get;
use axum::Router;

pub async fn serve() {
    let app = Router::new().route(
        "/health/live",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                r#"{"status":"pass"}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    eprintln!(
        "{}",
        serde_json::json!({ "addr": listener.local_addr().expect("addr").to_string() })
    );
    axum::serve(listener, app).await.expect("serve");
}
