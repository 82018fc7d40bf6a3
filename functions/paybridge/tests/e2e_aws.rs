//! The end-to-end scenario catalogue of `paybridge demo` (every flow of behaviour.md §3.1–§3.5)
//! on the AWS backends: the same app, connectors and simulators, with the DynamoDB store and
//! the SQS queue on moto instead of SQLite. Endpoint from `PAYBRIDGE_TEST_AWS_ENDPOINT`; under
//! `CI=true` a missing endpoint fails the test instead of skipping it.

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
        paybridge_core::aws::sdk_defaults()
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

/// `paybridge aws-setup` creates the table and the queue as `serve` does (twice: it is
/// idempotent) and prints the queue's URL; `infra/measure-cold-start.sh` relies on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_setup_creates_table_and_queue_and_prints_the_url() {
    let Some(cfg) = aws_config("aws_setup_creates_table_and_queue_and_prints_the_url").await else {
        return;
    };
    let endpoint = std::env::var("PAYBRIDGE_TEST_AWS_ENDPOINT").expect("checked above");
    let unique = format!("pb-setup-{}", std::process::id());
    for round in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paybridge"))
            .args(["aws-setup", "--aws-endpoint", &endpoint])
            .args(["--table", &unique, "--queue-name", &unique])
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("paybridge runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.trim().starts_with("http") && stdout.trim().ends_with(&unique),
            "round {round}: prints the queue URL, got {stdout:?}"
        );
    }
    let table = aws_sdk_dynamodb::Client::new(&cfg)
        .describe_table()
        .table_name(&unique)
        .send()
        .await
        .expect("the table exists");
    let indexes: Vec<_> = table
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, ["gsi1"], "the store's index");
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let url = sqs
        .get_queue_url()
        .queue_name(&unique)
        .send()
        .await
        .expect("the queue exists");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url.queue_url().unwrap_or_default())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("attributes");
    let redrive = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
        .expect("a dead-letter queue");
    assert!(redrive.contains(&format!("{unique}-dlq")), "{redrive}");
}
