//! Unit tests of the Paygate connector's pure parts: reply shapes, `Code` verdicts, the
//! inquire → payment mapping, the reversal rule and the notify's verification.

use super::transformers::{self, Expect, Reply, ReplyError, Verdict};
use super::webhook::PaygateNotify;
use super::*;
use crate::model::{PaymentState, TxKind, TxStatus};
use crate::money::{Currency, Money};
use crate::psp::webhook::{IncomingWebhook, WebhookError};

const MID: &str = "paybridgeTest";
const KEY: &str = "blowfishPW01";
const HMAC: &str = "hmacPW-0123456789";

fn account() -> Account {
    Account::new(
        MID,
        Cipher::Blowfish,
        Secret::new(KEY),
        Secret::new(HMAC),
        Some("http://127.0.0.1:1"),
    )
    .expect("account")
}

fn sealed_reply(account: &Account, plain: &str) -> String {
    let (data, len) = envelope::seal(account.cipher, account.cipher_key(), plain).unwrap();
    format!("Len={len}&Data={data}")
}

fn config_toml(extra: &str) -> String {
    format!(
        r#"
[tenant]
id = "acme"
[[erp]]
id = "main"
kind = "memory"
fixtures = "orders.json"
[[method]]
erp = "main"
mandant = "01"
erp_method = "CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "{MID}"
encryption_key = "plain:{KEY}"
hmac_key = "plain:{HMAC}"
psp_method = "card"
{extra}
"#
    )
}

fn config() -> Config {
    Config::parse(&config_toml(""), "t.toml").expect("config")
}

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

#[test]
fn paygate_code_is_read_by_its_first_digit() {
    assert_eq!(Verdict::of("00000000"), Verdict::Ok);
    assert_eq!(Verdict::of("22060203"), Verdict::Failed);
    assert_eq!(Verdict::of("2206014H"), Verdict::Failed);
    assert_eq!(Verdict::of("40100001"), Verdict::Failed);
    assert_eq!(Verdict::of("60000000"), Verdict::Pending);
    assert_eq!(Verdict::of("70000000"), Verdict::ThreeDs);
    assert_eq!(Verdict::of("0000000"), Verdict::Unreadable);
    assert_eq!(Verdict::of("90000000"), Verdict::Unreadable);
    assert_eq!(Verdict::of(""), Verdict::Unreadable);
}

#[test]
fn paygate_reply_shapes_encrypted_unencrypted_and_credentials() {
    let a = account();
    let r = Reply::read(
        &sealed_reply(&a, "mid=paybridgeTest&Status=OK&Code=00000000"),
        &a,
    )
    .unwrap();
    assert!(r.encrypted);
    assert_eq!(r.get("status"), Some("OK"));
    let plain = Reply::read("mid=paybridgeTest&Status=FAILED&Code=20100010", &a).unwrap();
    assert!(!plain.encrypted);
    assert_eq!(plain.verdict(), Verdict::Failed);
    assert_eq!(
        Reply::read("<html>Unexpected exception</html>", &a),
        Err(ReplyError::Credentials)
    );
    assert!(matches!(
        Reply::read("Len=9&Data=zz", &a),
        Err(ReplyError::Unreadable(_))
    ));
}

