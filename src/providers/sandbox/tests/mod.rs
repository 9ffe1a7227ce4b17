//! Unit tests of the sandbox against a real record file: look-ups and
//! listings here, webhooks in `webhooks`, the record's fields, hooks,
//! settlements and `pm_card_async` in `record`.

mod record;
mod webhooks;

use super::*;
use crate::domain::{Amount, Currency, MerchantId, PaymentId};

/// A sandbox with default options on a fresh record file (kept alive by the
/// returned directory).
async fn sandbox(name: &str, options: SandboxOptions) -> (tempfile::TempDir, SandboxProvider) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let record = SandboxRecord::open(&dir.path().join("sandbox.db"))
        .await
        .expect("record");
    (dir, SandboxProvider::new(name, record, options))
}

pub(super) fn charge_request() -> ChargeRequest {
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
    let sandbox_a = SandboxProvider::new("sandbox_a", record.clone(), SandboxOptions::default());
    let sandbox_b = SandboxProvider::new("sandbox_b", record, SandboxOptions::default());
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

#[tokio::test]
async fn pages_walk_charges_newest_first_per_merchant() {
    let (_dir, sandbox) = sandbox("sandbox_a", SandboxOptions::default()).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let mut request = charge_request();
        request.merchant_id = MerchantId::new(if i % 2 == 0 { "even" } else { "odd" });
        let response = sandbox.charge(&request).await;
        made.push((i, response.provider_payment_id.expect("a charge id")));
    }
    made.reverse();
    let page = |merchant: Option<&str>, starting_after: Option<&str>, limit| ChargeFilter {
        merchant_id: merchant.map(str::to_string),
        order_id: None,
        starting_after: starting_after.map(str::to_string),
        limit,
    };
    let ids = |charges: Vec<SandboxCharge>| -> Vec<String> {
        charges.into_iter().map(|charge| charge.id).collect()
    };
    let all: Vec<String> = made.iter().map(|(_, id)| id.clone()).collect();
    let first = ids(sandbox.charges(&page(None, None, 2)).await.unwrap());
    assert_eq!(first, all[..2]);
    let rest = ids(sandbox
        .charges(&page(None, Some(&first[1]), 10))
        .await
        .unwrap());
    assert_eq!(rest, all[2..]);
    let even: Vec<String> = made
        .iter()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        ids(sandbox
            .charges(&page(Some("even"), None, 10))
            .await
            .unwrap()),
        even
    );
    let odd_id = &made.iter().find(|(i, _)| i % 2 == 1).expect("an odd one").1;
    assert!(
        sandbox
            .charges(&page(Some("even"), Some(odd_id), 10))
            .await
            .unwrap()
            .is_empty(),
        "another merchant's charge is no cursor"
    );
}
