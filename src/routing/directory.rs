//! The configured providers, as routing sees them.
//!
//! An entry holds what routing decides on (currencies, priority, weight,
//! fees, health) and what the payment actor needs to act on a candidate
//! (its retry rows, its look-up consistency window, and `addr`: how to reach
//! the provider). Routing is generic over `addr`, so it knows nothing of
//! actors; the engine instantiates it with the provider actor's address.

use super::ProviderHealth;
use crate::domain::{Currency, Fee, WALLET_PAYMENT_METHOD};
use crate::resilience::RetryPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A configured provider as routing sees it.
#[derive(Clone)]
pub struct ProviderEntry<A> {
    pub name: String,
    /// How the engine reaches this provider (the provider actor's address).
    pub addr: A,
    /// `None`: every currency.
    pub currencies: Option<Vec<Currency>>,
    /// Lower first under the `priority` strategy (and on ties).
    pub priority: u32,
    /// Share of traffic under the `weighted` strategy.
    pub weight: u32,
    /// By lowercase currency code; `*` applies to the others.
    pub fees: BTreeMap<String, Fee>,
    pub health: Arc<ProviderHealth>,
    /// A look-up younger than this after the call may miss the charge.
    pub lookup_consistency_ms: u64,
    /// A call not answered in this time is `unknown` (the provider actor
    /// gives up on it); a payment calls only while its lease outlasts this.
    pub call_timeout_ms: u64,
    /// The engine's own stored-value provider: it takes exactly the
    /// payments whose method is `wallet`, and its charge is the debit of the
    /// customer's wallet in the ledger, written with the payment's success.
    pub wallet: bool,
    /// Retries after this provider's answers (its own rows, or the engine's).
    pub retry: RetryPolicy,
}

impl<A> ProviderEntry<A> {
    /// How long after an attempt started a look-up's "no such charge" may be
    /// believed: once no call of the attempt can still be in flight (the
    /// call and its same-key retries, with their waits) and the provider's
    /// look-up has caught up with its charges (DESIGN §5).
    pub fn not_found_trusted_after_ms(&self) -> u64 {
        self.retry
            .longest_renewal_gap_ms(self.call_timeout_ms)
            .saturating_add(self.lookup_consistency_ms)
    }

    pub fn supports(&self, currency: Currency) -> bool {
        self.currencies
            .as_ref()
            .is_none_or(|list| list.contains(&currency))
    }

    /// What this provider charges for `amount` in `currency`.
    pub fn fee(&self, amount: i64, currency: Currency) -> Option<i64> {
        let fee = self
            .fees
            .get(currency.code())
            .or_else(|| self.fees.get("*"))
            .copied()
            .unwrap_or_default();
        fee.on(amount)
    }
}

/// The configured providers in configuration order.
#[derive(Clone)]
pub struct ProviderDirectory<A> {
    entries: Vec<ProviderEntry<A>>,
}

impl<A> Default for ProviderDirectory<A> {
    fn default() -> Self {
        ProviderDirectory {
            entries: Vec::new(),
        }
    }
}

impl<A: Clone> ProviderDirectory<A> {
    pub fn new(entries: Vec<ProviderEntry<A>>) -> Self {
        ProviderDirectory { entries }
    }

    pub fn get(&self, name: &str) -> Option<&ProviderEntry<A>> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    pub fn entries(&self) -> &[ProviderEntry<A>] {
        &self.entries
    }

    /// The providers that could take a payment in `currency` at all
    /// (configured for it; only `pinned` if the merchant pinned one),
    /// whatever their health: validation uses this.
    pub fn supporting(
        &self,
        currency: Currency,
        pinned: Option<&str>,
        payment_method: &str,
    ) -> Vec<ProviderEntry<A>> {
        let wallet = payment_method == WALLET_PAYMENT_METHOD;
        self.entries
            .iter()
            .filter(|entry| pinned.is_none_or(|name| entry.name == name))
            .filter(|entry| entry.supports(currency) && entry.wallet == wallet)
            .cloned()
            .collect()
    }
}
