//! The record's fields (fee, refunded amount, status), its migration in
//! place, the hooks, settlement pages and `pm_card_async` confirmations.

use super::*;
use crate::domain::Fee;
use std::time::Duration;

/// How long a test waits for a webhook that should come.
const WEBHOOK_WAIT_MS: u64 = 10_000;

fn usd_fees() -> BTreeMap<String, Fee> {
    BTreeMap::from([(
        "usd".to_string(),
        Fee {
            fixed: 30,
            percent_bps: 290,
        },
    )])
}

fn request(amount: i64, currency: &str, payment_method: &str) -> ChargeRequest {
    ChargeRequest {
        amount: Amount::new(amount).expect("valid amount"),
        currency: Currency::parse(currency).expect("known currency"),
        payment_method: payment_method.to_string(),
        ..charge_request()
    }
}

fn refund(charge_id: &str, amount: i64, key: &str) -> RefundRequest {
    RefundRequest {
        provider_payment_id: charge_id.to_string(),
        amount: Amount::new(amount).expect("valid amount"),
        currency: Currency::parse("usd").expect("known currency"),
        idempotency_key: key.to_string(),
        reason: None,
    }
}

async fn charge_of(sandbox: &SandboxProvider, id: &str) -> SandboxCharge {
    sandbox
        .record
        .find_by_id(&sandbox.name, id)
        .await
        .expect("read")
        .expect("the charge exists")
}

#[tokio::test]
async fn charges_record_their_fee_and_refunds_keep_status_and_total() {
    let options = SandboxOptions {
        fees: usd_fees(),
        ..SandboxOptions::default()
    };
    let (_dir, sandbox) = sandbox("sandbox_a", options).await;
    let usd = sandbox.charge(&request(1_000, "usd", "pm_card_visa")).await;
    let id = usd.provider_payment_id.expect("charged");
    let eur = sandbox.charge(&request(1_000, "eur", "pm_card_visa")).await;
    let eur_id = eur.provider_payment_id.expect("charged");
    assert_eq!(
        charge_of(&sandbox, &id).await.fee,
        59,
        "30 + 2.90 % of 1000"
    );
    assert_eq!(
        charge_of(&sandbox, &eur_id).await.fee,
        0,
        "no eur fee, no *"
    );

    let first = sandbox.refund(&refund(&id, 400, "re_key_1")).await;
    assert_eq!(first.status, RefundStatus::Succeeded);
    let again = sandbox.refund(&refund(&id, 400, "re_key_1")).await;
    assert_eq!(again.provider_refund_id, first.provider_refund_id);
    let charge = charge_of(&sandbox, &id).await;
    assert_eq!(
        (charge.amount_refunded, charge.status.as_str()),
        (400, "partially_refunded"),
        "a repeated key refunds once"
    );
    let too_much = sandbox.refund(&refund(&id, 601, "re_key_2")).await;
    assert_eq!(too_much.status, RefundStatus::Failed);
    assert_eq!(charge_of(&sandbox, &id).await.amount_refunded, 400);
    let rest = sandbox.refund(&refund(&id, 600, "re_key_3")).await;
    assert_eq!(rest.status, RefundStatus::Succeeded);
    let charge = charge_of(&sandbox, &id).await;
    assert_eq!(
        (charge.amount_refunded, charge.status.as_str()),
        (1_000, "refunded")
    );
}

