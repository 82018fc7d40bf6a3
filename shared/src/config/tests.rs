//! Unit tests of configuration loading and its located errors.

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
