//! pixi* SOAP 1.1 ERP connector: [`PixiErp`] implements [`Erp`] against a pixi API endpoint.
//!
//! One `reqwest::Client` per connector (built once, Basic auth, connect and request timeouts).
//! Every call is one SOAP request built by [`soap::envelope`] and parsed by [`soap::parse_reply`];
//! the mapping from pixi rows to [`ErpOrder`] facts and from [`ErpWrite`]s to pixi calls lives
//! here. Each wire fact carries a comment naming its public source; where the public sources are
//! silent or contradict each other the choice is documented on [`PixiErp`] (see "Choices").
//!
//! Calls used, each beside its page https://pixi-api-docs.de/api/<call> (what the page does
//! not show is said next to the code that relies on it). All but the five marked "extra" are in
//! seed 000's list of calls a merchant's pixi must have installed; the README's pixi set-up
//! section says why each extra one is needed.
//!
//! | purpose | call |
//! |---|---|
//! | work lists | `pixiPayGetOrdersToAuthorize`, `pixiPayGetInvoicesToCapture`, `pixiGetChangedOrders` |
//! | order facts | `pixiGetOrderHeader`, `pixiGetOrderline`, `pixiGetOrderTotals`, `pixiGetInvoice` |
//! | release | `pixiPaySetAuthorizationStatus` + `pixiReleaseOrder` (extra) |
//! | shipping lock | `pixiSetOrderShippingLock` (per order; `pixiSetShippingLock` locks the customer) |
//! | capture mark + booking | `pixiPaySetInvoiceCapture` |
//! | refund booking | `pixiCACreateManualBooking`, read back with `pixiCAGetInvoiceMatch` (extra) |
//! | transfer data | `pixiCanChangeAddress`, then `pixiChangeAddress` (extra), read back with `pixiGetAddress` |
//! | comments | `pixiCreateOrderComment` (no public page), read back with `pixiGetOrderComments` (extra) |
//! | customer e-mail (payment link) | `pixiGetCustomerOrderAccount` (extra, needed only for payment links), by the order's `CustKey` |

mod read;
pub mod soap;
mod writes;

use read::*;

use crate::config::{Config, ErpKind, Secret, SecretRef};
use crate::erp::{Changes, Erp, ErpError};
use crate::ledger::{ErpWrite, psp_reference};
use crate::model::{
    BankDetails, CreditNote, ErpOrder, Invoice, LineStatus, OrderLine, OrderStatus,
};
use crate::money::{Currency, Money};
use crate::notify::plain_email_address;
use async_trait::async_trait;
use rust_decimal::{Decimal, RoundingStrategy};
use soap::{Param, Reply, ReplyError, Row};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

/// Timeouts of the connector's HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixiTimeouts {
    /// Establishing the TCP/TLS connection. A connect failure is "not applied" (Unavailable).
    pub connect: Duration,
    /// The whole request. A timeout after the request was sent is "maybe applied" (Unknown).
    pub request: Duration,
}

