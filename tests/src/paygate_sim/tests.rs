//! The Paygate simulator over HTTP: a small client here encrypts a request with the envelope
//! module, posts it as a form, and decrypts the reply — the way a connector talks to Paygate
//! (reference paygate.md §1.2, §1.6). Every test asserts the money state after the wire
//! exchange, not only the reply.

use super::*;
use paybridge_core::psp::paygate::envelope;
use std::sync::atomic::{AtomicUsize, Ordering};

const MID: &str = "simMerchant01";
const BF: &[u8] = b"blowfishPass";
const HM: &[u8] = b"hmacPassword";

async fn sim() -> PaygateSim {
    let s = PaygateSim::start().await;
    s.add_merchant(MID, BF, HM);
    s
}

fn v<'a>(fields: &'a Fields, key: &str) -> &'a str {
    get(fields, key).unwrap_or_else(|| panic!("no {key} in {fields:?}"))
}

fn client(timeout: Option<Duration>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

/// Posts `MerchantID`, `Len`, `Data` (inner encrypted with `bf`); `(HTTP status, body)`.
async fn post_raw(
    http: &reqwest::Client,
    sim: &PaygateSim,
    ep: Endpoint,
    plain_mid: &str,
    bf: &[u8],
    inner: &[(&str, String)],
) -> Result<(u16, String), String> {
    let plaintext = inner
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let (data, len) = envelope::encrypt(bf, &plaintext).unwrap();
    let body = wire::encode_form(&[
        ("MerchantID", plain_mid.to_string()),
        ("Len", len.to_string()),
        ("Data", data),
    ]);
    let resp = http
        .post(sim.url(ep))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// Decrypts a `Len=…&Data=…` reply body.
fn open_reply(body: &str) -> Fields {
    let outer = wire::parse_form(body.as_bytes());
    let len: usize = v(&outer, "Len").parse().unwrap();
    let plain = envelope::decrypt(BF, v(&outer, "Data"), len).unwrap();
    wire::split_kvp(&plain)
}

fn req_mac(pay_id: &str, trans_id: &str, amount: &str, currency: &str) -> String {
    envelope::mac(
        HM,
        &envelope::request_mac_message(pay_id, trans_id, MID, amount, currency),
    )
}

fn action_fields(
    pay_id: &str,
    trans_id: &str,
    amount: i64,
    currency: &str,
    req_id: Option<&str>,
) -> Vec<(&'static str, String)> {
    let amount = amount.to_string();
    let mut inner = vec![
        ("MerchantID", MID.to_string()),
        ("PayID", pay_id.to_string()),
        ("TransID", trans_id.to_string()),
        ("Amount", amount.clone()),
        ("Currency", currency.to_string()),
    ];
    if let Some(r) = req_id {
        inner.push(("ReqId", r.to_string()));
    }
    inner.push(("MAC", req_mac(pay_id, trans_id, &amount, currency)));
    inner
}

/// A capture, credit or reverse with a correct MAC; the decrypted reply.
async fn action(
    sim: &PaygateSim,
    ep: Endpoint,
    pay_id: &str,
    amount: i64,
    req_id: Option<&str>,
) -> Fields {
    let trans_id = sim.payment(pay_id).map(|p| p.trans_id).unwrap_or_default();
    let inner = action_fields(pay_id, &trans_id, amount, "EUR", req_id);
    let (status, body) = post_raw(&client(None), sim, ep, MID, BF, &inner)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    open_reply(&body)
}

async fn inquire(sim: &PaygateSim, pay_id: &str, trans_id: Option<&str>) -> Fields {
    let mut inner = vec![
        ("MerchantID", MID.to_string()),
        ("PayID", pay_id.to_string()),
    ];
    if let Some(t) = trans_id {
        inner.push(("TransID", t.to_string()));
    }
    inner.push(("MAC", req_mac(pay_id, trans_id.unwrap_or_default(), "", "")));
    let (status, body) = post_raw(&client(None), sim, Endpoint::Inquire, MID, BF, &inner)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    open_reply(&body)
}

fn amounts_of(inq: &Fields) -> (i64, i64, i64) {
    (
        v(inq, "AmountAuth").parse().unwrap(),
        v(inq, "AmountCap").parse().unwrap(),
        v(inq, "AmountCred").parse().unwrap(),
    )
}

/// A notify receiver: answers the scripted statuses in turn (then 200), records
/// `(content-type, body, path)`.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<(String, String, String)>>>,
    _task: ServerTask,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let hits: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let n = Arc::new(AtomicUsize::new(0));
    let (h, script) = (hits.clone(), Arc::new(script));
    let app = Router::new().fallback(move |req: Request| {
        let (h, n, script) = (h.clone(), n.clone(), script.clone());
        async move {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let path = req.uri().path().to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            lock(&h).push((ct, String::from_utf8_lossy(&body).into_owned(), path));
            let i = n.fetch_add(1, Ordering::SeqCst);
            let status = script.get(i).copied().unwrap_or(200);
            (StatusCode::from_u16(status).unwrap(), "[accepted]")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url,
        hits,
        _task: ServerTask(task),
    }
}

impl Receiver {
    fn hits(&self) -> Vec<(String, String, String)> {
        lock(&self.hits).clone()
    }
}

/// Decrypts a notify body and checks its response MAC.
fn open_notify(body: &str) -> (Fields, Fields, bool) {
    let outer = wire::parse_form(body.as_bytes());
    let inner = open_reply(body);
    let msg = envelope::response_mac_message(
        v(&inner, "PayID"),
        v(&inner, "TransID"),
        v(&inner, "mid"),
        v(&inner, "Status"),
        v(&inner, "Code"),
    );
    let ok = envelope::mac_matches(HM, &msg, v(&inner, "MAC"));
    (outer, inner, ok)
}

#[tokio::test]
async fn paygate_sim_capture_partial_twice() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-100", 10_000, "EUR", PaymentKind::Reserved);
    assert_eq!(pay.len(), 32);
    assert!(pay.bytes().all(|b| b.is_ascii_hexdigit()));

    let r1 = action(&sim, Endpoint::Capture, &pay, 3000, Some("cap-1")).await;
    assert_eq!(v(&r1, "mid"), MID);
    assert_eq!(v(&r1, "PayID"), pay);
    assert_eq!(v(&r1, "TransID"), "T-100");
    assert_eq!(v(&r1, "Status"), "OK");
    assert_eq!(v(&r1, "Code"), "00000000");
    assert_eq!(v(&r1, "Amount"), "3000");
    assert_eq!(v(&r1, "Currency"), "EUR");
    assert_eq!(v(&r1, "XID").len(), 32);
    assert_eq!(
        get(&r1, "MAC"),
        None,
        "server-to-server replies carry no MAC"
    );

    let r2 = action(&sim, Endpoint::Capture, &pay, 2500, Some("cap-2")).await;
    assert_eq!(v(&r2, "Status"), "OK");
    assert_ne!(v(&r2, "XID"), v(&r1, "XID"));
    let inq = inquire(&sim, &pay, Some("T-100")).await;
    assert_eq!(v(&inq, "Status"), "OK");
    assert_eq!(amounts_of(&inq), (10_000, 5500, 0));
    assert_eq!(v(&inq, "LastStatus"), "OK");
    assert_eq!(v(&inq, "XID"), v(&r2, "XID"));

    // 4500 remain open: 4501 is refused and recorded as a failed step
    let r3 = action(&sim, Endpoint::Capture, &pay, 4501, Some("cap-3")).await;
    assert_eq!(v(&r3, "Status"), "FAILED");
    assert_eq!(v(&r3, "Code"), "20120006");
    let view = sim.payment(&pay).unwrap();
    assert_eq!(
        (view.amount_auth, view.amount_cap, view.amount_cred),
        (10_000, 5500, 0)
    );
    assert_eq!(view.steps.len(), 4);
    assert_eq!(view.last_status, "FAILED");
    let inq = inquire(&sim, &pay, Some("T-100")).await;
    assert_eq!(v(&inq, "LastStatus"), "FAILED");
    assert_eq!(amounts_of(&inq), (10_000, 5500, 0));

    let r4 = action(&sim, Endpoint::Capture, &pay, 4500, Some("cap-4")).await;
    assert_eq!(v(&r4, "Status"), "OK");
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 10_000);
    let caps: Vec<i64> = sim
        .payment(&pay)
        .unwrap()
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Capture && s.succeeded())
        .map(|s| s.amount)
        .collect();
    assert_eq!(caps, vec![3000, 2500, 4500]);
}

