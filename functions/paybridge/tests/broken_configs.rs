//! Broken configurations through the real binary (`paybridge config check --config F`), none of
//! which may print a secret. The shapes are generated from `paybridge.example.toml` (plus an
//! inactive pixi connection and an `[smtp]` section, so every secret field is present), with a
//! known, unique secret in every secret field — raw and referenced: `plain:`, `env:` (the
//! variable set to a known value for the child process) and `file:` (a file holding a known
//! value):
//!
//! - every field removed (a required one must fail, an optional one must pass), misspelt,
//!   wrong-typed and duplicated;
//! - every secret field with its value raw, with an unknown scheme, unterminated, unquoted, as
//!   an integer, in multi-line strings (closed, with a bad escape inside, never closed), with its
//!   key misspelt (`privat_key`, `pasword`, …) and duplicated in each reference form, and with
//!   `env:`/`file:` references that cannot be resolved (unset, missing, a directory,
//!   `/dev/zero`, binary, not UTF-8);
//! - the findings of the hostile trial: Unzer keys with the wrong prefix (plain, env, file),
//!   non-loopback and credential-carrying `api_host`, inline method tables, URLs with a password,
//!   junk after a table header, zero-length quiet hours, out-of-range poll intervals, unreadable
//!   configuration files (missing, a directory, `/dev/zero`, too large, binary, not UTF-8) and
//!   unreadable fixtures;
//! - the limits: a third `[[erp]]`, the removed `tenant.notify_email` (pointing at `smtp.to`),
//!   pixi booking event codes longer than 3 characters (the example's own codes on pixi pass).
//!
//! Each must exit with code 2 and name `file:line:col` with line ≥ 1 (the exact line where the
//! shape knows it), or — for a configuration file that cannot be read at all — a file-level
//! `file: (file): …` without a made-up position. Neither stdout nor stderr may contain any
//! known secret or any 8-character piece of one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

// ------------------------------------------------------------------------------- the secrets

const S_PLAIN: &str = "s-priv-BCplainQ7wX2kLm9Rt";
const S_ENV: &str = "s-priv-BCenvZ4nP8vJ3hYc6";
const S_FILE: &str = "s-priv-BCfileK5mR1tW7qXs2";
const S_PIXI: &str = "BCpixiPw-u8Jr2Lq6Zt";
const S_SMTP: &str = "BCsmtpPw-c3Vn9Hk4Wd";
/// Pasted without a scheme.
const S_RAW: &str = "s-priv-BCrawE6yT2pN8mQa4";
/// Only lower-case letters: no shape gives it away, only the field's name.
const S_WORDS: &str = "bcstaplehorsebatterycorrect";
/// Digits only (a value of the wrong type).
const S_DIGITS: &str = "86753091234567";
/// In URLs' userinfo.
const S_URL: &str = "BCurlPw-f7Gs3Dk9";
/// Unzer keys with the wrong prefix / of the other environment.
const S_WRONG: &str = "x-prv-BCwrongH2sD8fJ4";
const S_PROD: &str = "p-priv-BCprodM3qW9eR5";
const S_ENV_WRONG: &str = "x-prv-BCenvwrongT6yU1";
const S_FILE_WRONG: &str = "x-prv-BCfilewrongG4hJ7";

const ENV_NAME: &str = "PAYBRIDGE_BROKEN_CONFIGS_KEY";
const ENV_WRONG: &str = "PAYBRIDGE_BROKEN_CONFIGS_WRONG";

const SECRETS: &[&str] = &[
    S_PLAIN,
    S_ENV,
    S_FILE,
    S_PIXI,
    S_SMTP,
    S_RAW,
    S_WORDS,
    S_DIGITS,
    S_URL,
    S_WRONG,
    S_PROD,
    S_ENV_WRONG,
    S_FILE_WRONG,
];

/// The three reference forms a secret field is given.
fn references() -> [String; 3] {
    [
        format!("plain:{S_PLAIN}"),
        format!("env:{ENV_NAME}"),
        "file:keys/unzer.key".to_string(),
    ]
}