#[test]
fn paygate_money_reply_outcomes() {
    let a = account();
    let ok = |plain: &str| {
        transformers::outcome(
            "capture.aspx",
            StatusCode::OK,
            &sealed_reply(&a, plain),
            &a,
            &Expect {
                pay_id: "abc123",
                amount: "1234",
                currency: "EUR",
            },
        )
    };
    assert_eq!(
        ok(
            "mid=paybridgeTest&PayID=abc123&XID=x9&Status=OK&Code=00000000&Amount=1234&Currency=EUR"
        ),
        PspOutcome::Done { tx_id: "x9".into() }
    );
    // Status alone never decides: OK with an error code is a decline
    assert!(matches!(
        ok("mid=paybridgeTest&PayID=abc123&Status=OK&Code=21000042&Description=refused"),
        PspOutcome::Declined { code, .. } if code == "21000042"
    ));
    assert!(matches!(
        ok("mid=paybridgeTest&PayID=abc123&XID=x9&Status=PENDING&Code=60000000"),
        PspOutcome::Pending { .. }
    ));
    // an echo that differs, another merchant, another payment: unknown, never done
    for body in [
        "mid=paybridgeTest&PayID=abc123&XID=x9&Status=OK&Code=00000000&Amount=1235",
        "mid=paybridgeTest&PayID=abc123&XID=x9&Status=OK&Code=00000000&Currency=USD",
        "mid=other&PayID=abc123&XID=x9&Status=OK&Code=00000000",
        "mid=paybridgeTest&PayID=zzz&XID=x9&Status=OK&Code=00000000",
        "mid=paybridgeTest&PayID=abc123&Status=OK",
    ] {
        assert!(matches!(ok(body), PspOutcome::Unknown { .. }), "{body}");
    }
    let status = |s: u16, body: &str| {
        transformers::outcome(
            "credit.aspx",
            StatusCode::from_u16(s).unwrap(),
            body,
            &a,
            &Expect {
                pay_id: "abc123",
                amount: "1",
                currency: "EUR",
            },
        )
    };
    assert!(matches!(status(500, ""), PspOutcome::Unknown { .. }));
    assert!(matches!(status(429, ""), PspOutcome::Retryable { .. }));
    assert!(matches!(status(404, ""), PspOutcome::Declined { .. }));
    assert!(matches!(status(200, "garbage"), PspOutcome::Unknown { .. }));
    assert!(matches!(
        status(200, "Unexpected exception"),
        PspOutcome::Declined { code, .. } if code == "PAYBRIDGE.CREDENTIALS"
    ));
    // a success outside the envelope is not believed
    assert!(matches!(
        status(200, "mid=paybridgeTest&Status=OK&Code=00000000"),
        PspOutcome::Unknown { .. }
    ));
}

fn inquire(plain: &str, method: &str) -> Result<PspPayment, PspError> {
    let a = account();
    let mut cfg = config().methods[0].clone();
    cfg.account.extra.psp_method = Some(method.into());
    let r = Reply::read(&sealed_reply(&a, plain), &a).unwrap();
    transformers::payment(&r, &a, &cfg, "abc123")
}

#[test]
fn paygate_inquire_totals_become_the_payment_view() {
    let p = inquire(
        "mid=paybridgeTest&PayID=abc123&TransID=shop-77&Status=OK&Code=00000000&AmountAuth=10000&AmountCap=6000&AmountCred=1500&Currency=EUR&LastStatus=OK",
        "card",
    )
    .unwrap();
    assert!(p.totals_only);
    assert_eq!(p.state, PaymentState::Partly);
    let init = p.initial().unwrap();
    assert_eq!(
        (init.kind, init.status, init.amount),
        (TxKind::Authorize, TxStatus::Success, eur(10000))
    );
    assert_eq!(init.id, "shop-77");
    let pos = p.position().unwrap();
    assert_eq!(pos.authorized, eur(10000));
    assert_eq!(pos.charged, eur(6000));
    assert_eq!(pos.refunded, eur(1500));
    assert_eq!(pos.remaining().unwrap(), eur(4000));
    assert_eq!(transformers::trans_id(&p, "pbref"), "shop-77");

    // PayPal is booked at once: the initial transaction is a charge, only refunds remain
    let p = inquire(
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=5000&AmountCap=5000&Currency=EUR",
        "paypal",
    )
    .unwrap();
    assert_eq!(p.initial().unwrap().kind, TxKind::Charge);
    assert_eq!(p.family(), crate::model::MethodFamily::ChargedInShop);
    assert_eq!(p.position().unwrap().charged, eur(5000));
    assert_eq!(p.position().unwrap().remaining().unwrap(), eur(0));

    // pending, failed, reversed
    let p = inquire(
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=0&Currency=EUR&LastStatus=PENDING",
        "card",
    )
    .unwrap();
    assert_eq!(p.initial().unwrap().status, TxStatus::Pending);
    assert_eq!(p.state, PaymentState::Pending);
    let p = inquire(
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=0&Currency=EUR&LastStatus=FAILED",
        "card",
    )
    .unwrap();
    assert_eq!(p.initial().unwrap().status, TxStatus::Error);
    let p = inquire("mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=3000&Currency=EUR&LastStatus=REVERSED", "card").unwrap();
    assert_eq!(p.state, PaymentState::Canceled);
    assert_eq!(p.position().unwrap().reversed, eur(3000));

    // refused inquiry, hostile values
    assert!(matches!(
        inquire(
            "mid=paybridgeTest&PayID=abc123&Status=FAILED&Code=21000001",
            "card"
        ),
        Err(PspError::NotFound(_))
    ));
    for bad in [
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=-5&Currency=EUR",
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=1.5&Currency=EUR",
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=5",
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=5&Currency=XXQ",
        "mid=other&PayID=abc123&Code=00000000&AmountAuth=5&Currency=EUR",
        "mid=paybridgeTest&PayID=zzz&Code=00000000&AmountAuth=5&Currency=EUR",
    ] {
        assert!(
            matches!(inquire(bad, "card"), Err(PspError::BadReply(_))),
            "{bad}"
        );
    }
}

