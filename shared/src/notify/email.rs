//! E-mails through the tenant's SMTP settings (lettre, rustls): error mails to the operator and
//! payment links to customers.
//!
//! [`EmailNotifier`] is built once from the `[smtp]` config section and sends **one plain-text
//! mail per problem** it is asked to report: subject `[paybridge] order 1001 (acme): <what
//! failed>`, body with the order number, what failed, what to do and the problem code.
//! [`EmailNotifier::send_test`] sends a test mail so an operator can check the settings
//! (`paybridge mail-test`).
//!
//! A **payment link** ([`Notifier::payment_link`], behaviour.md §3.6) goes to the customer's
//! address only (`mail.to`, never the operators'), from the configured `from`: subject
//! `Payment for your order 1001 at <shop>` (`Reminder: payment for …` when resent), a
//! `multipart/alternative` body with a plain-text and an HTML part (every value HTML-escaped
//! there) naming the shop, the order number, the shop's order number when there is one, the
//! amount with its currency (`123.45 EUR`), the link as a button and as text, and that it can
//! be used once ([`EmailNotifier::render_payment_link`]). The recipient must be one plain
//! address ([`super::plain_email_address`], then lettre's syntax check): a line break, a comma
//! or a display name is refused before anything is sent, so no header can be smuggled in. The
//! link must be an http(s) URL without blanks. Neither the URL nor the address is logged; a
//! sent link is logged at info with its tenant, order number and whether it was a reminder.
//!
//! Transport security:
//! - `starttls = true` (the default): the connection **must** be upgraded with STARTTLS before
//!   credentials or mail are sent; a server that does not offer it is an error, never a silent
//!   fallback to plain text. The certificate is verified against the public web PKI roots and the
//!   host name. On port 465 the connection is TLS from the first byte instead (SMTPS), since
//!   STARTTLS cannot work there.
//! - `starttls = false`: plain SMTP, for a trusted local relay only. Credentials are refused in
//!   that mode so a password never crosses the network unencrypted.
//! - [`EmailNotifier::with_tls_roots`] additionally trusts given PEM certificates (tests with a
//!   self-signed server certificate, or a relay with an internal CA). Certificate and host name are
//!   still verified; there is deliberately no "accept invalid certificates" switch.
//!
//! No secrets, no card data: every text that goes into an operator mail is scrubbed first. The
//! SMTP password, anything looking like an Unzer private key (`s-priv-…`, `p-priv-…`) and
//! anything looking like a card number (13–19 digits passing the Luhn check) is replaced by a
//! `[redacted …]` marker, and a warning is logged (without the value) so the leaking source can be
//! fixed. Send errors are scrubbed the same way. A payment-link mail carries structured fields,
//! not free text: only the SMTP password is removed from them (the patterns could match a digit
//! run of a link or an order number and break what the customer needs).
//!
//! The transport keeps a small connection pool whose housekeeping runs on Tokio: construct and
//! drop an [`EmailNotifier`] inside a Tokio runtime ([`EmailNotifier::new`] returns an error
//! instead of panicking when there is none).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notifier, NotifyError, PaymentLinkMail, Problem, plain_email_address};
use crate::config::{Secret, Smtp};

/// Timeout for the TCP connect (lettre's Tokio transport applies its timeout to connecting only).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default upper bound for delivering one mail, connect and all SMTP commands together: a server
/// that stops answering cannot hang a job. See [`EmailNotifier::with_send_timeout`].
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest "what failed" summary in a subject, in characters.
const SUBJECT_SUMMARY_CHARS: usize = 80;
/// The SMTPS port: TLS from the first byte, STARTTLS impossible.
const SMTPS_PORT: u16 = 465;
/// Known secrets shorter than this are not scrubbed by value (that would blank ordinary words);
/// they still never get into a mail because nothing puts them there.
const MIN_SCRUB_LEN: usize = 4;

const REDACTED_SECRET: &str = "[redacted secret]";
const REDACTED_KEY: &str = "[redacted Unzer private key]";
const REDACTED_CARD: &str = "[redacted card number]";

/// Why building or sending an e-mail failed. Converted into [`NotifyError`] at the API boundary;
/// never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// The `[smtp]` settings cannot be used; `field` names the setting (`smtp.password`, …).
    #[error("{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    /// The mail could not be assembled.
    #[error("cannot build the mail: {0}")]
    Compose(String),
    /// The SMTP server refused the mail or the connection failed.
    #[error("sending the mail through {server} failed: {message}")]
    Send { server: String, message: String },
    /// Delivery took longer than the send timeout ([`SEND_TIMEOUT`] by default).
    #[error("sending the mail through {server} timed out after {timeout:?}")]
    Timeout { server: String, timeout: Duration },
}

