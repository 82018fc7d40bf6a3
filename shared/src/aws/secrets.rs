//! Secret references resolved on AWS: `ssm:` / `secretsmanager:` through the Parameters and
//! Secrets Lambda Extension, and the one walk over every secret a configuration uses.

use super::*;

/// Client of the AWS Parameters and Secrets Lambda Extension, the layer that serves
/// `GET /systemsmanager/parameters/get?name=…&withDecryption=true` and
/// `GET /secretsmanager/get?secretId=…` on `localhost`, authenticated by the header
/// [`EXTENSION_TOKEN_HEADER`] carrying the function's `AWS_SESSION_TOKEN`. It caches answers
/// (default 300 s) and calls SSM / Secrets Manager with the function's own role, so the role
/// needs `ssm:GetParameter` / `secretsmanager:GetSecretValue` (and `kms:Decrypt` for
/// customer-managed keys). Only usable in the INVOKE phase (see the module docs).
#[derive(Clone)]
pub struct SecretsExtension {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
}

impl std::fmt::Debug for SecretsExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsExtension")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// GetParameter's answer, as the extension passes it on.
#[derive(Deserialize)]
struct SsmAnswer {
    #[serde(rename = "Parameter")]
    parameter: SsmParameter,
}

#[derive(Deserialize)]
struct SsmParameter {
    #[serde(rename = "Value")]
    value: String,
}

/// GetSecretValue's answer: a string secret, or a binary one (base64).
#[derive(Deserialize)]
struct SecretAnswer {
    #[serde(rename = "SecretString", default)]
    secret_string: Option<String>,
    #[serde(rename = "SecretBinary", default)]
    secret_binary: Option<String>,
}

impl SecretsExtension {
    /// The extension of this execution environment: `http://localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`
    /// (default 2773), token from `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<SecretsExtension, AwsError> {
        let port = match std::env::var(ENV_EXTENSION_PORT) {
            Ok(p) => p.trim().parse::<u16>().map_err(|e| AwsError::BadEnv {
                name: ENV_EXTENSION_PORT,
                message: e.to_string(),
            })?,
            Err(_) => DEFAULT_EXTENSION_PORT,
        };
        let base =
            Url::parse(&format!("http://localhost:{port}/")).map_err(|e| AwsError::BadEnv {
                name: ENV_EXTENSION_PORT,
                message: e.to_string(),
            })?;
        let token = std::env::var("AWS_SESSION_TOKEN").ok().map(Secret::new);
        SecretsExtension::new(base, token)
    }

    /// An extension client on `base` (tests point it at a fake).
    pub fn new(base: Url, token: Option<Secret>) -> Result<SecretsExtension, AwsError> {
        let http = crate::tls::http_client_builder()
            .no_proxy() // localhost: never through an HTTP(S)_PROXY
            .timeout(EXTENSION_TIMEOUT)
            .build()
            .map_err(|e| AwsError::Http(e.to_string()))?;
        Ok(SecretsExtension { http, base, token })
    }

    /// The (decrypted) value of an SSM parameter, e.g. `/paybridge/acme/unzer-private-key`.
    pub async fn ssm_parameter(&self, name: &str) -> Result<Secret, String> {
        let url = self.url(
            "systemsmanager/parameters/get",
            &[("name", name), ("withDecryption", "true")],
        )?;
        let answer: SsmAnswer = self.get_json(url).await?;
        Ok(Secret::new(answer.parameter.value))
    }

    /// The current value of a Secrets Manager secret (name or ARN). A binary secret must be
    /// UTF-8 text.
    pub async fn secret_value(&self, secret_id: &str) -> Result<Secret, String> {
        let url = self.url("secretsmanager/get", &[("secretId", secret_id)])?;
        let answer: SecretAnswer = self.get_json(url).await?;
        match (answer.secret_string, answer.secret_binary) {
            (Some(s), _) => Ok(Secret::new(s)),
            (None, Some(b)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|_| "SecretBinary is not valid base64".to_string())?;
                String::from_utf8(bytes)
                    .map(Secret::new)
                    .map_err(|_| "SecretBinary is not UTF-8 text".to_string())
            }
            (None, None) => Err("the answer has neither SecretString nor SecretBinary".into()),
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, String> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| format!("bad extension URL: {e}"))?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// GET with a few quick retries on connection errors, 429 and 5xx. Error texts carry the
    /// status and the start of an error body (never a success body: that holds the secret).
    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, String> {
        let mut last = String::new();
        for attempt in 0..=EXTENSION_RETRY_PAUSES.len() {
            if attempt > 0 {
                tokio::time::sleep(EXTENSION_RETRY_PAUSES[attempt - 1]).await;
            }
            let mut request = self.http.get(url.clone());
            if let Some(token) = &self.token {
                request = request.header(EXTENSION_TOKEN_HEADER, token.expose());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("extension not reachable: {}", without_url(&e));
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the extension's answer: {}", without_url(&e)))?;
                // serde's message could quote part of the body, i.e. of the secret: position only.
                return serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the extension's answer is not the expected JSON (line {}, column {})",
                        e.line(),
                        e.column()
                    )
                });
            }
            let body = response.text().await.unwrap_or_default();
            let snippet: String = body.chars().take(300).collect();
            last = format!(
                "the extension answered HTTP {}: {}",
                status.as_u16(),
                snippet.trim()
            );
            if !(status.is_server_error() || status.as_u16() == 429) {
                break;
            }
        }
        Err(last)
    }
}

