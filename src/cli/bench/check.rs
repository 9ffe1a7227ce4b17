//! The benchmark's correctness check (DESIGN §12: provider charges ==
//! succeeded payments), order by order.
//!
//! Equal totals are not enough: one order charged twice and another never
//! charged add up to the same count. So the check matches charges to
//! payments order by order, and also compares the totals with what the
//! clients were told.
//!
//! This file uses nothing but `std`, so that `cargo bench`
//! (`benches/support/charge_check.rs`, reading the SQLite files) and the
//! tests include it as it is; `payments bench` feeds it what the API (or
//! the embedded handle) lists.

use std::collections::BTreeMap;
use std::fmt;

/// Problems listed in full; the rest are counted.
const PROBLEMS_SHOWN: usize = 10;

/// (merchant, order) -> one entry per row naming that order: the
/// idempotency keys of its charges, or the ids of its succeeded payments.
pub type ByOrder = BTreeMap<(String, String), Vec<String>>;

/// Adds `value` under (`merchant`, `order`).
pub fn add(map: &mut ByOrder, merchant: &str, order: &str, value: String) {
    map.entry((merchant.to_string(), order.to_string()))
        .or_default()
        .push(value);
}

/// What the check found.
#[derive(Debug, Default)]
pub struct ChargeCheck {
    /// Charges in the sandbox's own record.
    pub charges: usize,
    /// Payments the engine stored as `succeeded`.
    pub stored_succeeded: usize,
    /// `succeeded` answers the clients received; `None` when some requests
    /// got no answer, so the clients cannot know the total.
    pub client_succeeded: Option<usize>,
    /// Everything that does not match, one line each.
    pub problems: Vec<String>,
}

impl ChargeCheck {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for ChargeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answered = self
            .client_succeeded
            .map_or_else(|| "unknown".to_string(), |n| n.to_string());
        let verdict = if self.is_consistent() { "OK" } else { "FAILED" };
        write!(
            f,
            "sandbox charges {}, succeeded payments stored {}, succeeded responses {answered}: {verdict}",
            self.charges, self.stored_succeeded,
        )?;
        for problem in self.problems.iter().take(PROBLEMS_SHOWN) {
            write!(f, "\n  {problem}")?;
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            let more = self.problems.len() - PROBLEMS_SHOWN;
            write!(f, "\n  ... and {more} more")?;
        }
        Ok(())
    }
}

/// Matches `charged` (charge keys by order) with `succeeded` (succeeded
/// payment ids by order) and with `client_succeeded`, the succeeded
/// answers the clients got. Every order with a succeeded payment must have
/// exactly one charge, made under that payment's key, and no other order
/// any; the totals must agree. Call it once every response is in: the
/// sandbox commits a charge before it answers.
pub fn compare(
    charged: &ByOrder,
    succeeded: &ByOrder,
    client_succeeded: Option<usize>,
) -> ChargeCheck {
    let mut check = ChargeCheck {
        charges: charged.values().map(Vec::len).sum(),
        stored_succeeded: succeeded.values().map(Vec::len).sum(),
        client_succeeded,
        problems: Vec::new(),
    };
    for ((merchant, order), payments) in succeeded {
        let keys = charged
            .get(&(merchant.clone(), order.clone()))
            .map_or(&[][..], Vec::as_slice);
        check_order(
            &mut check.problems,
            &format!("order {order} of {merchant}"),
            payments,
            keys,
        );
    }
    for ((merchant, order), keys) in charged {
        if !succeeded.contains_key(&(merchant.clone(), order.clone())) {
            check.problems.push(format!(
                "order {order} of {merchant}: charged ({keys:?}) but no payment succeeded"
            ));
        }
    }
    check_totals(&mut check);
    check
}

/// One order with succeeded `payments`: one payment, charged once under
/// its own key.
fn check_order(problems: &mut Vec<String>, of: &str, payments: &[String], keys: &[String]) {
    if payments.len() > 1 {
        problems.push(format!("{of}: {} succeeded payments", payments.len()));
    }
    match keys {
        [] => problems.push(format!(
            "{of}: succeeded ({}) but never charged",
            payments.first().map_or("?", String::as_str)
        )),
        // The provider key is `{payment_id}-{attempt}` (DESIGN §4).
        [key] if !payments.iter().any(|p| key.starts_with(&format!("{p}-"))) => {
            problems.push(format!("{of}: charged under {key}, not by {payments:?}"))
        }
        [_] => {}
        keys => problems.push(format!("{of}: charged {} times ({keys:?})", keys.len())),
    }
}

/// Charges, stored successes and (when known) answered successes agree.
fn check_totals(check: &mut ChargeCheck) {
    let answered = check.client_succeeded.unwrap_or(check.stored_succeeded);
    if check.charges != answered || check.stored_succeeded != answered {
        check.problems.push(format!(
            "totals differ: {} charges, {} succeeded stored, {} succeeded answered",
            check.charges,
            check.stored_succeeded,
            check
                .client_succeeded
                .map_or_else(|| "unknown".to_string(), |n| n.to_string())
        ));
    }
}
