//! The load through the embedded handle: the engine in this process
//! (`Engine::start`), each client a task calling `create_payment` one
//! payment after another. No HTTP, no JSON parsing of requests: what is
//! left is the engine itself (DESIGN §12 aims at 30,000 payments/s).

use super::load::{Client, Outcome};
use payments::config::DEVELOPMENT_MERCHANT;
use payments::domain::{Amount, Currency, MerchantId, PaymentStatus};
use payments::store::StoreError;
use payments::{EngineError, EngineHandle, PaymentRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What `503 overloaded` asks an HTTP client to wait (its `Retry-After`).
const RETRY_AFTER_OVERLOADED: Duration = Duration::from_secs(1);
/// The amount of every payment, in cents (as wrk-payments.lua).
const AMOUNT_MINOR_UNITS: i64 = 1999;
/// Distinct customers the payments are spread over.
const CUSTOMERS: u64 = 5000;

/// One client: a task with its own clone of the handle.
pub struct EmbeddedClient {
    handle: EngineHandle,
    merchant: MerchantId,
    run: Arc<str>,
    id: usize,
}

impl EmbeddedClient {
    pub fn new(handle: EngineHandle, run: Arc<str>, id: usize) -> EmbeddedClient {
        EmbeddedClient {
            handle,
            merchant: MerchantId::new(DEVELOPMENT_MERCHANT),
            run,
            id,
        }
    }

    fn request(&self, n: u64) -> Result<PaymentRequest, String> {
        Ok(PaymentRequest {
            amount: Amount::new(AMOUNT_MINOR_UNITS).map_err(|e| e.to_string())?,
            currency: Currency::parse("usd").ok_or("unknown currency")?,
            customer_id: format!("cus_{}", (self.id as u64 * 7919 + n) % CUSTOMERS),
            order_id: format!("ord_{}_{}_{n}", self.run, self.id),
            payment_method: "pm_card_visa".into(),
            description: None,
            metadata: BTreeMap::new(),
            provider: None,
        })
    }
}

impl Client for EmbeddedClient {
    async fn call(&mut self, n: u64) -> Outcome {
        let request = match self.request(n) {
            Ok(request) => request,
            Err(error) => return Outcome::Other(error),
        };
        let key = format!("k_{}_{}_{n}", self.run, self.id);
        match self
            .handle
            .create_payment(&self.merchant, &key, request)
            .await
        {
            Ok(created) if created.payment.status == PaymentStatus::Succeeded => Outcome::Ok,
            Ok(created) => Outcome::Other(format!("created {}", created.payment.status.as_str())),
            // What the API answers `503` with `Retry-After`.
            Err(EngineError::Overloaded { .. } | EngineError::Store(StoreError::Overloaded)) => {
                Outcome::Shed {
                    retry_after: RETRY_AFTER_OVERLOADED,
                }
            }
            Err(error) => Outcome::Other(error.to_string()),
        }
    }
}