impl Default for PixiTimeouts {
    fn default() -> Self {
        PixiTimeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Why a connector could not be built. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixiSetupError {
    #[error("no ERP connection {0:?} in the configuration")]
    UnknownConnection(String),
    #[error("ERP connection {0:?} is not of kind \"pixi\"")]
    NotPixi(String),
    #[error("ERP connection {conn:?}: {field} is required for kind \"pixi\"")]
    Missing { conn: String, field: &'static str },
    #[error("ERP connection {conn:?}: password: {message}")]
    Secret { conn: String, message: String },
    #[error("pixi URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The pixi* SOAP connector.
///
/// # Choices where the public sources are silent or disagree
///
/// - **Release (HOLD → OPEN)**: `pixiPaySetAuthorizationStatus(OrderNr, Success=1, AuthID =
///   ccpPayID)` (the payment-app contract; writes `AuthID` to `ccpPayID`) **followed by**
///   `pixiReleaseOrder(ShopId, OrderNrExternal)`, which is documented to release order lines
///   (`AffectedRows`). Nothing public says whether `Success=1` alone flips `HAL` lines to `ANG`;
///   calling both is safe either way (a second release affects 0 rows). Alternative: only one of
///   the two, once a customer test database shows which one flips the lines. The
///   pixiPaySetAuthorizationStatus page shows no response columns and says nothing about lines;
///   pixiReleaseOrder is not in seed 000's list (README, pixi set-up).
/// - **Order comment**: `pixiCreateOrderComment(OrderNr, Comment)`, the call seed 000 lists.
///   It has no public page (nor has `pixiAddOrderComment`, which
///   `modomoto/pixi_client:lib/pixi_client/requests/add_comment_to_order.rb` sends with these
///   two parameters): the parameter names are that client's and unverified. Read back with the
///   documented `pixiGetOrderComments` (not in seed 000's list). Only [`CALL_ADD_COMMENT`]
///   changes if a customer database names it otherwise.
/// - **Prepayment transfer data ("Kundenservice" fields Kontoinhaber/IBAN/BIC/Bank)**: written to
///   the order's billing address with `pixiChangeAddress(OrderNr, AddrType=B, IBAN, BIC,
///   BankName, CardHolderName)`. `IBAN`/`BIC` are documented parameters of pixiChangeAddress;
///   `BankName`/`CardHolderName` are the address bank columns shown in the pixiGetOrder billing
///   address sample (pixi-api-docs.de/api/pixiGetOrder) — their parameter names are inferred
///   (the pixiChangeAddress parameter table is cut off in the stored page after `Note`).
///   `pixiCanChangeAddress` (listed, documented scalar `return` 1/0) is asked first, as the
///   pixiChangeAddress page recommends; 0 refuses the write without calling pixiChangeAddress.
///   Holder = recipient, Bank = payment reference (seed 000). Alternatives: `pixiUpdateOrder`
///   (no bank parameters in its public page) or a customer-specific procedure.
/// - **Credit notes** are the rows of `pixiGetInvoice` with a negative total (pixi keeps credits
///   in the invoice table; no public page says how to tell them apart). Their linked invoice is
///   read from `CreditForInvoiceNr`/`OriginalInvoiceNr` when present (not documented).
/// - **Line status → model**: `HAL ANG EIN NEW BES FUT` open; `AUS RET MIN` shipped (a returned or
///   replacement line was delivered; money goes back through credit notes); `STO` cancelled;
///   `NLB` not deliverable; unknown codes open (never "shipped" or "cancelled" by guess).
/// - **Order status**: `OrderStatus` `CLOSED` → Closed; `HOLD` (the value
///   pixiGetOrderHeadersForCustomer filters on) or any `HAL` line → Hold; else Open.
/// - **Shipping lock** is read from the header column `OrderLocked` (Y/N; documented on
///   pixiGetChangedOrders), else `OhSLocked` (`lars85/pixi-client` pixiGetOrder mapping).
/// - **Mandant** = `ShopID` (payment types are configured per shop in pixi).
/// - **Order total** = Σ `Subtotal` + `ShipCost` − |`Discount`| over the per-item rows of
///   `pixiGetOrderTotals` (see [`read::order_total`] for what that page does and does not show).
/// - **Payment code = method tag**: the order's `PaymentType` (a single character on every page
///   that types it) is the `erp_method` of paybridge's `[[method]]`, the `PaymentCode` of the
///   work lists and the `PayCode` of pixiPaySetInvoiceCapture. A configured code of more than
///   one character can never match a real pixi order; the connector logs a warning for it.
/// - **Customer e-mail** (payment links): `CeMail` of `pixiGetCustomerOrderAccount(CustKey)`,
///   the customer's own address. Alternative: the `Email` column of the billing address
///   (`pixiGetAddress(AddrKey = AddrRef)`, in seed 000's list), which belongs to the address,
///   not the customer; switch if a customer database shows `CeMail` empty where the address
///   has one.
/// - **Write references**: pixi fields are short (`PayID` varchar(50), `EventID` varchar(3)), so
///   each write carries `[pb…]` = [`psp_reference`] of the operation id (26 characters) in its
///   message/comment/reason; read-backs look for that tag.
#[derive(Debug)]
pub struct PixiErp {
    client: reqwest::Client,
    url: String,
    namespace: String,
    user: String,
    password: Secret,
    payment_codes: Vec<String>,
    user_name: String,
    initial_lookback: chrono::Duration,
    list_rows: i64,
}

/// The order comment call (see "Choices" on [`PixiErp`]).
pub const CALL_ADD_COMMENT: &str = "pixiCreateOrderComment";

const INVOICE_PAGE: i64 = 1000;

/// At most this many `pixiGetInvoice` pages per order (100 000 invoices); a server that keeps
/// answering full pages with growing keys cannot keep the connector looping.
const MAX_INVOICE_PAGES: usize = 100;

/// At most this many `pixiPayGetInvoicesToCapture` pages per payment code and poll.
const MAX_LIST_PAGES: usize = 1000;

/// The largest reply body read from pixi. A full invoice page is well under 1 MiB, but pixi
/// pads replies and free-text columns can be large, so the cap is generous.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

impl PixiErp {
    /// A connector for one pixi endpoint. `payment_codes` are the pixi payment codes (the
    /// `erp_method` of the connection's payment-method configs) whose orders paybridge handles.
    pub fn new(
        url: &str,
        user: &str,
        password: Secret,
        payment_codes: Vec<String>,
        timeouts: PixiTimeouts,
    ) -> Result<PixiErp, PixiSetupError> {
        let parsed = url::Url::parse(url).map_err(|e| PixiSetupError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PixiSetupError::Url {
                url: url.to_string(),
                message: "must be an http(s) URL".into(),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(PixiSetupError::Url {
                url: "(redacted)".into(),
                message: "must not contain credentials; use user and password".into(),
            });
        }
        let client = crate::tls::http_client_builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .user_agent(concat!("paybridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PixiSetupError::Client(e.to_string()))?;
        // The operation namespace is the endpoint itself with a trailing slash: pixi-api-docs
        // HTTP examples use ns1="https://apigateway.descartes.com/tms/pixi/" for that endpoint;
        // the stored reply uses method namespace "https://api.pixi.eu/soap/pixiAPP/".
        let namespace = if url.ends_with('/') {
            url.to_string()
        } else {
            format!("{url}/")
        };
        let mut codes: Vec<String> = Vec::new();
        for c in payment_codes {
            let c = c.trim().to_string();
            if c.chars().count() > 1 {
                // PaymentCode is `char` on the pixiPay* pages, PaymentType `char`/varchar(1).
                tracing::warn!(code = %c, "pixi payment codes are single characters");
            }
            if !c.is_empty() && !codes.iter().any(|x| x.eq_ignore_ascii_case(&c)) {
                codes.push(c);
            }
        }
        Ok(PixiErp {
            client,
            url: url.to_string(),
            namespace,
            user: user.to_string(),
            password,
            payment_codes: codes,
            user_name: "paybridge".into(),
            initial_lookback: chrono::Duration::days(1),
            list_rows: 500,
        })
    }

    /// The connector of connection `conn_id` in `config`; env/file/plain secrets are resolved here.
    pub fn for_connection(config: &Config, conn_id: &str) -> Result<PixiErp, PixiSetupError> {
        PixiErp::for_connection_with(config, conn_id, SecretRef::resolve_local)
    }

    /// Like [`PixiErp::for_connection`] with a caller-supplied secret resolver (AWS entry points
    /// resolve `ssm:`/`secretsmanager:` references themselves). Errors never carry the secret.
    pub fn for_connection_with(
        config: &Config,
        conn_id: &str,
        resolve: impl Fn(&SecretRef) -> Result<Secret, String>,
    ) -> Result<PixiErp, PixiSetupError> {
        let conn = config
            .erp
            .iter()
            .find(|c| c.id == conn_id)
            .ok_or_else(|| PixiSetupError::UnknownConnection(conn_id.to_string()))?;
        if conn.kind != ErpKind::Pixi {
            return Err(PixiSetupError::NotPixi(conn_id.to_string()));
        }
        let missing = |field| PixiSetupError::Missing {
            conn: conn_id.to_string(),
            field,
        };
        let url = conn.url.as_deref().ok_or_else(|| missing("url"))?;
        let user = conn.user.as_deref().ok_or_else(|| missing("user"))?;
        let pw_ref = conn.password.as_ref().ok_or_else(|| missing("password"))?;
        let password = resolve(pw_ref).map_err(|message| PixiSetupError::Secret {
            conn: conn_id.to_string(),
            message,
        })?;
        let codes = config
            .methods
            .iter()
            .filter(|m| m.erp == conn_id && m.active)
            .map(|m| m.erp_method.clone())
            .collect();
        PixiErp::new(url, user, password, codes, PixiTimeouts::default())
    }

    /// The `UserName` sent with shipping locks (default `paybridge`; pixi's default is `API`).
    pub fn with_user_name(mut self, name: &str) -> PixiErp {
        self.user_name = name.to_string();
        self
    }

    /// How far back the first `pixiGetChangedOrders` looks when there is no watermark yet
    /// (default one day; pixi compares in its server's local time, a day absorbs the offset).
    pub fn with_initial_lookback(mut self, d: chrono::Duration) -> PixiErp {
        self.initial_lookback = d;
        self
    }

    /// `RowCount` of the work-list calls (default 500; pixi's default is 30).
    pub fn with_list_rows(mut self, n: i64) -> PixiErp {
        self.list_rows = n.max(1);
        self
    }

    pub fn payment_codes(&self) -> &[String] {
        &self.payment_codes
    }

    /// One SOAP call. Errors: connect failure, HTTP 503/429 → Unavailable (not applied); timeout
    /// or broken reply after sending, other 5xx without a SOAP fault → Unknown; SOAP fault,
    /// 401/403, any refusal convention of [`Reply::refusal`] → Refused; an unparsable 2xx →
    /// BadReply.
    async fn call(&self, call: &str, params: &[Param]) -> Result<Reply, ErpError> {
        let body = soap::envelope(&self.namespace, call, params);
        tracing::debug!(call, params = params.len(), "pixi call");
        let resp = self
            .client
            .post(&self.url)
            // SOAP 1.1 content type (pixi-api-docs HTTP Example: text/xml; charset=utf-8).
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            // SOAPAction = namespace + call name, quoted (drinks-it/pixi-api Client.php).
            .header("SOAPAction", format!("\"{}{}\"", self.namespace, call))
            // HTTP Basic: user = pixi DB name, password = API password (reference/erp.md §1.1).
            .basic_auth(&self.user, Some(self.password.expose()))
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(call, e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            return Err(ErpError::Unavailable(format!("{call}: HTTP {status}")));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ErpError::Refused(format!(
                "{call}: HTTP {status}: pixi refused the credentials"
            )));
        }
        let text = read_capped(call, resp).await?;
        match soap::parse_reply(&text) {
            Err(ReplyError::Fault { code, message }) => Err(ErpError::Refused(format!(
                "{call}: SOAP fault {code}: {message}"
            ))),
            Err(ReplyError::Malformed(m)) => {
                if status.is_server_error() {
                    Err(ErpError::Unknown(format!("{call}: HTTP {status}")))
                } else if !status.is_success() {
                    Err(ErpError::Refused(format!("{call}: HTTP {status}")))
                } else {
                    Err(ErpError::BadReply(format!("{call}: {m}")))
                }
            }
            Ok(reply) => {
                if !status.is_success() {
                    return Err(if status.is_server_error() {
                        ErpError::Unknown(format!("{call}: HTTP {status}"))
                    } else {
                        ErpError::Refused(format!("{call}: HTTP {status}"))
                    });
                }
                if let Some(why) = reply.refusal() {
                    return Err(ErpError::Refused(format!("{call}: {why}")));
                }
                Ok(reply)
            }
        }
    }

    async fn header(&self, order_nr: i64) -> Result<Option<Header>, ErpError> {
        // https://pixi-api-docs.de/api/pixiGetOrderHeader: filter `OrderNr` (int; default 0 =
        // no filter). The response columns are cut off in the stored page (see read::Header).
        let reply = self
            .call("pixiGetOrderHeader", &[Param::int("OrderNr", order_nr)])
            .await?;
        // Only a present-but-empty row set means "no such order"; a reply without any row set
        // (empty Result, only SqlResultCode, a scalar) says nothing about the order.
        if reply.result_sets.is_empty() {
            return Err(bad(format!(
                "pixiGetOrderHeader for order {order_nr}: reply without a row set"
            )));
        }
        let row = reply
            .rows()
            .iter()
            .find(|r| r.get("OrderNr").and_then(|v| v.parse::<i64>().ok()) == Some(order_nr));
        row.map(Header::from_row).transpose()
    }

    async fn require_header(&self, order_nr: i64) -> Result<Header, ErpError> {
        self.header(order_nr)
            .await?
            .ok_or_else(|| ErpError::Refused(format!("pixi has no order {order_nr}")))
    }

    async fn lines(&self, order_nr: i64) -> Result<Reply, ErpError> {
        // https://pixi-api-docs.de/api/pixiGetOrderline: filter `OrderNR` (int, spelled so on the
        // page; modomoto get_order_lines.rb sends the same).
        self.call("pixiGetOrderline", &[Param::int("OrderNR", order_nr)])
            .await
    }

    async fn invoices(&self, order_nr: i64) -> Result<Vec<Row>, ErpError> {
        // https://pixi-api-docs.de/api/pixiGetInvoice: `OrderNR`, `RowCount` (default 1000),
        // `StartKey` ("records that have InvoiceKey bigger than provided value"); stop when the
        // `TotalRows` column is smaller than RowCount or no rows come back ("Iterating through
        // results"). The page's response table is cut off in the stored copy: the invoice
        // columns read in [`read::invoices_and_credits`] are not shown there.
        let mut rows = Vec::new();
        let mut start = 0i64;
        for page_no in 0.. {
            if page_no >= MAX_INVOICE_PAGES {
                return Err(bad(format!(
                    "pixiGetInvoice for order {order_nr}: more than {MAX_INVOICE_PAGES} pages"
                )));
            }
            let reply = self
                .call(
                    "pixiGetInvoice",
                    &[
                        Param::int("OrderNR", order_nr),
                        Param::int("RowCount", INVOICE_PAGE),
                        Param::int("StartKey", start),
                    ],
                )
                .await?;
            let page = reply.rows().to_vec();
            let n = page
                .iter()
                .find_map(|r| int(r, "TotalRows"))
                .unwrap_or(page.len() as i64);
            let last = page
                .iter()
                .filter_map(|r| r.get("InvoiceKey").and_then(|k| k.parse::<i64>().ok()))
                .max();
            rows.extend(page);
            match last {
                Some(k) if n >= INVOICE_PAGE && k > start => start = k,
                _ => break,
            }
        }
        Ok(rows)
    }

    async fn read_order(&self, order_nr: i64) -> Result<Option<ErpOrder>, ErpError> {
        let Some(h) = self.header(order_nr).await? else {
            return Ok(None);
        };
        // https://pixi-api-docs.de/api/pixiGetOrderTotals: filter `OrderNr` (int, default 0;
        // request example order OrderNr, OrderNrExternal, CustKey; only OrderNr is sent).
        let totals_params = [Param::int("OrderNr", order_nr)];
        let (lines, totals, invoices) = tokio::try_join!(
            self.lines(order_nr),
            self.call("pixiGetOrderTotals", &totals_params),
            self.invoices(order_nr),
        )?;
        // No row set at all says nothing about the order (an empty one is an order with nothing
        // left to invoice, see read::order_total).
        if totals.result_sets.is_empty() {
            return Err(bad(format!(
                "pixiGetOrderTotals for order {order_nr}: reply without a row set"
            )));
        }
        map_order(&h, lines.rows(), totals.rows(), &invoices).map(Some)
    }

    fn changed_from(&self, watermark: Option<&str>) -> String {
        match watermark.map(str::trim).filter(|w| !w.is_empty()) {
            Some(w) => w.replace('T', " "),
            None => (chrono::Utc::now() - self.initial_lookback)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        }
    }

    fn handles(&self, payment_type: Option<&str>) -> bool {
        payment_type.is_some_and(|p| self.payment_codes.iter().any(|c| c.eq_ignore_ascii_case(p)))
    }
}

/// Reads a reply body of at most [`MAX_REPLY_BYTES`], chunk by chunk; a larger one is BadReply
/// (never buffered in full).
async fn read_capped(call: &str, mut resp: reqwest::Response) -> Result<String, ErpError> {
    let too_big = || {
        ErpError::BadReply(format!(
            "{call}: reply body larger than {MAX_REPLY_BYTES} bytes"
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ErpError::Unknown(format!("{call}: reply lost: {}", e.without_url())))?
    {
        if buf.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(too_big());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn send_error(call: &str, e: reqwest::Error) -> ErpError {
    let e = e.without_url();
    if e.is_connect() {
        // Nothing reached pixi (refused, DNS, TLS, connect timeout).
        ErpError::Unavailable(format!("{call}: cannot connect: {e}"))
    } else if e.is_timeout() {
        ErpError::Unknown(format!("{call}: no reply in time: {e}"))
    } else {
        ErpError::Unknown(format!("{call}: request failed after sending: {e}"))
    }
}

fn bad(m: impl Into<String>) -> ErpError {
    ErpError::BadReply(m.into())
}

#[async_trait]
impl Erp for PixiErp {
    async fn changes(&self, watermark: Option<&str>) -> Result<Changes, ErpError> {
        self.changed_orders(watermark).await
    }

    async fn orders(&self, order_ids: &[String]) -> Result<Vec<ErpOrder>, ErpError> {
        self.read_orders(order_ids).await
    }

    async fn apply(
        &self,
        order: &ErpOrder,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        self.apply_write(order, write, op_ref).await
    }

    async fn was_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError> {
        self.write_applied(order_id, write, op_ref).await
    }

    async fn customer_email(&self, order: &ErpOrder) -> Result<Option<String>, ErpError> {
        self.read_customer_email(order).await
    }

    fn can_read_back(&self, order_id: &str, write: &ErpWrite) -> bool {
        match write {
            // A booking on the order itself has no invoice whose matches carry our tag.
            ErpWrite::ManualBooking { document, .. } => document != order_id,
            // Read back by comparing the stored fields: equal details from anyone look the same.
            ErpWrite::TransferDetails { .. } => false,
            // Read back only while the order can be read; it was read for this operation.
            ErpWrite::Release
            | ErpWrite::SetShippingLock
            | ErpWrite::ClearShippingLock
            | ErpWrite::MarkInvoiceCaptured { .. }
            | ErpWrite::Comment { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests;
