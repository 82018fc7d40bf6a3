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
//! - **A commit is one `TransactWriteItems`** with the single-item conditions ([`commit`]).
//! - Index entries that tie on `gsi_sk` come back ordered by (`pk`, `sk`) like in SQLite, which
//!   DynamoDB itself does not promise.

use super::{Item, Store, StoreError, Write};
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

    async fn commit(&self, writes: &[Write], now: i64) -> Result<Vec<u64>, StoreError> {
        self.transact(writes, now).await
    }
}

mod codec;
mod commit;
pub(crate) use codec::describe_sdk_error;
use codec::*;

#[cfg(test)]
mod tests;