impl From<EmailError> for NotifyError {
    fn from(e: EmailError) -> Self {
        NotifyError(e.to_string())
    }
}

/// Sends operator e-mails through the tenant's SMTP server. Build once, share (`Arc`), reuse.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Tenant name used when a problem does not name one, and in the test mail.
    tenant: String,
    /// `host:port`, for messages.
    server: String,
    security: &'static str,
    send_timeout: Duration,
    /// Values scrubbed from every mail and error message (the SMTP password).
    secrets: Vec<Secret>,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("server", &self.server)
            .field("security", &self.security)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// Builds the notifier from the `[smtp]` settings: resolves the password reference (an error
    /// names `smtp.password`, never the value), parses `from`/`to` (`to` may list several
    /// addresses separated by commas) and sets up the transport (STARTTLS required when
    /// `starttls = true`, timeouts, credentials when `user` and `password` are set).
    ///
    /// `tenant` is the tenant id, shown in subjects. Must be called inside a Tokio runtime.
    pub fn new(smtp: &Smtp, tenant: impl Into<String>) -> Result<Self, NotifyError> {
        Ok(Self::build(smtp, tenant.into(), None)?)
    }

    /// Like [`EmailNotifier::new`], but additionally trusts the PEM certificate(s) in
    /// `pem_roots` when verifying the server certificate (a self-signed test server, a relay with
    /// an internal CA). Certificate chain and host name are still verified; the public roots stay
    /// trusted too. Has no effect with `starttls = false`.
    pub fn with_tls_roots(
        smtp: &Smtp,
        tenant: impl Into<String>,
        pem_roots: &[u8],
    ) -> Result<Self, NotifyError> {
        Ok(Self::build(smtp, tenant.into(), Some(pem_roots))?)
    }

    fn build(smtp: &Smtp, tenant: String, pem_roots: Option<&[u8]>) -> Result<Self, EmailError> {
        if smtp.host.trim().is_empty() {
            return Err(config_error("smtp.host", "must not be empty".into()));
        }
        let (from, to) = addresses(smtp)?;
        let (credentials, password) = credentials(smtp)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(config_error(
                "smtp",
                "the e-mail notifier must be created inside a Tokio runtime".into(),
            ));
        }
        let (tls, security) = tls(smtp, pem_roots)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.trim())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(CONNECT_TIMEOUT));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        Ok(EmailNotifier {
            transport: builder.build(),
            from,
            to,
            tenant,
            server: format!("{}:{}", smtp.host.trim(), smtp.port),
            security,
            send_timeout: SEND_TIMEOUT,
            secrets: password.into_iter().collect(),
        })
    }

    /// Replaces the overall delivery timeout ([`SEND_TIMEOUT`] by default).
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Sends a test mail ("paybridge test mail: your SMTP settings work") to the configured
    /// recipients. Used by `paybridge mail-test`.
    pub async fn send_test(&self) -> Result<(), NotifyError> {
        let tenant = self.scrub(&self.tenant);
        let subject = format!("[paybridge] test mail ({tenant}): your SMTP settings work");
        let body = format!(
            "paybridge test mail: your SMTP settings work.\n\
             \n\
             Tenant:     {tenant}\n\
             SMTP:       {server} ({security})\n\
             From:       {from}\n\
             \n\
             Error mails about orders of this tenant will arrive at this address.\n\
             {FOOTER}",
            server = self.server,
            security = self.security,
            from = self.from,
        );
        let message = self.compose(&subject, body)?;
        Ok(self.deliver(message).await?)
    }

    /// The subject and body of the mail for `problem`, scrubbed.
    pub fn render(&self, problem: &Problem) -> (String, String) {
        let tenant = if problem.tenant.trim().is_empty() {
            self.scrub(&self.tenant)
        } else {
            self.scrub(&problem.tenant)
        };
        let order = self.scrub(&problem.order_id);
        let code = self.scrub(&problem.code);
        let message = self.scrub(&problem.message);
        let action = self.scrub(&problem.action);

        let summary = summary(&message).unwrap_or_else(|| code.clone());
        let subject = one_line(&format!("[paybridge] order {order} ({tenant}): {summary}"));
        let body = format!(
            "paybridge needs your attention for order {order}.\n\
             \n\
             Order:        {order}\n\
             Tenant:       {tenant}\n\
             Problem code: {code}\n\
             \n\
             What failed:\n\
             {message}\n\
             \n\
             What to do:\n\
             {action}\n\
             \n\
             Once the problem is solved, mark it as solved on the paybridge dashboard.\n\
             {FOOTER}",
            message = or_dash(&message),
            action = or_dash(&action),
        );
        (subject, body)
    }

    fn compose(&self, subject: &str, body: String) -> Result<Message, EmailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(body)
            .map_err(|e| EmailError::Compose(e.to_string()))
    }

    async fn deliver(&self, message: Message) -> Result<(), EmailError> {
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(EmailError::Send {
                server: self.server.clone(),
                message: self.scrub(&e.to_string()),
            }),
            Err(_elapsed) => Err(EmailError::Timeout {
                server: self.server.clone(),
                timeout: self.send_timeout,
            }),
        }
    }

    /// [`scrub`] with this notifier's known secrets, logging (without values) when something was
    /// removed.
    fn scrub(&self, text: &str) -> String {
        let (clean, removed) = scrub(text, &self.secrets);
        if removed {
            tracing::warn!(
                "removed a secret or card number from an operator e-mail; find and fix the source \
                 that put it into a problem text"
            );
        }
        clean
    }
}

