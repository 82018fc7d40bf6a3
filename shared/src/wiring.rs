//! The one builder of a configuration's connectors, used by every entry point (`paybridge
//! serve`, `demo`, `config check`, the bench and every Lambda function), so a configuration
//! means the same thing wherever it runs: one ERP client per active connection, one PSP router
//! over the PSP kinds in use, the notifier. Secrets are resolved through the resolver the entry
//! point passes in (local: env/file/plain with `file:` relative to the config; Lambda: also
//! `ssm:` / `secretsmanager:`, resolved once before).

use crate::config::{Config, ErpKind, PspKind, Secret, SecretRef};
use crate::erp::Erp;
use crate::erp::memory::load_fixtures_into;
#[cfg(feature = "pixi")]
use crate::erp::pixi::PixiErp;
#[cfg(feature = "email")]
use crate::notify::email::EmailNotifier;
use crate::notify::{LogNotifier, Notifier};
use crate::psp::memory::MemoryPsp;
#[cfg(feature = "paygate")]
use crate::psp::paygate::PaygatePsp;
#[cfg(feature = "unzer")]
use crate::psp::unzer::UnzerPsp;
use crate::psp::{Psp, PspRouter};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Why the connectors could not be built. Each names the configuration entry (so a caller
/// can point at its line), never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// `[[erp]]` number `index`; `key` is the field the problem is about.
    #[error("erp {conn:?}: {message}")]
    Erp {
        index: usize,
        conn: String,
        key: &'static str,
        message: String,
    },
    /// The connector of a PSP kind (its first active method config is the one to look at).
    #[error("{kind:?}: {message}")]
    Psp { kind: PspKind, message: String },
    #[error("smtp: {0}")]
    Smtp(String),
}

/// What a configuration is told when it names a connector this binary was built without (see
/// the cargo features of `paybridge-core`).
#[cfg(not(all(feature = "pixi", feature = "unzer", feature = "email")))]
const NOT_IN_BUILD: &str = "this binary is built without that connector";

/// The connectors of one configuration.
pub struct Connectors {
    pub erps: HashMap<String, Arc<dyn Erp>>,
    pub psp: Arc<dyn Psp>,
    pub notifier: Arc<dyn Notifier>,
}

/// A secret resolver of the entry point.
pub type Resolve<'r> = &'r (dyn Fn(&SecretRef) -> Result<Secret, String> + Sync);

/// Builds the connectors. `base_dir` anchors relative fixture paths; `resolve` turns secret
/// references into secrets.
pub fn connectors(
    config: &Config,
    base_dir: &Path,
    resolve: Resolve<'_>,
) -> Result<Connectors, WiringError> {
    let memory_psp = MemoryPsp::new();
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    for (index, conn) in config.erp.iter().enumerate().filter(|(_, c)| c.active) {
        let err = |key: &'static str, message: String| WiringError::Erp {
            index,
            conn: conn.id.clone(),
            key,
            message,
        };
        let erp: Arc<dyn Erp> = match conn.kind {
            #[cfg(not(feature = "pixi"))]
            ErpKind::Pixi => return Err(err("kind", NOT_IN_BUILD.into())),
            #[cfg(feature = "pixi")]
            ErpKind::Pixi => Arc::new(
                PixiErp::for_connection_with(config, &conn.id, resolve)
                    .map_err(|e| err("url", format!("cannot set up the pixi connector: {e}")))?,
            ),
            ErpKind::Memory => {
                let path = conn
                    .fixtures
                    .as_ref()
                    .ok_or_else(|| err("fixtures", "required for kind = \"memory\"".into()))?;
                let path = base_dir.join(path);
                let erp = load_fixtures_into(&path, &memory_psp)
                    .map_err(|m| err("fixtures", format!("cannot load the fixtures: {m}")))?;
                tracing::info!(connection = %conn.id, fixtures = %path.display(), "memory ERP loaded");
                Arc::new(erp)
            }
        };
        erps.insert(conn.id.clone(), erp);
    }
    let psp = Arc::new(psp_router(config, resolve, memory_psp)?);
    let notifier: Arc<dyn Notifier> = match &config.smtp {
        #[cfg(not(feature = "email"))]
        Some(_) => return Err(WiringError::Smtp(NOT_IN_BUILD.into())),
        #[cfg(feature = "email")]
        Some(smtp) => Arc::new(
            EmailNotifier::new(smtp, config.tenant.id.clone())
                .map_err(|e| WiringError::Smtp(format!("cannot set up e-mail: {e}")))?,
        ),
        None => Arc::new(LogNotifier),
    };
    Ok(Connectors {
        erps,
        psp,
        notifier,
    })
}

/// The registry of PSP connectors: one per kind some active method config uses.
fn psp_router(
    config: &Config,
    resolve: Resolve<'_>,
    memory: MemoryPsp,
) -> Result<PspRouter, WiringError> {
    let active = |kind: PspKind| {
        config.methods.iter().any(|m| {
            m.active && m.psp == kind && config.erp.iter().any(|c| c.id == m.erp && c.active)
        })
    };
    let mut router = PspRouter::default();
    #[cfg(not(feature = "unzer"))]
    let _no_secrets_needed = resolve;
    #[cfg(not(feature = "unzer"))]
    if active(PspKind::Unzer) {
        return Err(WiringError::Psp {
            kind: PspKind::Unzer,
            message: NOT_IN_BUILD.into(),
        });
    }
    #[cfg(feature = "unzer")]
    if active(PspKind::Unzer) {
        let unzer =
            UnzerPsp::for_config_resolved(config, Default::default(), resolve).map_err(|e| {
                WiringError::Psp {
                    kind: PspKind::Unzer,
                    message: format!("cannot set up the Unzer connector: {e}"),
                }
            })?;
        router = router.with(PspKind::Unzer, Arc::new(unzer));
    }
    #[cfg(not(feature = "paygate"))]
    if active(PspKind::Paygate) {
        return Err(WiringError::Psp {
            kind: PspKind::Paygate,
            message: "this binary is built without that connector".into(),
        });
    }
    #[cfg(feature = "paygate")]
    if active(PspKind::Paygate) {
        let paygate = PaygatePsp::for_config_resolved(config, Default::default(), resolve)
            .map_err(|e| WiringError::Psp {
                kind: PspKind::Paygate,
                message: format!("cannot set up the Paygate connector: {e}"),
            })?;
        router = router.with(PspKind::Paygate, Arc::new(paygate));
    }
    // The memory PSP holds the payments of the memory ERP connections' fixtures.
    if config
        .erp
        .iter()
        .any(|c| c.active && c.kind == ErpKind::Memory)
    {
        router = router.with(PspKind::Memory, Arc::new(memory));
    }
    Ok(router)
}
