//! Paygate's notify (URLNotify, reference paygate.md §1.7): a form-encoded POST of `Len` and
//! `Data` (the docs show no plain `MerchantID`, [U]; paybridge takes one where it comes, and
//! otherwise tries each configured Paygate account), encrypted like every reply, with a MAC over
//! `PayID*TransID*mid*Status*Code`.
//!
//! A notify is accepted only when it decrypts with a configured account's key, its `mid` is that
//! account's MerchantID, and its MAC verifies with that account's HMAC password (constant
//! time). Nothing in it is trusted beyond naming the payment: the app stores the event before
//! Paygate gets its 2xx (a non-2xx makes Paygate send again, up to ~21 h), and the worker then
//! inquires the payment — amount, currency and PayID are checked against the order from the
//! inquire, never from the notify. A repeated notify is the same stored event (one per
//! account and payment), so Paygate's own re-sends and a replayed body change nothing.
//! Refused: no `Len`/`Data`, a `Len` or `Data` that does not fit (truncated), a body of another
//! key or a tampered one (it does not decrypt to a plaintext with a verifying MAC), an unknown
//! MerchantID, a `mid` other than the outer MerchantID, a PayID that is not a plain id.

use super::{Account, transformers};
use crate::config::{Config, PspKind, SecretRef};
use crate::psp::webhook::{IncomingWebhook, PspEvent, WebhookError, identity, valid_event};

/// The Paygate notify receiver of `POST /webhooks/paygate`.
pub struct PaygateNotify;

/// The largest notify body: `Data` of a few hundred plaintext bytes doubles in hex, plus plain
/// `Custom` values of up to 1,024 characters (§1.6).
const MAX_NOTIFY_BYTES: usize = 8 * 1024;

/// The longest plaintext a notify may declare.
const MAX_LEN: usize = 3 * 1024;

impl IncomingWebhook for PaygateNotify {
    fn max_body(&self) -> usize {
        MAX_NOTIFY_BYTES
    }

    fn verify(&self, config: &Config, body: &[u8]) -> Result<PspEvent, WebhookError> {
        if body.len() > MAX_NOTIFY_BYTES {
            return Err(WebhookError::TooLarge(body.len()));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| WebhookError::Malformed("the notify is not form-encoded text".into()))?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(text.trim().as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
        let one = |k: &str| -> Result<Option<&str>, WebhookError> {
            let mut it = form.iter().filter(|(n, _)| n == k);
            let first = it.next().map(|(_, v)| v.as_str());
            if it.next().is_some() {
                return Err(WebhookError::Malformed(format!("{k} appears twice")));
            }
            Ok(first)
        };
        let (Some(len), Some(data)) = (one("len")?, one("data")?) else {
            return Err(WebhookError::Malformed(
                "a Paygate notify has Len and Data".into(),
            ));
        };
        let len: usize = len
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0 && *n <= MAX_LEN)
            .ok_or_else(|| WebhookError::Malformed(format!("Len {len:?} is not a length")))?;
        let outer_mid = one("merchantid")?;
        let candidates = accounts(config, outer_mid)?;
        let mut last_error = String::from("no Paygate account is configured");
        for account in &candidates {
            match open(account, data, len) {
                Ok(event) => return Ok(event),
                Err(e) => last_error = e,
            }
        }
        Err(WebhookError::Unauthentic(last_error))
    }
}

/// The accounts a notify may be for: the outer MerchantID's, or every configured Paygate
/// account when the notify names none.
fn accounts(config: &Config, outer_mid: Option<&str>) -> Result<Vec<Account>, WebhookError> {
    let mut out: Vec<Account> = Vec::new();
    let resolve = |r: &SecretRef| r.resolve_local();
    for m in config
        .methods
        .iter()
        .filter(|m| m.active && m.psp == PspKind::Paygate)
    {
        if outer_mid.is_some_and(|mid| mid != m.account.public_key)
            || out.iter().any(|a| a.merchant_id == m.account.public_key)
        {
            continue;
        }
        match Account::for_method(m, &resolve) {
            Ok(a) => out.push(a),
            Err(e) => {
                tracing::warn!(merchant_id = %m.account.public_key, error = %e, "Paygate account unusable for notifies");
            }
        }
    }
    if out.is_empty() {
        return Err(WebhookError::UnknownAccount("MerchantID"));
    }
    Ok(out)
}

/// The event of a notify opened and authenticated with `account`, or why it is not one.
fn open(account: &Account, data: &str, len: usize) -> Result<PspEvent, String> {
    let plain = super::envelope::open(account.cipher_key(), data, len)
        .map_err(|e| format!("the notify does not decrypt with the account's key: {e}"))?;
    let pairs = super::envelope::pairs(&plain);
    let get = |k: &str| super::envelope::field(&pairs, k).unwrap_or("");
    let (pay_id, trans_id, mid) = (get("PayID"), get("TransID"), get("mid"));
    let (status, code, mac) = (get("Status"), get("Code"), get("MAC"));
    if mac.is_empty() {
        return Err("the notify carries no MAC".into());
    }
    let message = super::envelope::response_mac_message(pay_id, trans_id, mid, status, code);
    if !super::envelope::mac_matches(account.mac_key(), &message, mac) {
        return Err("the notify's MAC does not verify".into());
    }
    if mid != account.merchant_id {
        return Err(format!(
            "the notify is for MerchantID {mid:?}, not {}",
            account.merchant_id
        ));
    }
    if !transformers::valid_pay_id(pay_id) {
        return Err("the notify's PayID is not a Paygate PayID".into());
    }
    let event = format!("paygate.{}", status.to_ascii_lowercase());
    let event = if valid_event(&event) {
        event
    } else {
        "paygate.notify".into()
    };
    Ok(PspEvent {
        reference: crate::psp::webhook::valid_id(trans_id).then(|| trans_id.to_string()),
        event,
        payment_id: pay_id.to_string(),
        account: account.merchant_id.clone(),
        identity: identity(&[&account.merchant_id, pay_id]),
    })
}
