//! The AWS [`Store`] backend: one DynamoDB table in the single-table design of architecture.md §4,
//! with exactly the semantics of the SQLite reference backend (both pass [`super::conformance`]).
//!
//! Table layout (see [`DynamoStore::create_table`]):
//!
//! | attribute | type | notes |
//! |---|---|---|
//! | `pk`, `sk` | S | table key (partition, sort) |
//! | `version` | N | optimistic concurrency; every conditional write checks it |
//! | `body` | S | the JSON document as text, so decimal strings and big integers survive exactly |
//! | `expires_at` | N | optional; the table's TTL attribute |
//! | `gsi_pk`, `gsi_sk` | S | optional; keys of the sparse index [`GSI_NAME`] (projection ALL) |
//! | `wt` | S | write token of the last write, see below; not part of [`Item`] |
//!
//! Why it is built the way it is:
//! - **TTL is filtered on read.** DynamoDB deletes expired items lazily (within days) and moto
//!   never does, so every read drops items with `expires_at <= now` itself, and `insert` may
//!   take over an expired key (`attribute_not_exists(pk) OR expires_at <= :now`).
//! - **Reads of the table are strongly consistent** (`ConsistentRead`); the index cannot be, so
//!   index reads may lag writes by a moment (the conformance suite allows for that).
//! - **Write tokens make SDK retries safe.** The SDK retries a request whose answer got lost
//!   (5xx, timeouts). For a conditional write that already succeeded, the retry fails its own
//!   condition and would be reported as a lost race. Every write therefore stores a fresh random
//!   token and asks for the old item on a failed condition (`ALL_OLD`): if the stored token is
//!   ours, the earlier attempt won and the write is reported as done. (`delete` cannot tell: a
//!   retried delete that had already succeeded reports `Conflict`.)
//! - **What DynamoDB cannot hold is caught before calling it**, with a clear error instead of an
//!   SDK `ValidationException`: items over 400 KB ([`MAX_ITEM_BYTES`]), empty key or index key
//!   strings, keys over 2048 (partition) / 1024 (sort) bytes. Reads of such keys find nothing,
//!   updates and deletes of them are `Conflict` (the item cannot exist).
//! - Index entries that tie on `gsi_sk` come back ordered by (`pk`, `sk`) like in SQLite, which
//!   DynamoDB itself does not promise.

use super::{Item, Store, StoreError};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, IndexStatus,
    KeySchemaElement, KeyType, Projection, ProjectionType, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the secondary index on (`gsi_pk`, `gsi_sk`).
pub const GSI_NAME: &str = "gsi1";

/// DynamoDB's item size limit (400 KB), counting attribute names and values.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// DynamoDB's limits for partition and sort key values (also for index keys).
const MAX_PARTITION_KEY_BYTES: usize = 2048;
const MAX_SORT_KEY_BYTES: usize = 1024;

/// Items per query page; a page is also capped by DynamoDB at 1 MB.
const MAX_PAGE: usize = 1000;

/// How long [`DynamoStore::create_table`] waits for a new table to become active.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "version";
const BODY: &str = "body";
const EXPIRES_AT: &str = "expires_at";
const GSI_PK: &str = "gsi_pk";
const GSI_SK: &str = "gsi_sk";
const WRITE_TOKEN: &str = "wt";

