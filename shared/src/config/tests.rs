//! Unit tests of configuration loading and its located errors.

use super::validate::DEFAULT_PENDING_ERROR_HOURS;
use super::*;

const GOOD: &str = r#"
[tenant]
id = "acme"
timezone = "Europe/Berlin"

[[erp]]
id = "main"
kind = "pixi"
url = "https://pixi.example/soap"
user = "api"
password = "env:PIXI_PW"

[[method]]
erp = "main"
mandant = "01"
erp_method = "UNZER_CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
rounding_tolerance = 2
public_key = "s-pub-abc"
private_key = "env:UNZER_PRIV"
"#;

#[test]
fn parses_good_config_with_defaults() {
    let c = Config::parse(GOOD, "good.toml").unwrap();
    assert_eq!(c.tenant.id, "acme");
    let q = c.tenant.quiet_hours.unwrap();
    assert!(q.contains(NaiveTime::from_hms_opt(2, 0, 0).unwrap()));
    assert!(!q.contains(NaiveTime::from_hms_opt(4, 0, 0).unwrap()));
    assert_eq!(c.methods[0].mode, Mode::Expert);
    assert_eq!(c.server.database, PathBuf::from("./paybridge.db"));
    assert!(c.method_for("main", "01", "UNZER_CARD").is_some());
    assert!(c.method_for("main", "02", "UNZER_CARD").is_none());
}

#[test]
fn errors_name_file_line_and_field() {
    let bad = GOOD.replace("mode = \"expert\"", "mode = \"turbo\"");
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert_eq!(e.file, "bad.toml");
    assert_eq!((e.line, e.field.as_str()), (18, "mode"), "{e}");
    assert!(e.to_string().starts_with("bad.toml:18:"), "{e}");

    let bad = GOOD.replace("erp = \"main\"", "erp = \"other\"");
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (14, "method[0].erp"), "{e}");

    let bad = GOOD.replace("UNZER_CARD", "UNZER CARD!");
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert_eq!(e.field, "method[0].erp_method");

    let bad = GOOD.replace("\"Europe/Berlin\"", "\"Mars/Olympus\"");
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (4, "tenant.timezone"));

    let bad = GOOD.replace("env:UNZER_PRIV", "s-priv-raw-secret");
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert!(e.message.contains("reference"), "{e}");
    assert!(
        !e.to_string().contains("s-priv-raw-secret"),
        "secret leaked into error: {e}"
    );
}

#[test]
fn secrets_never_print() {
    let s = SecretRef::parse("plain:hunter2")
        .unwrap()
        .resolve_local()
        .unwrap();
    assert_eq!(format!("{s:?} {s}"), "*** ***");
    assert_eq!(s.expose(), "hunter2");
}

#[test]
fn errors_print_no_secret_in_field_message_or_display() {
    let bad = GOOD.replace(
        "private_key = \"env:UNZER_PRIV\"",
        "privat_key = \"plain:s-priv-typo1\"",
    );
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (23, "privat_key"), "{e}");
    assert!(!e.to_string().contains("s-priv-typo1"), "{e}");
    let bad = GOOD.replace(
        "rounding_tolerance = 2",
        "rounding_tolerance = \"s-priv-wrong-type\"",
    );
    let e = Config::parse(&bad, "bad.toml").unwrap_err();
    assert!(e.message.contains("invalid type"), "{e}");
    assert!(!e.message.contains("s-priv-wrong-type"), "{e}");
    // A hand-built error is masked when printed.
    let e = ConfigError {
        file: "f.toml".into(),
        line: 3,
        column: 1,
        field: "pasword".into(),
        message: "got \"hunter2\" from https://u:pw@h/".into(),
    };
    assert_eq!(
        e.to_string(),
        "f.toml:3:1: pasword: got \"***\" from https://***@h/"
    );
}

