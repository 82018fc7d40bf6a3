//! Unit tests of the DynamoDB backend's encoding and checks (the behaviour against DynamoDB
//! itself is the conformance suite on moto).

use super::*;
use serde_json::json;

#[test]
fn encode_decode_round_trip() {
    let mut item = Item::new("P", "S", json!({"amount": "1.10", "n": u64::MAX}));
    item.expires_at = Some(-5);
    item.gsi_pk = Some("G".into());
    let attrs = encode(&item, 7, "tok").unwrap();
    assert_eq!(string_attr(&attrs, WRITE_TOKEN), Some("tok"));
    assert!(!attrs.contains_key(GSI_SK), "absent index keys are omitted");
    let back = decode_live(&attrs, -6).unwrap().unwrap();
    assert_eq!(back, Item { version: 7, ..item });
    assert_eq!(decode_live(&attrs, -5).unwrap(), None, "expired at now");
}

#[test]
fn refuses_what_dynamodb_refuses() {
    let big = Item::new("P", "S", json!("x".repeat(MAX_ITEM_BYTES)));
    let err = encode(&big, 1, "t").unwrap_err().to_string();
    assert!(err.contains("400 KB"), "{err}");
    let fits = Item::new("P", "S", json!("x".repeat(MAX_ITEM_BYTES - 100)));
    assert!(encode(&fits, 1, "t").is_ok());
    let mut empty_index = Item::new("P", "S", json!({}));
    empty_index.gsi_sk = Some(String::new());
    assert!(encode(&empty_index, 1, "t").is_err());
    assert!(key_problem("", "S").is_some());
    assert!(key_problem("P", &"s".repeat(1025)).is_some());
    assert!(key_problem(&"p".repeat(2048), &"s".repeat(1024)).is_none());
}

#[test]
fn number_sizes() {
    let attrs = HashMap::from([("n".to_owned(), number(u64::MAX))]);
    // 20 digits: 10 bytes + 1, plus the name.
    assert_eq!(item_size(&attrs), 1 + 11);
}

#[test]
fn corrupt_items_are_reported() {
    let mut attrs = encode(&Item::new("P", "S", json!(1)), 1, "t").unwrap();
    attrs.insert(BODY.into(), string("not json"));
    assert!(matches!(
        decode_live(&attrs, 0),
        Err(StoreError::Corrupt { .. })
    ));
    attrs.insert(EXPIRES_AT.into(), number(0));
    assert_eq!(
        decode_live(&attrs, 0).unwrap(),
        None,
        "expired beats corrupt"
    );
}

#[test]
fn write_tokens_differ() {
    assert_ne!(write_token(), write_token());
}
