//! DynamoDB attribute values to and from [`Item`]s, the limits checked before a call, and the
//! mapping of SDK errors to [`StoreError`].

use super::*;

pub(super) fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

pub(super) fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(super) fn string_attr<'a>(
    attrs: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Option<&'a str> {
    match attrs.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// Why DynamoDB cannot hold an item under this key, if it cannot.
pub(super) fn key_problem(pk: &str, sk: &str) -> Option<String> {
    let check = |what: &str, value: &str, max: usize| {
        if value.is_empty() {
            Some(format!("DynamoDB does not allow an empty {what}"))
        } else if value.len() > max {
            Some(format!(
                "{what} is {} bytes, over DynamoDB's limit of {max} bytes",
                value.len()
            ))
        } else {
            None
        }
    };
    check("partition key (pk)", pk, MAX_PARTITION_KEY_BYTES)
        .or_else(|| check("sort key (sk)", sk, MAX_SORT_KEY_BYTES))
}

/// The item as DynamoDB attributes, stored at `version` with write token `token`; refuses what
/// DynamoDB would refuse (bad index keys, over 400 KB) with a clear `Backend` error.
pub(super) fn encode(
    item: &Item,
    version: u64,
    token: &str,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let refuse = |problem: String| {
        StoreError::Backend(format!(
            "item {}/{} not written: {problem}",
            item.pk, item.sk
        ))
    };
    for (what, value, max) in [
        (
            "index partition key (gsi_pk)",
            &item.gsi_pk,
            MAX_PARTITION_KEY_BYTES,
        ),
        ("index sort key (gsi_sk)", &item.gsi_sk, MAX_SORT_KEY_BYTES),
    ] {
        match value.as_deref() {
            Some("") => return Err(refuse(format!("DynamoDB does not allow an empty {what}"))),
            Some(v) if v.len() > max => {
                return Err(refuse(format!(
                    "{what} is {} bytes, over DynamoDB's limit of {max} bytes",
                    v.len()
                )));
            }
            _ => {}
        }
    }
    let body = serde_json::to_string(&item.body).map_err(|e| refuse(format!("body: {e}")))?;
    let mut attrs = HashMap::from([
        (PK.to_owned(), string(&item.pk)),
        (SK.to_owned(), string(&item.sk)),
        (VERSION.to_owned(), number(version)),
        (BODY.to_owned(), AttributeValue::S(body)),
        (WRITE_TOKEN.to_owned(), string(token)),
    ]);
    if let Some(expires_at) = item.expires_at {
        attrs.insert(EXPIRES_AT.to_owned(), number(expires_at));
    }
    if let Some(gsi_pk) = &item.gsi_pk {
        attrs.insert(GSI_PK.to_owned(), string(gsi_pk));
    }
    if let Some(gsi_sk) = &item.gsi_sk {
        attrs.insert(GSI_SK.to_owned(), string(gsi_sk));
    }
    let size = item_size(&attrs);
    if size > MAX_ITEM_BYTES {
        return Err(refuse(format!(
            "it is {size} bytes, over DynamoDB's 400 KB item limit ({MAX_ITEM_BYTES} bytes); \
             keep large data in separate items"
        )));
    }
    Ok(attrs)
}

/// DynamoDB's size of an item of string and number attributes: UTF-8 bytes of every name and
/// string value; a number takes one byte per two significant digits plus one (at most 21).
pub(super) fn item_size(attrs: &HashMap<String, AttributeValue>) -> usize {
    attrs
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => {
                        let digits = n.bytes().filter(u8::is_ascii_digit).count();
                        (digits.div_ceil(2) + 1).min(21)
                    }
                    // Not written by this store; count generously.
                    _ => MAX_ITEM_BYTES,
                }
        })
        .sum()
}

/// Decodes a stored item, or `None` when it is expired at `now` (whatever else is in it).
pub(super) fn decode_live(
    attrs: &HashMap<String, AttributeValue>,
    now: i64,
) -> Result<Option<Item>, StoreError> {
    let pk = string_attr(attrs, PK).unwrap_or_default().to_owned();
    let sk = string_attr(attrs, SK).unwrap_or_default().to_owned();
    let corrupt = |message: String| StoreError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        message,
    };
    let optional_number = |name: &str| -> Result<Option<i64>, StoreError> {
        match attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(n)) => n
                .parse()
                .map(Some)
                .map_err(|_| corrupt(format!("{name} is not an integer: {n}"))),
            Some(_) => Err(corrupt(format!("{name} is not a number"))),
        }
    };
    let optional_string = |name: &str| -> Result<Option<String>, StoreError> {
        match attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(_) => Err(corrupt(format!("{name} is not a string"))),
        }
    };

    let expires_at = optional_number(EXPIRES_AT)?;
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    if pk.is_empty() || sk.is_empty() {
        return Err(corrupt("pk or sk missing or not a string".to_owned()));
    }
    let version = match attrs.get(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|_| corrupt(format!("version is not a non-negative integer: {n}")))?,
        _ => return Err(corrupt("version missing or not a number".to_owned())),
    };
    let body = match attrs.get(BODY) {
        Some(AttributeValue::S(text)) => {
            serde_json::from_str(text).map_err(|e| corrupt(format!("body is not JSON: {e}")))?
        }
        _ => return Err(corrupt("body missing or not a string".to_owned())),
    };
    Ok(Some(Item {
        version,
        body,
        expires_at,
        gsi_pk: optional_string(GSI_PK)?,
        gsi_sk: optional_string(GSI_SK)?,
        pk,
        sk,
    }))
}

/// A token no other write (of this or any other process) uses: a randomly keyed hash (std's
/// `RandomState` is seeded from the OS per process) of a counter and the clock, plus the counter.
pub(super) fn write_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}{nanos:x}-{n:x}", hasher.finish())
}

// ---------------------------------------------------------------------------------------------
// table setup and errors

pub(super) async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", &e))?;
        let active = out.table().is_some_and(|t| {
            t.table_status() == Some(&TableStatus::Active)
                && t.global_secondary_indexes()
                    .iter()
                    .all(|i| i.index_status() == Some(&IndexStatus::Active))
        });
        if active {
            return Ok(());
        }
        if started.elapsed() > CREATE_TIMEOUT {
            return Err(StoreError::Backend(format!(
                "DynamoDB table {table} is not active after {CREATE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) fn conflict(pk: &str, sk: &str) -> StoreError {
    StoreError::Conflict {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
    }
}

pub(super) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(format!("DynamoDB request could not be built: {e}"))
}

pub(super) fn sdk_error<E>(operation: &str, e: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError::Backend(describe_sdk_error("DynamoDB", operation, e))
}

/// A short, credential-free description of an SDK error: the service's error code and message,
/// or for transport failures the first part of the error chain. Shared with the SQS queue.
pub(crate) fn describe_sdk_error<E>(
    service: &str,
    operation: &str,
    e: &SdkError<E, HttpResponse>,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const MAX_DETAIL: usize = 300;
    let detail = match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let err = ctx.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                (None, _) => format!("unrecognised error response (HTTP {status})"),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        other => DisplayErrorContext(other).to_string(),
    };
    let mut detail = detail.replace('\n', " ");
    if detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    format!("{service} {operation} failed: {detail}")
}