#[test]
fn unreadable_files_are_file_level_or_located_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let e = Config::load(dir.path()).unwrap_err();
    assert!(e.is_file_level(), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: (file): is a directory, not a file",
            dir.path().display()
        )
    );
    let p = dir.path().join("latin1.toml");
    std::fs::write(&p, b"[tenant]\nid = \"caf\xe9\"\n").unwrap();
    let e = Config::load(&p).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (2, 10, "(file)"),
        "{e}"
    );
    std::fs::write(&p, b"[tenant]\n\0").unwrap();
    let e = Config::load(&p).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    assert!(e.message.contains("binary"), "{e}");
    let e = Config::load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.is_file_level() && e.message.contains("1 MiB"), "{e}");
}

#[test]
fn zero_length_quiet_hours_and_poll_intervals_outside_a_day_are_refused() {
    let with = |line: &str| GOOD.replace("timezone = \"Europe/Berlin\"", line);
    let e = Config::parse(&with("quiet_hours = \"04:00-04:00\""), "q.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (4, "tenant.quiet_hours"), "{e}");
    assert!(e.message.contains("zero length"), "{e}");
    let server = |secs: &str| format!("{GOOD}\n[server]\npoll_interval_secs = {secs}\n");
    for secs in ["0", "86401", "9223372036854775807"] {
        let e = Config::parse(&server(secs), "p.toml").unwrap_err();
        assert_eq!(e.field, "server.poll_interval_secs", "{secs}: {e}");
    }
    for secs in ["1", "86400"] {
        let c = Config::parse(&server(secs), "p.toml").unwrap();
        assert_eq!(c.server.poll_interval_secs.to_string(), secs);
    }
}

#[test]
fn the_budget_of_unverified_events_has_a_default_and_a_range() {
    let c = Config::parse(GOOD, "good.toml").unwrap();
    assert_eq!(
        c.tenant.unverified_events_per_hour,
        DEFAULT_UNVERIFIED_EVENTS_PER_HOUR
    );
    let with = |v: &str| {
        GOOD.replacen(
            "timezone = \"Europe/Berlin\"",
            &format!("timezone = \"Europe/Berlin\"\nunverified_events_per_hour = {v}"),
            1,
        )
    };
    let c = Config::parse(&with("50"), "b.toml").unwrap();
    assert_eq!(c.tenant.unverified_events_per_hour, 50);
    for bad in ["0", "1000001"] {
        let e = Config::parse(&with(bad), "b.toml").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (5, "tenant.unverified_events_per_hour"),
            "{bad}: {e}"
        );
    }
}

/// [`GOOD`] with its connection switched to `kind = "memory"`.
fn good_on_memory() -> String {
    GOOD.replace(
        "kind = \"pixi\"\nurl = \"https://pixi.example/soap\"\nuser = \"api\"\npassword = \"env:PIXI_PW\"",
        "kind = \"memory\"\nfixtures = \"orders.json\"",
    )
}

#[test]
fn pixi_event_codes_longer_than_three_characters_are_located() {
    for (line, from, to) in [
        (19, "invoice_event = \"ZE\"", "invoice_event = \"ZE-CARD\""),
        (20, "return_event = \"RE\"", "return_event = \"REKX\""),
    ] {
        let bad = GOOD.replace(from, to);
        let e = Config::parse(&bad, "ev.toml").unwrap_err();
        let field = format!("method[0].{}", from.split(' ').next().unwrap());
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, to.find('"').unwrap() + 1, field.as_str()),
            "{e}"
        );
        assert!(e.message.contains("pixi event codes"), "{e}");
        assert!(e.message.contains("at most 3 characters"), "{e}");
    }
    // Three characters (counted as characters, not bytes) are fine.
    for code in ["ZEK", "ÄÖÜ", "Z"] {
        let ok = GOOD.replace(
            "invoice_event = \"ZE\"",
            &format!("invoice_event = \"{code}\""),
        );
        let c = Config::parse(&ok, "ev.toml").unwrap();
        assert_eq!(c.methods[0].invoice_event, code);
    }
    // The limit is pixi's: a memory connection takes longer codes.
    let memory = good_on_memory().replace("invoice_event = \"ZE\"", "invoice_event = \"ZE-CARD\"");
    assert_ne!(memory, GOOD);
    let c = Config::parse(&memory, "ev.toml").unwrap();
    assert_eq!(c.methods[0].invoice_event, "ZE-CARD");
}

