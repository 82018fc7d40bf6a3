//! From the parsed TOML to a [`Config`]: every rule the file must follow, one function per
//! section, each error located at the offending key (never quoting a value that may be a
//! secret).

use super::*;
use std::collections::HashMap;

/// What ids may contain: they become parts of store keys, where `#` and `/` separate parts.
const ID_RULE: &str = "1 to 64 characters: letters, digits, '_', '-' or '.'";

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// pixi XML tags: letters, digits, `_` and `-`, starting with a letter.
fn valid_tag(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_quiet_hours(s: &str) -> Result<Option<QuietHours>, String> {
    if s == "off" {
        return Ok(None);
    }
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected \"HH:MM-HH:MM\" or \"off\", got {s:?}"))?;
    let t = |x: &str| {
        NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| format!("bad time {x:?}"))
    };
    let (start, end) = (t(a)?, t(b)?);
    if start == end {
        return Err(format!(
            "a window of zero length ({s:?}); write \"off\" for no quiet hours"
        ));
    }
    Ok(Some(QuietHours { start, end }))
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATABASE: &str = "./paybridge.db";
const DEFAULT_POLL_SECS: u64 = 60;
/// The range of `poll_interval_secs`: one second to one day.
const POLL_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

impl RawConfig {
    pub(super) fn validate(self, loc: &Locator<'_>) -> Result<Config, ConfigError> {
        let tenant = tenant(self.tenant.into_inner(), loc)?;
        let server = server(self.server.map(Spanned::into_inner), loc)?;
        let (erp, kinds) = erp_connections(self.erp, loc)?;
        let links = LinkNeeds {
            public_url: server.public_url.is_some(),
            smtp: self.smtp.is_some(),
        };
        let methods = methods(self.method, &kinds, links, loc)?;
        let smtp = match self.smtp {
            None => None,
            Some(s) => Some(smtp(s.into_inner(), loc)?),
        };
        Ok(Config {
            tenant,
            server,
            erp,
            methods,
            smtp,
        })
    }
}

fn tenant(t: RawTenant, loc: &Locator<'_>) -> Result<Tenant, ConfigError> {
    if !valid_id(t.id.get_ref()) {
        return loc.err(t.id.span(), "tenant.id", ID_RULE);
    }
    let timezone = match &t.timezone {
        None => chrono_tz::Europe::Berlin,
        Some(tz) => match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(z) => z,
            Err(_) => {
                let m = format!("unknown time zone {:?}", tz.get_ref());
                return loc.err(tz.span(), "tenant.timezone", m);
            }
        },
    };
    let quiet_hours = match &t.quiet_hours {
        None => parse_quiet_hours("00:00-04:00").expect("default parses"),
        Some(q) => match parse_quiet_hours(q.get_ref()) {
            Ok(q) => q,
            Err(m) => return loc.err(q.span(), "tenant.quiet_hours", m),
        },
    };
    let unverified_events_per_hour = match &t.unverified_events_per_hour {
        None => DEFAULT_UNVERIFIED_EVENTS_PER_HOUR,
        Some(n) if (1..=1_000_000).contains(n.get_ref()) => *n.get_ref(),
        Some(n) => {
            let m = "must be between 1 and 1000000 (events per hour)";
            return loc.err(n.span(), "tenant.unverified_events_per_hour", m);
        }
    };
    let shop_name = match &t.shop_name {
        None => t.id.get_ref().clone(),
        Some(n) => {
            let v = n.get_ref().trim();
            if v.is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control) {
                let m = "1 to 100 characters, no control characters";
                return loc.err(n.span(), "tenant.shop_name", m);
            }
            v.to_string()
        }
    };
    Ok(Tenant {
        id: t.id.into_inner(),
        timezone,
        quiet_hours,
        unverified_events_per_hour,
        shop_name,
    })
}

