//! Writing to pixi: each ERP write as its pixi call, and the read-back that tells whether a
//! write whose reply was lost was applied (pixi's writes are not idempotent).
//!
//! The header facts a write needs (`ShopID`, `OrderNrExternal`, `ccpPayID` for a release,
//! `CustKey` for a booking) are taken from the order facts read before; `pixiGetOrderHeader` is
//! called only when one of them is missing there. An order pixi does not know is then refused
//! by the write call itself.

use super::*;

impl PixiErp {
    /// Sends one ERP write as its pixi call(s), tagged with `op_ref` where pixi keeps a text.
    pub(super) async fn apply_write(
        &self,
        facts: &ErpOrder,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        let nr = order_nr(&facts.order_id)?;
        let tag = tag(op_ref);
        match write {
            ErpWrite::Release => self.write_release(facts, nr, &tag).await,
            ErpWrite::SetShippingLock | ErpWrite::ClearShippingLock => {
                let lock = matches!(write, ErpWrite::SetShippingLock);
                self.write_shipping_lock(nr, lock, &tag).await
            }
            ErpWrite::MarkInvoiceCaptured {
                invoice_id,
                event_code,
                amount,
            } => {
                check_event(event_code)?;
                let pay_code = self.pay_code(facts, nr).await?;
                self.write_capture(invoice_id, event_code, *amount, &pay_code, op_ref)
                    .await
            }
            ErpWrite::ManualBooking {
                amount,
                event_code,
                document,
            } => {
                check_event(event_code)?;
                self.write_booking(facts, nr, *amount, event_code, document, &tag)
                    .await
            }
            ErpWrite::TransferDetails { details } => self.write_transfer(nr, details).await,
            ErpWrite::Comment { text } => {
                // pixiCreateOrderComment (seed 000's list) has no public page; OrderNr, Comment
                // as modomoto add_comment_to_order.rb sends them to pixiAddOrderComment (no
                // public page either). See "Choices" on PixiErp.
                self.call(
                    CALL_ADD_COMMENT,
                    &[
                        Param::int("OrderNr", nr),
                        Param::string("Comment", format!("{tag} {text}")),
                    ],
                )
                .await?;
                Ok(())
            }
        }
    }

    /// A release: the authorization status confirmed, then the order released.
    async fn write_release(&self, facts: &ErpOrder, nr: i64, tag: &str) -> Result<(), ErpError> {
        let h = match release_facts(facts) {
            Some(h) => h,
            None => self.require_header(nr).await?.into(),
        };
        // https://pixi-api-docs.de/api/pixiPaySetAuthorizationStatus: OrderNr, Success (bit),
        // AuthID varchar(50) → OrderHeader.ccpPayID, AuthCode, Message varchar(200) → CCP log.
        // The page has no request example (parameter order from its table) and no response.
        let mut p = vec![Param::int("OrderNr", nr), Param::bit("Success", true)];
        if let Some(id) = &h.psp_payment_id {
            p.push(Param::string("AuthID", clip(id, 50)));
        }
        p.push(Param::string(
            "Message",
            clip(&format!("paybridge {tag}: authorization confirmed"), 200),
        ));
        self.call("pixiPaySetAuthorizationStatus", &p).await?;
        // https://pixi-api-docs.de/api/pixiReleaseOrder (not in seed 000's list): ShopId,
        // OrderNrExternal (HTTP example order); ReturnCode OK/ERROR + AffectedRows.
        self.call(
            "pixiReleaseOrder",
            &[
                Param::string("ShopId", h.shop_id),
                Param::string("OrderNrExternal", h.shop_order_no),
            ],
        )
        .await?;
        Ok(())
    }