#[tokio::test]
async fn paygate_sim_credit_bounds() {
    let sim = sim().await;
    let booked = sim.create_payment(MID, "T-200", 5000, "EUR", PaymentKind::Booked);
    let view = sim.payment(&booked).unwrap();
    assert_eq!((view.amount_auth, view.amount_cap), (5000, 5000));

    let c1 = action(&sim, Endpoint::Credit, &booked, 2000, Some("cr-1")).await;
    assert_eq!((v(&c1, "Status"), v(&c1, "Code")), ("OK", "00000000"));
    let c2 = action(&sim, Endpoint::Credit, &booked, 3001, Some("cr-2")).await;
    assert_eq!((v(&c2, "Status"), v(&c2, "Code")), ("FAILED", "20120006"));
    assert_eq!(sim.payment(&booked).unwrap().amount_cred, 2000);
    let c3 = action(&sim, Endpoint::Credit, &booked, 3000, Some("cr-3")).await;
    assert_eq!(v(&c3, "Status"), "OK");
    let c4 = action(&sim, Endpoint::Credit, &booked, 1, Some("cr-4")).await;
    assert_eq!(v(&c4, "Status"), "FAILED");
    let inq = inquire(&sim, &booked, Some("T-200")).await;
    assert_eq!(amounts_of(&inq), (5000, 5000, 5000));
    assert_eq!(v(&inq, "LastStatus"), "FAILED");

    // nothing captured: nothing to credit
    let reserved = sim.create_payment(MID, "T-201", 5000, "EUR", PaymentKind::Reserved);
    let c = action(&sim, Endpoint::Credit, &reserved, 100, None).await;
    assert_eq!((v(&c, "Status"), v(&c, "Code")), ("FAILED", "20120006"));
    assert_eq!(sim.payment(&reserved).unwrap().amount_cred, 0);
}

