//! Tests of the AWS entry-point support (no AWS needed: the extension is a local fake).

use super::*;
use crate::erp::memory::MemoryErp;
use crate::notify::LogNotifier;
use crate::psp::memory::MemoryPsp;
use crate::queue::sqlite::SqliteQueue;
use crate::store::sqlite::SqliteStore;
use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

const TOKEN: &str = "session-token-for-tests";

/// A stand-in for the Parameters and Secrets extension on a loopback port.
async fn fake_extension() -> Url {
    fn authorized(h: &HeaderMap) -> bool {
        h.get(EXTENSION_TOKEN_HEADER).and_then(|v| v.to_str().ok()) == Some(TOKEN)
    }
    async fn ssm(h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
        if !authorized(&h) {
            return (StatusCode::UNAUTHORIZED, "missing token").into_response();
        }
        if q.get("withDecryption").map(String::as_str) != Some("true") {
            return (StatusCode::BAD_REQUEST, "withDecryption").into_response();
        }
        match q.get("name").map(String::as_str) {
            Some("/paybridge/acme/unzer key") => Json(json!({
                "Parameter": {"Name": "/paybridge/acme/unzer key", "Type": "SecureString",
                              "Value": "s-priv-from-ssm", "Version": 3},
                "ResultMetadata": {}
            }))
            .into_response(),
            Some("/paybridge/flaky") => {
                (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
            }
            _ => (StatusCode::BAD_REQUEST, "ParameterNotFound").into_response(),
        }
    }
    async fn secrets(h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
        if !authorized(&h) {
            return (StatusCode::UNAUTHORIZED, "missing token").into_response();
        }
        match q.get("secretId").map(String::as_str) {
            Some("paybridge/smtp") => Json(json!({
                "ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:paybridge/smtp-AbCdEf",
                "Name": "paybridge/smtp", "SecretString": "smtp-pass-from-sm",
                "VersionId": "v1", "VersionStages": ["AWSCURRENT"]
            }))
            .into_response(),
            Some("paybridge/binary") => Json(json!({
                "Name": "paybridge/binary",
                "SecretBinary": base64::engine::general_purpose::STANDARD.encode("bin-secret")
            }))
            .into_response(),
            _ => (StatusCode::BAD_REQUEST, "ResourceNotFoundException").into_response(),
        }
    }
    let router = axum::Router::new()
        .route("/systemsmanager/parameters/get", get(ssm))
        .route("/secretsmanager/get", get(secrets));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    Url::parse(&format!("http://{addr}/")).expect("url")
}

async fn extension() -> SecretsExtension {
    SecretsExtension::new(fake_extension().await, Some(Secret::new(TOKEN))).expect("client")
}

#[tokio::test]
async fn extension_reads_ssm_parameters_and_secrets() {
    let ext = extension().await;
    let p = ext
        .ssm_parameter("/paybridge/acme/unzer key")
        .await
        .expect("ssm");
    assert_eq!(p.expose(), "s-priv-from-ssm");
    let s = ext.secret_value("paybridge/smtp").await.expect("secret");
    assert_eq!(s.expose(), "smtp-pass-from-sm");
    let b = ext.secret_value("paybridge/binary").await.expect("binary");
    assert_eq!(b.expose(), "bin-secret");
}

#[tokio::test]
async fn extension_errors_name_the_status_and_need_the_token() {
    let ext = extension().await;
    let e = ext.ssm_parameter("/paybridge/missing").await.unwrap_err();
    assert!(
        e.contains("HTTP 400") && e.contains("ParameterNotFound"),
        "{e}"
    );
    let e = ext.ssm_parameter("/paybridge/flaky").await.unwrap_err();
    assert!(e.contains("HTTP 503"), "retried, then reported: {e}");

    let no_token = SecretsExtension::new(fake_extension().await, None).expect("client");
    let e = no_token.secret_value("paybridge/smtp").await.unwrap_err();
    assert!(e.contains("HTTP 401"), "{e}");
    assert!(!format!("{no_token:?}").contains(TOKEN));
    assert!(
        !format!("{ext:?}").contains(TOKEN),
        "the token is not printed"
    );
}

#[tokio::test]
async fn unreachable_extension_is_an_error_not_a_hang() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let ext = SecretsExtension::new(
        Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url"),
        Some(Secret::new(TOKEN)),
    )
    .expect("client");
    let e = ext.ssm_parameter("/x").await.unwrap_err();
    assert!(e.contains("not reachable"), "{e}");
}

