//! Wire helpers of the Paygate simulator: the outer form (`MerchantID`, `Len`, `Data` as form or
//! query fields), the inner `key=value&…` plaintext, Paygate's value formats, and id making.
//!
//! Facts followed (reference paygate.md §1.2, §1.6, §2): keys are matched case-insensitively
//! (FATCHIP sends `payID`, pretix `PayID`); the plaintext is ASCII, `&` and `=` cannot be escaped
//! inside values; `Amount` is `n..10` in minor units, `Currency` `a3`, `TransID` `ans..64`,
//! `ReqId` `ans..32`, `RefNr` `..30`, `PayID`/`XID` `an32`. The envelope itself (Blowfish-ECB,
//! HMAC-SHA256) is `paybridge_core::psp::paygate::envelope`; nothing here touches the cipher.

use std::sync::atomic::{AtomicU64, Ordering};

/// Owned `key=value` pairs in the order received; keys as sent.
pub type Fields = Vec<(String, String)>;

/// The value of `key` (case-insensitive), the first if repeated.
pub fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// A non-empty value of `key`.
pub fn get_nonempty<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    get(fields, key).filter(|v| !v.is_empty())
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
pub fn parse_form(text: &[u8]) -> Fields {
    url::form_urlencoded::parse(text).into_owned().collect()
}

/// Form-encodes pairs.
pub fn encode_form<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// The inner plaintext `k=v&k=v` (no escaping: Paygate has none).
pub fn join_kvp(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The inner pairs of a decrypted plaintext, owned.
pub fn split_kvp(plain: &str) -> Fields {
    paybridge_core::psp::paygate::envelope::pairs(plain)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `Amount`, format `n..10` (1 to 10 digits), in minor units. `[INF]` zero is refused: an
/// action of nothing has no meaning, and the docs give no zero example.
pub fn amount(text: &str) -> Result<i64, ()> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(()),
    }
}

/// `Currency`, format `a3` (ISO 4217 alpha). `[INF]` upper case only.
pub fn currency_ok(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// `ans..n`: printable ASCII (no `&`/`=`, which could not have arrived inside a value), at most
/// `max` characters. Returns `Err(true)` when too long, `Err(false)` on another format error.
pub fn ans(text: &str, max: usize) -> Result<(), bool> {
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(false);
    }
    if text.len() > max {
        return Err(true);
    }
    Ok(())
}

/// `an32` ids (PayID): 32 alphanumerics.
pub fn an32(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Minimal HTML escaping for the hosted page.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// Currencies without minor units (ISO 4217 exponent 0; Magento2 Helper/Api.php multiplies
/// them by 1), for display on the hosted page only.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// `1234` `EUR` → `12.34 EUR` (integer arithmetic only).
pub fn display_amount(minor: i64, currency: &str) -> String {
    if ZERO_DECIMAL.contains(&currency) {
        return format!("{minor} {currency}");
    }
    format!("{}.{:02} {currency}", minor / 100, minor % 100)
}

/// Process-wide salt so that two simulators in one test binary hand out different ids.
static SALT: AtomicU64 = AtomicU64::new(0x5EED_0000_0000_0001);

/// A per-simulator salt.
pub fn new_salt() -> u64 {
    SALT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 32-character lower-case hex id (PayID, XID: `an32`) from a salt, a kind tag and a counter.
/// `[INF]` lower case, as the docs' examples of PayIDs show.
pub fn id32(salt: u64, tag: u64, n: u64) -> String {
    let a = splitmix(salt ^ tag.rotate_left(17) ^ n);
    let b = splitmix(a ^ n.rotate_left(32) ^ tag);
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paygate_sim_wire_formats() {
        assert_eq!(amount("1234"), Ok(1234));
        assert_eq!(amount("0000000001"), Ok(1));
        assert_eq!(amount("0"), Err(()));
        assert_eq!(amount("12.34"), Err(()));
        assert_eq!(amount("12345678901"), Err(()));
        assert_eq!(amount("-5"), Err(()));
        assert!(currency_ok("EUR"));
        assert!(!currency_ok("eur"));
        assert!(!currency_ok("EURO"));
        assert_eq!(ans("abc", 3), Ok(()));
        assert_eq!(ans("abcd", 3), Err(true));
        assert_eq!(ans("a\u{e9}", 3), Err(false));
        assert_eq!(display_amount(1234, "EUR"), "12.34 EUR");
        assert_eq!(display_amount(5, "EUR"), "0.05 EUR");
        assert_eq!(display_amount(1234, "JPY"), "1234 JPY");
        assert_eq!(html_escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
        let a = id32(1, 1, 1);
        assert_eq!(a.len(), 32);
        assert!(an32(&a));
        assert_ne!(a, id32(1, 1, 2));
        assert_ne!(a, id32(1, 2, 1));
        let kv = split_kvp("PayID=x&amount=5&MAC=AB");
        assert_eq!(get(&kv, "payid"), Some("x"));
        assert_eq!(get(&kv, "Amount"), Some("5"));
        assert_eq!(join_kvp(&kv), "PayID=x&amount=5&MAC=AB");
        let form = parse_form(b"MerchantID=m%201&Len=3&Data=AB");
        assert_eq!(get(&form, "merchantid"), Some("m 1"));
        assert_eq!(encode_form(&[("a", "b c"), ("d", "e&f")]), "a=b+c&d=e%26f");
    }
}