fn server(s: Option<RawServer>, loc: &Locator<'_>) -> Result<Server, ConfigError> {
    let default_listen = || DEFAULT_LISTEN.parse().expect("literal");
    let Some(s) = s else {
        return Ok(Server {
            listen: default_listen(),
            database: PathBuf::from(DEFAULT_DATABASE),
            poll_interval_secs: DEFAULT_POLL_SECS,
            public_url: None,
        });
    };
    let listen = match &s.listen {
        None => default_listen(),
        Some(l) => match l.get_ref().parse() {
            Ok(a) => a,
            Err(_) => {
                let m = format!("not an address:port: {:?}", l.get_ref());
                return loc.err(l.span(), "server.listen", m);
            }
        },
    };
    let poll_interval_secs = match &s.poll_interval_secs {
        None => DEFAULT_POLL_SECS,
        Some(p) if !POLL_SECS.contains(p.get_ref()) => {
            let m = "must be between 1 and 86400 seconds (1 s to 1 day)";
            return loc.err(p.span(), "server.poll_interval_secs", m);
        }
        Some(p) => *p.get_ref(),
    };
    let public_url = match &s.public_url {
        None => None,
        Some(u) => match crate::psp::checked_base(u.get_ref().trim(), "/webhooks/… and /paylink/…")
        {
            Ok(url) => Some(url.origin().ascii_serialization()),
            Err(m) => {
                return loc.err(
                    u.span(),
                    "server.public_url",
                    m.replace("api_host", "public_url"),
                );
            }
        },
    };
    Ok(Server {
        listen,
        database: s
            .database
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
        poll_interval_secs,
        public_url,
    })
}

/// The ERP connections, and the kind of each by id (for the methods' `erp`).
fn erp_connections(
    raw: Vec<Spanned<RawErp>>,
    loc: &Locator<'_>,
) -> Result<(Vec<ErpConnection>, HashMap<String, ErpKind>), ConfigError> {
    if raw.len() > 2 {
        let m = "at most two ERP connections per tenant";
        return loc.err(raw[2].span(), "erp", m);
    }
    let mut kinds = HashMap::new();
    let mut erp = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let span = e.span();
        let e = e.into_inner();
        if !valid_id(e.id.get_ref()) {
            return loc.err(e.id.span(), &format!("erp[{i}].id"), ID_RULE);
        }
        if kinds.insert(e.id.get_ref().clone(), e.kind).is_some() {
            let m = format!("duplicate connection id {:?}", e.id.get_ref());
            return loc.err(e.id.span(), &format!("erp[{i}].id"), m);
        }
        erp_kind_fields(&e, i, span, loc)?;
        erp.push(ErpConnection {
            id: e.id.into_inner(),
            kind: e.kind,
            active: e.active,
            url: e.url.map(Spanned::into_inner),
            user: e.user,
            password: e.password,
            fixtures: e.fixtures,
        });
    }
    Ok((erp, kinds))
}

/// The fields each ERP kind needs.
fn erp_kind_fields(
    e: &RawErp,
    i: usize,
    span: std::ops::Range<usize>,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    match e.kind {
        ErpKind::Pixi => {
            let Some(url) = &e.url else {
                let m = "required for kind = \"pixi\"";
                return loc.err(span, &format!("erp[{i}].url"), m);
            };
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                let m = "must be an http(s) URL";
                return loc.err(url.span(), &format!("erp[{i}].url"), m);
            }
            if e.user.is_none() || e.password.is_none() {
                let m = "user and password are required for kind = \"pixi\"";
                return loc.err(span, &format!("erp[{i}].user"), m);
            }
        }
        ErpKind::Memory => {
            if e.fixtures.is_none() {
                let m = "required for kind = \"memory\"";
                return loc.err(span, &format!("erp[{i}].fixtures"), m);
            }
        }
    }
    Ok(())
}

/// What `mode = "link"` needs besides the method: a public URL for the PSP's notify and the
/// customer's return, and SMTP for the e-mail.
#[derive(Clone, Copy)]
struct LinkNeeds {
    public_url: bool,
    smtp: bool,
}

fn methods(
    raw: Vec<Spanned<RawMethod>>,
    erp_kinds: &HashMap<String, ErpKind>,
    links: LinkNeeds,
    loc: &Locator<'_>,
) -> Result<Vec<MethodConfig>, ConfigError> {
    let mut keys = HashSet::new();
    let mut methods = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let m = m.into_inner();
        method_rules(&m, i, erp_kinds, loc)?;
        link_rules(&m, i, links, loc)?;
        let account = account(&m, i, loc)?;
        let key = (
            m.erp.get_ref().clone(),
            m.mandant.clone(),
            m.erp_method.get_ref().clone(),
        );
        if !keys.insert(key) {
            let msg = "a config for this (erp, mandant, erp_method) exists already";
            return loc.err(m.erp_method.span(), &format!("method[{i}]"), msg);
        }
        methods.push(MethodConfig {
            erp: m.erp.into_inner(),
            mandant: m.mandant,
            erp_method: m.erp_method.into_inner(),
            psp: m.psp,
            active: m.active,
            mode: m.mode.into_inner(),
            invoice_event: m.invoice_event.into_inner(),
            return_event: m.return_event.into_inner(),
            rounding_tolerance: m.rounding_tolerance,
            authorization_validity_days: m.authorization_validity_days.map(Spanned::into_inner),
            pending_error_after_hours: m
                .pending_error_after_hours
                .map_or(DEFAULT_PENDING_ERROR_HOURS, Spanned::into_inner),
            account,
        });
    }
    Ok(methods)
}