#[test]
fn a_pixi_connection_that_is_inactive_still_checks_its_event_codes() {
    let bad = GOOD
        .replace("kind = \"pixi\"", "kind = \"pixi\"\nactive = false")
        .replace("return_event = \"RE\"", "return_event = \"RE-PREPAY\"");
    let e = Config::parse(&bad, "ev.toml").unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (21, "method[0].return_event"),
        "{e}"
    );
}

#[test]
fn a_third_erp_connection_is_refused_at_its_table() {
    let conn =
        |id: &str| format!("\n[[erp]]\nid = \"{id}\"\nkind = \"memory\"\nfixtures = \"o.json\"\n");
    let two = format!("{GOOD}{}", conn("second"));
    let c = Config::parse(&two, "erp.toml").unwrap();
    assert_eq!(c.erp.len(), 2);
    let three = format!("{two}{}", conn("third"));
    let header = three.lines().count() - 3;
    assert_eq!(three.lines().nth(header - 1), Some("[[erp]]"));
    let e = Config::parse(&three, "erp.toml").unwrap_err();
    assert_eq!(e.field, "erp", "{e}");
    assert_eq!(e.message, "at most two ERP connections per tenant", "{e}");
    assert_eq!(
        (e.line, e.column),
        (header, 1),
        "at the third [[erp]] (line {header}): {e}"
    );
}

#[test]
fn notify_email_is_refused_with_a_pointer_to_smtp_to() {
    let bad = GOOD.replace(
        "timezone = \"Europe/Berlin\"",
        "timezone = \"Europe/Berlin\"\nnotify_email = \"ops@example.com\"",
    );
    let e = Config::parse(&bad, "n.toml").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (5, 1, "notify_email"),
        "{e}"
    );
    assert!(e.message.contains("smtp.to"), "{e}");
    assert!(!e.message.contains("unknown field"), "{e}");
    assert!(!e.to_string().contains("ops@example.com"), "{e}");
    // Any other unknown key keeps serde's message, which no longer offers notify_email.
    let bad = GOOD.replace("timezone = ", "time_zone = ");
    let e = Config::parse(&bad, "n.toml").unwrap_err();
    assert!(e.message.contains("unknown field `time_zone`"), "{e}");
    assert!(!e.message.contains("notify_email"), "{e}");
}

#[test]
fn method_validity_and_pending_hours_have_defaults() {
    let c = Config::parse(GOOD, "m.toml").unwrap();
    assert_eq!(c.methods[0].authorization_validity_days, None);
    assert_eq!(
        c.methods[0].pending_error_after_hours,
        DEFAULT_PENDING_ERROR_HOURS
    );
    assert_eq!(DEFAULT_PENDING_ERROR_HOURS, 24);
    let with = GOOD.replace(
        "rounding_tolerance = 2",
        "rounding_tolerance = 2\nauthorization_validity_days = 29\npending_error_after_hours = 48",
    );
    let c = Config::parse(&with, "m.toml").unwrap();
    assert_eq!(c.methods[0].authorization_validity_days, Some(29));
    assert_eq!(c.methods[0].pending_error_after_hours, 48);
}