// ------------------------------------------------------------------------------- the base

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example with a known secret reference in each method (plain, env, file), an inactive
/// pixi connection and an `[smtp]` section with known passwords.
fn base_text() -> String {
    let example = std::fs::read_to_string(repo_root().join("paybridge.example.toml"))
        .expect("paybridge.example.toml");
    let mut refs = references().into_iter();
    let mut lines: Vec<String> = example
        .lines()
        .map(|l| match l.strip_prefix("private_key = ") {
            Some(_) => format!("private_key = \"{}\"", refs.next().expect("three methods")),
            None => l.to_string(),
        })
        .collect();
    assert!(refs.next().is_none(), "the example has three methods");
    lines.push(String::new());
    for l in [
        "[[erp]]",
        "id = \"later\"",
        "kind = \"pixi\"",
        "active = false",
        "url = \"https://pixi.example/soap\"",
        "user = \"api\"",
        &format!("password = \"plain:{S_PIXI}\""),
        "",
        "[smtp]",
        "host = \"smtp.example.com\"",
        "port = 587",
        "user = \"paybridge\"",
        &format!("password = \"plain:{S_SMTP}\""),
        "from = \"paybridge@example.com\"",
        "to = \"ops@example.com\"",
        "starttls = true",
    ] {
        lines.push(l.to_string());
    }
    lines.join("\n") + "\n"
}

/// The directory every shape runs in: fixtures, key files and the unreadable kinds of file.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    let write = |rel: &str, bytes: &[u8]| {
        let f = p.join(rel);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, bytes).expect("write");
    };
    let orders = std::fs::read(repo_root().join("examples/orders.json")).expect("fixtures");
    write("examples/orders.json", &orders);
    write("examples/binary.json", b"{\"orders\": []}\0\0");
    write("examples/latin1.json", b"{\"orders\": [\"caf\xe9\"]}");
    write("keys/unzer.key", format!("{S_FILE}\n").as_bytes());
    write("keys/wrong.key", format!("{S_FILE_WRONG}\n").as_bytes());
    write("keys/binary.key", format!("{S_FILE}\0\n").as_bytes());
    let mut latin1 = S_FILE.as_bytes().to_vec();
    latin1.push(0xe9);
    write("keys/latin1.key", &latin1);
    std::fs::create_dir_all(p.join("keys/dir")).expect("mkdir");
    std::fs::create_dir_all(p.join("examples/dir")).expect("mkdir");
    dir
}

// ------------------------------------------------------------------------------- shapes

/// What a shape must produce.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Exit code 2 and `file:line:col` with line ≥ 1 — this line when known.
    Located(Option<usize>),
    /// Exit code 2 at exactly this line and column.
    At(usize, usize),
    /// Exit code 2 at this line, the error saying this.
    Says(usize, &'static str),
    /// Exit code 2 and `file: (file): …`, no position.
    FileLevel,
    /// Exit code 0: an optional field removed (proves the list of required fields).
    Accepted,
}

enum Input {
    Text(String),
    Bytes(Vec<u8>),
    Path(PathBuf),
}

struct Shape {
    kind: &'static str,
    name: String,
    input: Input,
    expect: Expect,
}

fn shape(kind: &'static str, name: String, text: String, expect: Expect) -> Shape {
    Shape {
        kind,
        name,
        input: Input::Text(text),
        expect,
    }
}

/// A `key = value` line of the base, the first of its (table, key) pair.
struct Field {
    /// 0-based line index.
    index: usize,
    table: String,
    key: String,
    value: String,
}

fn fields(text: &str) -> Vec<Field> {
    let mut table = String::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (index, l) in text.lines().enumerate() {
        if l.starts_with('[') {
            table = l.trim().to_string();
            continue;
        }
        let Some((k, v)) = l.split_once(" = ").filter(|_| !l.starts_with('#')) else {
            continue;
        };
        if seen.insert((table.clone(), k.to_string())) {
            out.push(Field {
                index,
                table: table.clone(),
                key: k.to_string(),
                value: v.to_string(),
            });
        }
    }
    out
}