/// DynamoDB implementation of [`Store`]. Cloning is cheap (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on the existing `table` (created by the SAM template, or [`Self::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table this store works on.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates `table` with the layout this store expects, unless it exists, waits until it is
    /// active and turns on TTL on `expires_at`. Idempotent; for tests and local runs (deployed
    /// tables come from the SAM template). An existing table's layout is not checked.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_error)
        };
        let string_attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(GSI_NAME)
            .key_schema(key(GSI_PK, KeyType::Hash)?)
            .key_schema(key(GSI_SK, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build_error)?;
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr(PK)?)
            .attribute_definitions(string_attr(SK)?)
            .attribute_definitions(string_attr(GSI_PK)?)
            .attribute_definitions(string_attr(GSI_SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(index)
            .send()
            .await;
        if let Err(e) = created {
            let exists = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception());
            if !exists {
                return Err(sdk_error("CreateTable", &e));
            }
        }
        wait_until_active(client, table).await?;

        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTimeToLive", &e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            d.attribute_name() == Some(EXPIRES_AT)
                && matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if !enabled {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(EXPIRES_AT)
                        .build()
                        .map_err(build_error)?,
                )
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", &e))?;
        }
        Ok(())
    }

    /// The conditional put shared by `insert` and `update`. `Ok(true)`: written (possibly by an
    /// earlier attempt of this very call that the SDK retried); `Ok(false)`: the condition failed.
    async fn conditional_put(
        &self,
        attrs: HashMap<String, AttributeValue>,
        token: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (placeholder, name) in names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(*placeholder, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            // On a lost condition, the old item tells whether it holds this call's own write.
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(ccf)) => Ok(ccf
                    .item()
                    .is_some_and(|old| string_attr(old, WRITE_TOKEN) == Some(token))),
                _ => Err(sdk_error("PutItem", &e)),
            },
        }
    }

    /// Runs a query (table or index) page by page, decoding live items, until `done` says enough
    /// or the results end. `page_limit` gets the number of items found so far. The TTL filter
    /// is added here.
    async fn query_pages(
        &self,
        key: &KeyCondition<'_>,
        now: i64,
        mut page_limit: impl FnMut(usize) -> Option<i32>,
        mut done: impl FnMut(&[Item]) -> bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key.expression)
                .filter_expression("attribute_not_exists(#exp) OR #exp > :now")
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", number(now))
                .scan_index_forward(true)
                .set_limit(page_limit(items.len()))
                .set_exclusive_start_key(start.take());
            request = match key.index {
                Some(index) => request.index_name(index),
                None => request.consistent_read(true),
            };
            for (placeholder, name) in &key.names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            for (placeholder, value) in &key.values {
                request = request.expression_attribute_values(*placeholder, value.clone());
            }
            let page = request.send().await.map_err(|e| sdk_error("Query", &e))?;
            for attrs in page.items() {
                if let Some(item) = decode_live(attrs, now)? {
                    items.push(item);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() || done(&items) {
                return Ok(items);
            }
        }
    }
}

