//! `unzer-webhook`: the Lambda function behind the HTTP API (`POST /webhooks/unzer`,
//! `GET /health`). It runs the one axum router of paybridge ([`paybridge_core::http::router`]),
//! the same one `paybridge serve` binds to a socket, so both answer alike: a webhook with a
//! known public key is stored, enqueued and answered 200; an unknown key is 401; nothing in
//! the body is fetched or trusted (architecture.md §6).
//!
//! `lambda_http` turns the API Gateway HTTP API (payload 2.0) event into an `http::Request`
//! and the router's answer back into the API Gateway response; [`handler`] is the step in
//! between, a plain async function tests call with a request built from a fixture.

use axum::Router;
use axum::response::Response;
use lambda_http::Request;
use lambda_http::tower::ServiceExt;
use std::convert::Infallible;

/// One HTTP request through the router.
pub async fn handler(router: Router, request: Request) -> Result<Response, Infallible> {
    router.oneshot(request).await
}