#[test]
fn paygate_reverse_is_sent_only_when_the_authorization_is_the_last_step() {
    let open = inquire(
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=10000&Currency=EUR",
        "card",
    )
    .unwrap();
    assert!(transformers::reversal_is_last_step(&open, eur(10000)));
    assert!(!transformers::reversal_is_last_step(&open, eur(4000)));
    let captured = inquire(
        "mid=paybridgeTest&PayID=abc123&Code=00000000&AmountAuth=10000&AmountCap=6000&Currency=EUR",
        "card",
    )
    .unwrap();
    assert!(!transformers::reversal_is_last_step(&captured, eur(4000)));
}

#[test]
fn paygate_request_values_cannot_smuggle_fields() {
    assert!(transformers::plaintext(&[("RefNr", "a&Amount=1".into())]).is_err());
    assert!(transformers::plaintext(&[("RefNr", "ü".into())]).is_err());
    assert_eq!(
        transformers::plaintext(&[("A", "1".into()), ("B", "x".into())]).unwrap(),
        "A=1&B=x"
    );
}

#[test]
fn paygate_account_checks_key_lengths_and_host() {
    let make = |cipher, key: &str, host: Option<&str>| {
        Account::new(MID, cipher, Secret::new(key), Secret::new(HMAC), host)
    };
    assert!(make(Cipher::Blowfish, "abc", None).is_err());
    assert!(make(Cipher::Aes, "0123456789abcdef", None).is_ok());
    assert!(make(Cipher::Aes, "0123456789abcde", None).is_err());
    assert!(make(Cipher::Blowfish, KEY, Some("http://paygate.example.com")).is_err());
    assert!(make(Cipher::Blowfish, KEY, Some("https://h/x?y")).is_err());
    let a = make(Cipher::Blowfish, KEY, None).unwrap();
    assert!(!format!("{a:?}").contains(KEY));
    assert!(!format!("{a:?}").contains(HMAC));
}

fn notify_body(
    account: &Account,
    mac_key: &[u8],
    fields: &str,
    pay_id: &str,
    with_mid: bool,
) -> Vec<u8> {
    let mac = envelope::mac(
        mac_key,
        &envelope::response_mac_message(pay_id, "shop-77", MID, "AUTHORIZED", "00000000"),
    );
    let plain = format!(
        "mid={MID}&PayID={pay_id}&XID=x1&TransID=shop-77&Status=AUTHORIZED&Code=00000000{fields}&MAC={mac}"
    );
    let (data, len) = envelope::seal(account.cipher, account.cipher_key(), &plain).unwrap();
    let mid = if with_mid {
        format!("MerchantID={MID}&")
    } else {
        String::new()
    };
    format!("{mid}Len={len}&Data={data}").into_bytes()
}