    /// Sets (`lock`) or clears the order's shipping lock.
    async fn write_shipping_lock(&self, nr: i64, lock: bool, tag: &str) -> Result<(), ErpError> {
        let reason = if lock {
            "shipping lock set"
        } else {
            "shipping lock cleared"
        };
        // https://pixi-api-docs.de/api/pixiSetOrderShippingLock: OrderNr, Locked, UserName,
        // Reason varchar(255) (request example order); ReturnCode OK/INFO/ERROR + ErrorMessage.
        self.call(
            "pixiSetOrderShippingLock",
            &[
                Param::int("OrderNr", nr),
                Param::bit("Locked", lock),
                Param::string("UserName", clip(&self.user_name, 50)),
                Param::string("Reason", clip(&format!("paybridge {tag}: {reason}"), 255)),
            ],
        )
        .await?;
        Ok(())
    }

    /// The order's pixi payment code (`PaymentType`) for `PayCode`: from the order facts read
    /// before, else from the header.
    async fn pay_code(&self, facts: &ErpOrder, nr: i64) -> Result<String, ErpError> {
        let known = facts.payment_method.trim();
        if !known.is_empty() {
            return Ok(known.to_string());
        }
        let h = self.require_header(nr).await?;
        if h.payment_type.is_empty() {
            return Err(bad(format!("order {nr}: header without PaymentType")));
        }
        Ok(h.payment_type)
    }

    /// Marks an invoice captured, booking `event_code` in the customer account.
    async fn write_capture(
        &self,
        invoice_id: &str,
        event_code: &str,
        amount: Money,
        pay_code: &str,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        let tag = tag(op_ref);
        // https://pixi-api-docs.de/api/pixiPaySetInvoiceCapture: PayID varchar(50) ("Unique
        // TransactionID"), EventID varchar(3), Message varchar(200), PayCode varchar(50)
        // ("CC = Credit Card", example CC), Success, InvoiceNr varchar(20), CaptureSum money,
        // SetRemainingOrdersToHAL — all required but EventID; Success=1 books EventID in the
        // customer account itself (additional notes). PayCode is the order's pixi payment code;
        // the page names only the example CC, not which codes pixi accepts. No request example
        // (order from the table) and no response table.
        self.call(
            "pixiPaySetInvoiceCapture",
            &[
                Param::string("PayID", psp_reference(op_ref)),
                Param::string("EventID", event_code),
                Param::string(
                    "Message",
                    clip(&format!("paybridge {tag}: captured {amount}"), 200),
                ),
                Param::string("PayCode", clip(pay_code, 50)),
                Param::bit("Success", true),
                Param::string("InvoiceNr", invoice_id),
                Param::decimal("CaptureSum", amount.amount()),
                Param::bit("SetRemainingOrdersToHAL", false),
            ],
        )
        .await?;
        Ok(())
    }

    /// A manual booking in the order's customer account, matched to `document` unless that is
    /// the order itself.
    async fn write_booking(
        &self,
        facts: &ErpOrder,
        nr: i64,
        amount: Money,
        event_code: &str,
        document: &str,
        tag: &str,
    ) -> Result<(), ErpError> {
        let known = facts
            .customer_key
            .as_deref()
            .and_then(|k| k.trim().parse::<i64>().ok());
        let cust =
            match known {
                Some(k) => k,
                None => self.require_header(nr).await?.cust_key.ok_or_else(|| {
                    ErpError::BadReply(format!("order {nr}: header without CustKey"))
                })?,
            };
        // https://pixi-api-docs.de/api/pixiCACreateManualBooking: CustKey, EventID, Amount,
        // EventDate, Comment varchar(512), MatchToInvoiceNr varchar(20), MatchKey, CurrencyId
        // (request example order; optional ones omitted); ReturnCode OK/ERROR, ErrorMessage. CurrencyId is pixi's numeric id, which
        // paybridge does not know: NULL books in the shop's base currency.
        let mut p = vec![
            Param::int("CustKey", cust),
            Param::string("EventID", event_code),
            Param::decimal("Amount", amount.amount()),
            Param::string(
                "Comment",
                clip(&format!("paybridge {tag}: {document} {amount}"), 512),
            ),
        ];
        if document != facts.order_id {
            p.push(Param::string("MatchToInvoiceNr", clip(document, 20)));
        }
        self.call("pixiCACreateManualBooking", &p).await?;
        Ok(())
    }

