//! Unit tests of the sandbox's look-ups against a real record file.

use super::*;
use crate::domain::{Amount, Currency, MerchantId, PaymentId};

fn charge_request() -> ChargeRequest {
    let payment_id = PaymentId::new();
    ChargeRequest {
        idempotency_key: format!("{payment_id}-1"),
        payment_id,
        attempt_number: 1,
        merchant_id: MerchantId::new("merchant_1"),
        order_id: "order_1".to_string(),
        customer_id: "cus_1".to_string(),
        amount: Amount::new(1500).expect("valid amount"),
        currency: Currency::parse("eur").expect("known currency"),
        payment_method: "pm_card_visa".to_string(),
        description: None,
    }
}

#[tokio::test]
async fn lookup_reference_finds_a_charge_by_its_id() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let record = SandboxRecord::open(&dir.path().join("sandbox.db"))
        .await
        .expect("record");
    let sandbox_a = SandboxProvider::new(
        "sandbox_a",
        record.clone(),
        SandboxFaults::default(),
        10_000,
    );
    let sandbox_b = SandboxProvider::new("sandbox_b", record, SandboxFaults::default(), 10_000);
    let response = sandbox_a.charge(&charge_request()).await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    let id = response.provider_payment_id.expect("a charge id");

    let found = sandbox_a.lookup_reference(&id).await.expect("look-up");
    assert_eq!(
        found,
        LookupResult::Charged {
            provider_payment_id: id.clone(),
            amount: 1500,
            currency: "eur".to_string(),
        }
    );
    let missing = sandbox_a
        .lookup_reference("ch_unknown")
        .await
        .expect("look-up");
    assert_eq!(missing, LookupResult::NotFound);
    let elsewhere = sandbox_b.lookup_reference(&id).await.expect("look-up");
    assert_eq!(
        elsewhere,
        LookupResult::NotFound,
        "another provider's charge"
    );
}
