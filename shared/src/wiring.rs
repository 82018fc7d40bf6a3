//! Builds the connectors of a configuration once per process: one ERP client per active
//! connection, one PSP router over the PSP kinds in use, the notifier. Shared by every entry
//! point (`paybridge serve`, the Lambda functions), so a configuration means the same thing
//! wherever it runs. Secrets are resolved through the resolver the entry point passes in
//! (local: env/file/plain; Lambda: also `ssm:` / `secretsmanager:`).

use crate::config::{Config, ErpKind, PspKind, Secret, SecretRef};
use crate::erp::Erp;
use crate::erp::memory::load_fixtures_into;
use crate::erp::pixi::PixiErp;
use crate::notify::email::EmailNotifier;
use crate::notify::{LogNotifier, Notifier};
use crate::psp::memory::MemoryPsp;
use crate::psp::unzer::UnzerPsp;
use crate::psp::{Psp, PspRouter};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Why the connectors could not be built. Messages name the configuration entry, never a
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("erp {conn:?}: {message}")]
    Erp { conn: String, message: String },
    #[error("unzer: {0}")]
    Unzer(String),
    #[error("smtp: {0}")]
    Smtp(String),
}

/// The connectors of one configuration.
pub struct Connectors {
    pub erps: HashMap<String, Arc<dyn Erp>>,
    pub psp: Arc<dyn Psp>,
    pub notifier: Arc<dyn Notifier>,
}

/// Builds the connectors. `base_dir` anchors relative fixture paths; `resolve` turns secret
/// references into secrets.
pub fn connectors(
    config: &Config,
    base_dir: &Path,
    resolve: &(dyn Fn(&SecretRef) -> Result<Secret, String> + Sync),
) -> Result<Connectors, WiringError> {
    let memory_psp = MemoryPsp::new();
    let mut any_memory = false;
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    for conn in config.erp.iter().filter(|c| c.active) {
        let err = |message: String| WiringError::Erp {
            conn: conn.id.clone(),
            message,
        };
        let erp: Arc<dyn Erp> = match conn.kind {
            ErpKind::Pixi => Arc::new(
                PixiErp::for_connection_with(config, &conn.id, resolve)
                    .map_err(|e| err(e.to_string()))?,
            ),
            ErpKind::Memory => {
                let path = conn
                    .fixtures
                    .as_ref()
                    .ok_or_else(|| err("fixtures missing".into()))?;
                any_memory = true;
                Arc::new(load_fixtures_into(&base_dir.join(path), &memory_psp).map_err(err)?)
            }
        };
        erps.insert(conn.id.clone(), erp);
    }
    let active = |kind: PspKind| {
        config.methods.iter().any(|m| {
            m.active && m.psp == kind && config.erp.iter().any(|c| c.id == m.erp && c.active)
        })
    };
    let unzer: Option<Arc<dyn Psp>> = if active(PspKind::Unzer) {
        let mut keys = HashMap::new();
        for m in config
            .methods
            .iter()
            .filter(|m| m.active && m.psp == PspKind::Unzer)
        {
            let secret = resolve(&m.account.private_key).map_err(|e| {
                WiringError::Unzer(format!("{}/{}/{}: {e}", m.erp, m.mandant, m.erp_method))
            })?;
            keys.insert(m.account.public_key.clone(), secret);
        }
        Some(Arc::new(
            UnzerPsp::new(keys, Default::default())
                .map_err(|e| WiringError::Unzer(e.to_string()))?,
        ))
    } else {
        None
    };
    let mut router = PspRouter::default();
    if let Some(u) = unzer {
        router = router.with(PspKind::Unzer, u);
    }
    if any_memory {
        router = router.with(PspKind::Memory, Arc::new(memory_psp));
    }
    let psp = Arc::new(router);
    let notifier: Arc<dyn Notifier> = match &config.smtp {
        Some(smtp) => Arc::new(
            EmailNotifier::new(smtp, config.tenant.id.clone())
                .map_err(|e| WiringError::Smtp(e.to_string()))?,
        ),
        None => Arc::new(LogNotifier),
    };
    Ok(Connectors {
        erps,
        psp,
        notifier,
    })
}