/// Default of `pending_error_after_hours`: a payment pending for a day needs a human.
pub const DEFAULT_PENDING_ERROR_HOURS: u32 = 24;
/// Range of `authorization_validity_days` (a year at most).
const VALIDITY_DAYS: std::ops::RangeInclusive<u32> = 1..=365;
/// Range of `pending_error_after_hours` (a month at most).
const PENDING_HOURS: std::ops::RangeInclusive<u32> = 1..=720;
/// Longest booking event code pixi takes: its `EventID` column is `varchar(3)`.
pub const PIXI_EVENT_CODE_MAX: usize = 3;

/// The rules of one `[[method]]` on its own (and against the kind of its connection).
fn method_rules(
    m: &RawMethod,
    i: usize,
    erp_kinds: &HashMap<String, ErpKind>,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let Some(&kind) = erp_kinds.get(m.erp.get_ref()) else {
        let msg = format!("no [[erp]] connection with id {:?}", m.erp.get_ref());
        return loc.err(m.erp.span(), &format!("method[{i}].erp"), msg);
    };
    if !valid_tag(m.erp_method.get_ref()) {
        let msg = "an XML tag name: letters, digits, _ or -, no special characters";
        return loc.err(m.erp_method.span(), &format!("method[{i}].erp_method"), msg);
    }
    for (name, v) in [
        ("invoice_event", &m.invoice_event),
        ("return_event", &m.return_event),
    ] {
        if v.get_ref().trim().is_empty() {
            let msg = "booking event code must not be empty";
            return loc.err(v.span(), &format!("method[{i}].{name}"), msg);
        }
        let len = v.get_ref().chars().count();
        if kind == ErpKind::Pixi && len > PIXI_EVENT_CODE_MAX {
            let msg = format!(
                "pixi event codes (EventID) are at most {PIXI_EVENT_CODE_MAX} characters; \
                 this one has {len}"
            );
            return loc.err(v.span(), &format!("method[{i}].{name}"), msg);
        }
    }
    if let Some(d) = &m.authorization_validity_days
        && !VALIDITY_DAYS.contains(d.get_ref())
    {
        let msg = "must be between 1 and 365 days";
        let field = format!("method[{i}].authorization_validity_days");
        return loc.err(d.span(), &field, msg);
    }
    if let Some(h) = &m.pending_error_after_hours
        && !PENDING_HOURS.contains(h.get_ref())
    {
        let msg = "must be between 1 and 720 hours (30 days)";
        let field = format!("method[{i}].pending_error_after_hours");
        return loc.err(h.span(), &field, msg);
    }
    if let Some(key) = &m.public_key
        && m.psp == PspKind::Unzer
        && !(key.get_ref().starts_with("s-pub-") || key.get_ref().starts_with("p-pub-"))
    {
        let msg = "an Unzer public key starts with s-pub- or p-pub-";
        return loc.err(key.span(), &format!("method[{i}].public_key"), msg);
    }
    Ok(())
}

/// `mode = "link"`: a PSP that makes payment links (Paygate's hosted payment page), a public
/// URL and SMTP.
fn link_rules(
    m: &RawMethod,
    i: usize,
    links: LinkNeeds,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    if *m.mode.get_ref() != Mode::Link {
        return Ok(());
    }
    let field = format!("method[{i}].mode");
    let why = if m.psp != PspKind::Paygate {
        "mode = \"link\" needs a PSP that makes payment links: psp = \"paygate\""
    } else if !links.public_url {
        "mode = \"link\" needs [server] public_url (where Paygate sends its notify and the customer returns)"
    } else if !links.smtp {
        "mode = \"link\" needs an [smtp] section (the link is e-mailed to the customer)"
    } else {
        return Ok(());
    };
    loc.err(m.mode.span(), &field, why)
}