    /// Whether a write whose reply was lost was applied, read back from pixi; `None` when pixi
    /// has nothing to tell it by.
    pub(super) async fn write_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError> {
        let nr = order_nr(order_id)?;
        let tag = tag(op_ref);
        match write {
            ErpWrite::Release => self.released(nr).await,
            ErpWrite::SetShippingLock | ErpWrite::ClearShippingLock => {
                let Some(h) = self.header(nr).await? else {
                    return Ok(None);
                };
                Ok(Some(h.locked == matches!(write, ErpWrite::SetShippingLock)))
            }
            ErpWrite::MarkInvoiceCaptured { invoice_id, .. } => {
                self.invoice_captured(nr, invoice_id).await
            }
            ErpWrite::ManualBooking { document, .. } => {
                if document == order_id {
                    return Ok(None);
                }
                // https://pixi-api-docs.de/api/pixiCAGetInvoiceMatch (not in seed 000's list):
                // InvoiceNr → events with `Reference` varchar(512), the width of the booking's
                // `Comment`, which carries our tag. That Comment becomes Reference is not said.
                let reply = self
                    .call(
                        "pixiCAGetInvoiceMatch",
                        &[Param::string("InvoiceNr", clip(document, 20))],
                    )
                    .await?;
                Ok(Some(reply.all_rows().any(|r| {
                    r.get("Reference").is_some_and(|v| v.contains(&tag))
                })))
            }
            ErpWrite::TransferDetails { details } => self.details_stored(nr, details).await,
            ErpWrite::Comment { .. } => {
                // https://pixi-api-docs.de/api/pixiGetOrderComments (not in seed 000's list):
                // Since, OrderNr, RowCount ≤ 1000, OrderNrShop. Its result columns are not in
                // the stored page ("comments, with their creation date and user"), so every
                // column of every row is searched for the tag.
                let reply = self
                    .call("pixiGetOrderComments", &[Param::int("OrderNr", nr)])
                    .await?;
                Ok(Some(reply.all_rows().any(|r| r.contains(&tag))))
            }
        }
    }

    /// Whether the order is released: neither the header nor a line on hold.
    async fn released(&self, nr: i64) -> Result<Option<bool>, ErpError> {
        let Some(h) = self.header(nr).await? else {
            return Ok(None);
        };
        let lines = self.lines(nr).await?;
        let hal = lines.rows().iter().any(on_hold);
        Ok(Some(!(hal || h.status == "HOLD")))
    }

    /// Whether the invoice is paid (as [`map_order`] reads it), from the order's invoices: the
    /// pixiGetInvoice page documents the `OrderNR` filter, not an invoice-number one.
    async fn invoice_captured(&self, nr: i64, invoice_id: &str) -> Result<Option<bool>, ErpError> {
        let rows = self.invoices(nr).await?;
        let Some(r) = rows.iter().find(|r| r.get("InvoiceNr") == Some(invoice_id)) else {
            return Ok(None);
        };
        let total = decimal(
            r.first(&["Total_OrderCurr", "Total"]).unwrap_or("0"),
            "invoice Total",
        )?
        .abs();
        invoice_paid(r, total).map(Some)
    }

    /// Whether the order's billing address holds `details`' IBAN and BIC.
    async fn details_stored(
        &self,
        nr: i64,
        details: &BankDetails,
    ) -> Result<Option<bool>, ErpError> {
        let Some(h) = self.header(nr).await? else {
            return Ok(None);
        };
        let Some(addr) = h.addr_ref else {
            return Ok(None);
        };
        // https://pixi-api-docs.de/api/pixiGetAddress: AddrKey (required) → BIC, IBAN, … (the
        // stored table is cut off after `Address`; only IBAN and BIC are compared).
        let reply = self
            .call("pixiGetAddress", &[Param::int("AddrKey", addr)])
            .await?;
        let Some(r) = reply.rows().first() else {
            return Ok(None);
        };
        let same = |col: &str, want: &str| r.get(col).unwrap_or_default() == want.trim();
        Ok(Some(
            same("IBAN", &details.iban) && same("BIC", &details.bic),
        ))
    }
}

