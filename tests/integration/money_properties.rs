//! Property test of the money invariants (issue 10; DESIGN §13.3, §13.8):
//! random sequences of payments (every sandbox token), refunds (partial,
//! full, concurrent, too large), wallet top-ups and wallet payments, run
//! through the embedded engine on SQLite and PostgreSQL, keep
//!
//! - every ledger transaction balanced per currency (a posting that is not
//!   cannot even be read back: `Posting::new` checks it), and the sum of all
//!   balances per currency zero;
//! - each payment's postings consistent with its status: a payment that
//!   captured has exactly one payment posting, one that did not has none,
//!   and every succeeded refund has one reversal;
//! - `amount_refunded` equal to the sum of its succeeded refunds, never more
//!   than the amount;
//! - every wallet at or above zero.

use crate::common::{block_on, postgres_url, Backend, TestDb};
use payments::domain::{Amount, Currency, MerchantId, PaymentStatus, PostingKind, RefundState};
use payments::messages::payment::RefundRequest;
use payments::store::ledger::{BalanceFilter, TransactionFilter};
use payments::{Config, Engine, EngineHandle, PaymentRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use std::collections::{BTreeMap, HashMap};

/// Sequences tried per backend, and steps per sequence: each sequence
/// starts an engine of its own, so these stay small.
const CASES: u32 = 10;
const MAX_STEPS: usize = 14;

const TOKENS: &[&str] = &[
    "pm_card_visa",
    "pm_card_declined",
    "pm_card_expired",
    "pm_card_insufficient_funds",
    "pm_card_timeout_after_charge",
    "pm_card_provider_error",
    "pm_card_rate_limited",
];

/// One thing a merchant (or an operator) does.
#[derive(Debug, Clone)]
enum Step {
    Pay {
        token: usize,
        amount: i64,
    },
    Refund {
        payment: usize,
        amount: Option<i64>,
    },
    ConcurrentRefunds {
        payment: usize,
        count: usize,
        amount: i64,
    },
    TopUp {
        customer: usize,
        amount: i64,
    },
    WalletPay {
        customer: usize,
        amount: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..TOKENS.len(), 1i64..5_000).prop_map(|(token, amount)| Step::Pay { token, amount }),
        2 => (0usize..8, prop::option::of(1i64..3_000))
            .prop_map(|(payment, amount)| Step::Refund { payment, amount }),
        1 => (0usize..8, 2usize..6, 1i64..1_500)
            .prop_map(|(payment, count, amount)| Step::ConcurrentRefunds { payment, count, amount }),
        1 => (0usize..3, 1i64..4_000).prop_map(|(customer, amount)| Step::TopUp { customer, amount }),
        2 => (0usize..3, 1i64..3_000).prop_map(|(customer, amount)| Step::WalletPay { customer, amount }),
    ]
}

fn request(order: String, method: &str, customer: String, amount: i64) -> PaymentRequest {
    PaymentRequest {
        amount: Amount::new(amount).expect("positive"),
        currency: Currency::parse("usd").expect("usd"),
        customer_id: customer,
        order_id: order,
        payment_method: method.to_string(),
        description: None,
        metadata: BTreeMap::new(),
        provider: None,
    }
}

/// Runs `steps` on a fresh engine, then checks every invariant.
async fn run(backend: Backend, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let db = TestDb::new(backend);
    let mut config = Config {
        data_dir: db.data_dir.clone(),
        ..Config::default()
    };
    if backend == Backend::Postgres {
        config.database_url = Some(postgres_url());
        config.database_schema = db.schema.clone();
    }
    config.reconciler.run_at_startup = false;
    let engine = Engine::start(config).await.expect("engine");
    let merchant = MerchantId::new("m");
    let mut payments = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        apply(&engine, &merchant, &mut payments, i, step).await;
    }
    let checked = check(&engine, &merchant, &payments).await;
    engine.shutdown().await;
    checked
}

