//! The simulator's Hosted Payment Page (`paymentPage.aspx`), the target of an e-mailed payment
//! link: the request's checks and the two minimal HTML pages (the payment form, the error page).
//!
//! Facts followed (reference paygate.md §3.1, §1.2, §2; developer.computop.com "Hosted Payment
//! Page" and the URLSuccess/URLFailure/URLNotify parameter notes, pageId 117899863; pretix
//! `_get_payment_data` as the smallest complete request): the encrypted request carries
//! `MerchantID`, `TransID`, `Amount`, `Currency`, `OrderDesc`, `URLSuccess`, `URLFailure`,
//! `URLNotify`, optionally `RefNr`, `ReqId`, `UserData`, `Capture` (`AUTO`, the default, or
//! `MANUAL`), `Response=encrypt`, and a `MAC` over `*TransID*MerchantID*Amount*Currency` (no
//! PayID yet). The three URLs "may not contain parameters" [D]. `Language` travels in plain text
//! next to `Data` [C].
//!
//! `[INF]` choices: a refused request answers HTTP 400 with an HTML error page carrying a code
//! of the documented structure (Paygate's own error page is not documented); the port-443 rule
//! is not enforced (the tests run on loopback http); `Capture` hours (`1`–`696`) are refused
//! because the simulator does not run delayed captures; `OrderDesc` is mandatory (it is in every
//! public example). The page and its "Pay"/"Cancel" form are the simulator's own: the real page
//! lets the customer choose a method and enter data.

use super::codes::{self, param};
use super::wire::{self, Fields, get, get_nonempty};

/// A checked hosted-page request.
#[derive(Debug, Clone)]
pub struct HostedRequest {
    pub trans_id: String,
    pub amount: i64,
    pub amount_text: String,
    pub currency: String,
    pub order_desc: String,
    pub url_success: String,
    pub url_failure: String,
    pub url_notify: String,
    pub ref_nr: Option<String>,
    pub req_id: Option<String>,
    pub user_data: Option<String>,
    /// `Capture=MANUAL`: authorization only.
    pub manual: bool,
    /// `Response=encrypt`: redirects carry `Len`/`Data` instead of plain fields.
    pub encrypt_response: bool,
    pub mac: String,
}

/// A refusal of the request: code and description.
pub type Refused = (String, String);

fn refused(code: String, description: impl Into<String>) -> Refused {
    (code, description.into())
}

fn url_ok(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains('?')
        && !url.contains('#')
        && url.len() <= 256
}

/// Checks the decrypted fields (the MAC is checked by the caller, who holds the key).
pub fn check(inner: &Fields) -> Result<HostedRequest, Refused> {
    for k in [
        "TransID",
        "Amount",
        "Currency",
        "OrderDesc",
        "URLSuccess",
        "URLFailure",
        "URLNotify",
        "MAC",
    ] {
        if get_nonempty(inner, k).is_none() {
            return Err(refused(
                codes::missing(codes::param_of(k)),
                format!("{k} missing"),
            ));
        }
    }
    let text = |k: &str| get(inner, k).unwrap_or_default().to_string();
    let amount_text = text("Amount");
    let amount = wire::amount(&amount_text)
        .map_err(|()| refused(codes::format(param::AMOUNT), "Amount format"))?;
    let currency = text("Currency");
    if !wire::currency_ok(&currency) {
        return Err(refused(codes::format(param::CURRENCY), "Currency format"));
    }
    for (k, max) in [
        ("TransID", 64),
        ("ReqId", 32),
        ("RefNr", 30),
        ("OrderDesc", 768),
        ("UserData", 1024),
    ] {
        if let Some(v) = get(inner, k) {
            match wire::ans(v, max) {
                Ok(()) => {}
                Err(true) => {
                    return Err(refused(
                        codes::too_long(codes::param_of(k)),
                        format!("{k} too long"),
                    ));
                }
                Err(false) => {
                    return Err(refused(
                        codes::format(codes::param_of(k)),
                        format!("{k} format"),
                    ));
                }
            }
        }
    }
    for k in ["URLSuccess", "URLFailure", "URLNotify"] {
        if !url_ok(&text(k)) {
            return Err(refused(
                codes::invalid(codes::param_of(k)),
                format!("{k} must be an absolute URL without parameters"),
            ));
        }
    }
    let manual = match get_nonempty(inner, "Capture") {
        None => false,
        Some(c) if c.eq_ignore_ascii_case("AUTO") => false,
        Some(c) if c.eq_ignore_ascii_case("MANUAL") => true,
        Some(_) => {
            return Err(refused(
                codes::unknown(param::CAPTURE),
                "Capture must be AUTO or MANUAL",
            ));
        }
    };
    let opt = |k: &str| get_nonempty(inner, k).map(str::to_string);
    Ok(HostedRequest {
        trans_id: text("TransID"),
        amount,
        amount_text,
        currency,
        order_desc: text("OrderDesc"),
        url_success: text("URLSuccess"),
        url_failure: text("URLFailure"),
        url_notify: text("URLNotify"),
        ref_nr: opt("RefNr"),
        req_id: opt("ReqId"),
        user_data: opt("UserData"),
        manual,
        encrypt_response: get(inner, "Response").is_some_and(|r| r.eq_ignore_ascii_case("encrypt")),
        mac: text("MAC"),
    })
}