impl PixiErp {
    /// Prepayment transfer data into the billing address, if pixi still lets it change.
    async fn write_transfer(&self, nr: i64, details: &BankDetails) -> Result<(), ErpError> {
        // https://pixi-api-docs.de/api/pixiCanChangeAddress: OrderNr or OrderNrExternal (only
        // one); response `return` int, 1 = can still be updated, 0 = not (response example
        // `<return>0</return>`).
        let reply = self
            .call("pixiCanChangeAddress", &[Param::int("OrderNr", nr)])
            .await?;
        match can_change(&reply) {
            Some(true) => {}
            Some(false) => {
                return Err(ErpError::Refused(format!(
                    "pixiCanChangeAddress: the address of order {nr} can no longer be changed"
                )));
            }
            None => return Err(bad("pixiCanChangeAddress: reply without `return`")),
        }
        self.call("pixiChangeAddress", &transfer_params(nr, details))
            .await?;
        Ok(())
    }
}

/// The `return` of a pixiCanChangeAddress reply (a scalar element, or a column of its first
/// row): `Some(true)` for 1, `Some(false)` for 0, `None` when absent or anything else.
pub(super) fn can_change(reply: &Reply) -> Option<bool> {
    let v = reply
        .scalars
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("return"))
        .map(|(_, v)| v.trim())
        .or_else(|| reply.rows().first().and_then(|r| r.get("return")))?;
    match v {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// What a release sends: `ShopId`, `OrderNrExternal` and `AuthID` (= `ccpPayID`).
pub(super) struct ReleaseFacts {
    pub(super) shop_id: String,
    pub(super) shop_order_no: String,
    pub(super) psp_payment_id: Option<String>,
}

impl From<Header> for ReleaseFacts {
    fn from(h: Header) -> ReleaseFacts {
        ReleaseFacts {
            shop_id: h.shop_id,
            shop_order_no: h.shop_order_no,
            psp_payment_id: h.psp_payment_id,
        }
    }
}

/// The release facts from the order facts read before (`mandant` = ShopID, `shop_order_no` =
/// OrderNrExternal, `psp_payment_id` = ccpPayID, as [`map_order`] fills them); `None` when one
/// of them is missing, so the header is read instead.
pub(super) fn release_facts(facts: &ErpOrder) -> Option<ReleaseFacts> {
    let present = |s: &str| !s.trim().is_empty();
    let pay = facts.psp_payment_id.as_deref().filter(|p| present(p))?;
    (present(&facts.mandant) && present(&facts.shop_order_no)).then(|| ReleaseFacts {
        shop_id: facts.mandant.clone(),
        shop_order_no: facts.shop_order_no.clone(),
        psp_payment_id: Some(pay.to_string()),
    })
}

pub(super) fn check_event(code: &str) -> Result<(), ErpError> {
    // EventID is varchar(3) (pixiPaySetInvoiceCapture, pixiCACreateManualBooking).
    let n = code.trim().chars().count();
    if n == 0 || n > 3 {
        return Err(ErpError::Refused(format!(
            "booking event code {code:?} must be 1 to 3 characters (pixi EventID varchar(3))"
        )));
    }
    Ok(())
}

pub(super) fn transfer_params(nr: i64, d: &BankDetails) -> Vec<Param> {
    // https://pixi-api-docs.de/api/pixiChangeAddress (not in seed 000's list): OrderNr (or
    // OrderNrExternal, not both), IBAN varchar(35), BIC varchar(11) — documented; AddrType
    // (named in the page's notes; B = billing per the AddrType="B" rows of the pixiGetOrder
    // sample), BankName, CardHolderName — not in the stored table, which is cut off after
    // `Note` (see PixiErp "Choices").
    vec![
        Param::int("OrderNr", nr),
        Param::string("AddrType", "B"),
        Param::string("IBAN", clip(d.iban.trim(), 35)),
        Param::string("BIC", clip(d.bic.trim(), 11)),
        Param::string("BankName", clip(&d.descriptor, 50)),
        Param::string("CardHolderName", clip(&d.holder, 60)),
    ]
}