/// The subject and the two bodies of a payment-link mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLinkParts {
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part; every value in it is HTML-escaped.
    pub html: String,
}

impl EmailNotifier {
    /// The subject, plain-text and HTML bodies of the payment-link mail for `mail`. Refuses a
    /// mail without order number, shop or a positive amount, and a link that is not an http(s)
    /// URL or holds a blank or control character (the error never contains the link).
    pub fn render_payment_link(
        &self,
        mail: &PaymentLinkMail,
    ) -> Result<PaymentLinkParts, NotifyError> {
        Ok(self.payment_link_parts(mail)?)
    }

    fn payment_link_parts(&self, mail: &PaymentLinkMail) -> Result<PaymentLinkParts, EmailError> {
        let url = self.redact_secrets(&link_url(&mail.url)?);
        let shop = one_line(&self.redact_secrets(&mail.shop));
        let order = one_line(&self.redact_secrets(&mail.order_id));
        let shop_order = one_line(&self.redact_secrets(&mail.shop_order_no));
        if order.is_empty() {
            return Err(EmailError::Compose(
                "a payment link needs the order number".into(),
            ));
        }
        if shop.is_empty() {
            return Err(EmailError::Compose(
                "a payment link needs the shop's name".into(),
            ));
        }
        if !mail.amount.is_positive() {
            return Err(EmailError::Compose(
                "a payment link needs an amount above zero".into(),
            ));
        }
        let amount = mail.amount.to_string();
        let subject = if mail.resent {
            format!("Reminder: payment for your order {order} at {shop}")
        } else {
            format!("Payment for your order {order} at {shop}")
        };
        let subject = one_line(&subject);
        let opening = if mail.resent {
            format!(
                "this is a reminder: your order {order} at {shop} is still waiting for its payment."
            )
        } else {
            format!("please pay for your order {order} at {shop} with the link below.")
        };
        let shop_order_line = if shop_order.is_empty() {
            String::new()
        } else {
            format!("Shop order number: {shop_order}\n")
        };
        let text = format!(
            "Hello,\n\
             \n\
             {opening}\n\
             \n\
             Order number:      {order}\n\
             {shop_order_line}\
             Amount:            {amount}\n\
             \n\
             Pay here (the link can be used once):\n\
             {url}\n\
             \n\
             If you have paid already, please ignore this e-mail.\n\
             \n\
             -- \n\
             {shop} (sent by paybridge)\n"
        );
        let h = html_escape;
        let shop_order_row = if shop_order.is_empty() {
            String::new()
        } else {
            format!(
                "<tr><td style=\"{CELL}\">Shop order number</td><td>{}</td></tr>\n",
                h(&shop_order)
            )
        };
        let html = format!(
            "<!DOCTYPE html>\n\
             <html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
             <body style=\"font-family: Arial, Helvetica, sans-serif; color: #222222;\">\n\
             <p>Hello,</p>\n\
             <p>{opening}</p>\n\
             <table role=\"presentation\" style=\"border-collapse: collapse;\">\n\
             <tr><td style=\"{CELL}\">Order number</td><td><strong>{order}</strong></td></tr>\n\
             {shop_order_row}\
             <tr><td style=\"{CELL}\">Amount</td><td><strong>{amount}</strong></td></tr>\n\
             </table>\n\
             <p style=\"margin: 24px 0;\"><a href=\"{url}\" style=\"{BUTTON}\">Pay {amount} now</a></p>\n\
             <p>The link can be used once. If the button does not work, open this address in \
             your browser:<br>\n<a href=\"{url}\">{url}</a></p>\n\
             <p>If you have paid already, please ignore this e-mail.</p>\n\
             <p style=\"color: #777777; font-size: 12px;\">{shop} (sent by paybridge)</p>\n\
             </body></html>\n",
            title = h(&subject),
            opening = h(&opening),
            order = h(&order),
            amount = h(&amount),
            url = h(&url),
            shop = h(&shop),
        );
        Ok(PaymentLinkParts {
            subject,
            text,
            html,
        })
    }