/// A reqwest error without its URL (the query names the parameter; harmless, but noisy).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<extension>");
    }
    text
}

/// Whether a configuration uses `ssm:` or `secretsmanager:` references (in the parts that are
/// active), i.e. whether building its [`App`] must wait for the INVOKE phase.
pub fn needs_extension(config: &Config) -> bool {
    let mut copy = config.clone();
    secret_refs_mut(&mut copy)
        .iter()
        .any(|(_, r)| matches!(r, SecretRef::Ssm(_) | SecretRef::SecretsManager(_)))
}

/// The secret references the connectors of `config` will resolve, with what each is for.
fn secret_refs_mut(config: &mut Config) -> Vec<(String, &mut SecretRef)> {
    let mut refs = Vec::new();
    for conn in config.erp.iter_mut().filter(|c| c.active) {
        if let Some(r) = conn.password.as_mut() {
            refs.push((format!("erp {:?} password", conn.id), r));
        }
    }
    for m in config.methods.iter_mut().filter(|m| m.active) {
        let name = format!("method {}/{}/{}", m.erp, m.mandant, m.erp_method);
        let (key, mac) = if m.psp == PspKind::Paygate {
            ("encryption_key", "hmac_key")
        } else {
            ("private_key", "mac_key")
        };
        refs.push((format!("{name} {key}"), &mut m.account.private_key));
        if let Some(r) = m.account.extra.mac_key.as_mut() {
            refs.push((format!("{name} {mac}"), r));
        }
    }
    if let Some(smtp) = config.smtp.as_mut()
        && let Some(r) = smtp.password.as_mut()
    {
        refs.push(("smtp password".into(), r));
    }
    refs
}

/// Returns a copy of `config` in which every secret reference of an active connection, active
/// payment-method config and `[smtp]` is resolved and replaced by `plain:` (in memory only):
/// `ssm:` / `secretsmanager:` through `extension`, `env:` / `file:` locally, relative `file:`
/// paths against `base_dir` (the configuration's directory). Each distinct reference is fetched
/// once. The copy goes to [`wiring::connectors`], whose connectors then need no AWS access to
/// read a secret; the [`App`] keeps the original configuration with references only.
pub async fn resolve_config_secrets(
    config: &Config,
    base_dir: &Path,
    extension: &SecretsExtension,
) -> Result<Config, AwsError> {
    let mut cache: HashMap<String, Secret> = HashMap::new();
    let mut out = config.clone();
    for (what, reference) in secret_refs_mut(&mut out) {
        let secret = resolve_ref(reference, base_dir, extension, &mut cache)
            .await
            .map_err(|message| AwsError::Secret {
                what,
                reference: describe_ref(reference),
                message,
            })?;
        *reference = SecretRef::Plain(secret);
    }
    Ok(out)
}

async fn resolve_ref(
    reference: &SecretRef,
    base_dir: &Path,
    extension: &SecretsExtension,
    cache: &mut HashMap<String, Secret>,
) -> Result<Secret, String> {
    let key = describe_ref(reference);
    if let Some(s) = cache.get(&key) {
        return Ok(s.clone());
    }
    let secret = match reference {
        SecretRef::Ssm(name) => extension.ssm_parameter(name).await?,
        SecretRef::SecretsManager(id) => extension.secret_value(id).await?,
        SecretRef::File(p) if p.is_relative() => {
            SecretRef::File(base_dir.join(p)).resolve_local()?
        }
        other => other.resolve_local()?,
    };
    cache.insert(key, secret.clone());
    Ok(secret)
}

/// A reference as written in the configuration; `plain:` values are not repeated.
fn describe_ref(reference: &SecretRef) -> String {
    match reference {
        SecretRef::Env(n) => format!("env:{n}"),
        SecretRef::File(p) => format!("file:{}", p.display()),
        SecretRef::Plain(_) => "plain:***".into(),
        SecretRef::Ssm(n) => format!("ssm:{n}"),
        SecretRef::SecretsManager(n) => format!("secretsmanager:{n}"),
    }
}
