//! [`Store::commit`](super::Store::commit) on DynamoDB: one `TransactWriteItems` call with the
//! conditions of the single-item writes. The SDK retries a request whose answer got lost; the
//! `ClientRequestToken` makes such a retry of a transaction that already succeeded succeed
//! again instead of failing its own conditions (DynamoDB keeps the token for 10 minutes).

use super::codec::{
    build_error, conflict, encode, key_problem, number, sdk_error, string, write_token,
};
use super::{DynamoStore, EXPIRES_AT, PK, SK, VERSION};
use crate::store::{StoreError, Write, check_commit};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

/// DynamoDB's limit on a `ClientRequestToken`.
const MAX_TOKEN_CHARS: usize = 36;

impl DynamoStore {
    pub(super) async fn transact(
        &self,
        writes: &[Write],
        now: i64,
    ) -> Result<Vec<u64>, StoreError> {
        check_commit(writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let token = write_token();
        let mut items = Vec::with_capacity(writes.len());
        let mut versions = Vec::with_capacity(writes.len());
        for w in writes {
            let (pk, sk) = w.key();
            if let Some(problem) = key_problem(pk, sk) {
                // An item DynamoDB cannot hold cannot exist: as in `update` and `delete`.
                return Err(match w {
                    Write::Insert(_) => StoreError::Backend(problem),
                    _ => conflict(pk, sk),
                });
            }
            versions.push(w.version_after()?);
            items.push(self.action(w, now, &token)?);
        }
        let request_token: String = token.chars().take(MAX_TOKEN_CHARS).collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token)
            .send()
            .await;
        match result {
            Ok(_) => Ok(versions),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
                    // One reason per action, in order; "None" for those that were fine.
                    let failed = t
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    match failed.and_then(|i| writes.get(i)) {
                        Some(w) => {
                            let (pk, sk) = w.key();
                            Err(conflict(pk, sk))
                        }
                        None => Err(sdk_error("TransactWriteItems", &e)),
                    }
                }
                _ => Err(sdk_error("TransactWriteItems", &e)),
            },
        }
    }

    /// One write as a transaction action with its condition.
    fn action(&self, w: &Write, now: i64, token: &str) -> Result<TransactWriteItem, StoreError> {
        let action = TransactWriteItem::builder();
        Ok(match w {
            Write::Insert(item) => action.put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(item, 1, token)?))
                    .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#exp", EXPIRES_AT)
                    .expression_attribute_values(":now", number(now))
                    .build()
                    .map_err(build_error)?,
            ),
            Write::Update(item) => action.put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(item, w.version_after()?, token)?))
                    .condition_expression("#v = :v")
                    .expression_attribute_names("#v", VERSION)
                    .expression_attribute_values(":v", number(item.version))
                    .build()
                    .map_err(build_error)?,
            ),
            Write::Delete { pk, sk, version } => action.delete(
                Delete::builder()
                    .table_name(&self.table)
                    .key(PK, string(pk))
                    .key(SK, string(sk))
                    .condition_expression("#v = :v")
                    .expression_attribute_names("#v", VERSION)
                    .expression_attribute_values(":v", number(*version))
                    .build()
                    .map_err(build_error)?,
            ),
        }
        .build())
    }
}