    /// The whole payment-link message: from the configured sender to the customer only.
    fn payment_link_message(&self, mail: &PaymentLinkMail) -> Result<Message, EmailError> {
        let to = customer_mailbox(&mail.to)?;
        let parts = self.payment_link_parts(mail)?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(parts.subject)
            .multipart(MultiPart::alternative_plain_html(parts.text, parts.html))
            .map_err(|e| EmailError::Compose(e.to_string()))
    }

    /// `text` without the known secret values (the SMTP password), logging (without values)
    /// when one was there.
    fn redact_secrets(&self, text: &str) -> String {
        let (clean, removed) = redact_secrets(text, &self.secrets);
        if removed {
            tracing::warn!(
                "removed a secret from a payment-link e-mail; find and fix the source that put it \
                 there"
            );
        }
        clean
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    /// Sends exactly one mail for `problem` (to all configured recipients at once).
    async fn notify(&self, problem: &Problem) -> Result<(), NotifyError> {
        let (subject, body) = self.render(problem);
        let message = self.compose(&subject, body)?;
        Ok(self.deliver(message).await?)
    }

    /// Sends one payment-link mail to `mail.to` (only). Nothing is sent when the address or the
    /// link is refused.
    async fn payment_link(&self, mail: &PaymentLinkMail) -> Result<(), NotifyError> {
        let message = self.payment_link_message(mail)?;
        self.deliver(message).await?;
        tracing::info!(
            tenant = %self.tenant,
            order = %mail.order_id,
            resent = mail.resent,
            "payment link e-mail sent"
        );
        Ok(())
    }
}

/// Table label cells of the payment-link mail.
const CELL: &str = "padding: 2px 16px 2px 0; color: #555555;";
/// The payment-link button.
const BUTTON: &str = "display: inline-block; padding: 12px 24px; background: #1a5fb4; \
                      color: #ffffff; text-decoration: none; border-radius: 4px; font-weight: bold;";

/// Text made safe for HTML content and quoted attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The customer's mailbox (address only, no display name), when `to` is one plain address
/// that lettre accepts. The error says why, never the address.
fn customer_mailbox(to: &str) -> Result<Mailbox, EmailError> {
    let refused =
        |why: &str| EmailError::Compose(format!("the customer's e-mail address is refused: {why}"));
    if to.contains(['\r', '\n']) {
        return Err(refused("it contains a line break"));
    }
    let plain = plain_email_address(to).map_err(refused)?;
    let address: Address = plain.parse().map_err(|e| refused(&format!("{e}")))?;
    Ok(Mailbox::new(None, address))
}

/// The payment link (trimmed), when it is an http(s) URL without blanks or control characters.
/// The error never contains the link.
fn link_url(url: &str) -> Result<String, EmailError> {
    let refused = |why: &str| EmailError::Compose(format!("the payment link is refused: {why}"));
    let u = url.trim();
    if u.is_empty() {
        return Err(refused("empty"));
    }
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refused("it contains a blank or a control character"));
    }
    let parsed = url::Url::parse(u).map_err(|_| refused("not a URL"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(refused("not an http(s) URL"));
    }
    Ok(u.to_string())
}

const FOOTER: &str =
    "\n-- \nSent by paybridge. This mail never contains passwords, keys or card data.\n";

fn or_dash(s: &str) -> &str {
    if s.trim().is_empty() { "-" } else { s }
}

/// The first non-empty line of `message`, shortened for a subject.
fn summary(message: &str) -> Option<String> {
    let line = message.lines().map(str::trim).find(|l| !l.is_empty())?;
    if line.chars().count() <= SUBJECT_SUMMARY_CHARS {
        Some(line.to_string())
    } else {
        let cut: String = line.chars().take(SUBJECT_SUMMARY_CHARS - 1).collect();
        Some(format!("{}…", cut.trim_end()))
    }
}

