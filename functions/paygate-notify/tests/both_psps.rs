//! The function builds the app of a tenant that has Unzer *and* Paygate methods: every function
//! reads the same configuration, and building refuses an active method whose PSP connector the
//! binary lacks, so each webhook function links both connectors.

use paybridge_core::config::{Config, PspKind, SecretRef};
use paybridge_core::wiring;

const CONFIG: &str = r#"
[tenant]
id = "acme"

[[erp]]
id = "main"
kind = "memory"
fixtures = "orders.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "CTP_CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "shop-42"
encryption_key = "plain:blowfishPW01"
hmac_key = "plain:hmacPW-0123456789"
psp_method = "card"

[[method]]
erp = "main"
mandant = "01"
erp_method = "UNZ_CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-both"
private_key = "plain:s-priv-both"
"#;

#[test]
fn a_tenant_with_unzer_and_paygate_methods_builds_in_this_function() {
    let dir = std::env::temp_dir().join(format!("pb-both-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("orders.json"), r#"{"orders": [], "payments": []}"#).expect("fixtures");
    let config = Config::parse(CONFIG, "both.toml").expect("config");
    assert!(config.methods.iter().any(|m| m.psp == PspKind::Unzer));
    assert!(config.methods.iter().any(|m| m.psp == PspKind::Paygate));
    let built = wiring::connectors(&config, &dir, &SecretRef::resolve_local);
    assert!(built.is_ok(), "{:?}", built.err());
    assert!(paybridge_core::psp::webhook("paygate").is_some());
    assert!(paybridge_core::psp::webhook("unzer").is_some());
    std::fs::remove_dir_all(&dir).ok();
}