#[test]
fn method_validity_and_pending_hours_are_range_checked_at_the_value() {
    let with = |line: &str| {
        GOOD.replace(
            "rounding_tolerance = 2",
            &format!("rounding_tolerance = 2\n{line}"),
        )
    };
    for (key, value, ok) in [
        ("authorization_validity_days", "0", false),
        ("authorization_validity_days", "1", true),
        ("authorization_validity_days", "365", true),
        ("authorization_validity_days", "366", false),
        ("pending_error_after_hours", "0", false),
        ("pending_error_after_hours", "1", true),
        ("pending_error_after_hours", "720", true),
        ("pending_error_after_hours", "721", false),
    ] {
        let line = format!("{key} = {value}");
        let text = with(&line);
        match Config::parse(&text, "m.toml") {
            Ok(c) if ok => {
                let m = &c.methods[0];
                let got = match key {
                    "authorization_validity_days" => m.authorization_validity_days.unwrap(),
                    _ => m.pending_error_after_hours,
                };
                assert_eq!(got.to_string(), value, "{line}");
            }
            Ok(_) => panic!("{line} accepted"),
            Err(e) if !ok => {
                let column = key.len() + 4;
                assert_eq!(
                    (e.line, e.column, e.field.clone()),
                    (22, column, format!("method[0].{key}")),
                    "{line}: {e}"
                );
                assert!(e.message.contains("must be between 1 and"), "{line}: {e}");
                let shown = e.to_string();
                assert!(shown.contains(key), "the field name is readable: {shown}");
            }
            Err(e) => panic!("{line} refused: {e}"),
        }
    }
    // A negative value is a type error, located at the same line.
    let e = Config::parse(&with("pending_error_after_hours = -1"), "m.toml").unwrap_err();
    assert_eq!(e.line, 22, "{e}");
}