/// The fields whose removal must be refused.
const REQUIRED: &[(&str, &str)] = &[
    ("[tenant]", "id"),
    ("[[erp]]", "id"),
    ("[[erp]]", "kind"),
    ("[[erp]]", "fixtures"),
    ("[[erp]]", "url"),
    ("[[erp]]", "user"),
    ("[[erp]]", "password"),
    ("[[method]]", "erp"),
    ("[[method]]", "mandant"),
    ("[[method]]", "erp_method"),
    ("[[method]]", "psp"),
    ("[[method]]", "mode"),
    ("[[method]]", "invoice_event"),
    ("[[method]]", "return_event"),
    ("[[method]]", "public_key"),
    ("[[method]]", "private_key"),
    ("[smtp]", "host"),
    // User and password only together.
    ("[smtp]", "user"),
    ("[smtp]", "password"),
    ("[smtp]", "from"),
    ("[smtp]", "to"),
];

/// `text` with line `index` replaced by `with` (any number of lines, none to remove it).
fn edit(text: &str, index: usize, with: &[String]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.splice(index..=index, with.iter().cloned());
    lines.join("\n") + "\n"
}

/// A value of another TOML type than `value`.
fn wrong_type(value: &str) -> String {
    if value.starts_with('"') {
        format!("[{value}]")
    } else if value == "true" || value == "false" {
        "\"yes\"".to_string()
    } else {
        format!("\"{value}\"")
    }
}

/// Every field removed, misspelt, wrong-typed and duplicated.
fn field_shapes(base: &str) -> Vec<Shape> {
    let mut out = Vec::new();
    for f in fields(base) {
        let (i, at) = (f.index, Some(f.index + 1));
        let what = format!("{} {}", f.table, f.key);
        let required = REQUIRED.contains(&(f.table.as_str(), f.key.as_str()));
        let expect = if required {
            Expect::Located(None)
        } else {
            Expect::Accepted
        };
        out.push(shape("removed", what.clone(), edit(base, i, &[]), expect));
        let mut typo = f.key.clone();
        typo.remove(f.key.len() / 2);
        let line = format!("{typo} = {}", f.value);
        out.push(shape(
            "misspelt",
            what.clone(),
            edit(base, i, &[line]),
            Expect::Located(at),
        ));
        let line = format!("{} = {}", f.key, wrong_type(&f.value));
        out.push(shape(
            "wrong-typed",
            what.clone(),
            edit(base, i, &[line]),
            Expect::Located(at),
        ));
        let line = format!("{} = {}", f.key, f.value);
        let twice = edit(base, i, &[line.clone(), line]);
        out.push(shape(
            "duplicated",
            what,
            twice,
            Expect::Located(Some(f.index + 2)),
        ));
    }
    out
}

/// The base's secret fields: (line index, key).
fn secret_lines(base: &str) -> Vec<(usize, &'static str)> {
    base.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            ["private_key", "password"]
                .into_iter()
                .find(|k| l.starts_with(&format!("{k} = ")))
                .map(|k| (i, k))
        })
        .collect()
}

/// One secret line's values that cannot work, each with the line the error must point at.
fn bad_values(key: &str, i: usize) -> Vec<(&'static str, Vec<String>, Option<usize>)> {
    let at = Some(i + 1);
    let one = |v: String| vec![format!("{key} = {v}")];
    vec![
        ("raw secret", one(format!("\"{S_RAW}\"")), at),
        (
            "raw secret with ':'",
            one(format!("\"{S_WORDS}:{S_RAW}\"")),
            at,
        ),
        ("unknown scheme", one(format!("\"vault:{S_RAW}\"")), at),
        ("unterminated string", one(format!("\"plain:{S_RAW}")), at),
        ("unquoted value", one(format!("plain:{S_RAW}")), at),
        ("integer", one(S_DIGITS.to_string()), at),
        ("literal string raw", one(format!("'{S_WORDS}'")), at),
        (
            "multi-line raw",
            vec![format!("{key} = \"\"\""), S_RAW.into(), "\"\"\"".into()],
            at,
        ),
        (
            "multi-line bad escape",
            vec![
                format!("{key} = \"\"\""),
                format!("plain:{S_RAW}\\q"),
                "\"\"\"".into(),
            ],
            Some(i + 2),
        ),
        (
            "multi-line unclosed",
            vec![format!("{key} = '''"), format!("plain:{S_RAW}")],
            None,
        ),
        (
            "env unset",
            one("\"env:PAYBRIDGE_BROKEN_CONFIGS_UNSET\"".into()),
            at,
        ),
        ("file missing", one("\"file:keys/missing.key\"".into()), at),
        ("file directory", one("\"file:keys/dir\"".into()), at),
        ("file /dev/zero", one("\"file:/dev/zero\"".into()), at),
        ("file binary", one("\"file:keys/binary.key\"".into()), at),
        ("file not UTF-8", one("\"file:keys/latin1.key\"".into()), at),
    ]
}

