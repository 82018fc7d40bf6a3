//! Unit tests of the masking: field names, value shapes, messages and source lines.

use super::*;

/// Line `n` of `text`, masked.
fn line(text: &str, n: usize) -> String {
    masked_line(text, n).expect("line exists").text
}

#[test]
fn secret_fields_are_found_by_name_misspelt_ones_included() {
    for name in [
        "private_key",
        "privat_key",
        "prvate_key",
        "password",
        "pasword",
        "passwort",
        "pwd",
        "smtp.password",
        "method[0].private_key",
        "secret",
        "secert",
        "api_token",
        "tokn",
        "kye",
        "public_key",
        "credentials",
    ] {
        assert!(is_secret_field(name), "{name} should be secret-bearing");
    }
    // Every key of the configuration but the five that hold keys and passwords.
    let secret = [
        "password",
        "private_key",
        "public_key",
        "encryption_key",
        "hmac_key",
    ];
    for name in KNOWN_KEYS.iter().filter(|k| !secret.contains(k)) {
        assert!(!is_secret_field(name), "{name} is not secret-bearing");
    }
    assert!(!is_secret_field("tenant.timezone"));
}

#[test]
fn secret_values_are_found_by_shape() {
    for v in [
        "plain:hunter2",
        "env:X",
        "file:/k",
        "vault:abc",
        "s-priv-raw-value",
        "p-priv-1",
        "2a10DEMO0000000000000000demo",
        "admin:pw@host",
    ] {
        assert!(looks_secret(v), "{v} looks like a secret");
    }
    for v in [
        "demo-shop",
        "Europe/Berlin",
        "00:00-04:00",
        "127.0.0.1:8080",
        "localhost:8080",
        "https://pixi.example/soap",
        "examples/orders.json",
        "UNZER_PREPAYMENT",
        "ops@example.com",
    ] {
        assert!(!looks_secret(v), "{v} is not a secret");
    }
}

#[test]
fn url_userinfo_is_masked_wherever_it_is() {
    assert_eq!(
        mask_userinfo("url ftp://admin:pw@h/x and https://u@h2"),
        "url ftp://***@h/x and https://***@h2"
    );
    assert_eq!(mask_userinfo("https://h/a@b"), "https://h/a@b");
    assert_eq!(mask_value("url", "https://a:b@h/"), "https://***@h/");
    assert_eq!(mask_value("pasword", "hunter2"), MASK);
    assert_eq!(mask_value("mode", "expert"), "expert");
}

#[test]
fn messages_lose_quoted_values_of_secret_fields_and_secret_shaped_words() {
    let m = mask_message(
        "invalid type: string \"hunter2\", expected u32",
        "privat_key",
    );
    assert_eq!(m, "invalid type: string \"***\", expected u32");
    let m = mask_message(
        "invalid type: integer `4711`, expected a string",
        "password",
    );
    assert_eq!(m, "invalid type: integer `***`, expected a string");
    let m = mask_message(
        "unknown field `privat_key`, expected one of `erp`, `private_key`",
        "privat_key",
    );
    assert!(
        m.contains("`privat_key`") && m.contains("`private_key`"),
        "{m}"
    );
    let m = mask_message("unknown variant `s-priv-x1`, expected `expert`", "mode");
    assert_eq!(m, "unknown variant `***`, expected `expert`");
    let m = mask_message(
        "got plain:hunter2 and s-priv-abc; key 2a10DEMO0000000000000000demo",
        "",
    );
    assert_eq!(m, "got plain:*** and ***; key ***");
    let help = "a secret must be a reference: env:NAME, file:PATH, plain:VALUE; an Unzer \
                private key starts with s-priv- or p-priv-";
    assert_eq!(mask_message(help, ""), help);
    let m = mask_message("api_host \"https://u:pw@h\" must use https", "method[0]");
    assert_eq!(m, "api_host \"https://***@h\" must use https");
    let plain = "environment variable PAYBRIDGE_TEST_UNSET is not set: /tmp/x/key.txt:1:2";
    assert_eq!(mask_message(plain, "method[0].private_key"), plain);
    assert_eq!(mask_message(&m, ""), m, "idempotent");
}

