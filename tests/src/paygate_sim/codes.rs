//! The simulator's result codes, built on Paygate's documented code structure
//! (developer.computop.com "A4 Error codes"; firstcashsolution.de "Fehlercodes", a Computop
//! white label with the same table; reference paygate.md §3.7): 8 characters, digit 1 the
//! severity (`0` OK, `2` error, `4` fatal e.g. a missing mandatory parameter, `6` pending, `7`
//! EMV-3DS intermediate), digits 2–4 the module (`001` crypto, `010` parameter missing, `011`
//! format error, `012` invalid, `014` too long, `016` value unknown or not allowed, `017` already
//! present, `018` expired / no longer valid, `020`–`0FF` internal, `100`–`FFF` a specific module,
//! `100` being card processing), digits 5–8 the parameter.
//!
//! The structure is documented; the parameter numbers (digits 5–8) and the choice of module
//! for each refusal are not public and are the simulator's own `[INF]`. Connectors must branch
//! on the severity digit only, never on these specifics.

/// Success.
pub const OK: &str = "00000000";
/// A pending step: severity `6`, the final status follows asynchronously. `[INF]` digits 2–8.
pub const PENDING: &str = "60000000";

/// Parameter numbers (digits 5–8). `[INF]` all of them: Computop's table is not public.
pub mod param {
    pub const MERCHANT_ID: &str = "0001";
    pub const LEN: &str = "0002";
    pub const DATA: &str = "0003";
    pub const PAY_ID: &str = "0004";
    pub const TRANS_ID: &str = "0005";
    pub const AMOUNT: &str = "0006";
    pub const CURRENCY: &str = "0007";
    pub const MAC: &str = "0008";
    pub const REQ_ID: &str = "0009";
    pub const REF_NR: &str = "000A";
    pub const URL_SUCCESS: &str = "000B";
    pub const URL_FAILURE: &str = "000C";
    pub const URL_NOTIFY: &str = "000D";
    pub const ORDER_DESC: &str = "000E";
    pub const CAPTURE: &str = "000F";
    /// The hosted page's one-time form token (the simulator's own page).
    pub const TOKEN: &str = "0010";
    /// No single parameter.
    pub const NONE: &str = "0000";
}

/// The parameter number of a request key (case-insensitive), [`param::NONE`] if unknown.
pub fn param_of(key: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("MerchantID", param::MERCHANT_ID),
        ("Len", param::LEN),
        ("Data", param::DATA),
        ("PayID", param::PAY_ID),
        ("TransID", param::TRANS_ID),
        ("Amount", param::AMOUNT),
        ("Currency", param::CURRENCY),
        ("MAC", param::MAC),
        ("ReqId", param::REQ_ID),
        ("RefNr", param::REF_NR),
        ("URLSuccess", param::URL_SUCCESS),
        ("URLFailure", param::URL_FAILURE),
        ("URLNotify", param::URL_NOTIFY),
        ("OrderDesc", param::ORDER_DESC),
        ("Capture", param::CAPTURE),
        ("token", param::TOKEN),
    ];
    TABLE
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or(param::NONE, |(_, p)| p)
}

fn code(severity: char, module: &str, param: &str) -> String {
    format!("{severity}{module}{param}")
}

/// `4010pppp`: a mandatory parameter is missing (severity 4 as the docs' example says).
pub fn missing(param: &str) -> String {
    code('4', "010", param)
}

/// `2011pppp`: format error.
pub fn format(param: &str) -> String {
    code('2', "011", param)
}

/// `2012pppp`: the parameter is invalid (e.g. an amount above what may be captured).
pub fn invalid(param: &str) -> String {
    code('2', "012", param)
}

/// `2014pppp`: too long.
pub fn too_long(param: &str) -> String {
    code('2', "014", param)
}

/// `2016pppp`: value unknown or not allowed (unknown MerchantID or PayID, another currency).
pub fn unknown(param: &str) -> String {
    code('2', "016", param)
}

/// `2017pppp`: already present (a TransID already paid on the hosted page without a ReqId).
pub fn already_present(param: &str) -> String {
    code('2', "017", param)
}

/// `2018pppp`: no longer valid (a reversed payment; nothing left to reverse).
pub fn no_longer_valid(param: &str) -> String {
    code('2', "018", param)
}

/// `2001pppp`: Paygate cryptography (Data that cannot be decrypted, a Len that does not fit,
/// a wrong MAC).
pub fn crypto(param: &str) -> String {
    code('2', "001", param)
}

/// The customer pressed "Cancel" on the hosted page. `[INF]` module `030` (an internal module
/// number) is the simulator's choice.
pub const CUSTOMER_CANCELLED: &str = "20300000";
/// A declined authorization or a failed settlement: the Test Guide's card decline `Test:0305`
/// as [`simulated`] maps it. `[INF]`
pub const DECLINED: &str = "21000305";
/// The `Unencrypted` fault's code: a fatal internal error. `[INF]`
pub const INTERNAL_UNENCRYPTED: &str = "40200000";

/// A failed authorization from the simulation mode `OrderDesc=Test:nnnn` (developer.computop.com
/// "Test Guide": `Test:0305` is a card decline): module `100` (card processing, per the module
/// table) with `nnnn` as digits 5–8. `[INF]` the mapping of `nnnn` into the code.
pub fn simulated(nnnn: &str) -> String {
    code('2', "100", nnnn)
}

/// The reply `Status` a code stands for on an action (capture, credit, reverse): `OK` for `0`,
/// `PENDING` for `6`, else `FAILED` (reference §3.7: pretix maps 0 → confirmed, 2/4 → failed,
/// 6/7 → pending).
pub fn action_status(code: &str) -> &'static str {
    match code.as_bytes().first() {
        Some(b'0') => "OK",
        Some(b'6') | Some(b'7') => "PENDING",
        _ => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paygate_sim_codes_follow_the_documented_structure() {
        for c in [
            missing(param::PAY_ID),
            format(param::AMOUNT),
            invalid(param::AMOUNT),
            too_long(param::REQ_ID),
            unknown(param::MERCHANT_ID),
            already_present(param::TRANS_ID),
            no_longer_valid(param::PAY_ID),
            crypto(param::MAC),
            simulated("0305"),
            CUSTOMER_CANCELLED.to_string(),
            INTERNAL_UNENCRYPTED.to_string(),
            OK.to_string(),
            PENDING.to_string(),
        ] {
            assert_eq!(c.len(), 8, "{c}");
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()), "{c}");
        }
        assert_eq!(missing(param::PAY_ID), "40100004");
        assert_eq!(crypto(param::MAC), "20010008");
        assert_eq!(simulated("0305"), "21000305");
        assert_eq!(param_of("payid"), "0004");
        assert_eq!(param_of("Foo"), "0000");
        assert_eq!(action_status(OK), "OK");
        assert_eq!(action_status(PENDING), "PENDING");
        assert_eq!(action_status("21000305"), "FAILED");
    }
}