/// Every secret field with values that cannot work, and misspelt or duplicated in each
/// reference form.
fn secret_shapes(base: &str) -> Vec<Shape> {
    let mut out = Vec::new();
    for (i, key) in secret_lines(base) {
        for (what, lines, at) in bad_values(key, i) {
            let name = format!("line {}: {key} {what}", i + 1);
            out.push(shape(
                "secret value",
                name,
                edit(base, i, &lines),
                Expect::Located(at),
            ));
        }
        let typos: &[&str] = match key {
            "private_key" => &["privat_key", "private_kye", "privatekey"],
            _ => &["pasword", "passwd", "pass_word"],
        };
        for r in references() {
            for typo in typos {
                let line = format!("{typo} = \"{r}\"");
                let name = format!("line {}: {typo} = {r}", i + 1);
                let at = Expect::Located(Some(i + 1));
                out.push(shape(
                    "secret key misspelt",
                    name,
                    edit(base, i, &[line]),
                    at,
                ));
            }
            let line = format!("{key} = \"{r}\"");
            let name = format!("line {}: {key} = {r} twice", i + 1);
            let twice = edit(base, i, &[line.clone(), line]);
            out.push(shape(
                "secret duplicated",
                name,
                twice,
                Expect::Located(Some(i + 2)),
            ));
        }
    }
    out
}

/// The first method switched to `psp = "unzer"` with `key_line` as its private key (plus
/// `extra` lines after it); the line index of the private key.
fn unzer_method(base: &str, key_line: &str, extra: &[&str]) -> (String, usize) {
    let psp = base
        .lines()
        .position(|l| l == "psp = \"memory\"")
        .expect("psp line");
    let text = edit(base, psp, &["psp = \"unzer\"".to_string()]);
    let key = text
        .lines()
        .position(|l| l.starts_with("private_key = "))
        .expect("key line");
    let mut lines = vec![key_line.to_string()];
    lines.extend(extra.iter().map(|s| s.to_string()));
    (edit(&text, key, &lines), key)
}

/// The Unzer findings: keys of the wrong shape (in every reference form) and bad `api_host`s.
fn unzer_shapes(base: &str) -> Vec<Shape> {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("wrong prefix, plain", format!("plain:{S_WRONG}"), vec![]),
        ("wrong prefix, env", format!("env:{ENV_WRONG}"), vec![]),
        ("wrong prefix, file", "file:keys/wrong.key".into(), vec![]),
        (
            "production key, sandbox public key",
            format!("plain:{S_PROD}"),
            vec![],
        ),
        (
            "non-loopback http api_host",
            format!("plain:{S_PLAIN}"),
            vec!["api_host = \"http://10.1.2.3\""],
        ),
        (
            "api_host with a path",
            format!("plain:{S_PLAIN}"),
            vec!["api_host = \"https://api.example.com/v1\""],
        ),
        (
            "api_host unsupported scheme",
            format!("plain:{S_PLAIN}"),
            vec!["api_host = \"ftp://api.example.com\""],
        ),
    ];
    let mut out: Vec<Shape> = cases
        .into_iter()
        .map(|(what, r, extra)| {
            let (text, key) = unzer_method(base, &format!("private_key = \"{r}\""), &extra);
            // An api_host error points at api_host (the line after the key), others at the key.
            let at = Expect::Located(Some(key + 1 + extra.len()));
            shape("unzer", what.to_string(), text, at)
        })
        .collect();
    let userinfo = format!("api_host = \"https://admin:{S_URL}@api.example.com\"");
    let (text, key) = unzer_method(
        base,
        &format!("private_key = \"plain:{S_PLAIN}\""),
        &[&userinfo],
    );
    out.push(shape(
        "unzer",
        "api_host with credentials".into(),
        text,
        Expect::Located(Some(key + 2)),
    ));
    // The first and third methods on Unzer, the third refused: the error points at the
    // third's line, not at the first Unzer method's.
    let psp: Vec<usize> = (base.lines().enumerate())
        .filter(|(_, l)| *l == "psp = \"memory\"")
        .map(|(i, _)| i)
        .collect();
    let mut text = base.to_string();
    for i in [psp[0], psp[2]] {
        text = edit(&text, i, &["psp = \"unzer\"".to_string()]);
    }
    let keys = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("private_key = "));
    let (third, _) = keys.clone().nth(2).expect("third method");
    let text = edit(
        &text,
        third,
        &[format!("private_key = \"plain:{S_WRONG}\"")],
    );
    let name = "wrong prefix in the second of two Unzer methods".to_string();
    out.push(shape("unzer", name, text, Expect::Located(Some(third + 1))));
    out
}

