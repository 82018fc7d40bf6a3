//! The pixi calls the simulator serves: parameter lists (names and, where pixi-api-docs shows a
//! "Request Example", their order), required parameters, result columns, and the effect on state.
//!
//! Each call names its source. "[doc]" = https://pixi-api-docs.de/api/<call>; "[code]" = the
//! named client repository; "[inferred]" = a column the stored pages truncate, named after the
//! same column in a sibling call (see the connector's "Choices" for the reasoning).

use super::wire::{Outcome, Request, RowSet, SqlType, Val, text};
use super::{BookingSource, SimBooking, SimComment, State};
use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use std::str::FromStr;

/// Parameters of a call.
struct Spec {
    params: &'static [&'static str],
    required: &'static [&'static str],
    /// pixi-api-docs shows the parameter order in a "Request Example" (the Ruby client README:
    /// pixi rejects parameters out of the documented order). Where the page only has the table
    /// (sorted by name length there), the order is not enforced.
    ordered: bool,
}

fn spec(call: &str) -> Option<Spec> {
    let s = |params, required, ordered| {
        Some(Spec {
            params,
            required,
            ordered,
        })
    };
    match call {
        // [doc] request example: PaymentCode, ShowAll, RowCount.
        "pixiPayGetOrdersToAuthorize" => s(&["PaymentCode", "ShowAll", "RowCount"], &[], true),
        // [doc] request example: PaymentCode, ShowAll, RowCount, FromInvoiceId.
        "pixiPayGetInvoicesToCapture" => s(
            &["PaymentCode", "ShowAll", "RowCount", "FromInvoiceId"],
            &[],
            true,
        ),
        // [doc] DateTimeFrom required; example order DateTimeFrom, skipGetXMLValue, ReturnOnlyDFOrders.
        "pixiGetChangedOrders" => s(
            &["DateTimeFrom", "skipGetXMLValue", "ReturnOnlyDFOrders"],
            &["DateTimeFrom"],
            true,
        ),
        // [doc] example starts OrderNr, OrderNrExternal, CustKey, FromTime (rest of the example truncated).
        "pixiGetOrderHeader" => s(
            &[
                "OrderNr",
                "OrderNrExternal",
                "CustKey",
                "FromTime",
                "UntilTime",
                "FromUpdateTime",
                "ShopID",
                "PaymentType",
                "ShippingCountry",
                "RowCount",
            ],
            &[],
            false,
        ),
        // [doc] + modomoto get_order_lines.rb (`OrderNR`).
        "pixiGetOrderline" => s(
            &[
                "ShopID",
                "Status",
                "OrderNR",
                "RowCount",
                "InvoiceNr",
                "OrderDateFrom",
                "OrderDateTo",
                "PaymentType",
                "OrderlineKey",
                "UpdateDateTo",
                "ShowOrderlines",
            ],
            &[],
            false,
        ),
        // [doc] request example: OrderNr, OrderNrExternal, CustKey.
        "pixiGetOrderTotals" => s(&["OrderNr", "OrderNrExternal", "CustKey"], &[], true),
        // [doc] ShopID, OrderNR, RowCount, StartKey, InvDateFrom/To (the stored table is cut
        // off there: further parameters, e.g. an invoice number filter, are not shown, so the
        // simulator has none).
        "pixiGetInvoice" => s(
            &[
                "ShopID",
                "OrderNR",
                "RowCount",
                "StartKey",
                "InvDateFrom",
                "InvDateTo",
            ],
            &[],
            false,
        ),
        // [doc] AuthID, Message, OrderNr, Success, AuthCode (table only).
        "pixiPaySetAuthorizationStatus" => s(
            &["OrderNr", "Success", "AuthID", "AuthCode", "Message"],
            &["OrderNr", "Success"],
            false,
        ),
        // [doc] both required; the request example and the HTTP example disagree on the order.
        "pixiReleaseOrder" => s(
            &["ShopId", "OrderNrExternal"],
            &["ShopId", "OrderNrExternal"],
            false,
        ),
        // [doc] request example: OrderNr, Locked, UserName, Reason; OrderNr required.
        "pixiSetOrderShippingLock" => s(
            &["OrderNr", "Locked", "UserName", "Reason"],
            &["OrderNr"],
            true,
        ),
        // [doc] all required except EventID (table only).
        "pixiPaySetInvoiceCapture" => s(
            &[
                "PayID",
                "EventID",
                "Message",
                "PayCode",
                "Success",
                "InvoiceNr",
                "CaptureSum",
                "SetRemainingOrdersToHAL",
            ],
            &[
                "PayID",
                "Message",
                "PayCode",
                "Success",
                "InvoiceNr",
                "CaptureSum",
                "SetRemainingOrdersToHAL",
            ],
            false,
        ),
        // [doc] request example: CustKey, EventID, Amount, EventDate, Comment, MatchToInvoiceNr, MatchKey, CurrencyId.
        "pixiCACreateManualBooking" => s(
            &[
                "CustKey",
                "EventID",
                "Amount",
                "EventDate",
                "Comment",
                "MatchToInvoiceNr",
                "MatchKey",
                "CurrencyId",
            ],
            &["CustKey", "EventID", "Amount"],
            true,
        ),
        // [doc] request example: InvoiceKey, InvoiceNr.
        "pixiCAGetInvoiceMatch" => s(&["InvoiceKey", "InvoiceNr"], &[], true),
        // [doc] IBAN, BIC, BLZ and the address block; OrderNr or OrderNrExternal; AddrType.
        // [inferred] BankName, CardHolderName (address columns of the pixiGetOrder sample).
        "pixiChangeAddress" => s(
            &[
                "OrderNr",
                "OrderNrExternal",
                "AddrType",
                "Name",
                "Street",
                "ZIP",
                "City",
                "Fax",
                "Fax2",
                "Note",
                "IBAN",
                "BIC",
                "BLZ",
                "BankName",
                "CardHolderName",
            ],
            &[],
            false,
        ),
        // [doc] AddrKey required.
        "pixiGetAddress" => s(&["AddrKey"], &["AddrKey"], true),
        // [doc] request example: OrderNr, OrderNrExternal (both optional, use only one).
        "pixiCanChangeAddress" => s(&["OrderNr", "OrderNrExternal"], &[], true),
        // Seed 000 lists pixiCreateOrderComment; no public page. [code] modomoto
        // add_comment_to_order.rb sends OrderNr, Comment to pixiAddOrderComment (no public page
        // either): the simulator takes those two, both required (a guess).
        "pixiCreateOrderComment" => s(&["OrderNr", "Comment"], &["OrderNr", "Comment"], true),
        // [doc] Since, OrderNr, RowCount, OrderNrShop (table only).
        "pixiGetOrderComments" => s(&["Since", "OrderNr", "RowCount", "OrderNrShop"], &[], false),
        // [doc] request example: CustKey, OrderDateFrom, OrderDateTo; CustKey required.
        "pixiGetCustomerOrderAccount" => s(
            &["CustKey", "OrderDateFrom", "OrderDateTo"],
            &["CustKey"],
            true,
        ),
        _ => None,
    }
}