/// `paybridge.example.toml` of the repository.
fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../paybridge.example.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_example_config_parses_with_its_methods() {
    let c = Config::parse(&example(), "paybridge.example.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tenant.id, "demo-shop");
    assert_eq!(c.erp.len(), 1);
    assert_eq!(
        (c.erp[0].id.as_str(), c.erp[0].kind),
        ("demo", ErpKind::Memory)
    );
    let methods: Vec<_> = c
        .methods
        .iter()
        .map(|m| {
            (
                m.key(),
                m.psp,
                m.mode,
                m.invoice_event.as_str(),
                m.return_event.as_str(),
                m.rounding_tolerance,
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            (
                ("demo", "01", "UNZER_CARD"),
                PspKind::Memory,
                Mode::Expert,
                "ZEK",
                "REK",
                2
            ),
            (
                ("demo", "01", "UNZER_CARD_STD"),
                PspKind::Memory,
                Mode::Standard,
                "ZEK",
                "REK",
                2
            ),
            (
                ("demo", "01", "UNZER_PREPAYMENT"),
                PspKind::Memory,
                Mode::Expert,
                "ZEV",
                "REV",
                0
            ),
        ]
    );
    for m in &c.methods {
        assert!(m.active);
        assert_eq!(m.authorization_validity_days, None);
        assert_eq!(m.pending_error_after_hours, DEFAULT_PENDING_ERROR_HOURS);
        // Parsed, not resolved: the reference is kept as written.
        assert!(matches!(m.account.private_key, SecretRef::Plain(_)));
    }
    assert!(c.smtp.is_none());
}

/// Every commented-out `key = value` line and `[table]` header of the example, uncommented,
/// still parses: the documented optional fields (the `[smtp]` section included) are real.
#[test]
fn the_example_config_parses_with_every_commented_field_uncommented() {
    let is_key = |s: &str| {
        s.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    };
    let is_table = |s: &str| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    let mut uncommented = Vec::new();
    let text: Vec<String> = example()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_key(rest) || is_table(rest) => {
                uncommented.push(rest.split(" = ").next().unwrap_or(rest).to_string());
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect();
    for key in [
        "unverified_events_per_hour",
        "url",
        "authorization_validity_days",
        "pending_error_after_hours",
        "[smtp]",
        "host",
        "port",
        "user",
        "password",
        "from",
        "to",
        "starttls",
    ] {
        assert!(
            uncommented.iter().any(|k| k == key),
            "{key} not among {uncommented:?}"
        );
    }
    let c = Config::parse(&(text.join("\n") + "\n"), "example-all.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tenant.unverified_events_per_hour, 2000);
    assert_eq!(c.methods[0].authorization_validity_days, Some(7));
    assert_eq!(c.methods[0].pending_error_after_hours, 24);
    let smtp = c.smtp.expect("[smtp] uncommented");
    assert_eq!(
        (
            smtp.host.as_str(),
            smtp.port,
            smtp.from.as_str(),
            smtp.to.as_str(),
            smtp.starttls
        ),
        (
            "smtp.example.com",
            587,
            "paybridge@example.com",
            "ops@example.com",
            true
        )
    );
    assert_eq!(smtp.user.as_deref(), Some("paybridge"));
    assert_eq!(smtp.password, Some(SecretRef::Env("SMTP_PASSWORD".into())));
}

/// The example's event codes are valid for pixi too (the example runs on a memory connection,
/// where any code is taken; an operator copies them into a pixi config).
#[test]
fn the_example_event_codes_are_valid_for_pixi() {
    let text = example().replacen(
        "kind = \"memory\"",
        "kind = \"pixi\"\nurl = \"https://pixi.example/soap\"\nuser = \"api\"\npassword = \"env:PIXI_PW\"",
        1,
    );
    let c = Config::parse(&text, "example-pixi.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.erp[0].kind, ErpKind::Pixi);
    assert_eq!(c.methods.len(), 3);
}

/// `authorization_validity_days` holds "auth" but no secret: its errors and its source line
/// stay readable; under a secret-bearing key it is masked as before.
#[test]
fn authorization_validity_days_is_not_masked_as_a_secret() {
    assert!(!redact::is_secret_field("authorization_validity_days"));
    assert!(!redact::is_secret_field(
        "method[0].authorization_validity_days"
    ));
    assert!(redact::is_secret_field(
        "pasword.authorization_validity_days"
    ));
    assert!(redact::is_secret_field("authorisation_validity_days"));
    let text = GOOD.replace(
        "rounding_tolerance = 2",
        "rounding_tolerance = 2\nauthorization_validity_days = 400",
    );
    let e = Config::parse(&text, "m.toml").unwrap_err();
    let shown = redact::masked_line(&text, e.line).expect("line").text;
    assert_eq!(shown, "authorization_validity_days = 400");
}

const PAYGATE: &str = r#"
[tenant]
id = "acme"

[[erp]]
id = "main"
kind = "memory"
fixtures = "orders.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "CTP_CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "shop-42"
encryption_key = "env:PAYGATE_BLOWFISH"
hmac_key = "env:PAYGATE_HMAC"
psp_method = "card"
"#;

#[test]
fn a_paygate_method_takes_merchant_id_two_secrets_a_cipher_and_its_method() {
    let c = Config::parse(PAYGATE, "pg.toml").unwrap();
    let m = &c.methods[0];
    assert_eq!(m.psp, PspKind::Paygate);
    assert_eq!(m.account.public_key, "shop-42");
    assert_eq!(
        m.account.private_key,
        SecretRef::Env("PAYGATE_BLOWFISH".into())
    );
    assert_eq!(
        m.account.extra.mac_key,
        Some(SecretRef::Env("PAYGATE_HMAC".into()))
    );
    assert_eq!(m.account.extra.cipher, Cipher::Blowfish);
    assert_eq!(m.account.extra.psp_method.as_deref(), Some("card"));
    let aes = PAYGATE.replace(
        "psp_method = \"card\"",
        "psp_method = \"paypal\"\nencryption = \"aes\"",
    );
    let c = Config::parse(&aes, "pg.toml").unwrap();
    assert_eq!(c.methods[0].account.extra.cipher, Cipher::Aes);
}

#[test]
fn paygate_config_errors_are_located_and_name_the_field() {
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (
            PAYGATE.replace("hmac_key = \"env:PAYGATE_HMAC\"\n", ""),
            "hmac_key",
            Some("erp_method"),
        ),
        (
            PAYGATE.replace("merchant_id = \"shop-42\"\n", ""),
            "merchant_id",
            Some("erp_method"),
        ),
        (
            PAYGATE.replace("encryption_key = \"env:PAYGATE_BLOWFISH\"\n", ""),
            "encryption_key",
            Some("erp_method"),
        ),
        (
            PAYGATE.replace("psp_method = \"card\"\n", ""),
            "psp_method",
            Some("erp_method"),
        ),
        (
            PAYGATE.replace("psp_method = \"card\"", "psp_method = \"giropay\""),
            "psp_method",
            Some("psp_method"),
        ),
        (
            PAYGATE.replace("merchant_id = \"shop-42\"", "merchant_id = \"a&b=c\""),
            "merchant_id",
            Some("merchant_id"),
        ),
        (
            PAYGATE.replace(
                "psp_method = \"card\"",
                "psp_method = \"card\"\npublic_key = \"s-pub-x\"",
            ),
            "public_key",
            Some("public_key"),
        ),
        (
            PAYGATE.replace("encryption_key", "private_key"),
            "private_key",
            None,
        ),
        (
            PAYGATE.replace("psp = \"paygate\"", "psp = \"unzer\""),
            "merchant_id",
            Some("erp_method"),
        ),
        (
            PAYGATE.replace(
                "psp_method = \"card\"",
                "psp_method = \"card\"\nencryption = \"rot13\"",
            ),
            "encryption",
            Some("encryption ="),
        ),
    ];
    for (text, field, at) in cases {
        let e = Config::parse(&text, "pg.toml").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(field), "{field}: {shown}");
        assert!(e.line >= 1, "{shown}");
        if let Some(at) = at {
            assert_eq!(e.line, line_of(&text, at), "{field}: {shown}");
        }
        assert!(
            !shown.contains("PAYGATE_"),
            "no secret reference printed: {shown}"
        );
    }
}

#[test]
fn link_mode_needs_paygate_a_public_url_and_smtp_each_error_at_the_mode() {
    let smtp =
        "\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"shop@example.com\"\nto = \"ops@example.com\"\n";
    let server = "\n[server]\npublic_url = \"https://pay.example.com\"\n";
    let link = PAYGATE.replace("mode = \"expert\"", "mode = \"link\"");
    let mode_line = link.lines().position(|l| l.starts_with("mode =")).unwrap() + 1;
    // all three present: fine
    let ok = format!("{link}{server}{smtp}");
    let c = Config::parse(&ok, "l.toml").unwrap();
    assert_eq!(c.methods[0].mode, Mode::Link);
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("https://pay.example.com")
    );
    for (text, needle) in [
        (format!("{link}{smtp}"), "public_url"),
        (format!("{link}{server}"), "[smtp]"),
    ] {
        let e = Config::parse(&text, "l.toml").unwrap_err();
        assert_eq!(e.line, mode_line, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    let unzer = GOOD.replace("mode = \"expert\"", "mode = \"link\"");
    let e = Config::parse(&format!("{unzer}{server}{smtp}"), "l.toml").unwrap_err();
    assert!(e.to_string().contains("psp = \"paygate\""), "{e}");
}

#[test]
fn public_url_is_https_or_loopback_with_no_path_and_shop_name_is_checked() {
    let with = |server: &str| format!("{PAYGATE}\n[server]\n{server}\n");
    for bad in [
        "public_url = \"http://pay.example.com\"",
        "public_url = \"https://pay.example.com/x\"",
        "public_url = \"https://u:p@pay.example.com\"",
        "public_url = \"nonsense\"",
    ] {
        let e = Config::parse(&with(bad), "u.toml").unwrap_err();
        assert!(e.to_string().contains("server.public_url"), "{bad}: {e}");
        assert!(!e.to_string().contains("u:p@"), "userinfo masked: {e}");
    }
    let c = Config::parse(&with("public_url = \"http://127.0.0.1:8080/\""), "u.toml").unwrap();
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    let named = PAYGATE.replace("id = \"acme\"", "id = \"acme\"\nshop_name = \"Acme Shoes\"");
    assert_eq!(
        Config::parse(&named, "n.toml").unwrap().tenant.shop_name,
        "Acme Shoes"
    );
    assert_eq!(
        Config::parse(PAYGATE, "n.toml").unwrap().tenant.shop_name,
        "acme"
    );
    let bad = PAYGATE.replace("id = \"acme\"", "id = \"acme\"\nshop_name = \"  \"");
    assert!(
        Config::parse(&bad, "n.toml")
            .unwrap_err()
            .to_string()
            .contains("shop_name")
    );
}