#[tokio::test]
async fn paygate_sim_reverse_before_capture_reverses_the_authorization() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-300", 8000, "EUR", PaymentKind::Reserved);
    let auth_xid = sim.payment(&pay).unwrap().steps[0].xid.clone();

    // a reversal names the full amount of the step it undoes
    let wrong = action(&sim, Endpoint::Reverse, &pay, 7999, Some("rv-0")).await;
    assert_eq!(
        (v(&wrong, "Status"), v(&wrong, "Code")),
        ("FAILED", "20120006")
    );
    assert!(!sim.payment(&pay).unwrap().reversed);

    let r = action(&sim, Endpoint::Reverse, &pay, 8000, Some("rv-1")).await;
    assert_eq!((v(&r, "Status"), v(&r, "Code")), ("OK", "00000000"));
    let view = sim.payment(&pay).unwrap();
    assert!(view.reversed);
    let rev = view.steps.last().unwrap();
    assert_eq!(rev.kind, StepKind::Reversal);
    assert_eq!(rev.undoes.as_deref(), Some(auth_xid.as_str()));
    assert_eq!(rev.xid, v(&r, "XID"));

    // [INF] inquire keeps AmountAuth; LastStatus is the reversal's
    let inq = inquire(&sim, &pay, Some("T-300")).await;
    assert_eq!(amounts_of(&inq), (8000, 0, 0));
    assert_eq!(v(&inq, "LastStatus"), "OK");

    let cap = action(&sim, Endpoint::Capture, &pay, 100, Some("cp-1")).await;
    assert_eq!((v(&cap, "Status"), v(&cap, "Code")), ("FAILED", "20180004"));
    let again = action(&sim, Endpoint::Reverse, &pay, 8000, Some("rv-2")).await;
    assert_eq!(
        (v(&again, "Status"), v(&again, "Code")),
        ("FAILED", "20180004")
    );
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 0);
}

#[tokio::test]
async fn paygate_sim_reverse_after_capture_cancels_that_capture() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-400", 10_000, "EUR", PaymentKind::Reserved);
    let cap = action(&sim, Endpoint::Capture, &pay, 4000, Some("c-1")).await;
    assert_eq!(v(&cap, "Status"), "OK");

    // the last step is the capture, not the authorization
    let full = action(&sim, Endpoint::Reverse, &pay, 10_000, Some("r-1")).await;
    assert_eq!(
        (v(&full, "Status"), v(&full, "Code")),
        ("FAILED", "20120006")
    );
    let r = action(&sim, Endpoint::Reverse, &pay, 4000, Some("r-2")).await;
    assert_eq!(v(&r, "Status"), "OK");
    let view = sim.payment(&pay).unwrap();
    assert_eq!(
        view.steps.last().unwrap().undoes.as_deref(),
        Some(v(&cap, "XID"))
    );
    assert_eq!(
        (view.amount_auth, view.amount_cap, view.reversed),
        (10_000, 0, false)
    );
    let inq = inquire(&sim, &pay, Some("T-400")).await;
    assert_eq!(amounts_of(&inq), (10_000, 0, 0));

    // then the authorization is the last undone step
    let r2 = action(&sim, Endpoint::Reverse, &pay, 10_000, Some("r-3")).await;
    assert_eq!(v(&r2, "Status"), "OK");
    assert!(sim.payment(&pay).unwrap().reversed);

    // a credit as the last step is not reversed
    let booked = sim.create_payment(MID, "T-401", 3000, "EUR", PaymentKind::Booked);
    let cr = action(&sim, Endpoint::Credit, &booked, 1000, Some("c-2")).await;
    assert_eq!(v(&cr, "Status"), "OK");
    let rc = action(&sim, Endpoint::Reverse, &booked, 1000, Some("r-4")).await;
    assert_eq!((v(&rc, "Status"), v(&rc, "Code")), ("FAILED", "20120004"));
    let view = sim.payment(&booked).unwrap();
    assert_eq!((view.amount_cap, view.amount_cred), (3000, 1000));
}