/// A record file written before charges had `fee` and `amount_refunded`
/// gains them at open, with the refunds it held counted.
#[tokio::test]
async fn an_older_record_is_migrated_in_place() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sandbox.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE sandbox_charges (id TEXT PRIMARY KEY, provider TEXT NOT NULL,
                idempotency_key TEXT NOT NULL, merchant_id TEXT NOT NULL, order_id TEXT NOT NULL,
                customer_id TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
                payment_method TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
                UNIQUE (provider, idempotency_key));
             CREATE TABLE sandbox_refunds (id TEXT PRIMARY KEY, provider TEXT NOT NULL,
                idempotency_key TEXT NOT NULL, charge_id TEXT NOT NULL, amount INTEGER NOT NULL,
                currency TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (provider, idempotency_key));
             INSERT INTO sandbox_charges VALUES
                ('ch_old', 'sandbox_a', 'pay_1-1', 'm', 'o1', 'c', 1000, 'usd', 'pm_card_visa',
                 'succeeded', '2024-01-01T00:00:00.000000Z'),
                ('ch_whole', 'sandbox_a', 'pay_2-1', 'm', 'o2', 'c', 500, 'usd', 'pm_card_visa',
                 'succeeded', '2024-01-01T00:00:01.000000Z');
             INSERT INTO sandbox_refunds VALUES
                ('re_1', 'sandbox_a', 'r1', 'ch_old', 300, 'usd', '2024-01-02T00:00:00.000000Z'),
                ('re_2', 'sandbox_a', 'r2', 'ch_whole', 500, 'usd', '2024-01-02T00:00:00.000000Z');",
        )
        .expect("an old record");
    }
    for _ in 0..2 {
        // Opening twice: the second open finds nothing to do.
        let record = SandboxRecord::open(&path).await.expect("migrated");
        let old = record.find_by_id("sandbox_a", "ch_old").await.unwrap();
        let old = old.expect("kept");
        assert_eq!(
            (old.fee, old.amount_refunded, old.status.as_str()),
            (0, 300, "partially_refunded")
        );
        let whole = record.find_by_id("sandbox_a", "ch_whole").await.unwrap();
        let whole = whole.expect("kept");
        assert_eq!(
            (whole.amount_refunded, whole.status.as_str()),
            (500, "refunded")
        );
        let sandbox = SandboxProvider::new("sandbox_a", record, SandboxOptions::default());
        let made = sandbox.charge(&request(700, "usd", "pm_card_visa")).await;
        assert_eq!(made.class, OutcomeClass::Succeeded, "{made:?}");
    }
}

#[tokio::test]
async fn hooks_change_forget_and_invent_charges() {
    let options = SandboxOptions {
        fees: usd_fees(),
        ..SandboxOptions::default()
    };
    let (_dir, sandbox) = sandbox("sandbox_a", options).await;
    let made = sandbox.charge(&request(1_000, "usd", "pm_card_visa")).await;
    let id = made.provider_payment_id.expect("charged");
    let update = ChargeUpdate {
        amount: Some(900),
        fee: Some(1),
        ..ChargeUpdate::default()
    };
    let changed = sandbox.update_charge(&id, &update).await.unwrap();
    let changed = changed.expect("found");
    assert_eq!((changed.amount, changed.fee), (900, 1));
    assert_eq!(
        (changed.currency.as_str(), changed.status.as_str()),
        ("usd", "succeeded")
    );
    assert_eq!(
        charge_of(&sandbox, &id).await,
        changed,
        "stored as answered"
    );
    assert_eq!(
        sandbox.update_charge("ch_none", &update).await.unwrap(),
        None
    );

    assert_eq!(
        sandbox.refund(&refund(&id, 100, "re_a")).await.status,
        RefundStatus::Succeeded
    );
    assert!(sandbox.delete_charge(&id).await.unwrap());
    assert!(!sandbox.delete_charge(&id).await.unwrap(), "already gone");
    assert_eq!(
        sandbox.lookup_reference(&id).await.unwrap(),
        LookupResult::NotFound
    );
    let refunds: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sandbox_refunds WHERE charge_id = ?")
            .bind(&id)
            .fetch_one(&sandbox.record.pool)
            .await
            .unwrap();
    assert_eq!(refunds, 0, "its refunds go with it");

    let invented = sandbox
        .create_charge(&UnsolicitedCharge {
            merchant_id: MerchantId::new("acme"),
            order_id: "order_x".into(),
            amount: Amount::new(2_000).unwrap(),
            currency: Currency::parse("usd").unwrap(),
        })
        .await
        .unwrap();
    assert!(invented.idempotency_key.starts_with("unsolicited_"));
    assert!(!invented.idempotency_key.contains('-'), "names no attempt");
    assert_eq!((invented.fee, invented.status.as_str()), (88, "succeeded"));
    assert_eq!(invented.payment_method, UNSOLICITED_PAYMENT_METHOD);
    assert!(matches!(
        sandbox.lookup_reference(&invented.id).await.unwrap(),
        LookupResult::Charged { amount: 2_000, .. }
    ));
}