const AWS_CONFIG: &str = r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-1"
private_key = "ssm:/paybridge/acme/unzer key"

[[method]]
erp = "main"
mandant = "02"
erp_method = "CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-2"
private_key = "ssm:/paybridge/acme/unzer key"

[[method]]
erp = "main"
mandant = "03"
erp_method = "CARD"
psp = "unzer"
active = false
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-3"
private_key = "ssm:/paybridge/not-there"

[smtp]
host = "smtp.example.com"
port = 587
user = "paybridge"
password = "secretsmanager:paybridge/smtp"
from = "paybridge@example.com"
to = "ops@example.com"
"#;

#[tokio::test]
async fn config_secrets_are_resolved_into_a_copy() {
    let config = Config::parse(AWS_CONFIG, "aws.toml").expect("config");
    assert!(needs_extension(&config));
    let ext = extension().await;
    let resolved = resolve_config_secrets(&config, Path::new("/var/task"), &ext)
        .await
        .expect("resolved");
    let key = |i: usize| match &resolved.methods[i].account.private_key {
        SecretRef::Plain(s) => s.expose().to_string(),
        other => panic!("not resolved: {other:?}"),
    };
    assert_eq!(key(0), "s-priv-from-ssm");
    assert_eq!(key(1), "s-priv-from-ssm");
    assert_eq!(
        resolved.methods[2].account.private_key,
        SecretRef::Ssm("/paybridge/not-there".into()),
        "inactive configs are left alone"
    );
    match resolved.smtp.as_ref().and_then(|s| s.password.as_ref()) {
        Some(SecretRef::Plain(s)) => assert_eq!(s.expose(), "smtp-pass-from-sm"),
        other => panic!("smtp password not resolved: {other:?}"),
    }
    assert!(!needs_extension(&resolved));
    let printed = format!("{resolved:?}");
    assert!(
        !printed.contains("s-priv-from-ssm") && !printed.contains("smtp-pass"),
        "{printed}"
    );
    // The original keeps its references.
    assert_eq!(
        config.methods[0].account.private_key,
        SecretRef::Ssm("/paybridge/acme/unzer key".into())
    );
}

#[tokio::test]
async fn a_missing_secret_names_its_use_and_reference() {
    let text = AWS_CONFIG.replace("/paybridge/acme/unzer key", "/paybridge/gone");
    let config = Config::parse(&text, "aws.toml").expect("config");
    let e = resolve_config_secrets(&config, Path::new("/"), &extension().await)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("method main/01/CARD private_key"), "{e}");
    assert!(e.contains("ssm:/paybridge/gone"), "{e}");
    assert!(e.contains("HTTP 400"), "{e}");
}

#[tokio::test]
async fn local_references_need_no_extension_and_files_are_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("key.txt"), "s-priv-from-file\n").expect("write");
    let text = AWS_CONFIG
        .replace("\"ssm:/paybridge/acme/unzer key\"", "\"file:key.txt\"")
        .replace("\"secretsmanager:paybridge/smtp\"", "\"plain:pw\"");
    let config = Config::parse(&text, "aws.toml").expect("config");
    assert!(
        !needs_extension(&config),
        "only the inactive config uses ssm:"
    );
    // An extension nobody listens on: it must not be asked.
    let ext = SecretsExtension::new(Url::parse("http://127.0.0.1:9/").expect("url"), None)
        .expect("client");
    let resolved = resolve_config_secrets(&config, dir.path(), &ext)
        .await
        .expect("resolved");
    assert_eq!(
        resolved.methods[0].account.private_key,
        SecretRef::Plain(Secret::new("s-priv-from-file"))
    );
}