#[tokio::test]
async fn paygate_sim_reqid_replay_returns_the_original_reply_and_moves_nothing() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-500", 9000, "EUR", PaymentKind::Reserved);
    let first = action(&sim, Endpoint::Capture, &pay, 3000, Some("op-A")).await;
    let again = action(&sim, Endpoint::Capture, &pay, 3000, Some("op-A")).await;
    assert_eq!(again, first, "the original reply, same XID");
    let view = sim.payment(&pay).unwrap();
    assert_eq!(view.amount_cap, 3000);
    assert_eq!(view.steps.len(), 2);
    let log = sim.calls_to(Endpoint::Capture);
    assert_eq!(log.len(), 2);
    assert!(!log[0].replayed && log[1].replayed);
    assert_eq!(log[1].field("reqid"), Some("op-A"));
    assert!(log[1].field("MAC").is_some());

    // another ReqId with the same amount is another capture
    let other = action(&sim, Endpoint::Capture, &pay, 3000, Some("op-B")).await;
    assert_ne!(v(&other, "XID"), v(&first, "XID"));
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 6000);

    // processed, then HTTP 500: the retry with the same ReqId gets the original reply
    sim.inject_on(Endpoint::Capture, Fault::ServerErrorAfter, 1);
    let inner = action_fields(&pay, "T-500", 1000, "EUR", Some("op-C"));
    let (status, _) = post_raw(&client(None), &sim, Endpoint::Capture, MID, BF, &inner)
        .await
        .unwrap();
    assert_eq!(status, 500);
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 7000);
    let retry = action(&sim, Endpoint::Capture, &pay, 1000, Some("op-C")).await;
    assert_eq!(v(&retry, "Status"), "OK");
    let c_xid = sim.payment(&pay).unwrap().steps.last().unwrap().xid.clone();
    assert_eq!(v(&retry, "XID"), c_xid);
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 7000);
    let log = sim.calls_to(Endpoint::Capture);
    let c_calls: Vec<&SimCall> = log
        .iter()
        .filter(|c| c.field("ReqId") == Some("op-C"))
        .collect();
    assert_eq!(c_calls.len(), 2);
    assert_eq!(c_calls[0].http_status, 500);
    assert_eq!(c_calls[0].status.as_deref(), Some("OK"));
    assert!(c_calls[1].replayed);

    // a refused action is final too: its ReqId returns the refusal
    let refused = action(&sim, Endpoint::Capture, &pay, 5000, Some("op-D")).await;
    assert_eq!(v(&refused, "Status"), "FAILED");
    let refused_again = action(&sim, Endpoint::Capture, &pay, 1000, Some("op-D")).await;
    assert_eq!(refused_again, refused);
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 7000);
}

#[tokio::test]
async fn paygate_sim_pending_action_does_not_consume_its_reqid() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-550", 2000, "EUR", PaymentKind::Reserved);
    sim.inject(Fault::Pending, 1);
    let p = action(&sim, Endpoint::Capture, &pay, 500, Some("pend-1")).await;
    assert_eq!((v(&p, "Status"), v(&p, "Code")), ("PENDING", "60000000"));
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 0);
    // an open status: the same ReqId is processed again (developer.computop.com "ReqId")
    let q = action(&sim, Endpoint::Capture, &pay, 500, Some("pend-1")).await;
    assert_eq!(v(&q, "Status"), "OK");
    assert_ne!(v(&q, "XID"), v(&p, "XID"));
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 500);
    assert!(sim.settle(&pay, Some(v(&p, "XID")), true));
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 1000);
    assert!(!sim.settle(&pay, None, true), "nothing pending any more");

    let pending = sim.create_payment(MID, "T-551", 700, "EUR", PaymentKind::Pending);
    let inq = inquire(&sim, &pending, Some("T-551")).await;
    assert_eq!(amounts_of(&inq), (0, 0, 0));
    assert_eq!(v(&inq, "LastStatus"), "PENDING");
    let c = action(&sim, Endpoint::Capture, &pending, 700, None).await;
    assert_eq!(v(&c, "Status"), "FAILED");
    assert!(sim.settle(&pending, None, true));
    let view = sim.payment(&pending).unwrap();
    assert_eq!((view.kind, view.amount_auth), (PaymentKind::Reserved, 700));
}

