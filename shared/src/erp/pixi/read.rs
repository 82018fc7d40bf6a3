//! Reading pixi: the changed orders since a watermark, and each order with its lines,
//! invoices and credit notes mapped from pixi's rows onto the ERP-neutral order (status codes,
//! exact decimals, rows of other orders refused).
//!
//! Every order is read with four calls of seed 000's list of installed calls:
//! `pixiGetOrderHeader`, then `pixiGetOrderline`, `pixiGetOrderTotals` and `pixiGetInvoice` in
//! parallel. `pixiGetOrder` (one call for many orders) is not used: it is not in that list, and
//! its page (https://pixi-api-docs.de/api/pixiGetOrder) shows only address and customer samples,
//! no order total and no order lines.
//!
//! The customer's e-mail address (for a payment link) is read on its own, when asked, with
//! `pixiGetCustomerOrderAccount` ([`PixiErp::read_customer_email`]).

use super::*;

/// The order-header columns paybridge reads from `pixiGetOrderHeader`
/// (https://pixi-api-docs.de/api/pixiGetOrderHeader). That page's "Order details" table is cut
/// off in the stored copy after `Blz`, `ZIP`: none of the columns below is shown there. Their
/// names come from sibling pages (named per field) and are the simulator's header columns.
#[derive(Debug, Clone)]
pub(super) struct Header {
    pub(super) order_nr: i64,
    /// `OrderNrExternal`: the shop's order number (pixiGetOrderHeader filter of that name).
    pub(super) shop_order_no: String,
    /// `ShopID` (pixiGetChangedOrders/pixiGetOrderHeaderList column).
    pub(super) shop_id: String,
    /// `CustKey` (pixiGetChangedOrders/pixiGetOrderHeaderList column).
    pub(super) cust_key: Option<i64>,
    /// `AddrRef`: billing address id (pixiGetOrderHeadersForCustomer, pixiReadOrderHeader).
    pub(super) addr_ref: Option<i64>,
    /// `PaymentType`: pixi's payment code, the order's method tag (`erp_method`). A single
    /// character on every page that types it (pixiGetOrderHeader/pixiGetOrderline filter
    /// `PaymentType` "char", example "g"; pixiGetUpdatedInvoices `varchar(1)`; the
    /// pixiGetOrder address sample `<PaymentCode>B</PaymentCode>`).
    pub(super) payment_type: String,
    /// `ccpPayID` = KK-ID (pixiPayGetOrdersToAuthorize "ID of credit card payment"; written by
    /// pixiPaySetAuthorizationStatus `AuthID`).
    pub(super) psp_payment_id: Option<String>,
    /// `OrderStatus` (`lars85/pixi-client` GetOrders/Order.php; values OPEN/HOLD/CLOSED from
    /// pixiGetOrderHeadersForCustomer).
    pub(super) status: String,
    /// `OrderCurrency` (`lars85/pixi-client` Item.php/Invoice.php; the real sample shows `EUR`).
    pub(super) currency: Option<String>,
    pub(super) locked: bool,
}

pub(super) fn flag(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "Y" | "1" | "TRUE" | "J"))
}

pub(super) fn int(row: &Row, col: &str) -> Option<i64> {
    row.get(col).and_then(|v| v.parse::<i64>().ok())
}

impl Header {
    pub(super) fn from_row(r: &Row) -> Result<Header, ErpError> {
        Ok(Header {
            order_nr: int(r, "OrderNr").ok_or_else(|| bad("order header without OrderNr"))?,
            shop_order_no: r.get("OrderNrExternal").unwrap_or_default().to_string(),
            shop_id: r.get("ShopID").unwrap_or_default().to_string(),
            cust_key: int(r, "CustKey"),
            addr_ref: int(r, "AddrRef"),
            payment_type: r
                .first(&["PaymentType", "PaymentCode"])
                .unwrap_or_default()
                .to_string(),
            psp_payment_id: r.get("ccpPayID").map(str::to_string),
            status: r.get("OrderStatus").unwrap_or("OPEN").to_ascii_uppercase(),
            currency: r.get("OrderCurrency").map(str::to_string),
            locked: flag(r.first(&["OrderLocked", "OhSLocked"])),
        })
    }
}

