//! The end-to-end scenario catalogue of `paybridge demo` (every flow of behaviour.md §3.1–§3.5)
//! on the AWS backends: the same app, connectors and simulators, with the DynamoDB store and
//! the SQS queue on moto instead of SQLite. Endpoint from `PAYBRIDGE_TEST_AWS_ENDPOINT`; under
//! `CI=true` a missing endpoint fails the test instead of skipping it.

use aws_config::BehaviorVersion;
use paybridge::demo::{self, Harness, Options};
use paybridge_core::queue::Queue;
use paybridge_core::queue::sqs::SqsQueue;
use paybridge_core::store::Store;
use paybridge_core::store::dynamo::DynamoStore;
use std::sync::Arc;

async fn aws_config(test: &str) -> Option<aws_config::SdkConfig> {
    let Ok(endpoint) = std::env::var("PAYBRIDGE_TEST_AWS_ENDPOINT") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: PAYBRIDGE_TEST_AWS_ENDPOINT is not set (start moto_server, see README)"
            );
        }
        eprintln!("{test}: PAYBRIDGE_TEST_AWS_ENDPOINT not set; skipped outside CI");
        return None;
    };
    let creds = aws_config::Region::new("eu-central-1");
    Some(
        aws_config::defaults(BehaviorVersion::latest())
            .region(creds)
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .load()
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_dynamo_sqs_every_flow_of_3_1_to_3_5_on_moto() {
    let Some(cfg) = aws_config("e2e_dynamo_sqs_every_flow_of_3_1_to_3_5_on_moto").await else {
        return;
    };
    let unique = format!(
        "pb-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    DynamoStore::create_table(&ddb, &unique)
        .await
        .expect("table");
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let (queue, _dlq) = SqsQueue::create(&sqs, &unique, 50).await.expect("queue");
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(ddb, unique.clone()));
    let queue: Arc<dyn Queue> = Arc::new(queue);

    let h = Harness::start_with(Options {
        backends: Some((store, queue)),
        ..Options::default()
    })
    .await
    .expect("harness");
    let outcomes = h.run(&demo::catalogue()).await.expect("scenarios");
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.expected != o.actual)
        .map(|o| {
            format!(
                "{}: expected {:?}, got {:?}",
                o.scenario.key, o.expected, o.actual
            )
        })
        .collect();
    assert!(outcomes.len() >= 30, "the whole catalogue ran");
    assert!(
        failed.is_empty(),
        "on DynamoDB + SQS:\n{}",
        failed.join("\n")
    );
    h.shutdown().await.expect("shutdown");
}