#[tokio::test]
async fn paygate_sim_bad_mac_and_bad_fields_are_refused_and_nothing_moves() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-600", 5000, "EUR", PaymentKind::Reserved);
    let http = client(None);
    let send = |inner: Vec<(&'static str, String)>| {
        let (http, sim) = (http.clone(), sim.clone());
        async move {
            let (status, body) = post_raw(&http, &sim, Endpoint::Capture, MID, BF, &inner)
                .await
                .unwrap();
            assert_eq!(status, 200);
            open_reply(&body)
        }
    };

    // a MAC over another amount
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", Some("m-1"));
    inner.last_mut().unwrap().1 = req_mac(&pay, "T-600", "1", "EUR");
    let r = send(inner).await;
    assert_eq!((v(&r, "Status"), v(&r, "Code")), ("FAILED", "20010008"));
    assert_eq!(v(&r, "PayID"), pay);
    assert_eq!(get(&r, "XID"), None);
    // a MAC with another HMAC password
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", Some("m-2"));
    inner.last_mut().unwrap().1 = envelope::mac(
        b"otherPassword",
        &envelope::request_mac_message(&pay, "T-600", MID, "5000", "EUR"),
    );
    assert_eq!(v(&send(inner).await, "Code"), "20010008");
    // MerchantID inside Data differs from the plain one
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", None);
    inner[0].1 = "otherMerchant".into();
    assert_eq!(v(&send(inner).await, "Code"), "20120001");
    // MerchantID missing inside Data
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", None);
    inner.remove(0);
    assert_eq!(v(&send(inner).await, "Code"), "40100001");
    // Amount missing, Amount not minor units, Currency not a3
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", None);
    inner.retain(|(k, _)| *k != "Amount");
    assert_eq!(v(&send(inner).await, "Code"), "40100006");
    let mut inner = action_fields(&pay, "T-600", 5000, "EUR", None);
    inner[3].1 = "50.00".into();
    assert_eq!(v(&send(inner).await, "Code"), "20110006");
    let inner = action_fields(&pay, "T-600", 5000, "eur", None);
    assert_eq!(v(&send(inner).await, "Code"), "20110007");
    // a ReqId longer than 32
    let inner = action_fields(&pay, "T-600", 5000, "EUR", Some(&"r".repeat(33)));
    assert_eq!(v(&send(inner).await, "Code"), "20140009");
    // an unknown PayID, another TransID
    let unknown = "0".repeat(32);
    let inner = action_fields(&unknown, "T-600", 5000, "EUR", None);
    assert_eq!(v(&send(inner).await, "Code"), "20160004");
    let inner = action_fields(&pay, "T-other", 5000, "EUR", None);
    assert_eq!(v(&send(inner).await, "Code"), "20120005");

    let view = sim.payment(&pay).unwrap();
    assert_eq!(view.amount_cap, 0);
    assert_eq!(view.steps.len(), 1, "no step for a refused request");
    // the refused MAC did not consume its ReqId
    let ok = action(&sim, Endpoint::Capture, &pay, 5000, Some("m-1")).await;
    assert_eq!(v(&ok, "Status"), "OK");
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 5000);
}

#[tokio::test]
async fn paygate_sim_unknown_merchant_wrong_key_and_bad_envelope() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-700", 1000, "EUR", PaymentKind::Reserved);
    let http = client(None);
    let inner = action_fields(&pay, "T-700", 1000, "EUR", None);

    // unknown MerchantID: unencrypted error body
    let (status, body) = post_raw(&http, &sim, Endpoint::Capture, "nobody", BF, &inner)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let plain = wire::split_kvp(&body);
    assert_eq!(v(&plain, "mid"), "nobody");
    assert_eq!(v(&plain, "Status"), "FAILED");
    assert_eq!(v(&plain, "Code"), "20160001");
    assert_eq!(get(&plain, "Data"), None);

    // the wrong Blowfish password: "Unexpected exception"
    let (status, body) = post_raw(
        &http,
        &sim,
        Endpoint::Capture,
        MID,
        b"wrongPassword",
        &inner,
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "Unexpected exception"));

    // no MerchantID at all, a Len beyond Data, Data not hex
    let resp = http
        .post(sim.url(Endpoint::Capture))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("Len=5&Data=00")
        .send()
        .await
        .unwrap();
    let plain = wire::split_kvp(&resp.text().await.unwrap());
    assert_eq!(v(&plain, "Code"), "40100001");
    let (data, _) = envelope::encrypt(BF, "MerchantID=x").unwrap();
    let body = wire::encode_form(&[("MerchantID", MID), ("Len", "999"), ("Data", &data)]);
    let resp = http
        .post(sim.url(Endpoint::Capture))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        v(&open_reply(&resp.text().await.unwrap()), "Code"),
        "20010002"
    );
    // GET with the query works like the POST (FATCHIP's library uses GET)
    let url = format!(
        "{}?{}",
        sim.url(Endpoint::Capture)
            .to_uppercase()
            .replace("HTTP://", "http://"),
        wire::encode_form(&[("MerchantID", MID), ("Len", "4"), ("Data", "zz")])
    );
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(
        v(&open_reply(&resp.text().await.unwrap()), "Code"),
        "20010003"
    );

    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 0);
    let log = sim.calls();
    assert_eq!(log.len(), 5);
    assert!(log[0].fields.is_empty(), "no key, nothing decrypted");
    assert_eq!(log[0].code.as_deref(), Some("20160001"));
    assert_eq!(log[4].method, "GET");
}

#[tokio::test]
async fn paygate_sim_inquire_lag_and_unknown_payid() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-800", 5000, "EUR", PaymentKind::Reserved);
    action(&sim, Endpoint::Capture, &pay, 2000, Some("q-1")).await;
    sim.set_inquire_lag(1);
    let lagged = inquire(&sim, &pay, Some("T-800")).await;
    assert_eq!(amounts_of(&lagged), (5000, 0, 0));
    assert_eq!(v(&lagged, "LastStatus"), "AUTHORIZED");
    let fresh = inquire(&sim, &pay, Some("T-800")).await;
    assert_eq!(amounts_of(&fresh), (5000, 2000, 0));
    assert_eq!(v(&fresh, "LastStatus"), "OK");
    assert_eq!(v(&fresh, "Currency"), "EUR");
    // no TransID: the MAC over PayID**MerchantID** is accepted
    let no_tid = inquire(&sim, &pay, None).await;
    assert_eq!(amounts_of(&no_tid), (5000, 2000, 0));

    let unknown = inquire(&sim, &"a".repeat(32), Some("T-800")).await;
    assert_eq!(v(&unknown, "Status"), "FAILED");
    assert_eq!(v(&unknown, "Code"), "20160004");
    assert_eq!(get(&unknown, "AmountAuth"), None);
}

