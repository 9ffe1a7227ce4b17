//! Embedding the engine in a host application.
//!
//! The host owns the runtime (`#[tokio::main]` here) and knows nothing of
//! actix: `Engine::start` runs the engine on its own thread and returns a
//! `Send + Sync + Clone` handle whose methods are plain async functions.
//!
//! Run it with `cargo run --release --example embedded` (the release
//! profile `payments serve` was built with, so nothing is compiled twice).
//! It uses the default configuration (sandbox providers, SQLite) in a data
//! directory of its own, `./data/embedded-example/`, so it never shares a
//! running server's files; set `PAYMENTS_DATA_DIR` to put them elsewhere.
//! It prints:
//!
//! ```text
//! payment pay_… for order-… is succeeded via sandbox_a
//! 6 audit events
//! ```

use payments::domain::{Amount, Currency, MerchantId};
use payments::{Config, Engine, PaymentRequest};
use std::collections::BTreeMap;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config {
        data_dir: "data/embedded-example".into(),
        ..Config::default()
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    let engine = Engine::start(config).await?;

    let merchant = MerchantId::new("default");
    let order_id = format!("order-{}", std::process::id());
    let request = PaymentRequest {
        amount: Amount::new(2_500)?,
        currency: Currency::parse("EUR").ok_or("unknown currency")?,
        customer_id: "cus_embedded".into(),
        order_id: order_id.clone(),
        payment_method: "pm_card_visa".into(),
        description: Some("charged from an embedding host".into()),
        metadata: BTreeMap::new(),
        provider: None,
    };

    // The handle is cheap to clone and can move into any task of the host.
    let handle = engine.clone();
    let key = format!("embedded-{order_id}");
    let created =
        tokio::spawn(async move { handle.create_payment(&merchant, &key, request).await })
            .await??;
    println!(
        "payment {} for {} is {} via {}",
        created.payment.id,
        created.payment.order_id,
        created.payment.status,
        created.payment.provider.as_deref().unwrap_or("-"),
    );

    // Reads go through the same handle.
    let events = engine
        .payment_events(&MerchantId::new("default"), created.payment.id)
        .await?;
    println!("{} audit events", events.len());

    engine.shutdown().await;
    Ok(())
}