#[test]
fn paygate_notify_is_verified_and_names_the_payment() {
    let cfg = config();
    let a = account();
    for with_mid in [true, false] {
        let body = notify_body(&a, HMAC.as_bytes(), "", "abc123", with_mid);
        let ev = PaygateNotify.verify(&cfg, &body).expect("verifies");
        assert_eq!(ev.payment_id, "abc123");
        assert_eq!(ev.account, MID);
        assert_eq!(ev.event, "paygate.authorized");
    }
    // the same payment is one identity, whatever else the notify says
    let one = PaygateNotify
        .verify(&cfg, &notify_body(&a, HMAC.as_bytes(), "", "abc123", true))
        .unwrap();
    let two = PaygateNotify
        .verify(
            &cfg,
            &notify_body(&a, HMAC.as_bytes(), "&RefNr=9", "abc123", true),
        )
        .unwrap();
    assert_eq!(one.identity, two.identity);
}

#[test]
fn paygate_notify_refuses_forged_tampered_truncated_and_unknown() {
    let cfg = config();
    let a = account();
    let good = notify_body(&a, HMAC.as_bytes(), "", "abc123", true);
    // wrong MAC key
    let forged = notify_body(&a, b"not-the-hmac", "", "abc123", true);
    assert!(matches!(
        PaygateNotify.verify(&cfg, &forged),
        Err(WebhookError::Unauthentic(_))
    ));
    // wrong Blowfish key
    let other = Account::new(
        MID,
        Cipher::Blowfish,
        Secret::new("anotherKey"),
        Secret::new(HMAC),
        None,
    )
    .unwrap();
    let wrong_key = notify_body(&other, HMAC.as_bytes(), "", "abc123", true);
    assert!(matches!(
        PaygateNotify.verify(&cfg, &wrong_key),
        Err(WebhookError::Unauthentic(_))
    ));
    // tampered: one hex digit of Data changed
    let text = String::from_utf8(good.clone()).unwrap();
    let i = text.find("Data=").unwrap() + 5 + 20;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        PaygateNotify.verify(&cfg, &bytes),
        Err(WebhookError::Unauthentic(_))
    ));
    // truncated: Data cut, Len no longer fits
    let text = String::from_utf8(good.clone()).unwrap();
    let cut = &text[..text.len() - 16];
    assert!(PaygateNotify.verify(&cfg, cut.as_bytes()).is_err());
    // unknown MerchantID
    let text = String::from_utf8(good.clone())
        .unwrap()
        .replace(&format!("MerchantID={MID}"), "MerchantID=someoneElse");
    assert_eq!(
        PaygateNotify.verify(&cfg, text.as_bytes()),
        Err(WebhookError::UnknownAccount("MerchantID"))
    );
    // missing parts, bad Len, twice
    for bad in [
        &b"Len=10"[..],
        b"Data=ABCD",
        b"Len=x&Data=ABCD",
        b"Len=0&Data=ABCD",
        b"Len=8&Len=8&Data=ABCDABCDABCDABCD",
        &[0xff, 0xfe][..],
    ] {
        assert!(
            matches!(
                PaygateNotify.verify(&cfg, bad),
                Err(WebhookError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
    // oversize
    let big = vec![b'a'; 9000];
    assert!(matches!(
        PaygateNotify.verify(&cfg, &big),
        Err(WebhookError::TooLarge(_))
    ));
    // a PayID that is not a plain id
    let odd = notify_body(&a, HMAC.as_bytes(), "", "abc/../1", true);
    assert!(matches!(
        PaygateNotify.verify(&cfg, &odd),
        Err(WebhookError::Unauthentic(_))
    ));
}