#[tokio::test]
async fn paygate_sim_faults_before_after_drop_timeout_decline_unencrypted() {
    let sim = sim().await;
    let pay = sim.create_payment(MID, "T-900", 10_000, "EUR", PaymentKind::Reserved);
    let http = client(None);
    let capture =
        |amount: i64, req: &'static str| action_fields(&pay, "T-900", amount, "EUR", Some(req));

    sim.inject(Fault::ServerErrorBefore, 1);
    let (status, _) = post_raw(
        &http,
        &sim,
        Endpoint::Capture,
        MID,
        BF,
        &capture(1000, "f-1"),
    )
    .await
    .unwrap();
    assert_eq!(status, 500);
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 0);
    let last = sim.calls().pop().unwrap();
    assert_eq!((last.http_status, last.field("ReqId")), (500, Some("f-1")));

    sim.inject(Fault::DropAfter, 1);
    let dropped = post_raw(
        &http,
        &sim,
        Endpoint::Capture,
        MID,
        BF,
        &capture(1000, "f-2"),
    )
    .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 1000);
    assert_eq!(sim.calls().pop().unwrap().http_status, 0);

    sim.inject(Fault::TimeoutAfter(Duration::from_millis(600)), 1);
    let short = client(Some(Duration::from_millis(150)));
    let timed_out = post_raw(
        &short,
        &sim,
        Endpoint::Capture,
        MID,
        BF,
        &capture(500, "f-3"),
    )
    .await;
    assert!(timed_out.is_err(), "{timed_out:?}");
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 1500);

    sim.inject_on(
        Endpoint::Credit,
        Fault::Decline {
            code: "22060203".into(),
            description: "acquirer refused".into(),
        },
        1,
    );
    let r = action(&sim, Endpoint::Capture, &pay, 500, Some("f-4")).await;
    assert_eq!(v(&r, "Status"), "OK", "the decline waits for a credit");
    let d = action(&sim, Endpoint::Credit, &pay, 500, Some("f-5")).await;
    assert_eq!((v(&d, "Status"), v(&d, "Code")), ("FAILED", "22060203"));
    assert_eq!(v(&d, "Description"), "acquirer refused");
    let view = sim.payment(&pay).unwrap();
    assert_eq!((view.amount_cap, view.amount_cred), (2000, 0));
    assert_eq!(view.last_status, "FAILED");

    sim.inject(Fault::Unencrypted, 1);
    let (status, body) = post_raw(
        &http,
        &sim,
        Endpoint::Inquire,
        MID,
        BF,
        &[
            ("MerchantID", MID.to_string()),
            ("PayID", pay.clone()),
            ("TransID", "T-900".to_string()),
            ("MAC", req_mac(&pay, "T-900", "", "")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let plain = wire::split_kvp(&body);
    assert_eq!(
        (v(&plain, "mid"), v(&plain, "Status"), v(&plain, "Code")),
        (MID, "FAILED", "40200000")
    );
    assert_eq!(v(&plain, "PayID"), pay);
    // the faults are used up
    let ok = inquire(&sim, &pay, Some("T-900")).await;
    assert_eq!(amounts_of(&ok), (10_000, 2000, 0));
}

#[tokio::test]
async fn paygate_sim_notify_mac_verifies() {
    let sim = sim().await;
    let rx = receiver(vec![]).await;
    let pay = sim.create(NewPayment {
        merchant_id: MID.into(),
        trans_id: "T-1000".into(),
        amount_minor: 4200,
        currency: "EUR".into(),
        kind: PaymentKind::Reserved,
        ref_nr: Some("RE-77".into()),
    });
    let url = format!("{}/paygate/notify/tenant-a", rx.url);
    assert_eq!(sim.notify(&pay, &url, None).await, Ok(200));
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let (ct, body, path) = &hits[0];
    assert_eq!(ct, "application/x-www-form-urlencoded; charset=iso-8859-1");
    assert_eq!(path, "/paygate/notify/tenant-a");
    let (outer, inner, mac_ok) = open_notify(body);
    assert!(mac_ok, "{inner:?}");
    assert_eq!(v(&outer, "MerchantID"), MID);
    let keys: Vec<&str> = inner.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "mid",
            "PayID",
            "XID",
            "TransID",
            "RefNr",
            "Status",
            "Description",
            "Code",
            "MAC"
        ]
    );
    assert_eq!(v(&inner, "PayID"), pay);
    assert_eq!(v(&inner, "XID"), sim.payment(&pay).unwrap().steps[0].xid);
    assert_eq!(v(&inner, "Status"), "AUTHORIZED");
    assert_eq!(v(&inner, "Code"), "00000000");
    assert_eq!(v(&inner, "RefNr"), "RE-77");
    // a tampered status no longer matches the MAC
    let tampered = envelope::response_mac_message(&pay, "T-1000", MID, "OK", "00000000");
    assert!(!envelope::mac_matches(HM, &tampered, v(&inner, "MAC")));

    sim.with_plain_merchant_id(false);
    assert_eq!(
        sim.notify(&pay, &url, Some(("FAILED", "21000305"))).await,
        Ok(200)
    );
    let (outer, inner, mac_ok) = open_notify(&rx.hits()[1].1);
    assert!(mac_ok);
    assert_eq!(get(&outer, "MerchantID"), None);
    assert_eq!(
        (v(&inner, "Status"), v(&inner, "Code")),
        ("FAILED", "21000305")
    );
    let sent = sim.notifies();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].result, Ok(200));
    assert_eq!(get(&sent[1].fields, "Status"), Some("FAILED"));
    assert_eq!(
        sim.notify("f".repeat(32).as_str(), &url, None).await,
        Err(format!("no payment {}", "f".repeat(32)))
    );
}