/// Control characters (line breaks included) become spaces: a subject is one line.
fn one_line(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn config_error(field: &'static str, message: String) -> EmailError {
    EmailError::Config { field, message }
}

/// The sender and the recipients (at least one).
fn addresses(smtp: &Smtp) -> Result<(Mailbox, Vec<Mailbox>), EmailError> {
    let from: Mailbox = smtp
        .from
        .trim()
        .parse()
        .map_err(|e| config_error("smtp.from", format!("not an e-mail address: {e}")))?;
    let to: Vec<Mailbox> = smtp
        .to
        .trim()
        .parse::<Mailboxes>()
        .map_err(|e| config_error("smtp.to", format!("not a list of e-mail addresses: {e}")))?
        .into_iter()
        .collect();
    if to.is_empty() {
        return Err(config_error(
            "smtp.to",
            "at least one address is required".into(),
        ));
    }
    Ok((from, to))
}

/// The login, when there is one, and the password (kept to scrub it from error texts). Both
/// or neither, and only over an encrypted connection.
fn credentials(smtp: &Smtp) -> Result<(Option<Credentials>, Option<Secret>), EmailError> {
    let user = smtp
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let password = match &smtp.password {
        None => None,
        // `resolve_local` names the variable or file, never the value.
        Some(r) => Some(
            r.resolve_local()
                .map_err(|e| config_error("smtp.password", e))?,
        ),
    };
    let credentials = match (user, &password) {
        (Some(u), Some(p)) => Some(Credentials::new(u.to_string(), p.expose().to_string())),
        (None, None) => None,
        (Some(_), None) => {
            let m = "required when smtp.user is set";
            return Err(config_error("smtp.password", m.into()));
        }
        (None, Some(_)) => {
            let m = "required when smtp.password is set";
            return Err(config_error("smtp.user", m.into()));
        }
    };
    if credentials.is_some() && !smtp.starttls {
        let m = "credentials are only sent over an encrypted connection; set starttls = true";
        return Err(config_error("smtp.starttls", m.into()));
    }
    Ok((credentials, password))
}

/// The connection's TLS (with extra trusted roots, if given) and how it is described.
fn tls(smtp: &Smtp, pem_roots: Option<&[u8]>) -> Result<(Tls, &'static str), EmailError> {
    if !smtp.starttls {
        return Ok((Tls::None, "plain SMTP, unencrypted"));
    }
    let mut params = TlsParameters::builder(smtp.host.trim().to_string());
    if let Some(pem) = pem_roots {
        let cert = Certificate::from_pem(pem).map_err(|e| {
            config_error(
                "smtp",
                format!("extra TLS root certificates are invalid: {e}"),
            )
        })?;
        params = params.add_root_certificate(cert);
    }
    let params = params
        .build_rustls()
        .map_err(|e| config_error("smtp", format!("cannot set up TLS: {e}")))?;
    Ok(if smtp.port == SMTPS_PORT {
        (Tls::Wrapper(params), "SMTPS (TLS)")
    } else {
        (Tls::Required(params), "STARTTLS required")
    })
}

/// Removes what must never be in an operator e-mail: the given secret values, anything looking
/// like an Unzer private key (`s-priv-…`, `p-priv-…`, any case) and anything looking like a card
/// number. Returns the cleaned text and whether something was removed.
pub fn scrub(text: &str, secrets: &[Secret]) -> (String, bool) {
    let (out, _) = redact_secrets(text, secrets);
    let out = redact_unzer_private_keys(&out);
    let out = redact_card_numbers(&out);
    let removed = out != text;
    (out, removed)
}

/// `text` with the given secret values (of at least [`MIN_SCRUB_LEN`] bytes) replaced, and
/// whether one was there.
fn redact_secrets(text: &str, secrets: &[Secret]) -> (String, bool) {
    let mut out = text.to_string();
    for s in secrets {
        let v = s.expose();
        if v.len() >= MIN_SCRUB_LEN && out.contains(v) {
            out = out.replace(v, REDACTED_SECRET);
        }
    }
    let removed = out != text;
    (out, removed)
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn redact_unzer_private_keys(text: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("-priv-") {
        let dash = search + found;
        search = dash + 1;
        if dash == 0 || !matches!(lower.as_bytes()[dash - 1], b's' | b'p') || dash - 1 < copied {
            continue;
        }
        let start = dash - 1;
        let mut end = dash + "-priv-".len();
        while end < bytes.len() && is_key_char(bytes[end]) {
            end += 1;
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED_KEY);
        copied = end;
        search = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether `digits` (ASCII digits only) passes the Luhn check.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn looks_like_card_number(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len()) && luhn(digits)
}

/// Replaces card-number-like digit sequences: a run of digits with single spaces or dashes
/// between them (`4111 1111 1111 1111`), or one group of such a run on its own.
fn redact_card_numbers(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // The maximal run starting at i: digits, with single separators between digits.
        let start = i;
        let mut end = i;
        let mut j = i;
        while j < b.len() {
            if b[j].is_ascii_digit() {
                j += 1;
                end = j;
            } else if matches!(b[j], b' ' | b'-') && j + 1 < b.len() && b[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let run = &text[start..end];
        let digits: Vec<u8> = run.bytes().filter(u8::is_ascii_digit).collect();
        if looks_like_card_number(&digits) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED_CARD);
            copied = end;
        } else {
            // Groups of the run on their own (a card number next to other numbers).
            let mut g = start;
            while g < end {
                let mut h = g;
                while h < end && b[h].is_ascii_digit() {
                    h += 1;
                }
                if looks_like_card_number(&b[g..h]) {
                    out.push_str(&text[copied..g]);
                    out.push_str(REDACTED_CARD);
                    copied = h;
                }
                g = h + 1;
            }
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn smtp() -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port: 2525,
            user: None,
            password: None,
            from: "paybridge@example.com".into(),
            to: "ops@example.com".into(),
            starttls: false,
        }
    }

    fn problem(message: &str) -> Problem {
        Problem {
            tenant: "acme".into(),
            order_id: "1001".into(),
            code: "psp.capture_failed".into(),
            message: message.into(),
            action: "Check the payment in the Unzer Insights portal.".into(),
        }
    }

    #[test]
    fn scrubs_unzer_private_keys_in_any_case() {
        let (s, removed) = scrub(
            "key s-priv-2a10AbC_d-9 and P-PRIV-XYZ, public s-pub-ok, priv-alone, xs-priv-q",
            &[],
        );
        assert!(removed);
        assert_eq!(
            s,
            "key [redacted Unzer private key] and [redacted Unzer private key], public s-pub-ok, \
             priv-alone, x[redacted Unzer private key]"
        );
        let (s, removed) = scrub("nothing secret here: s-pub-1, 1001", &[]);
        assert_eq!(
            (s.as_str(), removed),
            ("nothing secret here: s-pub-1, 1001", false)
        );
    }

    #[test]
    fn scrubs_card_numbers_but_not_order_numbers_or_amounts() {
        let (s, _) = scrub("card 4111 1111 1111 1111 failed", &[]);
        assert_eq!(s, "card [redacted card number] failed");
        let (s, _) = scrub("pan=4111111111111111;", &[]);
        assert_eq!(s, "pan=[redacted card number];");
        let (s, _) = scrub("order 1001 amount 100 4111111111111111", &[]);
        assert_eq!(s, "order 1001 amount 100 [redacted card number]");
        // 16 digits failing Luhn, and an ISO date: kept.
        let text = "ref 4111111111111112 on 2024-05-01, amount 12.34 EUR";
        assert_eq!(scrub(text, &[]), (text.to_string(), false));
    }

    #[test]
    fn scrubs_known_secret_values() {
        let secrets = [Secret::new("hunter2-smtp"), Secret::new("ab")];
        let (s, removed) = scrub("login hunter2-smtp failed (ab)", &secrets);
        assert!(removed);
        assert_eq!(s, "login [redacted secret] failed (ab)");
    }

    #[test]
    fn subject_is_one_short_line_with_order_and_tenant() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let n = EmailNotifier::new(&smtp(), "acme").unwrap();
        let long = format!("Capture failed\r\nwith key s-priv-abc {}", "x".repeat(200));
        let (subject, body) = n.render(&problem(&long));
        assert_eq!(subject, "[paybridge] order 1001 (acme): Capture failed");
        assert!(body.contains("What to do:\nCheck the payment"), "{body}");
        assert!(!body.contains("s-priv-abc"), "{body}");

        let (subject, _) = n.render(&problem(&"y".repeat(300)));
        assert_eq!(
            subject.chars().count(),
            "[paybridge] order 1001 (acme): ".len() + 80
        );
        assert!(subject.ends_with('…'));

        let (subject, body) = n.render(&problem(""));
        assert_eq!(subject, "[paybridge] order 1001 (acme): psp.capture_failed");
        assert!(body.contains("What failed:\n-\n"), "{body}");
    }

    #[test]
    fn config_errors_name_the_field_never_the_value() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let err = |s: &Smtp| EmailNotifier::new(s, "acme").unwrap_err().0;

        let mut s = smtp();
        s.starttls = true;
        s.user = Some("mailer".into());
        s.password = Some(SecretRef::Env("PAYBRIDGE_EMAIL_TEST_SURELY_UNSET".into()));
        let e = err(&s);
        assert!(e.contains("smtp.password"), "{e}");
        assert!(e.contains("PAYBRIDGE_EMAIL_TEST_SURELY_UNSET"), "{e}");

        s.password = Some(SecretRef::Plain(Secret::new("pw-value-123")));
        s.starttls = false;
        let e = err(&s);
        assert!(
            e.contains("smtp.starttls") && !e.contains("pw-value-123"),
            "{e}"
        );

        s.starttls = true;
        s.user = None;
        let e = err(&s);
        assert!(
            e.contains("smtp.user") && !e.contains("pw-value-123"),
            "{e}"
        );

        let mut s = smtp();
        s.to = "not an address".into();
        assert!(err(&s).contains("smtp.to"));
        let mut s = smtp();
        s.from = "nobody".into();
        assert!(err(&s).contains("smtp.from"));

        let mut s = smtp();
        s.to = "a@example.com, B <b@example.com>".into();
        let n = EmailNotifier::new(&s, "acme").unwrap();
        assert_eq!(n.to.len(), 2);
        assert!(!format!("{n:?}").contains("pw-value"));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn link_mail() -> PaymentLinkMail {
        crate::notify::tests::link_mail()
    }

    #[test]
    fn payment_link_mail_has_a_plain_and_an_html_part_to_the_customer_only() {
        let rt = runtime();
        let _guard = rt.enter();
        let n = EmailNotifier::new(&smtp(), "acme").unwrap();
        let mail = link_mail();
        let parts = n.render_payment_link(&mail).unwrap();
        assert_eq!(parts.subject, "Payment for your order 1001 at Acme Shop");
        for body in [&parts.text, &parts.html] {
            assert!(body.contains("1001"), "{body}");
            assert!(body.contains("S-1001"), "{body}");
            assert!(body.contains("Acme Shop"), "{body}");
            assert!(body.contains("123.45 EUR"), "{body}");
            assert!(body.contains("can be used once"), "{body}");
        }
        assert!(
            parts.text.contains(&format!("\n{}\n", mail.url)),
            "{}",
            parts.text
        );
        assert!(
            parts.text.contains("Shop order number: S-1001\n"),
            "{}",
            parts.text
        );
        // The link as a button and as text, `&` escaped in both places.
        let escaped = mail.url.replace('&', "&amp;");
        assert_eq!(
            parts.html.matches(&format!("href=\"{escaped}\"")).count(),
            2
        );
        assert!(
            parts.html.contains(&format!(">{escaped}</a>")),
            "{}",
            parts.html
        );
        assert!(
            parts.html.contains(">Pay 123.45 EUR now</a>"),
            "{}",
            parts.html
        );
        assert!(
            !parts.html.contains("MerchantID=acme&Len"),
            "{}",
            parts.html
        );

        let raw = String::from_utf8(n.payment_link_message(&mail).unwrap().formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("To: kunde@example.de\r\n"), "{head}");
        assert!(head.contains("From: paybridge@example.com\r\n"), "{head}");
        assert!(
            !raw.contains("ops@example.com"),
            "operators are not recipients"
        );
        assert!(head.contains("multipart/alternative"), "{head}");
        let plain = raw
            .find("Content-Type: text/plain; charset=utf-8")
            .expect("plain part");
        let html = raw
            .find("Content-Type: text/html; charset=utf-8")
            .expect("html part");
        assert!(plain < html, "plain first, the preferred HTML last");
    }

    #[test]
    fn payment_link_values_are_html_escaped_and_formatted() {
        let rt = runtime();
        let _guard = rt.enter();
        let n = EmailNotifier::new(&smtp(), "acme").unwrap();
        let mut mail = link_mail();
        mail.shop = "Tom & Jerry's <b>Shop</b>".into();
        mail.order_id = "10\"01".into();
        mail.shop_order_no = "<script>alert(1)</script>".into();
        mail.url = "https://pay.example/p?a=1&b=\"x\"><script>".into();
        let p = n.render_payment_link(&mail).unwrap();
        assert!(
            p.html
                .contains("Tom &amp; Jerry&#39;s &lt;b&gt;Shop&lt;/b&gt;"),
            "{}",
            p.html
        );
        assert!(p.html.contains("10&quot;01"), "{}", p.html);
        assert!(
            p.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            p.html
        );
        assert!(
            !p.html.contains("<script>") && !p.html.contains("<b>"),
            "{}",
            p.html
        );
        assert!(
            p.html.contains(
                "href=\"https://pay.example/p?a=1&amp;b=&quot;x&quot;&gt;&lt;script&gt;\""
            ),
            "{}",
            p.html
        );
        // The plain part and the subject carry the values as they are.
        assert!(p.text.contains("Tom & Jerry's <b>Shop</b>"), "{}", p.text);
        assert_eq!(
            p.subject,
            "Payment for your order 10\"01 at Tom & Jerry's <b>Shop</b>"
        );

        // Amounts with their currency's decimals; no shop order number line when there is none;
        // a reminder says so.
        let mut mail = link_mail();
        mail.amount = crate::money::Money::parse("1234.5", crate::money::Currency::EUR).unwrap();
        mail.shop_order_no = "  ".into();
        mail.resent = true;
        let p = n.render_payment_link(&mail).unwrap();
        assert!(
            p.text.contains("Amount:            1234.50 EUR\n"),
            "{}",
            p.text
        );
        assert!(!p.text.contains("Shop order number") && !p.html.contains("Shop order number"));
        assert_eq!(
            p.subject,
            "Reminder: payment for your order 1001 at Acme Shop"
        );
        assert!(p.text.contains("this is a reminder"), "{}", p.text);
        let jpy = crate::money::Currency::from_code("JPY").unwrap();
        mail.amount = crate::money::Money::parse("500", jpy).unwrap();
        let p = n.render_payment_link(&mail).unwrap();
        assert!(
            p.text.contains("Amount:            500 JPY\n"),
            "{}",
            p.text
        );

        // Line breaks in a value cannot break the subject.
        mail.shop = "Acme\r\nBcc: x@evil.example".into();
        let p = n.render_payment_link(&mail).unwrap();
        assert!(!p.subject.contains(['\r', '\n']), "{}", p.subject);
    }

    #[test]
    fn payment_link_recipient_and_link_are_checked_before_anything_is_sent() {
        let rt = runtime();
        let _guard = rt.enter();
        let n = EmailNotifier::new(&smtp(), "acme").unwrap();
        let send = |mail: PaymentLinkMail| {
            rt.block_on(async { n.payment_link(&mail).await })
                .expect_err("refused")
                .0
        };
        for to in [
            "kunde@example.de\r\nBcc: victim@example.org",
            "kunde@example.de\nBcc: victim@example.org",
            "kunde@example.de, victim@example.org",
            "Kunde <kunde@example.de>",
            "kunde.example.de",
            "kunde@@example.de",
            "",
            &format!("{}@example.de", "a".repeat(250)),
        ] {
            let mut mail = link_mail();
            mail.to = to.to_string();
            let e = send(mail);
            assert!(
                e.contains("customer's e-mail address is refused"),
                "{to:?}: {e}"
            );
            assert!(!e.contains("victim"), "{e}");
        }
        for url in [
            "javascript:alert(1)",
            "ftp://pay.example/x",
            "https://pay.example/a b",
            "https://pay.example/a\r\nX: y",
            "not a url",
            "",
        ] {
            let mut mail = link_mail();
            mail.url = url.to_string();
            let e = send(mail);
            assert!(e.contains("payment link is refused"), "{url:?}: {e}");
            assert!(url.is_empty() || !e.contains(url), "{e}");
        }
        let mut mail = link_mail();
        mail.amount = crate::money::Money::zero(crate::money::Currency::EUR);
        assert!(send(mail).contains("amount above zero"));
        let mut mail = link_mail();
        mail.order_id = " ".into();
        assert!(send(mail).contains("order number"));
        // Nothing above reached the (absent) server: each was refused before connecting.
    }

    #[test]
    fn payment_link_carries_no_smtp_password() {
        let rt = runtime();
        let _guard = rt.enter();
        let mut s = smtp();
        s.starttls = true;
        s.user = Some("mailer".into());
        s.password = Some(SecretRef::Plain(Secret::new("pw-value-123")));
        let n = EmailNotifier::new(&s, "acme").unwrap();
        let mut mail = link_mail();
        mail.shop = "Shop pw-value-123".into();
        let p = n.render_payment_link(&mail).unwrap();
        assert!(!p.text.contains("pw-value-123") && !p.html.contains("pw-value-123"));
        // A digit run that looks like a card number stays: it may be what the customer needs.
        mail.shop_order_no = "4111111111111111".into();
        let p = n.render_payment_link(&mail).unwrap();
        assert!(p.text.contains("4111111111111111"), "{}", p.text);
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let e = EmailNotifier::new(&smtp(), "acme").unwrap_err();
        assert!(e.0.contains("Tokio runtime"), "{e}");
    }
}
