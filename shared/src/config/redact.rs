//! Masking of secrets in everything a configuration error prints: the `field`, the message
//! (toml's own messages quote values, ours quote with `{:?}`) and the source excerpt under the
//! error. A value is masked when its field holds a secret — judged by the key's name, misspelt
//! ones included (`privat_key`, `pasword`, anything with key/pass/pwd/secret/token) — or when the
//! value looks like one by its shape (a secret reference such as `plain:…`, an unknown
//! `scheme:…`, an Unzer key `s-priv-…`/`p-priv-…`, a long token-like run); a URL's userinfo is
//! always masked. This is the one masking function: the library's [`ConfigError`] and the
//! binary's source excerpts both go through it.
//!
//! [`ConfigError`]: super::ConfigError

/// What a masked value is printed as.
pub const MASK: &str = "***";

/// Name parts that make a field secret-bearing wherever they appear in its name.
const SECRET_PARTS: &[&str] = &[
    "key", "pass", "pwd", "pw", "secret", "token", "priv", "cred", "auth",
];

/// Words a misspelt field name is compared with (edit distance 1, 2 for the long ones).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "private",
    "secret",
    "token",
    "credential",
    "credentials",
    "privatekey",
    "apikey",
];

/// Secret reference schemes (`plain:` holds the value itself; the others are still masked in
/// source excerpts: a misplaced value is not worth a guess).
const SECRET_SCHEMES: &[&str] = &["plain:", "env:", "file:", "ssm:", "secretsmanager:"];

/// Every key a configuration table has: names, not values, so they stay readable in messages
/// such as "unknown field `privat_key`, expected one of `erp`, …".
const KNOWN_KEYS: &[&str] = &[
    "tenant",
    "server",
    "erp",
    "method",
    "smtp",
    "id",
    "timezone",
    "quiet_hours",
    "unverified_events_per_hour",
    "shop_name",
    "public_url",
    "listen",
    "database",
    "poll_interval_secs",
    "kind",
    "active",
    "url",
    "user",
    "password",
    "fixtures",
    "mandant",
    "erp_method",
    "psp",
    "mode",
    "invoice_event",
    "return_event",
    "rounding_tolerance",
    "authorization_validity_days",
    "pending_error_after_hours",
    "public_key",
    "private_key",
    "merchant_id",
    "encryption_key",
    "hmac_key",
    "encryption",
    "psp_method",
    "api_host",
    "host",
    "port",
    "from",
    "to",
    "starttls",
];

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Keys of the configuration that contain a secret-looking part ([`SECRET_PARTS`]) but hold
/// none: spelt exactly, they are ordinary fields (a misspelling of one is still judged by its
/// parts).
const NOT_SECRET_KEYS: &[&str] = &["authorization_validity_days"];

/// Whether a field name is (or is a misspelling of) one that holds a secret. Dotted and indexed
/// names (`method[0].private_key`) are judged by all their parts.
pub fn is_secret_field(name: &str) -> bool {
    let (head, last) = name.rsplit_once('.').unwrap_or(("", name));
    if NOT_SECRET_KEYS.contains(&last) {
        // Still secret under a secret-bearing table or dotted key (`pasword.…`).
        return !head.is_empty() && is_secret_field(head);
    }
    let lower = name.to_ascii_lowercase();
    let compact: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    if SECRET_PARTS.iter().any(|p| compact.contains(p)) {
        return true;
    }
    lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .chain([compact.as_str()])
        .filter(|seg| seg.len() >= 2)
        .any(|seg| {
            (seg.len() <= 4 && edit_distance(seg, "key") <= 1)
                || (seg.len() >= 4
                    && SECRET_WORDS
                        .iter()
                        .any(|w| edit_distance(seg, w) <= if w.len() >= 8 { 2 } else { 1 }))
        })
}

/// A run of token characters that looks like a generated key: long, letters and digits.
fn token_like(run: &str) -> bool {
    run.len() >= 16
        && run.chars().any(|c| c.is_ascii_digit())
        && run.chars().any(|c| c.is_ascii_alphabetic())
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '=')
}