#[tokio::test]
async fn paygate_sim_notify_retry_schedule_stops_at_first_2xx() {
    let total: Duration = NOTIFY_RETRY_WAITS.iter().sum();
    assert_eq!(total, Duration::from_secs((21 * 60 + 36) * 60));
    assert_eq!(NOTIFY_RETRY_WAITS[3], Duration::from_secs(64 * 60));

    let sim = sim().await;
    let rx = receiver(vec![500, 500, 200, 200]).await;
    let pay = sim.create_payment(MID, "T-1100", 990, "EUR", PaymentKind::Booked);
    let started = tokio::time::Instant::now();
    // 60 000: one minute of Paygate's schedule is a millisecond here
    let results = sim
        .notify_with_retries(&pay, &format!("{}/notify", rx.url), 60_000)
        .await;
    assert_eq!(results, vec![Ok(500), Ok(500), Ok(200)]);
    assert!(
        started.elapsed() >= Duration::from_millis(9),
        "waited 1 ms + 8 ms"
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].1, hits[2].1, "the same body each attempt");
    let (_, inner, mac_ok) = open_notify(&hits[2].1);
    assert!(mac_ok);
    assert_eq!(
        (v(&inner, "Status"), v(&inner, "PayID")),
        ("OK", pay.as_str())
    );

    // a receiver that never answers 2xx gets the first send and all 8 repeats
    let down = receiver(vec![503; 20]).await;
    let results = sim
        .notify_with_retries(&pay, &format!("{}/notify", down.url), 1_000_000)
        .await;
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|r| *r == Ok(503)));
}

fn link_fields<'a>(
    rx: &'a str,
    trans_id: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, String)> {
    let mut f: Vec<(&str, String)> = vec![
        ("TransID", trans_id.into()),
        ("Amount", "1234".into()),
        ("Currency", "EUR".into()),
        ("OrderDesc", "Order 4711".into()),
        ("URLSuccess", "https://shop.example/ok".into()),
        ("URLFailure", "https://shop.example/fail".into()),
        ("URLNotify", format!("{rx}/notify/order-4711")),
        ("Response", "encrypt".into()),
    ];
    for (k, v) in extra {
        match f.iter_mut().find(|(fk, _)| fk == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => f.push((k, v.to_string())),
        }
    }
    f
}

fn link(sim: &PaygateSim, fields: &[(&str, String)], language: Option<&str>) -> String {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sim.payment_page_url(MID, &borrowed, language).unwrap()
}

