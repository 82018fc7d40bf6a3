//! Notifications: to an operator, one message per new problem of an order ([`Notifier::notify`]);
//! to a customer, a payment link ([`Notifier::payment_link`], behaviour.md §3.6).
//!
//! Connectors: [`email::EmailNotifier`] (the tenant's SMTP settings; both kinds of mail),
//! [`recording::RecordingNotifier`] (a fake that records both), and [`LogNotifier`] (problems to
//! the log when no SMTP is configured). A notifier without mail keeps the default
//! [`Notifier::payment_link`], which refuses: a link that nobody sent must not look sent.

#[cfg(feature = "email")]
pub mod email;
pub mod recording;

use async_trait::async_trait;

/// A problem to tell an operator about. Never carries secrets or card data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tenant: String,
    pub order_id: String,
    pub code: String,
    /// What failed.
    pub message: String,
    /// What to do about it.
    pub action: String,
}

/// A payment link for a customer (behaviour.md §3.6). Carries no secret; the link itself is the customer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLinkMail {
    pub to: String,
    pub shop: String,
    pub order_id: String,
    pub shop_order_no: String,
    pub amount: crate::money::Money,
    pub url: String,
    pub resent: bool,
}

/// The longest address paybridge sends to (RFC 5321 §4.5.3.1.3: a path is at most 256 octets
/// including the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// `raw` (surrounding blanks trimmed) when it is one plain e-mail address: exactly one `@` with
/// text on both sides, no blanks or control characters (no line break can smuggle in a header),
/// none of `,;<>"()` (no list, no display name, no comment) and at most [`MAX_EMAIL_LEN`]
/// characters. Otherwise why not, without the value (an address is personal data and stays out
/// of the logs). ERP connectors answer `None` with a warning for a refused address (they never fail
/// the order for it); [`email::EmailNotifier`] refuses to send to it.
pub fn plain_email_address(raw: &str) -> Result<&str, &'static str> {
    let a = raw.trim();
    if a.is_empty() {
        return Err("empty");
    }
    if a.chars().count() > MAX_EMAIL_LEN {
        return Err("longer than 254 characters");
    }
    if a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains a blank or a control character");
    }
    if a.chars()
        .any(|c| matches!(c, ',' | ';' | '<' | '>' | '"' | '(' | ')'))
    {
        return Err("not a single plain address (contains one of , ; < > \" ( ))");
    }
    match a.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(a)
        }
        _ => Err("not exactly one @ between a local part and a domain"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(pub String);

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, problem: &Problem) -> Result<(), NotifyError>;

    /// Sends `mail`'s payment link to the customer at `mail.to`. The default refuses: a notifier
    /// that cannot send e-mail must not pretend it did.
    async fn payment_link(&self, mail: &PaymentLinkMail) -> Result<(), NotifyError> {
        let _ = mail;
        Err(NotifyError(
            "no e-mail is configured: payment links cannot be sent".into(),
        ))
    }
}

/// Writes problems to the log (the default when no SMTP is configured). Payment links are
/// refused (the default of [`Notifier::payment_link`]).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, p: &Problem) -> Result<(), NotifyError> {
        tracing::warn!(tenant = %p.tenant, order = %p.order_id, code = %p.code, message = %p.message, action = %p.action, "order problem");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    pub(crate) fn link_mail() -> PaymentLinkMail {
        PaymentLinkMail {
            to: "kunde@example.de".into(),
            shop: "Acme Shop".into(),
            order_id: "1001".into(),
            shop_order_no: "S-1001".into(),
            amount: Money::parse("123.45", Currency::EUR).expect("amount"),
            url: "https://www.computop-paygate.com/payssl.aspx?MerchantID=acme&Len=16&Data=AB12"
                .into(),
            resent: false,
        }
    }

    #[test]
    fn plain_email_address_takes_one_plain_address_only() {
        assert_eq!(
            plain_email_address("  kunde@example.de "),
            Ok("kunde@example.de")
        );
        assert_eq!(
            plain_email_address("a.b+c@sub.example.com"),
            Ok("a.b+c@sub.example.com")
        );
        let long_ok = format!("{}@example.de", "a".repeat(MAX_EMAIL_LEN - 11));
        assert_eq!(plain_email_address(&long_ok), Ok(long_ok.as_str()));
        for bad in [
            "",
            "   ",
            "kunde.example.de",
            "a@b@example.de",
            "@example.de",
            "kunde@",
            "kun de@example.de",
            "kunde@example.de\r\nBcc: x@evil.example",
            "kunde@example.de\u{0}",
            "a@example.de, b@example.de",
            "Kunde <kunde@example.de>",
            "\"k\"@example.de",
        ] {
            assert!(plain_email_address(bad).is_err(), "{bad:?} accepted");
        }
        let too_long = format!("{}@example.de", "a".repeat(MAX_EMAIL_LEN - 10));
        assert_eq!(
            plain_email_address(&too_long),
            Err("longer than 254 characters")
        );
    }

    #[tokio::test]
    async fn log_notifier_refuses_payment_links() {
        let e = LogNotifier
            .payment_link(&link_mail())
            .await
            .expect_err("no mail configured");
        assert_eq!(
            e,
            NotifyError("no e-mail is configured: payment links cannot be sent".into())
        );
    }

    #[tokio::test]
    async fn recording_notifier_records_payment_links() {
        let r = recording::RecordingNotifier::default();
        r.payment_link(&link_mail()).await.expect("recorded");
        assert_eq!(r.payment_links(), [link_mail()]);
        assert!(r.sent().is_empty(), "not a problem");
        r.set_down(true);
        assert!(r.payment_link(&link_mail()).await.is_err());
        assert_eq!(r.payment_links().len(), 1, "nothing recorded while down");
    }
}