#[tokio::test]
async fn settlements_keep_to_the_window_and_refuse_a_stranger_cursor() {
    let (_dir, sandbox) = sandbox("sandbox_a", SandboxOptions::default()).await;
    let before = Timestamp::from_datetime(chrono::Utc::now());
    let made = sandbox.charge(&request(1_000, "usd", "pm_card_visa")).await;
    let id = made.provider_payment_id.expect("charged");
    let after = Timestamp::from_datetime(chrono::Utc::now()).plus_millis(1);

    let page = sandbox.settlements(before, after, None).await.unwrap();
    assert_eq!(page.next, None);
    assert_eq!(page.records.len(), 1);
    let line = &page.records[0];
    assert_eq!(line.provider_payment_id, id);
    assert_eq!(
        line.idempotency_key.as_deref(),
        Some(charge_request_key(&sandbox, &id).await.as_str())
    );
    assert_eq!(
        (line.merchant_id.as_deref(), line.order_id.as_deref()),
        (Some("merchant_1"), Some("order_1"))
    );
    let empty = sandbox
        .settlements(after, after.plus_millis(1_000), None)
        .await
        .unwrap();
    assert_eq!(
        empty,
        SettlementPage::empty(),
        "[from, to) excludes the charge"
    );
    let stranger = sandbox
        .settlements(before, after, Some("ch_none".into()))
        .await;
    assert!(
        matches!(stranger, Err(ProviderError::Refused(_))),
        "{stranger:?}"
    );
}

async fn charge_request_key(sandbox: &SandboxProvider, id: &str) -> String {
    charge_of(sandbox, id).await.idempotency_key
}

#[tokio::test]
async fn async_charges_answer_pending_and_confirm_by_signed_webhook() {
    let options = SandboxOptions {
        async_confirm_ms: 20,
        ..SandboxOptions::default()
    };
    let (_dir, sandbox) = sandbox("sandbox_a", options).await;
    let (sink, mut delivered) = tokio::sync::mpsc::channel(4);
    sandbox.set_webhook_sink(sink);
    let asked = request(1_500, "eur", "pm_card_async");
    let answered = sandbox.charge(&asked).await;
    assert_eq!(answered.class, OutcomeClass::Unknown);
    assert_eq!(answered.code.as_deref(), Some(PENDING_CODE));
    let id = answered.provider_payment_id.expect("names the charge");
    assert_eq!(charge_of(&sandbox, &id).await.status, "succeeded");
    let charged = LookupResult::Charged {
        provider_payment_id: id.clone(),
        amount: 1_500,
        currency: "eur".into(),
    };
    assert_eq!(
        sandbox.lookup(&asked.idempotency_key).await.unwrap(),
        charged
    );
    assert_eq!(sandbox.lookup_reference(&id).await.unwrap(), charged);

    let wait = Duration::from_millis(WEBHOOK_WAIT_MS);
    let (provider, headers, body) = tokio::time::timeout(wait, delivered.recv())
        .await
        .expect("a webhook within the wait")
        .expect("the sink is open");
    assert_eq!(provider, "sandbox_a");
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let events = sandbox
        .verify_webhook(&headers, &body, now)
        .expect("signed");
    assert_eq!(
        events[0].kind,
        crate::providers::WebhookKind::ChargeSucceeded
    );
    assert_eq!(events[0].provider_payment_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        events[0].idempotency_key.as_deref(),
        Some(asked.idempotency_key.as_str())
    );

    let repeat = sandbox.charge(&asked).await;
    assert_eq!(
        (repeat.class, repeat.provider_payment_id.as_deref()),
        (OutcomeClass::Succeeded, Some(id.as_str())),
        "once confirmed, a repeat answers the charge"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(200), delivered.recv()).await;
    assert!(quiet.is_err(), "a repeat is confirmed once: {quiet:?}");
}

#[tokio::test]
async fn an_unconfirmed_async_charge_answers_pending_to_repeats_and_charged_to_look_ups() {
    let options = SandboxOptions {
        async_confirm_ms: 600_000,
        ..SandboxOptions::default()
    };
    let (_dir, sandbox) = sandbox("sandbox_a", options).await;
    let asked = request(1_500, "eur", "pm_card_async");
    let first = sandbox.charge(&asked).await;
    let id = first.provider_payment_id.clone().expect("names the charge");
    let repeat = sandbox.charge(&asked).await;
    assert_eq!(
        repeat.class,
        OutcomeClass::Unknown,
        "replayed while unconfirmed"
    );
    assert_eq!(
        (repeat.code, repeat.provider_payment_id),
        (first.code, first.provider_payment_id)
    );
    assert!(matches!(
        sandbox.lookup(&asked.idempotency_key).await,
        Ok(LookupResult::Charged { .. })
    ));
    assert!(matches!(
        sandbox.lookup_reference(&id).await,
        Ok(LookupResult::Charged { .. })
    ));
    let visa = request(1_500, "eur", "pm_card_visa");
    let made = sandbox.charge(&visa).await;
    let again = sandbox.charge(&visa).await;
    assert_eq!(
        (again.class, again.provider_payment_id),
        (OutcomeClass::Succeeded, made.provider_payment_id),
        "other tokens replay succeeded"
    );
}
