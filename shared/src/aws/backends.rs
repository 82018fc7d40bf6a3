//! What a Lambda function builds once per execution environment: configuration, DynamoDB
//! store, SQS queue (in INIT, with a warm-up call), and the [`App`] (at INIT, or on the first
//! invocation when its secrets need the extension).

use super::*;

/// What a function builds once in the INIT phase: the configuration, the SDK clients behind the
/// store and the queue, and the lease identity of this execution environment.
pub struct Backends {
    pub config: Arc<Config>,
    /// The configuration file's directory: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// Identity for poller leases: function name and log stream (one per execution environment).
    pub holder: String,
}

impl Backends {
    /// [`AwsEnv::from_env`], the shared SDK configuration built once
    /// ([`sdk_defaults`], which honours `AWS_ENDPOINT_URL`, region and credentials
    /// from the environment), then [`Backends::connect`].
    pub async fn from_env() -> Result<Backends, AwsError> {
        let env = AwsEnv::from_env()?;
        let sdk = sdk_defaults().load().await;
        Backends::connect(&env, &sdk).await
    }

    /// Loads the configuration `env` names, builds one DynamoDB and one SQS client from `sdk`,
    /// and makes one cheap DynamoDB read so the TLS handshake is paid in INIT, not by the first
    /// event (architecture.md §6b). A failed warm-up is logged, not fatal: the first event will
    /// tell.
    pub async fn connect(env: &AwsEnv, sdk: &aws_config::SdkConfig) -> Result<Backends, AwsError> {
        let config = Config::load(&env.config_path)?;
        let base_dir = env
            .config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), env.table.clone());
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), env.queue_url.clone());
        warm_up(&store).await;
        tracing::info!(
            tenant = %config.tenant.id,
            table = %env.table,
            config = %env.config_path.display(),
            "backends ready"
        );
        Ok(Backends {
            config: Arc::new(config),
            base_dir,
            store: Arc::new(store),
            queue: Arc::new(queue),
            holder: lease_holder(),
        })
    }

    /// Resolves the configuration's secrets (see [`resolve_config_secrets`]), builds the
    /// connectors and returns the [`App`].
    pub async fn app(&self, extension: &SecretsExtension) -> Result<App, AwsError> {
        let resolved = resolve_config_secrets(&self.config, &self.base_dir, extension).await?;
        let connectors = wiring::connectors(&resolved, &self.base_dir, &SecretRef::resolve_local)?;
        Ok(App {
            // The resolved copy: a webhook receiver that decrypts (Paygate) needs the keys.
            config: Arc::new(resolved),
            store: Arc::clone(&self.store),
            queue: Arc::clone(&self.queue),
            erps: connectors.erps,
            psp: connectors.psp,
            notifier: connectors.notifier,
            settings: Settings::default(),
            holder: self.holder.clone(),
        })
    }
}

/// How the INIT-phase warm-up call ended; every outcome lets the INIT go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmUp {
    /// The store answered: the connection (and its TLS session) is open.
    Done,
    /// The store answered with an error (logged; the first event will tell).
    Failed(String),
    /// No answer within the warm-up timeout.
    TimedOut,
}

/// A read of a key that never exists (like `/health`): opens the connection to DynamoDB.
/// Logs the outcome and returns it; never fails.
pub async fn warm_up(store: &dyn Store) -> WarmUp {
    let started = std::time::Instant::now();
    match tokio::time::timeout(
        WARM_UP_TIMEOUT,
        store.get("WARMUP", "PING", Utc::now().timestamp()),
    )
    .await
    {
        Ok(Ok(_)) => {
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "DynamoDB warm-up done"
            );
            WarmUp::Done
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "DynamoDB warm-up failed");
            WarmUp::Failed(e.to_string())
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = WARM_UP_TIMEOUT.as_millis() as u64,
                "DynamoDB warm-up timed out"
            );
            WarmUp::TimedOut
        }
    }
}

fn lease_holder() -> String {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "paybridge".into());
    match std::env::var("AWS_LAMBDA_LOG_STREAM_NAME") {
        Ok(stream) => format!("{name}/{stream}"),
        Err(_) => format!("{name}/pid-{}", std::process::id()),
    }
}

/// Builds the whole [`App`] from the environment in one go: [`Backends::from_env`], then
/// secrets through the extension. Fine where the extension already answers (or is not needed);
/// Lambda `main`s use [`LazyApp`] instead, because the extension does not serve during INIT.
pub async fn app_from_env() -> Result<App, AwsError> {
    let backends = Backends::from_env().await?;
    backends.app(&SecretsExtension::from_env()?).await
}

/// The [`App`] of one execution environment, built at most once: in INIT when the
/// configuration needs no extension secret, else on the first invocation. A failed build is
/// not cached: that invocation fails (SQS redelivers, API Gateway answers 5xx, the scheduler's
/// next tick comes) and the next one tries again.
pub struct LazyApp {
    backends: Backends,
    extension: SecretsExtension,
    app: OnceCell<Arc<App>>,
    #[cfg(feature = "http")]
    router: OnceCell<axum::Router>,
}

impl LazyApp {
    /// [`Backends::from_env`] and [`SecretsExtension::from_env`]; builds the [`App`] right away
    /// unless a secret must come from the extension.
    pub async fn from_env() -> Result<LazyApp, AwsError> {
        let lazy = LazyApp::new(Backends::from_env().await?, SecretsExtension::from_env()?);
        if needs_extension(&lazy.backends.config) {
            tracing::info!(
                "secrets come from the Parameters and Secrets extension: the app is built on the first invocation"
            );
        } else {
            lazy.get().await?;
        }
        Ok(lazy)
    }

    pub fn new(backends: Backends, extension: SecretsExtension) -> LazyApp {
        LazyApp {
            backends,
            extension,
            app: OnceCell::new(),
            #[cfg(feature = "http")]
            router: OnceCell::new(),
        }
    }

    /// The app, built on the first call.
    pub async fn get(&self) -> Result<Arc<App>, AwsError> {
        self.app
            .get_or_try_init(|| async {
                let app = self.backends.app(&self.extension).await?;
                tracing::info!(erp_connections = app.erps.len(), "app ready");
                Ok::<_, AwsError>(Arc::new(app))
            })
            .await
            .cloned()
    }

    /// The one HTTP router ([`crate::http::router`]) over the app, built on the first call.
    #[cfg(feature = "http")]
    pub async fn router(&self) -> Result<axum::Router, AwsError> {
        let app = self.get().await?;
        Ok(self
            .router
            .get_or_init(|| async { crate::http::router(app) })
            .await
            .clone())
    }
}

/// `aws_config::defaults(BehaviorVersion::latest())` with the HTTP client the SDK's
/// `default-https-client` feature would build for current behaviour versions (hyper 1 + rustls,
/// native roots, proxy from the environment: `aws-smithy-runtime`'s `default_https_client`),
/// but on ring instead of aws-lc: ring is the crypto provider of every other connection too
/// ([`crate::tls`]). Every SDK configuration of paybridge starts here; the caller adds region,
/// endpoint or credentials and `.load()`s it.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    let client = Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(client)
}