async fn apply(
    engine: &EngineHandle,
    merchant: &MerchantId,
    payments: &mut Vec<payments::domain::PaymentId>,
    i: usize,
    step: Step,
) {
    match step {
        Step::Pay { token, amount } => {
            let paid = engine
                .create_payment(
                    merchant,
                    &format!("k{i}"),
                    request(format!("o{i}"), TOKENS[token], "c".into(), amount),
                )
                .await
                .expect("a payment is always created");
            payments.push(paid.payment.id);
        }
        Step::WalletPay { customer, amount } => {
            let paid = engine
                .create_payment(
                    merchant,
                    &format!("k{i}"),
                    request(format!("o{i}"), "wallet", format!("w{customer}"), amount),
                )
                .await
                .expect("a wallet payment is always created");
            payments.push(paid.payment.id);
        }
        Step::TopUp { customer, amount } => {
            let usd = Currency::parse("usd").expect("usd");
            let amount = Amount::new(amount).expect("positive");
            engine
                .wallet_top_up(
                    merchant,
                    &format!("w{customer}"),
                    &format!("t{i}"),
                    amount,
                    usd,
                )
                .await
                .expect("top-up");
        }
        Step::Refund { payment, amount } => {
            if let Some(&id) = payments.get(payment % payments.len().max(1)) {
                let request = RefundRequest {
                    amount: amount.map(|a| Amount::new(a).expect("positive")),
                    reason: None,
                };
                // Refused refunds (too large, not refundable) are part of it.
                let _ = engine.refund(merchant, id, &format!("r{i}"), request).await;
            }
        }
        Step::ConcurrentRefunds {
            payment,
            count,
            amount,
        } => {
            if let Some(&id) = payments.get(payment % payments.len().max(1)) {
                let asks = (0..count).map(|j| {
                    let request = RefundRequest {
                        amount: Some(Amount::new(amount).expect("positive")),
                        reason: None,
                    };
                    let key = format!("r{i}-{j}");
                    async move { engine.refund(merchant, id, &key, request).await }
                });
                let _ = futures_util::future::join_all(asks).await;
            }
        }
    }
}

async fn check(
    engine: &EngineHandle,
    merchant: &MerchantId,
    payments: &[payments::domain::PaymentId],
) -> Result<(), TestCaseError> {
    let balances = engine
        .all_balances(BalanceFilter::default())
        .await
        .expect("balances");
    let mut per_currency: HashMap<String, i64> = HashMap::new();
    for balance in &balances {
        *per_currency
            .entry(balance.currency.code().to_string())
            .or_default() += balance.balance;
        if balance.account.is_customer_wallet() {
            prop_assert!(balance.credits >= balance.debits, "{balance:?} below zero");
        }
    }
    for (currency, sum) in per_currency {
        prop_assert_eq!(sum, 0, "balances of {} sum to {}", currency, sum);
    }
    for &id in payments {
        let payment = engine.payment(merchant, id).await.expect("payment");
        let filter = TransactionFilter {
            payment_id: Some(id),
            limit: 100,
            ..TransactionFilter::default()
        };
        let postings = engine
            .ledger_transactions(merchant, filter)
            .await
            .expect("postings")
            .data;
        let refunds = engine
            .refunds(merchant, id, None, 100)
            .await
            .expect("refunds")
            .data;
        let captured = matches!(
            payment.status,
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        );
        let payment_postings = postings
            .iter()
            .filter(|p| p.kind() == PostingKind::Payment)
            .count();
        prop_assert_eq!(payment_postings, usize::from(captured), "{:?}", payment);
        let succeeded: Vec<_> = refunds
            .iter()
            .filter(|r| r.status == RefundState::Succeeded)
            .collect();
        let reversals = postings
            .iter()
            .filter(|p| p.kind() == PostingKind::Refund)
            .count();
        prop_assert_eq!(reversals, succeeded.len(), "{:?}", refunds);
        let refunded: i64 = succeeded.iter().map(|r| r.amount.minor_units()).sum();
        prop_assert_eq!(payment.amount_refunded, refunded);
        prop_assert!(refunded <= payment.amount.minor_units());
    }
    Ok(())
}

fn property(backend: Backend) {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let steps = prop::collection::vec(step(), 1..MAX_STEPS);
    runner
        .run(&steps, |steps| block_on(run(backend, steps)))
        .expect("the money invariants hold");
}

#[test]
fn money_invariants_hold_on_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn money_invariants_hold_on_postgres() {
    property(Backend::Postgres);
}