/// The payment methods a Paygate config may name (`psp_method`).
pub const PAYGATE_METHODS: &[&str] = &["card", "klarna", "billsafe", "paypal", "sofort"];

/// The account of one `[[method]]`, by its PSP kind: Unzer and memory take `public_key` +
/// `private_key`; Paygate takes `merchant_id`, `encryption_key`, `hmac_key`, `psp_method` and
/// optionally `encryption`. A field of the other kind is refused where it stands; a missing one
/// is located at the config's `erp_method`.
fn account(m: &RawMethod, i: usize, loc: &Locator<'_>) -> Result<PspAccount, ConfigError> {
    let at = m.erp_method.span();
    let missing = |field: &str, why: &str| -> Result<PspAccount, ConfigError> {
        loc.err(
            at.clone(),
            &format!("method[{i}].{field}"),
            format!("missing `{field}`: {why}"),
        )
    };
    match m.psp {
        PspKind::Paygate => {
            if let Some(k) = &m.public_key {
                let msg = "a Paygate config names its account with `merchant_id`, not `public_key`";
                return loc.err(k.span(), &format!("method[{i}].public_key"), msg);
            }
            if m.private_key.is_some() {
                let msg =
                    "a Paygate config takes `encryption_key` and `hmac_key`, not `private_key`";
                return loc.err(at, &format!("method[{i}].private_key"), msg);
            }
            let Some(mid) = &m.merchant_id else {
                return missing("merchant_id", "the Paygate MerchantID");
            };
            let id = mid.get_ref();
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if id.is_empty() || id.len() > 30 || !id.chars().all(plain) {
                let msg = "a Paygate MerchantID: 1 to 30 letters, digits, '_', '-' or '.'";
                return loc.err(mid.span(), &format!("method[{i}].merchant_id"), msg);
            }
            let Some(key) = m.encryption_key.clone() else {
                return missing(
                    "encryption_key",
                    "a reference to the Blowfish (or AES) password",
                );
            };
            let Some(mac) = m.hmac_key.clone() else {
                return missing("hmac_key", "a reference to the HMAC password");
            };
            let Some(method) = &m.psp_method else {
                let why = format!("the payment method at Paygate, one of {PAYGATE_METHODS:?}");
                return missing("psp_method", &why);
            };
            if !PAYGATE_METHODS.contains(&method.get_ref().as_str()) {
                let msg =
                    format!("not a Paygate method paybridge handles; one of {PAYGATE_METHODS:?}");
                return loc.err(method.span(), &format!("method[{i}].psp_method"), msg);
            }
            Ok(PspAccount {
                public_key: id.clone(),
                private_key: key,
                api_host: m.api_host.clone(),
                extra: AccountExtra {
                    mac_key: Some(mac),
                    cipher: m.encryption.unwrap_or_default(),
                    psp_method: Some(method.get_ref().clone()),
                },
            })
        }
        PspKind::Unzer | PspKind::Memory => {
            for (field, present) in [
                ("merchant_id", m.merchant_id.is_some()),
                ("encryption_key", m.encryption_key.is_some()),
                ("hmac_key", m.hmac_key.is_some()),
                ("encryption", m.encryption.is_some()),
                ("psp_method", m.psp_method.is_some()),
            ] {
                if present {
                    let msg = format!("`{field}` belongs to psp = \"paygate\" configs");
                    return loc.err(at, &format!("method[{i}].{field}"), msg);
                }
            }
            let Some(key) = &m.public_key else {
                return missing("public_key", "the account's public key");
            };
            let Some(private) = m.private_key.clone() else {
                return missing("private_key", "a reference to the account's private key");
            };
            Ok(PspAccount {
                public_key: key.get_ref().clone(),
                private_key: private,
                api_host: m.api_host.clone(),
                extra: AccountExtra::default(),
            })
        }
    }
}

fn smtp(s: RawSmtp, loc: &Locator<'_>) -> Result<Smtp, ConfigError> {
    for (name, v) in [("from", &s.from), ("to", &s.to)] {
        if !v.get_ref().contains('@') {
            return loc.err(v.span(), &format!("smtp.{name}"), "not an e-mail address");
        }
    }
    Ok(Smtp {
        host: s.host,
        port: s.port,
        user: s.user,
        password: s.password,
        from: s.from.into_inner(),
        to: s.to.into_inner(),
        starttls: s.starttls,
    })
}