#[test]
fn source_lines_mask_secret_fields_and_secret_shapes() {
    let cases = [
        ("private_key = \"plain:s-priv-x\"", "private_key = \"***\""),
        ("privat_key = \"hunter2hunter\"", "privat_key = \"***\""),
        ("pasword = 'hunter2'", "pasword = '***'"),
        ("id = \"s-priv-raw\"", "id = \"***\""),
        ("url = \"ftp://admin:pw@h/x\"", "url = \"ftp://***@h/x\""),
        ("mode = \"expert\" # s-priv-abc", "mode = \"expert\" # ***"),
        ("private_key = \"plain:abc", "private_key = \"***"),
        ("private_key = plain:abc", "private_key = ***"),
        ("password = 12345678", "password = ***"),
        ("rounding_tolerance = 2", "rounding_tolerance = 2"),
        ("active = true", "active = true"),
        ("mode = expert", "mode = ***"),
        ("s-priv-pasted-alone", "***"),
        ("hunter2", "***"),
        ("[smtp] password = \"plain:x\"", "[smtp] password = \"***\""),
        ("[[method]]", "[[method]]"),
        ("\"s-priv-k\" = 1", "*** = ***"),
        (
            "private_key = [\"a\", \"b\"]",
            "private_key = [\"***\", \"***\"]",
        ),
        (
            "method = { erp = \"demo\", private_key = \"plain:zz\", mode = \"expert\" }",
            "method = { erp = \"demo\", private_key = \"***\", mode = \"expert\" }",
        ),
        (
            "x = { a = { password = \"p\" } }",
            "x = { a = { password = \"***\" } }",
        ),
        ("id = \"a\" junk-after", "id = \"a\" ***"),
        ("private_key = \"plain:\\\"x\\\"\"", "private_key = \"***\""),
    ];
    for (src, want) in cases {
        assert_eq!(line(src, 1), want, "{src}");
    }
}

#[test]
fn lines_inside_multi_line_strings_are_masked_whole() {
    let text = "id = \"a\"\nprivate_key = \"\"\"\nplain:s3cret = yes\nmore\"\"\" # end\nmode = '''\nx'''\n";
    assert_eq!(line(text, 1), "id = \"a\"");
    assert_eq!(line(text, 2), "private_key = \"\"\"");
    let inside = masked_line(text, 3).expect("line 3");
    assert_eq!(inside.text, MASK);
    assert!(inside.in_string);
    assert_eq!(inside.key(), None);
    assert_eq!(line(text, 4), "***\"\"\" # end");
    assert_eq!(line(text, 5), "mode = '''");
    assert_eq!(line(text, 6), "***'''");
    assert!(masked_line(text, 99).is_none());
    // A `"""` inside a comment or a plain string opens nothing.
    let text = "a = \"x\" # \"\"\"\nb = \"\\\"\\\"\\\"\"\nc = \"shown\"";
    assert_eq!(line(text, 3), "c = \"shown\"");
}

#[test]
fn columns_and_keys_follow_the_masking() {
    let m = masked_line("private_key = \"plain:abcdef\" # x", 1).expect("line");
    assert_eq!(m.text, "private_key = \"***\" # x");
    assert_eq!(m.column(1), 1);
    assert_eq!(m.column(15), 15, "the opening quote stays");
    assert_eq!(m.column(20), 16, "inside the value: at the mask");
    assert_eq!(m.column(28), 19, "the closing quote");
    assert_eq!(m.column(500), m.text.chars().count() + 1);
    assert_eq!(m.key().as_deref(), Some("private_key"));
    let header = masked_line("[smtp] password = \"plain:x\"", 1).expect("line");
    assert_eq!(header.key().as_deref(), Some("smtp"));
    let junk = masked_line("s-priv-abc = 1", 1).expect("line");
    assert_eq!(junk.key().as_deref(), Some("***"));
}

#[test]
fn edit_distance_counts_transpositions_once() {
    assert_eq!(edit_distance("secert", "secret"), 1);
    assert_eq!(edit_distance("pasword", "password"), 1);
    assert_eq!(edit_distance("", "key"), 3);
    assert_eq!(edit_distance("kind", "key"), 3);
}