/// The base with every `[[method]]` table replaced by one inline method table on line 1.
fn inline_method(base: &str, fields: &str) -> String {
    let mut out = format!("method = [{{ {fields} }}]\n");
    let mut in_method = false;
    for l in base.lines() {
        if l.starts_with('[') {
            in_method = l == "[[method]]";
        }
        if !in_method {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Inline method tables (the methods' `[[method]]` tables replaced by one on line 1).
fn inline_shapes(base: &str) -> Vec<Shape> {
    let m = "erp = \"demo\", mandant = \"01\", erp_method = \"CARD\", psp = \"unzer\", \
             mode = \"expert\", invoice_event = \"ZE\", return_event = \"RE\", \
             public_key = \"s-pub-x\"";
    let key = format!("private_key = \"plain:{S_PLAIN}\"");
    [
        (
            "wrong prefix",
            format!("{m}, private_key = \"plain:{S_WRONG}\""),
        ),
        (
            "wrong type",
            format!("{key}, {m}, rounding_tolerance = \"x\""),
        ),
        (
            "misspelt key",
            format!("privat_key = \"plain:{S_PLAIN}\", {m}"),
        ),
        ("raw key", format!("{m}, private_key = \"{S_RAW}\"")),
    ]
    .into_iter()
    .map(|(what, f)| {
        let name = format!("inline method table, {what}");
        shape(
            "inline table",
            name,
            inline_method(base, &f),
            Expect::Located(Some(1)),
        )
    })
    .collect()
}

/// URLs with credentials, junk after a header, out-of-range values, unreadable fixtures: each
/// a base line replaced.
fn finding_shapes(base: &str) -> Vec<Shape> {
    let url = "url = \"https://pixi.example/soap\"";
    let poll = "poll_interval_secs = 10";
    let fixtures = "fixtures = \"examples/orders.json\"";
    let cases = [
        (
            "url with password, ftp",
            url,
            format!("url = \"ftp://admin:{S_URL}@pixi.example/x\""),
        ),
        (
            "url with password, no scheme",
            url,
            format!("url = \"admin:{S_URL}@pixi.example\""),
        ),
        (
            "junk after a header",
            "[smtp]",
            format!("[smtp] password = \"plain:{S_SMTP}\""),
        ),
        (
            "zero-length quiet hours",
            "quiet_hours = \"00:00-04:00\"",
            "quiet_hours = \"04:00-04:00\"".into(),
        ),
        (
            "poll interval i64::MAX",
            poll,
            "poll_interval_secs = 9223372036854775807".into(),
        ),
        ("poll interval 0", poll, "poll_interval_secs = 0".into()),
        (
            "poll interval over a day",
            poll,
            "poll_interval_secs = 86401".into(),
        ),
        (
            "fixtures /dev/zero",
            fixtures,
            "fixtures = \"/dev/zero\"".into(),
        ),
        (
            "fixtures missing",
            fixtures,
            "fixtures = \"examples/none.json\"".into(),
        ),
        (
            "fixtures directory",
            fixtures,
            "fixtures = \"examples/dir\"".into(),
        ),
        (
            "fixtures binary",
            fixtures,
            "fixtures = \"examples/binary.json\"".into(),
        ),
        (
            "fixtures not UTF-8",
            fixtures,
            "fixtures = \"examples/latin1.json\"".into(),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, from, to)| {
            let i = base
                .lines()
                .position(|l| l == from)
                .unwrap_or_else(|| panic!("{from}"));
            let text = edit(base, i, &[to]);
            shape(
                "finding",
                what.to_string(),
                text,
                Expect::Located(Some(i + 1)),
            )
        })
        .collect()
}

/// The limits of the file: a third connection, a removed key, pixi's event codes.
fn limit_shapes(base: &str) -> Vec<Shape> {
    let mut out = Vec::new();
    let third = format!(
        "{base}\n[[erp]]\nid = \"third\"\nkind = \"memory\"\nfixtures = \"examples/orders.json\"\n"
    );
    let header = base.lines().count() + 2;
    out.push(shape(
        "limit",
        "a third [[erp]]".into(),
        third,
        Expect::Says(header, "at most two ERP connections per tenant"),
    ));
    let quiet = "quiet_hours = \"00:00-04:00\"";
    let i = base.lines().position(|l| l == quiet).expect(quiet);
    let with = [
        quiet.to_string(),
        "notify_email = \"ops@example.com\"".into(),
    ];
    out.push(shape(
        "limit",
        "tenant.notify_email".into(),
        edit(base, i, &with),
        Expect::Says(i + 2, "smtp.to"),
    ));
    // The first method on the (inactive) pixi connection: the example's codes are pixi's.
    let erp = base
        .lines()
        .position(|l| l == "erp = \"demo\"")
        .expect("method erp");
    let on_pixi = edit(base, erp, &["erp = \"later\"".to_string()]);
    out.push(shape(
        "limit",
        "the example's event codes on pixi".into(),
        on_pixi.clone(),
        Expect::Accepted,
    ));
    for key in ["invoice_event", "return_event"] {
        let j = (on_pixi.lines().enumerate())
            .skip(erp)
            .find(|(_, l)| l.starts_with(&format!("{key} = ")))
            .map(|(j, _)| j)
            .expect("event line");
        let text = edit(&on_pixi, j, &[format!("{key} = \"ZE-CARD\"")]);
        out.push(shape(
            "limit",
            format!("pixi {key} of 7 characters"),
            text,
            Expect::Says(j + 1, "at most 3 characters"),
        ));
    }
    out
}

/// Configuration files that cannot be read: file-level errors, or the bad byte's position.
fn unreadable_shapes(base: &str, dir: &Path) -> Vec<Shape> {
    let file = |name: &str, input: Input, expect: Expect| Shape {
        kind: "unreadable file",
        name: name.to_string(),
        input,
        expect,
    };
    let key = base
        .lines()
        .position(|l| l.starts_with("private_key = "))
        .expect("key line");
    let col = "private_key = \"plain:".len() + S_PLAIN.len() + 1;
    let with_byte = |b: u8| {
        let mut bytes = Vec::new();
        for (i, l) in base.lines().enumerate() {
            bytes.extend_from_slice(l.as_bytes());
            if i == key {
                bytes.insert(bytes.len() - 1, b);
            }
            bytes.push(b'\n');
        }
        bytes
    };
    let big = format!(
        "{base}{}",
        "# padding padding padding padding\n".repeat(40_000)
    );
    vec![
        file(
            "missing",
            Input::Path(dir.join("none.toml")),
            Expect::FileLevel,
        ),
        file(
            "a directory",
            Input::Path(dir.join("keys")),
            Expect::FileLevel,
        ),
        file(
            "/dev/zero",
            Input::Path("/dev/zero".into()),
            Expect::FileLevel,
        ),
        file("larger than 1 MiB", Input::Text(big), Expect::FileLevel),
        file(
            "binary (NUL)",
            Input::Bytes(with_byte(0)),
            Expect::At(key + 1, col),
        ),
        file(
            "not UTF-8",
            Input::Bytes(with_byte(0xff)),
            Expect::At(key + 1, col),
        ),
    ]
}

// ------------------------------------------------------------------------------- running

/// Runs one shape; every violated expectation as a message.
fn check(shape: &Shape, n: usize, dir: &Path) -> Vec<String> {
    let path = match &shape.input {
        Input::Path(p) => p.clone(),
        Input::Text(t) => write_config(dir, n, t.as_bytes()),
        Input::Bytes(b) => write_config(dir, n, b),
    };
    let out = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args(["config", "check", "--config"])
        .arg(&path)
        .env(ENV_NAME, S_ENV)
        .env(ENV_WRONG, S_ENV_WRONG)
        .env("RUST_LOG", "info")
        .output()
        .expect("the binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let mut problems = Vec::new();
    let want = if shape.expect == Expect::Accepted {
        0
    } else {
        2
    };
    if out.status.code() != Some(want) {
        problems.push(format!(
            "exit code {:?}, expected {want}",
            out.status.code()
        ));
    }
    if want == 2 {
        problems.extend(location_problems(&shape.expect, &path, &stderr));
    }
    for s in SECRETS {
        let chars: Vec<char> = s.chars().collect();
        for w in chars.windows(8) {
            let w: String = w.iter().collect();
            if stdout.contains(&w) || stderr.contains(&w) {
                problems.push(format!("secret piece {w:?} of {s:?} printed"));
                break;
            }
        }
    }
    if !problems.is_empty() {
        problems.push(format!("stdout:\n{stdout}\nstderr:\n{stderr}"));
    }
    problems
}

fn write_config(dir: &Path, n: usize, bytes: &[u8]) -> PathBuf {
    let p = dir.join(format!("shape-{n:03}.toml"));
    std::fs::write(&p, bytes).expect("write config");
    p
}

/// The error line must be `file:line:col: …` (line ≥ 1, the expected one when known) or, for
/// a file-level error, `file: (file): …`.
fn location_problems(expect: &Expect, path: &Path, stderr: &str) -> Vec<String> {
    let file = path.display().to_string();
    let Some(error) = stderr.lines().find_map(|l| l.strip_prefix("error: ")) else {
        return vec!["no `error: ` line".into()];
    };
    let Some(rest) = error.strip_prefix(&format!("{file}:")) else {
        return vec![format!("the error does not start with {file}:")];
    };
    if *expect == Expect::FileLevel {
        let ok = rest.starts_with(" (file): ") && !error.contains(":0:0");
        return if ok {
            vec![]
        } else {
            vec![format!("not a file-level message: {error}")]
        };
    }
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|l| l.parse::<usize>().ok());
    let col = parts.next().and_then(|c| c.parse::<usize>().ok());
    match (line, col, expect) {
        (Some(l), Some(c), Expect::Located(want)) if l >= 1 && c >= 1 => match want {
            Some(w) if *w != l => vec![format!("line {l}, expected {w}: {error}")],
            _ => vec![],
        },
        (Some(l), Some(c), Expect::At(wl, wc)) if (l, c) == (*wl, *wc) => vec![],
        (Some(l), Some(c), Expect::Says(wl, text)) if l == *wl && c >= 1 => {
            if error.contains(text) {
                vec![]
            } else {
                vec![format!("the error does not say {text:?}: {error}")]
            }
        }
        _ => vec![format!(
            "no line:col ≥ 1 (or not the expected one): {error}"
        )],
    }
}

#[test]
fn broken_configs_are_located_and_print_no_secret() {
    let base = base_text();
    let dir = workspace();
    // The base itself is fine: every failure below is the shape's.
    let ok = check(
        &shape("base", "base".into(), base.clone(), Expect::Accepted),
        0,
        dir.path(),
    );
    assert!(ok.is_empty(), "the base config fails:\n{}", ok.join("\n"));

    let mut shapes = field_shapes(&base);
    shapes.extend(secret_shapes(&base));
    shapes.extend(unzer_shapes(&base));
    shapes.extend(inline_shapes(&base));
    shapes.extend(finding_shapes(&base));
    shapes.extend(limit_shapes(&base));
    shapes.extend(unreadable_shapes(&base, dir.path()));
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for (n, s) in shapes.iter().enumerate() {
        if s.expect != Expect::Accepted {
            *kinds.entry(s.kind).or_default() += 1;
        }
        let problems = check(s, n + 1, dir.path());
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {}:\n  {}",
                s.kind,
                s.name,
                problems.join("\n  ")
            ));
        }
    }
    let broken: usize = kinds.values().sum();
    println!(
        "{broken} broken configuration shapes ({} runs with the optional removals): {kinds:?}",
        shapes.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} shapes failed:\n{}",
        failures.len(),
        shapes.len(),
        failures.join("\n\n")
    );
    assert!(broken >= 62, "only {broken} broken shapes");
}