/// The key part of a query: which index (`None`: the table), the key condition expression and
/// its placeholders.
struct KeyCondition<'a> {
    index: Option<&'a str>,
    expression: &'a str,
    names: Vec<(&'a str, &'a str)>,
    values: Vec<(&'a str, AttributeValue)>,
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError> {
        if key_problem(pk, sk).is_some() {
            return Ok(None);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, string(pk))
            .key(SK, string(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &e))?;
        match out.item() {
            Some(attrs) => decode_live(attrs, now),
            None => Ok(None),
        }
    }

    async fn insert(&self, item: &Item, now: i64) -> Result<bool, StoreError> {
        if let Some(problem) = key_problem(&item.pk, &item.sk) {
            return Err(StoreError::Backend(problem));
        }
        let token = write_token();
        let attrs = encode(item, 1, &token)?;
        self.conditional_put(
            attrs,
            &token,
            "attribute_not_exists(#pk) OR #exp <= :now",
            &[("#pk", PK), ("#exp", EXPIRES_AT)],
            &[(":now", number(now))],
        )
        .await
    }

    async fn update(&self, item: &Item) -> Result<u64, StoreError> {
        if key_problem(&item.pk, &item.sk).is_some() {
            return Err(conflict(&item.pk, &item.sk));
        }
        let next = item.version.checked_add(1).ok_or_else(|| {
            StoreError::Backend(format!("version of {}/{} overflows", item.pk, item.sk))
        })?;
        let token = write_token();
        let attrs = encode(item, next, &token)?;
        // `version = :v` also fails when the item is absent: update never creates items.
        let written = self
            .conditional_put(
                attrs,
                &token,
                "#v = :v",
                &[("#v", VERSION)],
                &[(":v", number(item.version))],
            )
            .await?;
        if written {
            Ok(next)
        } else {
            Err(conflict(&item.pk, &item.sk))
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str, now: i64) -> Result<Vec<Item>, StoreError> {
        // No stored key is empty or longer than the limits, so nothing can match those.
        if pk.is_empty()
            || pk.len() > MAX_PARTITION_KEY_BYTES
            || sk_prefix.len() > MAX_SORT_KEY_BYTES
        {
            return Ok(Vec::new());
        }
        let mut values = vec![(":pk", string(pk))];
        let mut names = vec![("#pk", PK)];
        // begins_with with an empty string is rejected by DynamoDB; an empty prefix is "all".
        let condition = if sk_prefix.is_empty() {
            "#pk = :pk"
        } else {
            values.push((":prefix", string(sk_prefix)));
            names.push(("#sk", SK));
            "#pk = :pk AND begins_with(#sk, :prefix)"
        };
        let items = self
            .query_pages(
                &KeyCondition {
                    index: None,
                    expression: condition,
                    names,
                    values,
                },
                now,
                |_| None,
                |_| false,
            )
            .await?;
        // The key condition already guarantees this; keep the contract even for a lax emulator.
        Ok(items
            .into_iter()
            .filter(|i| i.pk == pk && i.sk.starts_with(sk_prefix))
            .collect())
    }

    async fn query_index(
        &self,
        gsi_pk: &str,
        gsi_sk_max: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Item>, StoreError> {
        if limit == 0 || gsi_pk.is_empty() || gsi_pk.len() > MAX_PARTITION_KEY_BYTES {
            return Ok(Vec::new());
        }
        // Nothing stored is <= "" (index keys cannot be empty).
        if gsi_sk_max == Some("") {
            return Ok(Vec::new());
        }
        let mut names = vec![("#gpk", GSI_PK)];
        let mut values = vec![(":gpk", string(gsi_pk))];
        // A bound longer than any storable key is checked in code only (DynamoDB would reject
        // the oversized value); every shorter bound goes into the key condition.
        let bound_in_key = gsi_sk_max.filter(|max| max.len() <= MAX_SORT_KEY_BYTES);
        let condition = match bound_in_key {
            Some(max) => {
                names.push(("#gsk", GSI_SK));
                values.push((":max", string(max)));
                "#gpk = :gpk AND #gsk <= :max"
            }
            None => "#gpk = :gpk",
        };
        // Expired items do not count towards `limit`, so keep paging until `limit` live items
        // are found, and then past every item that ties with the last one on `gsi_sk` (their
        // order among themselves is settled below, by table key).
        let in_index = |i: &Item| {
            i.gsi_pk.as_deref() == Some(gsi_pk)
                && i.gsi_sk
                    .as_deref()
                    .is_some_and(|s| gsi_sk_max.is_none_or(|max| s <= max))
        };
        let enough = |items: &[Item]| {
            let live: Vec<&Item> = items.iter().filter(|i| in_index(i)).collect();
            live.len() > limit && live[live.len() - 1].gsi_sk != live[limit - 1].gsi_sk
        };
        let page_limit = |have: usize| {
            let want = limit
                .saturating_add(1)
                .saturating_sub(have)
                .clamp(10, MAX_PAGE);
            i32::try_from(want).ok()
        };
        let mut items: Vec<Item> = self
            .query_pages(
                &KeyCondition {
                    index: Some(GSI_NAME),
                    expression: condition,
                    names,
                    values,
                },
                now,
                page_limit,
                enough,
            )
            .await?
            .into_iter()
            .filter(|i| in_index(i))
            .collect();
        items.sort_by(|a, b| (&a.gsi_sk, &a.pk, &a.sk).cmp(&(&b.gsi_sk, &b.pk, &b.sk)));
        items.truncate(limit);
        Ok(items)
    }

    async fn delete(&self, pk: &str, sk: &str, version: u64) -> Result<(), StoreError> {
        if key_problem(pk, sk).is_some() {
            return Err(conflict(pk, sk));
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, string(pk))
            .key(SK, string(sk))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", number(version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(conflict(pk, sk))
            }
            Err(e) => Err(sdk_error("DeleteItem", &e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// encoding

fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn string_attr<'a>(attrs: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    match attrs.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// Why DynamoDB cannot hold an item under this key, if it cannot.
fn key_problem(pk: &str, sk: &str) -> Option<String> {
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
fn encode(
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
fn item_size(attrs: &HashMap<String, AttributeValue>) -> usize {
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
fn decode_live(
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
fn write_token() -> String {
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

async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
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

fn conflict(pk: &str, sk: &str) -> StoreError {
    StoreError::Conflict {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
    }
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(format!("DynamoDB request could not be built: {e}"))
}

fn sdk_error<E>(operation: &str, e: &SdkError<E, HttpResponse>) -> StoreError
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

#[cfg(test)]
mod tests {
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
}