/// `scheme:rest` with a scheme-like head and a rest that is not `//…` (a URL) or a number
/// (`localhost:8080`).
fn has_scheme(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once(':') else {
        return false;
    };
    scheme.len() <= 32
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
        && !rest.is_empty()
        && !rest.starts_with("//")
        && !rest.chars().all(|c| c.is_ascii_digit() || c == ':')
}

/// An Unzer private key (`s-priv-…`, `p-priv-…`) in `lower`; the bare prefix is no key.
fn has_private_key(lower: &str) -> bool {
    let after = |i: usize| lower[i..].starts_with(token_char);
    lower
        .match_indices("-priv-")
        .any(|(i, m)| after(i + m.len()))
        || (lower.starts_with("priv-") && after(5))
}

/// Whether a value looks like a secret by its shape alone.
pub fn looks_secret(value: &str) -> bool {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    SECRET_SCHEMES.iter().any(|s| lower.starts_with(s))
        || has_private_key(&lower)
        || has_scheme(v)
        || v.split(|c| !token_char(c)).any(token_like)
}

/// `text` with the userinfo of every URL in it (`scheme://user:pw@host`) masked.
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(i) => {
                out.push_str(MASK);
                out.push_str(&tail[i..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A string value as it may be printed, given the field it belongs to.
pub fn mask_value(field: &str, value: &str) -> String {
    if is_secret_field(field) || looks_secret(value) {
        MASK.to_string()
    } else {
        mask_userinfo(value)
    }
}

/// One word of free text (no quotes, no spaces): secret-shaped parts masked.
fn mask_word(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("plain:")
        && !rest.is_empty()
        && word != "plain:VALUE"
    {
        return format!("plain:{MASK}");
    }
    if has_private_key(&lower) {
        return MASK.to_string();
    }
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        out.push_str(if token_like(run) { MASK } else { run });
        run.clear();
    };
    for c in word.chars() {
        if token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A quoted part of a message (`"…"` or `` `…` ``) as it may be printed.
fn mask_quoted(content: &str, quote: char, field: &str) -> String {
    // Backticks also quote names and punctuation (expected `"`): those stay readable.
    let keep_name = quote == '`'
        && (KNOWN_KEYS.contains(&content)
            || field.rsplit('.').next() == Some(content)
            || !content.chars().any(char::is_alphanumeric));
    if keep_name || !(is_secret_field(field) || looks_secret(content)) {
        mask_userinfo(content)
    } else {
        MASK.to_string()
    }
}

/// Free text (an error message, a field name): every quoted part masked when `field` holds a
/// secret or the part looks like one, every secret-shaped word masked, every URL's userinfo
/// masked. Idempotent.
pub fn mask_message(text: &str, field: &str) -> String {
    let text = mask_userinfo(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '`' {
            out.push_str(&mask_word(&word));
            word.clear();
            let (content, end) = quoted(&chars, i + 1, c);
            out.push(c);
            out.push_str(&mask_quoted(&content, c, field));
            if end < chars.len() {
                out.push(c);
            }
            i = end + 1;
        } else if c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}') {
            out.push_str(&mask_word(&word));
            word.clear();
            out.push(c);
            i += 1;
        } else {
            word.push(c);
            i += 1;
        }
    }
    out.push_str(&mask_word(&word));
    out
}

/// The content of a quoted part starting at `start` (after the opening quote) and the index of
/// its closing quote (`chars.len()` when there is none). `\` escapes inside `"…"`.
fn quoted(chars: &[char], start: usize, quote: char) -> (String, usize) {
    let mut content = String::new();
    let mut i = start;
    while i < chars.len() && chars[i] != quote {
        if quote == '"' && chars[i] == '\\' && i + 1 < chars.len() {
            content.push(chars[i]);
            i += 1;
        }
        content.push(chars[i]);
        i += 1;
    }
    (content, i)
}

mod source;

pub use source::{MaskedLine, masked_line};

#[cfg(test)]
mod tests;
