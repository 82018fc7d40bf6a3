//! Unzer's webhooks: `{event, publicKey, retrieveUrl, paymentId?}` posted as JSON
//! (docs.unzer.com "Notifications"; php-sdk `Webhook` resource). The docs promise no
//! `Content-Type`, so none is required: the body is parsed as JSON whatever the header says. They are not signed, so a
//! body is accepted only for a public key of a configured Unzer method, and nothing in it is
//! trusted beyond naming which payment to re-fetch: `retrieveUrl` is never fetched, the worker
//! reads the payment from the configured API host with that account's private key.

use crate::config::{Config, PspKind};
use crate::psp::webhook::{
    IncomingWebhook, PspEvent, WebhookError, identity, valid_event, valid_id,
};
use serde::Deserialize;

/// The body's fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    event: String,
    public_key: String,
    retrieve_url: String,
    #[serde(default)]
    payment_id: Option<String>,
}

/// Unzer's [`IncomingWebhook`].
pub struct UnzerWebhook;

fn malformed(why: impl std::fmt::Display) -> WebhookError {
    WebhookError::Malformed(format!("body is not a valid Unzer webhook: {why}"))
}

impl IncomingWebhook for UnzerWebhook {
    fn verify(&self, config: &Config, body: &[u8]) -> Result<PspEvent, WebhookError> {
        let hook: Body = serde_json::from_slice(body).map_err(malformed)?;
        if !config.has_public_key(PspKind::Unzer, &hook.public_key) {
            return Err(WebhookError::UnknownAccount("public key"));
        }
        if !valid_event(&hook.event) {
            return Err(malformed("bad event name"));
        }
        // The payment id comes from `paymentId`, else from the last `/payments/{id}` segment.
        let payment_id = hook
            .payment_id
            .clone()
            .or_else(|| {
                let mut segs = hook.retrieve_url.split('/');
                segs.by_ref().find(|s| *s == "payments");
                segs.next().map(str::to_string)
            })
            .filter(|id| valid_id(id))
            .ok_or_else(|| malformed("no valid payment id"))?;
        // One identity per (account, payment): the event is only a signal to read the payment
        // again, so the event name and `retrieveUrl` (which anyone can vary) do not make a new
        // stored event; a repeat is a signal to look again (Unzer also sends identical bodies
        // for distinct happenings, such as a second partial transfer).
        let identity = identity(&[&hook.public_key, &payment_id]);
        Ok(PspEvent {
            reference: None,
            event: hook.event,
            payment_id,
            account: hook.public_key,
            identity,
        })
    }
}