/// A decimal column read exactly: optional leading `-`, ASCII digits with at most one `.`, no
/// `_`, no exponent, at most 28 digits — beyond that `Decimal::from_str` would round or accept
/// what SQL Server never prints.
pub(super) fn decimal(v: &str, what: &str) -> Result<Decimal, ErpError> {
    let t = v.trim();
    let body = t.strip_prefix('-').unwrap_or(t);
    let mut digits = 0usize;
    let mut dots = 0usize;
    let plain = body.chars().all(|c| match c {
        '0'..='9' => {
            digits += 1;
            true
        }
        '.' => {
            dots += 1;
            true
        }
        _ => false,
    });
    if !plain || digits == 0 || digits > 28 || dots > 1 {
        return Err(bad(format!("{what}: {} is not a number", shown(v))));
    }
    Decimal::from_str(t).map_err(|_| bad(format!("{what}: {} is not a number", shown(v))))
}

/// A reply value for an error message, cut to a readable length.
pub(super) fn shown(v: &str) -> String {
    let cut: String = v.chars().take(40).collect();
    if cut.len() < v.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Refuses a row that names another order in its `OrderNr`/`OrderNR` column (a row without the
/// column is taken as the order's: not every call returns it).
pub(super) fn same_order(r: &Row, order_nr: i64, what: &str) -> Result<(), ErpError> {
    let Some(v) = r.first(&["OrderNr", "OrderNR"]) else {
        return Ok(());
    };
    match v.trim().parse::<i64>() {
        Ok(n) if n == order_nr => Ok(()),
        _ => Err(bad(format!(
            "{what} row of order {} in the reply for order {order_nr}",
            shown(v)
        ))),
    }
}

/// An exact money column (SQL `money` prints four decimals, e.g. `46.1800`).
pub(super) fn money(v: &str, cur: Currency, what: &str) -> Result<Money, ErpError> {
    Money::new(decimal(v, what)?, cur).map_err(|e| bad(format!("{what}: {e}")))
}

pub(super) fn line_status(code: &str) -> LineStatus {
    // Codes from the pixi help "customer order status" page and the order export STATUS list
    // (reference/erp.md §1.3); the mapping is our choice (see PixiErp docs).
    match code.trim().to_ascii_uppercase().as_str() {
        "AUS" | "RET" | "MIN" => LineStatus::Shipped,
        "STO" => LineStatus::Cancelled,
        "NLB" => LineStatus::NotDeliverable,
        _ => LineStatus::Open,
    }
}

/// An order from its header and its line, totals and invoice rows: every row must be the
/// order's own, amounts are exact in the order's currency.
pub(super) fn map_order(
    h: &Header,
    lines: &[Row],
    totals: &[Row],
    invoices: &[Row],
) -> Result<ErpOrder, ErpError> {
    let cur = order_currency(h, lines, totals, invoices)?;
    for (rows, what) in [
        (lines, "pixiGetOrderline"),
        (totals, "pixiGetOrderTotals"),
        (invoices, "pixiGetInvoice"),
    ] {
        for r in rows {
            same_order(r, h.order_nr, what)?;
        }
    }
    let out_lines = lines
        .iter()
        .map(|r| order_line(r, cur))
        .collect::<Result<Vec<_>, _>>()?;
    let billable = lines.iter().any(|r| {
        !matches!(
            line_status(r.get("Status").unwrap_or_default()),
            LineStatus::Cancelled | LineStatus::NotDeliverable
        )
    });
    if totals.is_empty() && billable {
        return Err(bad(format!(
            "pixiGetOrderTotals gave no row for order {}, which has lines to invoice",
            h.order_nr
        )));
    }
    let total = order_total(h.order_nr, totals, cur)?;
    let (invs, credits) = invoices_and_credits(h.order_nr, invoices, cur)?;
    let status = match h.status.as_str() {
        "CLOSED" => OrderStatus::Closed,
        "HOLD" | "HAL" => OrderStatus::Hold,
        _ if lines.iter().any(on_hold) => OrderStatus::Hold,
        _ => OrderStatus::Open,
    };
    Ok(ErpOrder {
        order_id: h.order_nr.to_string(),
        mandant: h.shop_id.clone(),
        shop_order_no: h.shop_order_no.clone(),
        psp_payment_id: h.psp_payment_id.clone(),
        payment_method: h.payment_type.clone(),
        status,
        total,
        lines: out_lines,
        shipping_lock: h.locked,
        invoices: invs,
        credit_notes: credits,
        customer_key: h.cust_key.map(|k| k.to_string()),
    })
}

/// The order's currency: the header's `OrderCurrency`, else the first one in the totals, line
/// or invoice rows.
fn order_currency(
    h: &Header,
    lines: &[Row],
    totals: &[Row],
    invoices: &[Row],
) -> Result<Currency, ErpError> {
    let code = h
        .currency
        .as_deref()
        .or_else(|| totals.iter().find_map(|r| r.get("OrderCurrency")))
        .or_else(|| lines.iter().find_map(|r| r.get("OrderCurrency")))
        .or_else(|| invoices.iter().find_map(|r| r.get("OrderCurrency")))
        .ok_or_else(|| {
            bad(format!(
                "order {}: no OrderCurrency in any reply",
                h.order_nr
            ))
        })?;
    Currency::from_code(&code.to_ascii_uppercase())
        .map_err(|e| bad(format!("order {}: {e}", h.order_nr)))
}

/// An order line row on hold (`Status` `HAL`).
pub(super) fn on_hold(r: &Row) -> bool {
    r.get("Status")
        .is_some_and(|s| s.eq_ignore_ascii_case("HAL"))
}

/// One order line: its key, status and gross amount (unit price × quantity, rounded to the
/// currency), from a `pixiGetOrderline` row (https://pixi-api-docs.de/api/pixiGetOrderline).
/// That page's response table is not in the stored copy (it ends with the request parameters):
/// the columns `OrderlineKey`, `Status`, `Qty`, `Price`, `Price_OrderCurr` are the pixiGetOrder
/// line columns of `lars85/pixi-client` (`Item.php`); `Qty`, `Price`, `Status`, `OrderNr` are
/// also on the sibling page pixiGetOrderlinesForOrder.
fn order_line(r: &Row, cur: Currency) -> Result<OrderLine, ErpError> {
    let key = r
        .get("OrderlineKey")
        .ok_or_else(|| bad("order line without OrderlineKey"))?;
    // Unit price in order currency × quantity (lars85 Item.php: Qty, Price, Price_OrderCurr).
    let price = r
        .first(&["Price_OrderCurr", "Price"])
        .ok_or_else(|| bad(format!("order line {key} without Price")))?;
    let qty = decimal(r.get("Qty").unwrap_or("1"), "Qty")?;
    let gross = decimal(price, "Price")?
        .checked_mul(qty)
        .ok_or_else(|| bad(format!("order line {key}: Price × Qty overflows")))?
        .round_dp_with_strategy(cur.exponent(), RoundingStrategy::MidpointAwayFromZero);
    Ok(OrderLine {
        line_id: key.to_string(),
        status: line_status(r.get("Status").unwrap_or_default()),
        amount: Money::new(gross, cur).map_err(|e| bad(e.to_string()))?,
    })
}

/// The order total from the rows of `pixiGetOrderTotals`
/// (https://pixi-api-docs.de/api/pixiGetOrderTotals, "totals equal to what the invoice would
/// produce from the order in order currency").
///
/// The page documents one row per item (`Qty`, `Price`, `EanUpc`, `ArtName`, `ItemNote`,
/// `Subtotal` = "Totalprice these items in this order") carrying order-level columns on every
/// row (`ShipCost` = "the total shipping costs of the whole order", `Discount` = "Discount of
/// the order", `VATLow`/`VATHigh`/`VATTotal` = VAT of the whole order). The stored page is cut
/// off after `VATTotal` and shows no order total column, so the total is built from the
/// documented columns: Σ `Subtotal` + `ShipCost` − |`Discount`|, each order-level column counted
/// once. What the page does not show, and is assumed here: `Subtotal` is gross (VAT included,
/// as the invoice shows it; `VATTotal` is not added); the sign of `Discount` (a positive or
/// negative amount both reduce the total); that cancelled lines (`STO`/`NLB`) have no row
/// (the invoice would not carry them), so no rows is a total of 0 — [`map_order`] accepts that
/// only when every line is cancelled or not deliverable. An undocumented `Total`
/// column is ignored. Rows that disagree on an order-level column are a bad reply.
pub(super) fn order_total(order_nr: i64, totals: &[Row], cur: Currency) -> Result<Money, ErpError> {
    let mut items = Decimal::ZERO;
    for r in totals {
        let v = r.get("Subtotal").ok_or_else(|| {
            bad(format!(
                "pixiGetOrderTotals row of order {order_nr} without Subtotal"
            ))
        })?;
        items = items
            .checked_add(decimal(v, "Subtotal")?)
            .ok_or_else(|| bad(format!("order {order_nr}: Subtotal sum overflows")))?;
    }
    let ship = order_level(order_nr, totals, "ShipCost")?;
    let discount = order_level(order_nr, totals, "Discount")?.abs();
    let total = items
        .checked_add(ship)
        .and_then(|t| t.checked_sub(discount))
        .ok_or_else(|| bad(format!("order {order_nr}: total overflows")))?
        .round_dp_with_strategy(cur.exponent(), RoundingStrategy::MidpointAwayFromZero);
    if total.is_sign_negative() && !total.is_zero() {
        return Err(bad(format!(
            "order {order_nr}: discount larger than items and shipping (total {total})"
        )));
    }
    Money::new(total, cur).map_err(|e| bad(format!("order {order_nr} total: {e}")))
}

/// An order-level column that `pixiGetOrderTotals` repeats on every item row: the same value on
/// each row that has it (0 when no row has it); rows that disagree are a bad reply.
pub(super) fn order_level(order_nr: i64, totals: &[Row], col: &str) -> Result<Decimal, ErpError> {
    let mut seen: Option<Decimal> = None;
    for r in totals {
        let Some(v) = r.get(col) else { continue };
        let d = decimal(v, col)?;
        match seen {
            Some(s) if s != d => {
                return Err(bad(format!(
                    "pixiGetOrderTotals of order {order_nr}: {col} {s} and {d} on different rows"
                )));
            }
            _ => seen = Some(d),
        }
    }
    Ok(seen.unwrap_or(Decimal::ZERO))
}

/// The invoice rows as invoices (total ≥ 0) and credit notes (negative total); rows without
/// `InvoiceNr` are skipped, one in another currency than the order's is refused.
fn invoices_and_credits(
    order_nr: i64,
    invoices: &[Row],
    cur: Currency,
) -> Result<(Vec<Invoice>, Vec<CreditNote>), ErpError> {
    let mut invs = Vec::new();
    let mut credits = Vec::new();
    for r in invoices {
        let Some(nr) = r.get("InvoiceNr") else {
            continue;
        };
        if let Some(c) = r.get("OrderCurrency")
            && !c.eq_ignore_ascii_case(cur.code())
        {
            return Err(bad(format!(
                "invoice {nr} is in {c}, order {order_nr} in {cur}"
            )));
        }
        // Invoice total in order currency (lars85 Invoice.php: Total, Total_OrderCurr; pixiGetInvoicesByOrderNr: total).
        let amount = money(
            r.first(&["Total_OrderCurr", "Total"])
                .ok_or_else(|| bad(format!("invoice {nr} without Total")))?,
            cur,
            "invoice Total",
        )?;
        let abs = amount.amount().abs();
        let captured = invoice_paid(r, abs)?;
        if amount.is_negative() {
            credits.push(CreditNote {
                credit_id: nr.to_string(),
                invoice_id: r
                    .first(&["CreditForInvoiceNr", "OriginalInvoiceNr"])
                    .map(str::to_string),
                amount: Money::new(abs, cur).map_err(|e| bad(e.to_string()))?,
                settled: captured,
            });
        } else {
            invs.push(Invoice {
                invoice_id: nr.to_string(),
                amount,
                captured,
            });
        }
    }
    Ok((invs, credits))
}

/// Whether an invoice row is paid: its `Paid` bit (pixiGetInvoicesByOrderNr) or the paid amount
/// (`PaidAmount` lars85 Invoice.php; `PaidSum` pixiGetInvoicesForCustomer) covering `total`
/// (the invoice's absolute total).
pub(super) fn invoice_paid(r: &Row, total: Decimal) -> Result<bool, ErpError> {
    let paid = match r.first(&["PaidAmount", "PaidSum", "PayedSum"]) {
        Some(v) => decimal(v, "PaidAmount")?.abs(),
        None => Decimal::ZERO,
    };
    Ok(flag(r.get("Paid")) || (!total.is_zero() && paid >= total))
}

pub(super) fn order_nr(order_id: &str) -> Result<i64, ErpError> {
    order_id
        .trim()
        .parse::<i64>()
        .map_err(|_| ErpError::Refused(format!("{order_id:?} is not a pixi order number")))
}

/// The tag a write carries so that a read-back can recognise it.
pub(super) fn tag(op_ref: &str) -> String {
    format!("[{}]", psp_reference(op_ref))
}

/// Truncates to pixi's column width (characters), keeping the start where the tag is.
pub(super) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl PixiErp {
    /// The orders to look at since `watermark`: those waiting for an authorization, those with
    /// an invoice to capture, and those pixi reports changed (of our payment types), each once
    /// in that order; the next watermark is pixi's `DateTimeTo`.
    pub(super) async fn changed_orders(
        &self,
        watermark: Option<&str>,
    ) -> Result<Changes, ErpError> {
        let mut nrs = Vec::new();
        for code in &self.payment_codes {
            nrs.extend(self.orders_to_authorize(code).await?);
        }
        for code in &self.payment_codes {
            nrs.extend(self.invoices_to_capture(code).await?);
        }
        let (changed, next) = self.changed_since(watermark).await?;
        nrs.extend(changed);
        let mut seen = HashSet::new();
        let order_ids = nrs
            .into_iter()
            .filter(|nr| seen.insert(*nr))
            .map(|nr| nr.to_string())
            .collect();
        Ok(Changes {
            order_ids,
            watermark: next,
        })
    }

    /// The orders of payment code `code` waiting for an authorization status.
    async fn orders_to_authorize(&self, code: &str) -> Result<Vec<i64>, ErpError> {
        // pixiPayGetOrdersToAuthorize(PaymentCode, ShowAll, RowCount) — request example order;
        // ShowAll omitted (default 0: orders with ccpSetFailTries > 3 stay hidden).
        let reply = self
            .call(
                "pixiPayGetOrdersToAuthorize",
                &[
                    Param::string("PaymentCode", code),
                    Param::int("RowCount", self.list_rows),
                ],
            )
            .await?;
        Ok(reply
            .rows()
            .iter()
            .filter_map(|r| int(r, "OrderNr"))
            .collect())
    }

    /// The orders of payment code `code` with a shipped invoice not yet captured, read page by
    /// page.
    async fn invoices_to_capture(&self, code: &str) -> Result<Vec<i64>, ErpError> {
        // pixiPayGetInvoicesToCapture(PaymentCode, ShowAll, RowCount, FromInvoiceId): the list
        // holds every shipped, not yet captured invoice, so it is read from 0 on each poll and
        // paged with FromInvoiceId (since 22.06) within the poll.
        let mut nrs = Vec::new();
        let mut from = 0i64;
        for page_no in 0.. {
            if page_no >= MAX_LIST_PAGES {
                return Err(bad(format!(
                    "pixiPayGetInvoicesToCapture {code}: more than {MAX_LIST_PAGES} pages"
                )));
            }
            let reply = self
                .call(
                    "pixiPayGetInvoicesToCapture",
                    &[
                        Param::string("PaymentCode", code),
                        Param::int("RowCount", self.list_rows),
                        Param::int("FromInvoiceId", from),
                    ],
                )
                .await?;
            let rows = reply.rows();
            for r in rows {
                // `OrderNr` of the invoice: the stored column list is truncated after
                // `CardCVC`; OrderNr/InvoiceKey are inferred from the sibling payment calls.
                match int(r, "OrderNr") {
                    Some(nr) => nrs.push(nr),
                    None => {
                        tracing::warn!("pixiPayGetInvoicesToCapture row without OrderNr skipped")
                    }
                }
            }
            let last = rows
                .iter()
                .filter_map(|r| int(r, "InvoiceKey").or_else(|| int(r, "InvoiceID")))
                .max();
            match last {
                Some(k) if rows.len() as i64 >= self.list_rows && k > from => from = k,
                _ => break,
            }
        }
        Ok(nrs)
    }

    /// The orders of our payment types pixi reports changed since `watermark`, and the next
    /// watermark (the reply's `DateTimeTo`, else where this read started).
    async fn changed_since(&self, watermark: Option<&str>) -> Result<(Vec<i64>, String), ErpError> {
        // pixiGetChangedOrders(DateTimeFrom required, "YYYY-MM-DD hh:mm:ss"); the reply's
        // `DateTimeTo` ("Orders changed till this time") is the next cursor.
        let from = self.changed_from(watermark);
        let reply = self
            .call(
                "pixiGetChangedOrders",
                &[Param::string("DateTimeFrom", from.clone())],
            )
            .await?;
        let mut nrs = Vec::new();
        let mut next = None;
        for r in reply.rows() {
            if next.is_none() {
                next = r.get("DateTimeTo").map(|t| t.replace('T', " "));
            }
            if self.handles(r.get("PaymentType"))
                && let Some(nr) = int(r, "OrderNr")
            {
                nrs.push(nr);
            }
        }
        Ok((nrs, next.unwrap_or(from)))
    }

    /// The orders of `order_ids`, each read with its four per-order calls (see
    /// [`PixiErp::read_order`]); ids that are not order numbers, and orders pixi does not know,
    /// are left out.
    pub(super) async fn read_orders(
        &self,
        order_ids: &[String],
    ) -> Result<Vec<ErpOrder>, ErpError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for id in order_ids {
            let Ok(nr) = id.trim().parse::<i64>() else {
                continue;
            };
            if seen.insert(nr)
                && let Some(o) = self.read_order(nr).await?
            {
                out.push(o);
            }
        }
        Ok(out)
    }
}

impl PixiErp {
    /// The e-mail address of the order's customer: `CeMail` of the "Customer information" rows
    /// of `pixiGetCustomerOrderAccount`
    /// (https://pixi-api-docs.de/api/pixiGetCustomerOrderAccount), asked with the order's
    /// `CustKey` (from the order facts; the header is read only when they lack it, as for a
    /// booking). `None`, with a warning, when pixi has no such customer, no address for it, an
    /// address that is not one plain address ([`plain_email_address`]), or rows that disagree
    /// on it: a missing address never fails the order. Errors are those of the calls.
    pub(super) async fn read_customer_email(
        &self,
        order: &ErpOrder,
    ) -> Result<Option<String>, ErpError> {
        let known = order
            .customer_key
            .as_deref()
            .and_then(|k| k.trim().parse::<i64>().ok());
        let cust = match known {
            Some(k) => k,
            None => {
                let nr = order_nr(&order.order_id)?;
                self.require_header(nr).await?.cust_key.ok_or_else(|| {
                    ErpError::BadReply(format!("order {nr}: header without CustKey"))
                })?
            }
        };
        // https://pixi-api-docs.de/api/pixiGetCustomerOrderAccount (not in seed 000's list):
        // `CustKey` (int, required), `OrderDateFrom`/`OrderDateTo` (optional filters of the
        // customer's orders, omitted: only the customer is wanted). Response "1. Customer
        // information": `CeMail` ("Customers eMail", varchar), `ShopID`, `AddrRef`,
        // `CustomerLocked` (Y/N), `CustomerNrExternal`; "2. Detail customer information" follows
        // (name, address; cut off in the stored page) and is not read. The page shows no CustKey
        // column, so the rows are taken as the asked customer's.
        let reply = self
            .call(
                "pixiGetCustomerOrderAccount",
                &[Param::int("CustKey", cust)],
            )
            .await?;
        // Only a present-but-empty row set means "no such customer" (as for the header).
        if reply.result_sets.is_empty() {
            return Err(bad(format!(
                "pixiGetCustomerOrderAccount for customer {cust}: reply without a row set"
            )));
        }
        let order_id = order.order_id.as_str();
        let mut mails: Vec<&str> = reply
            .rows()
            .iter()
            .filter_map(|r| r.get("CeMail"))
            .collect();
        mails.sort_unstable();
        mails.dedup();
        let raw = match mails.as_slice() {
            [one] => *one,
            [] => {
                tracing::warn!(
                    order = %order_id,
                    customer = cust,
                    "pixi has no e-mail address for the order's customer"
                );
                return Ok(None);
            }
            _ => {
                tracing::warn!(
                    order = %order_id,
                    customer = cust,
                    "pixi gave different e-mail addresses for the order's customer; none is used"
                );
                return Ok(None);
            }
        };
        match plain_email_address(raw) {
            Ok(a) => Ok(Some(a.to_string())),
            Err(why) => {
                tracing::warn!(
                    order = %order_id,
                    customer = cust,
                    why,
                    "the e-mail address pixi has for the order's customer is not usable"
                );
                Ok(None)
            }
        }
    }
}