/// Typed access to a request's parameters (names compare case-insensitively, as SQL Server
/// parameter names do).
struct Args<'a> {
    call: &'a str,
    params: &'a [(String, String)],
}

type R<T> = Result<T, Outcome>;

impl Args<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// A string parameter; empty = not given (NULL).
    fn str(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
    /// Free text keeps its blanks.
    fn text(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.is_empty()).map(str::to_string)
    }
    fn convert_error(&self, name: &str, ty: &str) -> Outcome {
        // SQL Server error 8114 wording.
        Outcome::client_fault(format!(
            "{}: Error converting data type varchar to {ty} (parameter @{name}).",
            self.call
        ))
    }
    fn int(&self, name: &str) -> R<Option<i64>> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.convert_error(name, "int")),
        }
    }
    fn bit(&self, name: &str) -> R<Option<bool>> {
        match self.str(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "1" || v == "true" => Ok(Some(true)),
            Some(v) if v == "0" || v == "false" => Ok(Some(false)),
            Some(_) => Err(self.convert_error(name, "bit")),
        }
    }
    fn money(&self, name: &str) -> R<Option<Decimal>> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => Decimal::from_str(&v)
                .map(Some)
                .map_err(|_| self.convert_error(name, "money")),
        }
    }
    fn time(&self, name: &str) -> R<Option<NaiveDateTime>> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => parse_time(&v)
                .map(Some)
                .ok_or_else(|| self.convert_error(name, "datetime")),
        }
    }
}

/// pixi date formats: `YYYY-MM-DD hh:mm:ss` (most pages), `YYYYMMDD hh:mm:ss[.mmm]`
/// (pixiGetOrderComments), and the XML form the replies use.
fn parse_time(v: &str) -> Option<NaiveDateTime> {
    let v = v.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y%m%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t);
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn validate(call: &str, spec: &Spec, params: &[(String, String)]) -> R<()> {
    let mut last = 0usize;
    let mut seen = Vec::new();
    for (name, _) in params {
        // SQL Server error 8145 wording.
        let Some(i) = spec
            .params
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
        else {
            return Err(Outcome::client_fault(format!(
                "@{name} is not a parameter for procedure {call}."
            )));
        };
        if seen.contains(&i) {
            return Err(Outcome::client_fault(format!(
                "Procedure or function {call} has too many arguments specified (@{name} twice)."
            )));
        }
        seen.push(i);
        if spec.ordered && i < last {
            return Err(Outcome::client_fault(format!(
                "{call}: parameter @{name} is out of the documented order."
            )));
        }
        last = last.max(i);
    }
    for r in spec.required {
        let given = params
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(r) && !v.trim().is_empty());
        if !given {
            // SQL Server error 201 wording.
            return Err(Outcome::client_fault(format!(
                "Procedure or function '{call}' expects parameter '@{r}', which was not supplied."
            )));
        }
    }
    Ok(())
}

/// Handles one authenticated request.
pub(super) fn dispatch(s: &mut State, req: &Request) -> Outcome {
    let known = !s
        .uninstalled
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&req.call));
    let Some(spec) = spec(&req.call).filter(|_| known) else {
        return Outcome::client_fault(format!("Could not find stored procedure '{}'.", req.call));
    };
    if let Err(f) = validate(&req.call, &spec, &req.params) {
        return f;
    }
    let a = Args {
        call: &req.call,
        params: &req.params,
    };
    let r = match req.call.as_str() {
        "pixiPayGetOrdersToAuthorize" => orders_to_authorize(s, &a),
        "pixiPayGetInvoicesToCapture" => invoices_to_capture(s, &a),
        "pixiGetChangedOrders" => changed_orders(s, &a),
        "pixiGetOrderHeader" => order_header(s, &a),
        "pixiGetOrderline" => orderlines(s, &a),
        "pixiGetOrderTotals" => order_totals(s, &a),
        "pixiGetInvoice" => get_invoice(s, &a),
        "pixiPaySetAuthorizationStatus" => set_authorization(s, &a),
        "pixiReleaseOrder" => release_order(s, &a),
        "pixiSetOrderShippingLock" => shipping_lock(s, &a),
        "pixiPaySetInvoiceCapture" => invoice_capture(s, &a),
        "pixiCACreateManualBooking" => manual_booking(s, &a),
        "pixiCAGetInvoiceMatch" => invoice_match(s, &a),
        "pixiChangeAddress" => change_address(s, &a),
        "pixiGetAddress" => get_address(s, &a),
        "pixiCanChangeAddress" => can_change_address(s, &a),
        "pixiCreateOrderComment" => add_comment(s, &a),
        "pixiGetOrderComments" => get_comments(s, &a),
        "pixiGetCustomerOrderAccount" => customer_order_account(s, &a),
        other => Err(Outcome::client_fault(format!(
            "Could not find stored procedure '{other}'."
        ))),
    };
    r.unwrap_or_else(|o| o)
}