#[test]
fn environment_names_what_is_missing() {
    let full = |name: &str| match name {
        ENV_CONFIG => Some("/var/task/paybridge.toml".to_string()),
        ENV_TABLE => Some("paybridge".to_string()),
        ENV_QUEUE_URL => Some("https://sqs.eu-central-1.amazonaws.com/1/jobs".to_string()),
        _ => None,
    };
    let env = AwsEnv::from_lookup(full).expect("env");
    assert_eq!(env.config_path, PathBuf::from("/var/task/paybridge.toml"));
    assert_eq!(env.table, "paybridge");
    let e = AwsEnv::from_lookup(|n| {
        if n == ENV_TABLE {
            Some(" ".into())
        } else {
            full(n)
        }
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable PAYBRIDGE_TABLE is not set"
    );
}

#[test]
fn schedule_triggers_are_told_apart() {
    let rule = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "eu-central-1",
        "resources": ["arn:aws:events:eu-central-1:123456789012:rule/poll"], "detail": {}
    });
    match ScheduleTrigger::from_event(&rule) {
        ScheduleTrigger::Rule { id, time } => {
            assert_eq!(id.as_deref(), Some("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"));
            assert_eq!(
                time.map(|t| t.to_rfc3339()).as_deref(),
                Some("2026-11-23T10:00:00+00:00")
            );
        }
        other => panic!("{other:?}"),
    }
    let scheduler = json!({
        "source": "paybridge.schedule", "scheduled_time": "2026-11-23T10:05:00Z",
        "execution_id": "exec-1", "attempt": "1"
    });
    assert_eq!(
        ScheduleTrigger::from_event(&scheduler),
        ScheduleTrigger::Scheduler {
            scheduled_time: Some("2026-11-23T10:05:00Z".into()),
            execution_id: Some("exec-1".into()),
            attempt: Some("1".into()),
        }
    );
    assert!(matches!(
        ScheduleTrigger::from_event(&Value::Null),
        ScheduleTrigger::Scheduler {
            scheduled_time: None,
            ..
        }
    ));
}

fn sqlite_app() -> App {
    let config = Config::parse(
        &AWS_CONFIG.replace("ssm:/paybridge/acme/unzer key", "plain:k"),
        "t.toml",
    )
    .expect("config");
    let mut erps: HashMap<String, Arc<dyn crate::erp::Erp>> = HashMap::new();
    erps.insert("main".into(), Arc::new(MemoryErp::new()));
    App {
        config: Arc::new(config),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(5).expect("queue")),
        erps,
        psp: Arc::new(MemoryPsp::new()),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "test".into(),
    }
}

#[tokio::test]
async fn records_without_id_or_body_fail_the_way_lambda_expects() {
    let app = sqlite_app();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "no-body", "receiptHandle": "r1", "attributes": {}, "messageAttributes": {}},
        {"receiptHandle": "r2", "body": "{\"job\":\"nope\"}", "attributes": {}, "messageAttributes": {}},
        {"messageId": "ok", "receiptHandle": "r3", "attributes": {}, "messageAttributes": {},
         "body": "{\"job\":\"evaluate\",\"order_pk\":\"T#acme#O#main#1\"}"}
    ]}))
    .expect("event");
    let response = handle_sqs_batch(&app, event, Utc::now()).await;
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["no-body", ""], "an empty id fails the whole batch");
}

#[tokio::test]
async fn a_poll_is_a_poll_cycle() {
    let app = sqlite_app();
    let report = handle_schedule(&app, Utc::now()).await.expect("poll");
    assert_eq!(report, PollReport::default());
}