#[tokio::test]
async fn paygate_sim_hosted_page_pay_reserves_notifies_and_replays() {
    let sim = sim().await;
    let rx = receiver(vec![]).await;
    let fields = link_fields(
        &rx.url,
        "T-1200",
        &[
            ("Capture", "MANUAL"),
            ("ReqId", "link-1200"),
            ("RefNr", "RE-1200"),
        ],
    );
    let url = link(&sim, &fields, Some("de"));
    assert!(url.contains("&Language=de"));

    // the page, by hand: merchant, amount, currency, the form
    let http = client(None);
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("<dd id=\"merchant\">{MID}</dd>")));
    assert!(html.contains("12.34 EUR"));
    assert!(html.contains("<dd id=\"currency\">EUR</dd>"));
    assert!(html.contains("<form method=\"post\" action=\"/paymentPage.aspx/pay\">"));
    assert!(html.contains("Bezahlen") && html.contains("Abbrechen"));
    let token = hpp::token_of(&html).unwrap();
    let resp = http
        .post(sim.url(Endpoint::PaymentPagePay))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}&action=pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        location.starts_with("https://shop.example/ok?Len="),
        "{location}"
    );
    let (_, redirect, mac_ok) = open_notify(location.split_once('?').unwrap().1);
    assert!(mac_ok, "the redirect carries a MAC");
    let pay = v(&redirect, "PayID").to_string();
    assert_eq!(v(&redirect, "Status"), "AUTHORIZED");

    let view = sim.payment(&pay).unwrap();
    assert_eq!(view.kind, PaymentKind::Reserved);
    assert_eq!((view.amount_auth, view.amount_cap), (1234, 0));
    assert_eq!(view.ref_nr.as_deref(), Some("RE-1200"));
    assert_eq!(view.steps[0].req_id.as_deref(), Some("link-1200"));

    // the notify arrived before the redirect, MAC and all
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].2, "/notify/order-4711");
    let (_, notify, mac_ok) = open_notify(&hits[0].1);
    assert!(mac_ok);
    assert_eq!(
        (
            v(&notify, "PayID"),
            v(&notify, "Status"),
            v(&notify, "Code")
        ),
        (pay.as_str(), "AUTHORIZED", "00000000")
    );
    assert_eq!(sim.notifies()[0].result, Ok(200));

    // the token is used up; the link again (same ReqId) returns the first result
    let reused = http
        .post(sim.url(Endpoint::PaymentPagePay))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}&action=pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status().as_u16(), 400);
    assert_eq!(sim.pay_link(&url).await, Ok(pay.clone()));
    assert_eq!(sim.payments_by_trans_id("T-1200").len(), 1);
    assert!(sim.calls_to(Endpoint::PaymentPage).last().unwrap().replayed);
    assert_eq!(rx.hits().len(), 1, "no second notify");
    // capture later, as paybridge would on delivery
    let cap = action(&sim, Endpoint::Capture, &pay, 1234, Some("ship-1")).await;
    assert_eq!(v(&cap, "Status"), "OK");
    assert_eq!(sim.payment(&pay).unwrap().amount_cap, 1234);
}

#[tokio::test]
async fn paygate_sim_hosted_page_cancel_auto_capture_and_refusals() {
    let sim = sim().await;
    let rx = receiver(vec![]).await;
    let fields = link_fields(&rx.url, "T-1300", &[("ReqId", "link-1300")]);
    let url = link(&sim, &fields, None);

    // cancel: FAILED notify, the ReqId stays free, the same link can still be paid
    let failed = sim.cancel_link(&url).await.unwrap();
    let view = sim.payment(&failed).unwrap();
    assert_eq!((view.kind, view.amount_auth), (PaymentKind::Failed, 0));
    let (_, n, mac_ok) = open_notify(&rx.hits()[0].1);
    assert!(mac_ok);
    assert_eq!((v(&n, "Status"), v(&n, "Code")), ("FAILED", "20300000"));
    let pay = sim.pay_link(&url).await.unwrap();
    assert_ne!(pay, failed);
    // Capture defaults to AUTO: booked at once
    let view = sim.payment(&pay).unwrap();
    assert_eq!(
        (view.kind, view.amount_auth, view.amount_cap),
        (PaymentKind::Booked, 1234, 1234)
    );
    let (_, n, _) = open_notify(&rx.hits()[1].1);
    assert_eq!(v(&n, "Status"), "OK");

    // the same TransID without a ReqId is refused, not paid twice
    let again = link(&sim, &link_fields(&rx.url, "T-1300", &[]), None);
    let err = sim.pay_link(&again).await.unwrap_err();
    assert!(err.contains("400") && err.contains("20170005"), "{err}");

    // simulation mode: Test:0305 declines
    let declined = link(
        &sim,
        &link_fields(&rx.url, "T-1301", &[("OrderDesc", "Test:0305")]),
        None,
    );
    let d = sim.pay_link(&declined).await;
    assert!(d.is_ok(), "{d:?}");
    let view = sim.payment(&d.unwrap()).unwrap();
    assert_eq!(view.kind, PaymentKind::Failed);
    assert_eq!(view.steps[0].code, "21000305");

    // a bad MAC, a URL with a query, a missing field: HTML error pages
    let http = client(None);
    let mut bad = link_fields(&rx.url, "T-1302", &[]);
    bad.push(("MAC", "00".repeat(32)));
    let borrowed: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // payment_page_url appends its own MAC after ours; the first MAC field wins
    let url = sim.payment_page_url(MID, &borrowed, None).unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<span id=\"code\">20010008</span>")
    );
    let with_query = link(
        &sim,
        &link_fields(
            &rx.url,
            "T-1303",
            &[("URLSuccess", "https://shop.example/ok?x=1")],
        ),
        None,
    );
    let resp = http.get(with_query).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("2012000B"));
    let mut missing = link_fields(&rx.url, "T-1304", &[]);
    missing.retain(|(k, _)| *k != "OrderDesc");
    let resp = http.get(link(&sim, &missing, None)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("4010000E"));
    assert!(sim.payments_by_trans_id("T-1302").is_empty());
    assert!(sim.payments_by_trans_id("T-1303").is_empty());
}