/// The simulation code of `OrderDesc=Test:nnnn` (developer.computop.com "Test Guide"), if any.
pub fn simulation_code(order_desc: &str) -> Option<&str> {
    let rest = order_desc.strip_prefix("Test:")?;
    let code = rest.get(..4)?;
    code.bytes().all(|b| b.is_ascii_digit()).then_some(code)
}

/// The payment form: merchant, amount, currency, order, and a form posting the one-time
/// token with `action=pay` or `action=cancel` to `/paymentPage.aspx/pay`.
pub fn form_page(mid: &str, req: &HostedRequest, token: &str, language: Option<&str>) -> String {
    let german = language.is_some_and(|l| l.eq_ignore_ascii_case("de"));
    let (lang, title, pay, cancel) = if german {
        ("de", "Zahlung", "Bezahlen", "Abbrechen")
    } else {
        ("en", "Payment", "Pay", "Cancel")
    };
    let e = wire::html_escape;
    let shown = wire::display_amount(req.amount, &req.currency);
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head><meta charset=\"utf-8\"><title>Paygate simulator: {title}</title></head>\n<body>\n<h1>{title}</h1>\n<dl>\n<dt>Merchant</dt><dd id=\"merchant\">{mid}</dd>\n<dt>Amount</dt><dd id=\"amount\" data-minor=\"{minor}\">{shown}</dd>\n<dt>Currency</dt><dd id=\"currency\">{currency}</dd>\n<dt>Order</dt><dd id=\"order\">{order}</dd>\n</dl>\n<form method=\"post\" action=\"/paymentPage.aspx/pay\">\n<input type=\"hidden\" name=\"token\" value=\"{token}\">\n<button type=\"submit\" name=\"action\" value=\"pay\">{pay}</button>\n<button type=\"submit\" name=\"action\" value=\"cancel\">{cancel}</button>\n</form>\n</body>\n</html>\n",
        mid = e(mid),
        minor = req.amount,
        shown = e(&shown),
        currency = e(&req.currency),
        order = e(&req.order_desc),
        token = e(token),
    )
}

/// The error page of a refused request.
pub fn error_page(code: &str, description: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Paygate simulator: error</title></head>\n<body>\n<h1>Error</h1>\n<p>Code <span id=\"code\">{}</span></p>\n<p id=\"description\">{}</p>\n</body>\n</html>\n",
        wire::html_escape(code),
        wire::html_escape(description)
    )
}

/// The value of the hidden `token` input of a [`form_page`].
pub fn token_of(html: &str) -> Option<String> {
    let start = html.find("name=\"token\" value=\"")? + "name=\"token\" value=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Fields {
        [
            ("MerchantID", "m"),
            ("TransID", "T-1"),
            ("Amount", "1234"),
            ("Currency", "EUR"),
            ("OrderDesc", "Order <1>"),
            ("URLSuccess", "https://shop.example/ok"),
            ("URLFailure", "https://shop.example/fail"),
            ("URLNotify", "https://shop.example/notify"),
            ("Capture", "MANUAL"),
            ("MAC", "AB"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn paygate_sim_hpp_checks_and_renders() {
        let r = check(&base()).unwrap();
        assert!(r.manual);
        assert!(!r.encrypt_response);
        assert_eq!(r.amount, 1234);
        let html = form_page("m", &r, "tok123", Some("de"));
        assert!(html.contains("Bezahlen"));
        assert!(html.contains("12.34 EUR"));
        assert!(html.contains("Order &lt;1&gt;"));
        assert_eq!(token_of(&html).as_deref(), Some("tok123"));

        let mut f = base();
        f.retain(|(k, _)| k != "URLNotify");
        assert_eq!(check(&f).unwrap_err().0, "4010000D");
        let mut f = base();
        f[5].1 = "https://shop.example/ok?order=1".into();
        assert_eq!(check(&f).unwrap_err().0, "2012000B");
        let mut f = base();
        f[8].1 = "24".into();
        assert_eq!(check(&f).unwrap_err().0, "2016000F");
        assert_eq!(simulation_code("Test:0305"), Some("0305"));
        assert_eq!(simulation_code("Test:03"), None);
        assert_eq!(simulation_code("Order 1"), None);
    }
}
