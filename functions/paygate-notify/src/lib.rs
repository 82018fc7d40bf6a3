//! `paygate-notify`: the Lambda function behind the HTTP API route `POST /webhooks/paygate`,
//! the URL given to Computop Paygate as `URLNotify`. It runs the one axum router of paybridge
//! ([`paybridge_core::http::router`]), the same one `paybridge serve` binds to a socket, so
//! both answer alike: the form-encoded notify (`MerchantID`, `Len`, `Data`) is decrypted and
//! its MAC checked against a configured Paygate account
//! ([`paybridge_core::psp::paygate::webhook::PaygateNotify`]); an authentic one is stored,
//! enqueued and answered 200 (`accepted`, or `duplicate` for a repeat); an unknown MerchantID or
//! a notify that does not decrypt and verify is 401, a malformed one 400, an oversize one 413.
//! Nothing in the body is trusted beyond naming the payment: the worker inquires it at Paygate.
//! Paygate sends a notify again on any non-2xx, for up to about 21 hours.
//!
//! `lambda_http` turns the API Gateway HTTP API (payload 2.0) event into an `http::Request`
//! (decoding the body where the HTTP API base64-encoded it) and the router's answer back
//! into the API Gateway response; [`handler`] is the step in between, a plain async function
//! tests call with a request built from an event.

use axum::Router;
use axum::response::Response;
use lambda_http::Request;
use lambda_http::tower::ServiceExt;
use std::convert::Infallible;

/// One HTTP request through the router.
pub async fn handler(router: Router, request: Request) -> Result<Response, Infallible> {
    router.oneshot(request).await
}