fn has_hal(o: &super::SimOrder) -> bool {
    o.lines.iter().any(|l| l.status == "HAL")
}

fn code_eq(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

// ------------------------------------------------------------------ work lists

fn orders_to_authorize(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let code = a.str("PaymentCode");
    let show_all = a.bit("ShowAll")?.unwrap_or(false);
    let rows = a.int("RowCount")?.unwrap_or(30).max(0) as usize; // [doc] default 30
    // [doc] columns ZIP, City, Phone, Anrede, CareOf, ShopID, Address, CardCVC, Country, OrderNr,
    // LastName, ShipCost, ccpPayID, CardOwner, … ; [inferred] OrderNrExternal, PaymentCode.
    let mut set = RowSet::new(&[
        ("ShopID", SqlType::Varchar),
        ("OrderNr", SqlType::Int),
        ("ShipCost", SqlType::Money),
        ("ccpPayID", SqlType::Varchar),
        ("OrderNrExternal", SqlType::Varchar),
        ("PaymentCode", SqlType::Varchar),
    ]);
    for o in s.orders.values() {
        let wanted = code.as_deref().is_none_or(|c| code_eq(c, &o.payment_type))
            && (o.status == "HOLD" || has_hal(o))
            && !o.authorized
            && (show_all || o.fail_tries <= 3);
        if wanted && set.rows.len() < rows {
            set.push(vec![
                ("ShopID", text(&o.shop_id)),
                ("OrderNr", Some(Val::Int(o.order_nr))),
                ("ShipCost", Some(Val::Money(o.ship_cost))),
                ("ccpPayID", o.ccp_pay_id.clone().map(Val::Text)),
                ("OrderNrExternal", text(&o.order_nr_external)),
                ("PaymentCode", text(&o.payment_type)),
            ]);
        }
    }
    Ok(Outcome::rows(set))
}

fn invoices_to_capture(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let code = a.str("PaymentCode");
    let show_all = a.bit("ShowAll")?.unwrap_or(false);
    let rows = a.int("RowCount")?.unwrap_or(30).max(0) as usize; // [doc] default 30
    let from = a.int("FromInvoiceId")?.unwrap_or(0); // [doc] default 0
    // [doc] columns ZIP, City, Phone, Total (money), eMail, Anrede, CareOf, ShopID, Address,
    // CardCVC, … ; [inferred] OrderNr, InvoiceNr, InvoiceKey, ccpPayID, OrderCurrency.
    let mut set = RowSet::new(&[
        ("Total", SqlType::Money),
        ("ShopID", SqlType::Varchar),
        ("OrderNr", SqlType::Int),
        ("InvoiceNr", SqlType::Varchar),
        ("InvoiceKey", SqlType::Int),
        ("ccpPayID", SqlType::Varchar),
        ("OrderCurrency", SqlType::Varchar),
    ]);
    let mut list: Vec<_> = s
        .invoices
        .iter()
        .filter(|i| {
            i.key > from && i.total > Decimal::ZERO && !i.paid && (show_all || i.fail_tries <= 3)
        })
        .filter_map(|i| s.orders.get(&i.order_nr).map(|o| (i, o)))
        .filter(|(_, o)| code.as_deref().is_none_or(|c| code_eq(c, &o.payment_type)))
        .collect();
    list.sort_by_key(|(i, _)| i.key);
    for (i, o) in list.into_iter().take(rows) {
        set.push(vec![
            ("Total", Some(Val::Money(i.total))),
            ("ShopID", text(&o.shop_id)),
            ("OrderNr", Some(Val::Int(o.order_nr))),
            ("InvoiceNr", text(&i.nr)),
            ("InvoiceKey", Some(Val::Int(i.key))),
            ("ccpPayID", o.ccp_pay_id.clone().map(Val::Text)),
            ("OrderCurrency", text(&o.currency)),
        ]);
    }
    Ok(Outcome::rows(set))
}

fn changed_orders(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let from = a.time("DateTimeFrom")?.unwrap_or_default();
    let to = s.clock;
    // [doc] ShopID, CustKey, OrderNr, Referrer, ShipCost, ShopNote, OrderDate, VoucherID,
    // CreateDate, DateTimeTo ("orders changed till this time"), GiftMessage, OrderLocked (Y/N),
    // PaymentType, …
    let mut set = RowSet::new(&[
        ("ShopID", SqlType::Varchar),
        ("CustKey", SqlType::Int),
        ("OrderNr", SqlType::Int),
        ("ShipCost", SqlType::Money),
        ("OrderDate", SqlType::DateTime),
        ("CreateDate", SqlType::DateTime),
        ("DateTimeTo", SqlType::DateTime),
        ("OrderLocked", SqlType::Varchar),
        ("PaymentType", SqlType::Varchar),
    ]);
    for o in s
        .orders
        .values()
        .filter(|o| o.updated > from && o.updated <= to)
    {
        set.push(vec![
            ("ShopID", text(&o.shop_id)),
            ("CustKey", Some(Val::Int(o.cust_key))),
            ("OrderNr", Some(Val::Int(o.order_nr))),
            ("ShipCost", Some(Val::Money(o.ship_cost))),
            ("OrderDate", Some(Val::Time(o.created))),
            ("CreateDate", Some(Val::Time(o.created))),
            ("DateTimeTo", Some(Val::Time(to))),
            ("OrderLocked", text(if o.shipping_lock { "Y" } else { "N" })),
            ("PaymentType", text(&o.payment_type)),
        ]);
    }
    Ok(Outcome::rows(set))
}

// ------------------------------------------------------------------ order facts

fn order_header(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.filter(|n| *n != 0); // [doc] default 0 = all
    let ext = a.str("OrderNrExternal");
    let cust = a.int("CustKey")?;
    let shop = a.str("ShopID");
    let pay = a.str("PaymentType");
    let rows = a.int("RowCount")?.unwrap_or(1000).max(0) as usize; // [doc] default 1000
    // [doc] "Order details" (Blz, ZIP, … truncated); column names from pixiGetOrderHeaderList /
    // pixiGetChangedOrders [doc] (ShopID, CustKey, OrderNr, ShipCost, PaymentType, OrderLocked),
    // lars85 GetOrders/Order.php [code] (OrderNrExternal, OrderStatus), Item.php (OrderCurrency),
    // pixiGetOrderHeadersForCustomer [doc] (AddrRef), pixiPayGetOrdersToAuthorize [doc] (ccpPayID).
    let mut set = RowSet::new(&[
        ("OrderNr", SqlType::Int),
        ("OrderNrExternal", SqlType::Varchar),
        ("ShopID", SqlType::Varchar),
        ("CustKey", SqlType::Int),
        ("AddrRef", SqlType::Int),
        ("PaymentType", SqlType::Varchar),
        ("ccpPayID", SqlType::Varchar),
        ("ccpLastAuthCode", SqlType::Varchar),
        ("OrderStatus", SqlType::Varchar),
        ("OrderCurrency", SqlType::Varchar),
        ("OrderLocked", SqlType::Varchar),
        ("ShipCost", SqlType::Money),
        ("CreateDate", SqlType::DateTime),
        ("UpdateDate", SqlType::DateTime),
    ]);
    for o in s.orders.values() {
        let wanted = nr.is_none_or(|n| n == o.order_nr)
            && ext.as_deref().is_none_or(|e| e == o.order_nr_external)
            && cust.is_none_or(|c| c == o.cust_key)
            && shop.as_deref().is_none_or(|x| code_eq(x, &o.shop_id))
            && pay.as_deref().is_none_or(|x| code_eq(x, &o.payment_type));
        if wanted && set.rows.len() < rows {
            set.push(vec![
                ("OrderNr", Some(Val::Int(o.order_nr))),
                ("OrderNrExternal", text(&o.order_nr_external)),
                ("ShopID", text(&o.shop_id)),
                ("CustKey", Some(Val::Int(o.cust_key))),
                ("AddrRef", Some(Val::Int(o.addr_ref))),
                ("PaymentType", text(&o.payment_type)),
                ("ccpPayID", o.ccp_pay_id.clone().map(Val::Text)),
                ("ccpLastAuthCode", o.last_auth_code.clone().map(Val::Text)),
                ("OrderStatus", text(&o.status)),
                ("OrderCurrency", text(&o.currency)),
                ("OrderLocked", text(if o.shipping_lock { "Y" } else { "N" })),
                ("ShipCost", Some(Val::Money(o.ship_cost))),
                ("CreateDate", Some(Val::Time(o.created))),
                ("UpdateDate", Some(Val::Time(o.updated))),
            ]);
        }
    }
    Ok(Outcome::rows(set))
}

fn orderlines(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNR")?;
    let key = a.int("OrderlineKey")?;
    let status = a.str("Status");
    let inv = a.str("InvoiceNr");
    let rows = a.int("RowCount")?.unwrap_or(1000).max(0) as usize; // [doc] default 1000
    // [doc] https://pixi-api-docs.de/api/pixiGetOrderline: the response table is not in the
    // stored page. Columns of the pixiGetOrder line rows [code] lars85 Item.php: OrderlineKey, Status,
    // ItemNrInt, Qty, Price, Price_OrderCurr, OrderCurrency; OrderNr, InvoiceNr [inferred].
    let mut set = RowSet::new(&[
        ("OrderlineKey", SqlType::Int),
        ("OrderNr", SqlType::Int),
        ("Status", SqlType::Varchar),
        ("ItemNrInt", SqlType::Varchar),
        ("Qty", SqlType::Int),
        ("Price", SqlType::Money),
        ("Price_OrderCurr", SqlType::Money),
        ("OrderCurrency", SqlType::Varchar),
        ("InvoiceNr", SqlType::Varchar),
    ]);
    for o in s
        .orders
        .values()
        .filter(|o| nr.is_none_or(|n| n == o.order_nr))
    {
        for l in &o.lines {
            let wanted = key.is_none_or(|k| k == l.key)
                && status.as_deref().is_none_or(|x| code_eq(x, &l.status))
                && inv
                    .as_deref()
                    .is_none_or(|x| l.invoice_nr.as_deref() == Some(x));
            if wanted && set.rows.len() < rows {
                set.push(vec![
                    ("OrderlineKey", Some(Val::Int(l.key))),
                    ("OrderNr", Some(Val::Int(o.order_nr))),
                    ("Status", text(&l.status)),
                    ("ItemNrInt", text(&l.item)),
                    ("Qty", Some(qty_val(l.qty))),
                    ("Price", Some(Val::Money(l.price))),
                    ("Price_OrderCurr", Some(Val::Money(l.price))),
                    ("OrderCurrency", text(&o.currency)),
                    ("InvoiceNr", l.invoice_nr.clone().map(Val::Text)),
                ]);
            }
        }
    }
    Ok(Outcome::rows(set))
}

/// `Qty` is an int column (lars85 Item.php casts it to int); fractional test quantities print as decimals.
fn qty_val(q: Decimal) -> Val {
    match i64::try_from(q) {
        Ok(i) if q.fract().is_zero() => Val::Int(i),
        _ => Val::Text(q.normalize().to_string()),
    }
}

/// pixiGetOrderTotals — https://pixi-api-docs.de/api/pixiGetOrderTotals. The page's result set
/// is one row per item: `Qty`, `Price` ("price of one item"), `EanUpc`, `ArtName`, `OrderNr`,
/// `ItemNote`, `Subtotal` ("Totalprice these items in this order"), and on every row the
/// order-level `VATLow`, `VATHigh`, `VATTotal`, `Discount` ("Discount of the order"),
/// `ShipCost` ("total shipping costs of the whole order"). The stored page is cut off after
/// `VATTotal`: no order total column is shown, so the simulator sends none.
///
/// Not on the page, chosen here: only lines an invoice would carry get a row (not STO/NLB);
/// prices are gross and `Subtotal` = Qty × Price rounded to cents; `Discount` is a positive
/// amount; all VAT is at the high rate of 19 % and included in the gross prices; the page types
/// `Price`/`Subtotal` as int, the simulator prints them as SQL money like its sibling calls.
fn order_totals(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.filter(|n| *n != 0); // [doc] default 0
    let ext = a.str("OrderNrExternal");
    let cust = a.int("CustKey")?;
    let mut set = RowSet::new(&[
        ("Qty", SqlType::Int),
        ("Price", SqlType::Money),
        ("EanUpc", SqlType::Varchar),
        ("VATLow", SqlType::Money),
        ("ArtName", SqlType::Varchar),
        ("OrderNr", SqlType::Int),
        ("VATHigh", SqlType::Money),
        ("Discount", SqlType::Money),
        ("ItemNote", SqlType::Varchar),
        ("ShipCost", SqlType::Money),
        ("Subtotal", SqlType::Money),
        ("VATTotal", SqlType::Money),
    ]);
    if nr.is_none() && ext.is_none() && cust.is_none() {
        return Ok(Outcome::rows(set));
    }
    for o in s.orders.values() {
        let wanted = nr.is_none_or(|n| n == o.order_nr)
            && ext.as_deref().is_none_or(|e| e == o.order_nr_external)
            && cust.is_none_or(|c| c == o.cust_key);
        if wanted {
            push_total_rows(&mut set, o);
        }
    }
    Ok(Outcome::rows(set))
}

/// The item rows of one order for pixiGetOrderTotals.
fn push_total_rows(set: &mut RowSet, o: &super::SimOrder) {
    let total = o.total();
    let vat = (total - total / Decimal::new(119, 2)).round_dp(2);
    for (i, l) in o.invoiced_lines().enumerate() {
        set.push(vec![
            ("Qty", Some(qty_val(l.qty))),
            ("Price", Some(Val::Money(l.price))),
            ("EanUpc", text(format!("40{:011}", l.key))),
            ("VATLow", Some(Val::Money(Decimal::ZERO))),
            (
                "ArtName",
                text(format!("Item {} of order {}", i + 1, o.order_nr)),
            ),
            ("OrderNr", Some(Val::Int(o.order_nr))),
            ("VATHigh", Some(Val::Money(vat))),
            ("Discount", Some(Val::Money(o.discount))),
            ("ItemNote", None),
            ("ShipCost", Some(Val::Money(o.ship_cost))),
            ("Subtotal", Some(Val::Money(l.total()))),
            ("VATTotal", Some(Val::Money(vat))),
        ]);
    }
}

fn get_invoice(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNR")?;
    let shop = a.str("ShopID");
    let start = a.int("StartKey")?.unwrap_or(0); // [doc] InvoiceKey > StartKey
    let rows = a.int("RowCount")?.unwrap_or(1000).max(0) as usize; // [doc] default 1000
    // Columns of invoice rows [code] lars85 GetOrders/Invoice.php (a real sample): InvoiceKey,
    // InvoiceNr, InvDate, Total, Total_OrderCurr, PaymentCode, PaidAmount, OrderCurrency, Locked;
    // Paid (bit) from pixiGetInvoicesByOrderNr [doc]; TotalRows [doc]; OrderNr [inferred].
    let mut set = RowSet::new(&[
        ("InvoiceKey", SqlType::Int),
        ("InvoiceNr", SqlType::Varchar),
        ("OrderNr", SqlType::Int),
        ("InvDate", SqlType::DateTime),
        ("Total", SqlType::Money),
        ("Total_OrderCurr", SqlType::Money),
        ("OrderCurrency", SqlType::Varchar),
        ("PaymentCode", SqlType::Varchar),
        ("PaidAmount", SqlType::Money),
        ("Paid", SqlType::Bit),
        ("Locked", SqlType::Varchar),
        ("TotalRows", SqlType::Int),
    ]);
    let mut list: Vec<_> = s
        .invoices
        .iter()
        .filter(|i| i.key > start)
        .filter(|i| nr.is_none_or(|n| n == i.order_nr))
        .filter_map(|i| s.orders.get(&i.order_nr).map(|o| (i, o)))
        .filter(|(_, o)| shop.as_deref().is_none_or(|x| code_eq(x, &o.shop_id)))
        .collect();
    list.sort_by_key(|(i, _)| i.key);
    list.truncate(rows);
    let n = list.len() as i64;
    for (i, o) in list {
        set.push(vec![
            ("InvoiceKey", Some(Val::Int(i.key))),
            ("InvoiceNr", text(&i.nr)),
            ("OrderNr", Some(Val::Int(i.order_nr))),
            ("InvDate", Some(Val::Time(i.created))),
            ("Total", Some(Val::Money(i.total))),
            ("Total_OrderCurr", Some(Val::Money(i.total))),
            ("OrderCurrency", text(&o.currency)),
            ("PaymentCode", text(&o.payment_type)),
            ("PaidAmount", Some(Val::Money(i.paid_amount))),
            ("Paid", Some(Val::Bit(i.paid))),
            ("Locked", text("N")),
            ("TotalRows", Some(Val::Int(n))),
        ]);
    }
    Ok(Outcome::rows(set))
}

// ------------------------------------------------------------------ writes

fn set_authorization(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.unwrap_or(0);
    let success = a.bit("Success")?.unwrap_or(false);
    let auth_id = a.str("AuthID");
    let auth_code = a.str("AuthCode");
    let message = a.text("Message");
    let Some(o) = s.orders.get_mut(&nr) else {
        return Ok(Outcome::sql_error(format!("Order {nr} does not exist.")));
    };
    // [doc] AuthID → OrderHeader.ccpPayID, AuthCode → ccpLastAuthCode, Message → CCP log.
    // Whether Success=1 also releases HAL lines is undocumented: the simulator does not (the
    // connector releases with pixiReleaseOrder), and counts failures into ccpSetFailTries.
    if let Some(id) = auth_id {
        o.ccp_pay_id = Some(id);
    }
    if auth_code.is_some() {
        o.last_auth_code = auth_code;
    }
    if let Some(m) = message {
        o.ccp_log.push(m);
    }
    if success {
        o.authorized = true;
    } else {
        o.fail_tries += 1;
    }
    s.touch(nr);
    Ok(Outcome::empty()) // [doc] response: none documented
}

fn release_order(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let shop = a.str("ShopId").unwrap_or_default();
    let ext = a.str("OrderNrExternal").unwrap_or_default();
    // [doc] ReturnCode ("OK" or "ERROR"), AffectedRows (released order lines).
    let mut set = RowSet::new(&[
        ("ReturnCode", SqlType::Varchar),
        ("AffectedRows", SqlType::Int),
    ]);
    let found = s
        .orders
        .values_mut()
        .find(|o| code_eq(&o.shop_id, &shop) && o.order_nr_external == ext);
    let Some(o) = found else {
        set.push(vec![
            ("ReturnCode", text("ERROR")),
            ("AffectedRows", Some(Val::Int(0))),
        ]);
        return Ok(Outcome::rows(set));
    };
    let mut n = 0;
    for l in o.lines.iter_mut().filter(|l| l.status == "HAL") {
        l.status = "ANG".into();
        n += 1;
    }
    if o.status == "HOLD" {
        o.status = "OPEN".into();
    }
    let nr = o.order_nr;
    s.touch(nr);
    set.push(vec![
        ("ReturnCode", text("OK")),
        ("AffectedRows", Some(Val::Int(n))),
    ]);
    Ok(Outcome::rows(set))
}

fn shipping_lock(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.unwrap_or(0);
    let locked = a.bit("Locked")?.unwrap_or(true); // [doc] default 1
    let user = a.str("UserName").unwrap_or_else(|| "API".into()); // [doc] default API
    let Some(o) = s.orders.get_mut(&nr) else {
        return Ok(Outcome::return_code(
            "ERROR",
            &format!("Order {nr} does not exist."),
        ));
    };
    // [doc] empty Reason: "Order was locked by / Order was unlocked by" + UserName.
    let reason = a.text("Reason").unwrap_or_else(|| {
        format!(
            "Order was {} by {user}",
            if locked { "locked" } else { "unlocked" }
        )
    });
    let info = if o.shipping_lock == locked {
        "INFO"
    } else {
        "OK"
    };
    o.shipping_lock = locked;
    o.lock_reasons.push(reason);
    s.touch(nr);
    Ok(Outcome::return_code(
        info,
        if locked {
            "Order shipping lock set."
        } else {
            "Order shipping lock released."
        },
    ))
}

fn invoice_capture(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let pay_id = a.str("PayID").unwrap_or_default();
    let event = a.str("EventID");
    let message = a.text("Message").unwrap_or_default();
    let success = a.bit("Success")?.unwrap_or(false);
    let nr = a.str("InvoiceNr").unwrap_or_default();
    let pay_code = a.str("PayCode");
    let sum = a.money("CaptureSum")?.unwrap_or_default();
    let to_hal = a.bit("SetRemainingOrdersToHAL")?.unwrap_or(false);
    let Some(idx) = s.invoices.iter().position(|i| i.nr == nr) else {
        return Ok(Outcome::sql_error(format!("Invoice {nr} does not exist.")));
    };
    let order_nr = s.invoices[idx].order_nr;
    let Some(cust) = s.orders.get(&order_nr).map(|o| o.cust_key) else {
        return Ok(Outcome::sql_error(format!(
            "Order of invoice {nr} does not exist."
        )));
    };
    if success {
        // [doc] EventID "mandatory when @Success = 1" (varchar(3)).
        let Some(event) = event.filter(|e| e.chars().count() <= 3) else {
            return Ok(Outcome::sql_error(
                "EventID (max. 3 characters) is mandatory when Success = 1.",
            ));
        };
        let t = s.tick();
        let inv = &mut s.invoices[idx];
        // Not idempotent: each call adds its sum and books again (reference/erp.md §0.3).
        inv.paid_amount += sum;
        inv.paid = inv.paid_amount >= inv.total.abs();
        inv.pay_id = Some(pay_id);
        inv.pay_code = pay_code;
        // [doc] "IF yes(@Success = 1), the call will create manual booking event in Customer Account."
        s.bookings.push(SimBooking {
            cust_key: cust,
            event_id: event,
            amount: sum,
            reference: message,
            invoice_nr: Some(nr),
            source: BookingSource::Capture,
            created: t,
        });
    } else {
        // [doc] Success=0: PayedSum = 0 and payment data reset to unpaid.
        let inv = &mut s.invoices[idx];
        inv.paid_amount = Decimal::ZERO;
        inv.paid = false;
        inv.fail_tries += 1;
    }
    if to_hal && let Some(o) = s.orders.get_mut(&order_nr) {
        for l in o.lines.iter_mut().filter(|l| l.status == "ANG") {
            l.status = "HAL".into();
        }
    }
    s.touch(order_nr);
    Ok(Outcome::empty())
}

fn manual_booking(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let cust = a.int("CustKey")?.unwrap_or(0);
    let event = a.str("EventID").unwrap_or_default();
    let amount = a.money("Amount")?.unwrap_or_default();
    let _date = a.time("EventDate")?;
    let comment = a.text("Comment").unwrap_or_default();
    let matched = a.str("MatchToInvoiceNr");
    let _currency = a.int("CurrencyId")?;
    if event.chars().count() > 3 {
        return Ok(Outcome::return_code(
            "ERROR",
            "EventID must not be longer than 3 characters.",
        ));
    }
    if comment.chars().count() > 512 {
        return Ok(Outcome::return_code(
            "ERROR",
            "Comment must not be longer than 512 characters.",
        ));
    }
    let Some(order_nr) = s.order_of_cust(cust).map(|o| o.order_nr) else {
        return Ok(Outcome::return_code(
            "ERROR",
            &format!("Customer {cust} does not exist."),
        ));
    };
    if let Some(m) = &matched
        && !s.invoices.iter().any(|i| &i.nr == m)
    {
        return Ok(Outcome::return_code(
            "ERROR",
            &format!("Invoice {m} does not exist."),
        ));
    }
    let t = s.tick();
    s.bookings.push(SimBooking {
        cust_key: cust,
        event_id: event,
        amount,
        reference: comment,
        invoice_nr: matched,
        source: BookingSource::Manual,
        created: t,
    });
    s.touch(order_nr);
    Ok(Outcome::return_code("OK", "")) // [doc] ReturnCode OK/ERROR, ErrorMessage
}

fn invoice_match(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let key = a.int("InvoiceKey")?;
    let nr = a.str("InvoiceNr");
    // [doc] Amount, EventID, Matched, EventDate, InvoiceNr, Reference, CreateDate, InvoiceKey, OrderCurrency.
    let mut set = RowSet::new(&[
        ("InvoiceKey", SqlType::Int),
        ("InvoiceNr", SqlType::Varchar),
        ("EventID", SqlType::Varchar),
        ("EventDate", SqlType::DateTime),
        ("Reference", SqlType::Varchar),
        ("Amount", SqlType::Money),
        ("Matched", SqlType::Money),
        ("OrderCurrency", SqlType::Varchar),
        ("CreateDate", SqlType::DateTime),
    ]);
    let invoice = s.invoices.iter().find(|i| {
        key.is_none_or(|k| k == i.key)
            && nr.as_deref().is_none_or(|n| n == i.nr)
            && (key.is_some() || nr.is_some())
    });
    if let Some(i) = invoice {
        let cur = s
            .orders
            .get(&i.order_nr)
            .map(|o| o.currency.clone())
            .unwrap_or_default();
        for b in s
            .bookings
            .iter()
            .filter(|b| b.invoice_nr.as_deref() == Some(i.nr.as_str()))
        {
            set.push(vec![
                ("InvoiceKey", Some(Val::Int(i.key))),
                ("InvoiceNr", text(&i.nr)),
                ("EventID", text(&b.event_id)),
                ("EventDate", Some(Val::Time(b.created))),
                ("Reference", text(&b.reference)),
                ("Amount", Some(Val::Money(b.amount))),
                ("Matched", Some(Val::Money(b.amount))),
                ("OrderCurrency", text(&cur)),
                ("CreateDate", Some(Val::Time(b.created))),
            ]);
        }
    }
    Ok(Outcome::rows(set))
}

fn change_address(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?;
    let ext = a.str("OrderNrExternal");
    let kind = a
        .str("AddrType")
        .unwrap_or_else(|| "B".into())
        .to_ascii_uppercase();
    let order = s.orders.values().find(|o| {
        nr.is_some_and(|n| n == o.order_nr)
            || ext.as_deref().is_some_and(|e| e == o.order_nr_external)
    });
    let Some(o) = order else {
        return Ok(Outcome::sql_error("Order does not exist."));
    };
    // [doc] pixiCanChangeAddress semantics, re-checked by pixiChangeAddress: not once shipped.
    if address_frozen(o) {
        return Ok(Outcome::sql_error(format!(
            "The address of order {} can not be changed anymore.",
            o.order_nr
        )));
    }
    let (order_nr, addr) = (o.order_nr, o.addr_ref);
    if kind != "B" {
        s.touch(order_nr);
        return Ok(Outcome::empty());
    }
    let bank = s.addresses.entry(addr).or_default();
    if let Some(v) = a.str("IBAN") {
        bank.iban = Some(v);
    }
    if let Some(v) = a.str("BIC") {
        bank.bic = Some(v);
    }
    if let Some(v) = a.text("BankName") {
        bank.bank_name = Some(v);
    }
    if let Some(v) = a.text("CardHolderName") {
        bank.holder = Some(v);
    }
    s.touch(order_nr);
    Ok(Outcome::empty())
}

fn get_address(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let key = a.int("AddrKey")?.unwrap_or(0);
    // [doc] BIC, BLZ, Fax, ZIP, City, IBAN, Name, Note, Email, Phone, Title, VatID, Street,
    // AddrKey, Address, … ; [inferred] BankName, CardHolderName (pixiGetOrder address sample).
    let mut set = RowSet::new(&[
        ("AddrKey", SqlType::Int),
        ("Name", SqlType::Varchar),
        ("IBAN", SqlType::Varchar),
        ("BIC", SqlType::Varchar),
        ("BankName", SqlType::Varchar),
        ("CardHolderName", SqlType::Varchar),
    ]);
    if let Some(b) = s.addresses.get(&key) {
        set.push(vec![
            ("AddrKey", Some(Val::Int(key))),
            ("Name", text("Sim Customer")),
            ("IBAN", b.iban.clone().map(Val::Text)),
            ("BIC", b.bic.clone().map(Val::Text)),
            ("BankName", b.bank_name.clone().map(Val::Text)),
            ("CardHolderName", b.holder.clone().map(Val::Text)),
        ]);
    }
    Ok(Outcome::rows(set))
}

/// pixiCanChangeAddress — [doc] "whether a given order is at a stage when billing and shipping
/// addresses can still be changed"; response `return` int 1/0. Which stage ends it is not on
/// the page: here an order CLOSED or with every line shipped (AUS), the rule pixiChangeAddress
/// re-checks below.
fn can_change_address(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.filter(|n| *n != 0);
    let ext = a.str("OrderNrExternal");
    let order = s.orders.values().find(|o| {
        nr.is_some_and(|n| n == o.order_nr)
            || ext.as_deref().is_some_and(|e| e == o.order_nr_external)
    });
    let can = order.is_some_and(|o| !address_frozen(o));
    Ok(Outcome::scalar("return", if can { "1" } else { "0" }))
}

fn address_frozen(o: &super::SimOrder) -> bool {
    o.status == "CLOSED" || o.lines.iter().all(|l| l.status == "AUS")
}

fn add_comment(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let nr = a.int("OrderNr")?.unwrap_or(0);
    let comment = a.text("Comment").unwrap_or_default();
    if !s.orders.contains_key(&nr) {
        return Ok(Outcome::sql_error(format!("Order {nr} does not exist.")));
    }
    let t = s.tick();
    s.comments.push(SimComment {
        order_nr: nr,
        text: comment,
        user: "API".into(),
        created: t,
    });
    s.touch(nr);
    Ok(Outcome::empty())
}

fn get_comments(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let since = a.time("Since")?; // [doc] default 2000-01-01
    let nr = a.int("OrderNr")?;
    let shop_nr = a.str("OrderNrShop");
    // [doc] RowCount NULL/0 → 1000, capped at 1000.
    let rows = match a.int("RowCount")?.unwrap_or(0) {
        n if n <= 0 || n > 1000 => 1000,
        n => n as usize,
    };
    // [doc] "order comments, with their creation date and user"; [inferred] column names.
    let mut set = RowSet::new(&[
        ("OrderNr", SqlType::Int),
        ("OrderNrExternal", SqlType::Varchar),
        ("Comment", SqlType::Varchar),
        ("CreateDate", SqlType::DateTime),
        ("CreateEmp", SqlType::Varchar),
    ]);
    for c in &s.comments {
        let ext = s
            .orders
            .get(&c.order_nr)
            .map(|o| o.order_nr_external.clone())
            .unwrap_or_default();
        let by_order = match (nr, &shop_nr) {
            (None, None) => true,
            (n, e) => n == Some(c.order_nr) || e.as_deref() == Some(ext.as_str()),
        };
        if by_order && since.is_none_or(|t| c.created > t) && set.rows.len() < rows {
            set.push(vec![
                ("OrderNr", Some(Val::Int(c.order_nr))),
                ("OrderNrExternal", text(ext)),
                ("Comment", text(&c.text)),
                ("CreateDate", Some(Val::Time(c.created))),
                ("CreateEmp", text(&c.user)),
            ]);
        }
    }
    Ok(Outcome::rows(set))
}

/// pixiGetCustomerOrderAccount — https://pixi-api-docs.de/api/pixiGetCustomerOrderAccount
/// ("Returns orders for given customer"). [doc] result set 1 "Customer information": `CeMail`
/// ("Customers eMail"), `ShopID`, `AddrRef` (billing address id), `CustomerLocked` (char(1)
/// Y/N), `CustomerNrExternal` (the shop's customer reference); set 2 "Detail customer
/// information": `Fax`, `ZIP`, `City`, `Fax2`, `Name`, `Note`, `CCCVC`, … (cut off in the stored
/// page). Further sets (the customer's orders the description speaks of) are not shown there.
///
/// Served here: set 1 with its five [doc] columns and set 2 with the [doc] columns `Name`,
/// `ZIP`, `City` (no card columns); both empty for a customer no order has. A customer exists
/// here only through its orders: `ShopID`, `AddrRef` are its first order's. Values the
/// simulator chooses (it has no customer table): `CustomerLocked` is always `N` (no customer
/// lock), `CustomerNrExternal` is `K<CustKey>`, the set-2 name and address are fixed. `CeMail`
/// is left out (NULL) unless a test set one, and is stored as given (pixi does not check it).
/// `OrderDateFrom`/`OrderDateTo` filter only the orders, which are not served, so they change
/// nothing here.
fn customer_order_account(s: &mut State, a: &Args<'_>) -> R<Outcome> {
    let cust = a.int("CustKey")?.unwrap_or(0);
    let _from = a.time("OrderDateFrom")?;
    let _to = a.time("OrderDateTo")?;
    let mut info = RowSet::new(&[
        ("CeMail", SqlType::Varchar),
        ("ShopID", SqlType::Varchar),
        ("AddrRef", SqlType::Int),
        ("CustomerLocked", SqlType::Varchar),
        ("CustomerNrExternal", SqlType::Varchar),
    ]);
    let mut detail = RowSet::new(&[
        ("Name", SqlType::Varchar),
        ("ZIP", SqlType::Varchar),
        ("City", SqlType::Varchar),
    ]);
    if let Some(o) = s.order_of_cust(cust) {
        info.push(vec![
            (
                "CeMail",
                s.customer_emails.get(&cust).cloned().map(Val::Text),
            ),
            ("ShopID", text(&o.shop_id)),
            ("AddrRef", Some(Val::Int(o.addr_ref))),
            ("CustomerLocked", text("N")),
            ("CustomerNrExternal", text(format!("K{cust}"))),
        ]);
        detail.push(vec![
            ("Name", text("Sim Customer")),
            ("ZIP", text("10115")),
            ("City", text("Berlin")),
        ]);
    }
    Ok(Outcome::sets(vec![info, detail]))
}
