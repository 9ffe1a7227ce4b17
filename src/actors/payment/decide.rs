//! What the evidence about a payment's last attempt means for the payment.
//!
//! One pure function, [`decide`], answers it for every path that learns
//! something: the attempt loop (a provider's answer), recovery (a look-up),
//! and later refunds and webhooks. It does no I/O and reads no clock (`now`
//! is passed in), so the whole table of cases is unit-tested below, and
//! the rules of DESIGN §4 live in one place:
//!
//! - only a success or a decline is conclusive; an `unknown` answer leaves
//!   the payment `pending` (it may have charged), never `failed`;
//! - `transient_not_charged` after every try fails the payment with
//!   `provider_unavailable` (nothing was charged);
//! - a soft decline schedules the next attempt until the scheduled policy's
//!   tries are used up;
//! - a look-up's "no such charge" fails it (`not_charged`); an
//!   inconclusive look-up counts towards `needs_review`.

use crate::domain::{
    AttemptOutcome, OutcomeClass, Payment, PaymentStatus, Timestamp, TransitionError,
};
use crate::resilience::ScheduledPolicy;

/// What the engine learnt about the payment's last attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// The provider's (classified) answer to the attempt, after the retries
    /// its class allows.
    Answer {
        class: OutcomeClass,
        code: Option<String>,
        message: Option<String>,
        /// The retry budget refused a retry the policy allowed.
        budget_exhausted: bool,
    },
    /// The provider's look-up says it charged.
    Charged,
    /// The provider's look-up says it has no such charge, and no call of
    /// the attempt can still be in flight: nothing was charged.
    NotCharged,
    /// The look-up cannot be trusted yet (the provider may still lag the
    /// charge, or is still processing it): ask again later.
    TooEarly,
    /// The look-up failed or said nothing usable.
    Inconclusive { reason: String },
}

/// The facts about the payment that the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    pub status: PaymentStatus,
    /// Attempts that ended in a soft decline, the last one included.
    pub soft_declines: u32,
    /// Inconclusive recovery look-ups so far, this one excluded.
    pub recovery_attempts: u32,
}

/// The facts of `payment` as it is now.
pub fn facts(payment: &Payment) -> Facts {
    let soft_declines = payment
        .attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Completed(OutcomeClass::SoftDecline))
        .count();
    Facts {
        status: payment.status,
        soft_declines: u32::try_from(soft_declines).unwrap_or(u32::MAX),
        recovery_attempts: payment.recovery_attempts,
    }
}

/// The limits a decision applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub soft_decline: ScheduledPolicy,
    /// Inconclusive look-ups before a `pending` payment needs review.
    pub max_recovery_attempts: u32,
}

/// What the payment becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: PaymentStatus,
    pub failure: FailureFields,
    pub next_attempt_at: Option<Timestamp>,
    pub recovery_attempts: u32,
}

/// What happens to the payment's `failure_code` and `failure_message`.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureFields {
    /// Left as they are: nothing conclusive was learnt.
    Keep,
    Clear,
    Set(Failure),
}

impl FailureFields {
    /// The code the payment will carry, if this sets one.
    #[cfg(test)]
    pub fn code(&self) -> Option<&str> {
        match self {
            FailureFields::Set(failure) => Some(&failure.code),
            FailureFields::Keep | FailureFields::Clear => None,
        }
    }
}

/// Why a payment failed (or what its last decline said).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: String,
    pub message: Option<String>,
}

impl Failure {
    fn new(code: &str, message: Option<String>) -> Self {
        Failure {
            code: code.to_string(),
            message,
        }
    }
}

/// The failure code of a hard decline the provider gave no code for.
const DEFAULT_DECLINE_CODE: &str = "card_declined";

/// Decides what `evidence` means for a payment in the state `facts`.
pub fn decide(evidence: &Evidence, facts: Facts, limits: &Limits, now: Timestamp) -> Decision {
    let rest = |status, failure: FailureFields| Decision {
        status,
        failure,
        next_attempt_at: None,
        recovery_attempts: facts.recovery_attempts,
    };
    match evidence {
        Evidence::Answer {
            class,
            code,
            message,
            budget_exhausted,
        } => decide_answer(*class, code, message, *budget_exhausted, facts, limits, now),
        Evidence::Charged => rest(PaymentStatus::Succeeded, FailureFields::Clear),
        Evidence::NotCharged => rest(
            PaymentStatus::Failed,
            FailureFields::Set(Failure::new(
                "not_charged",
                Some("recovery found that the provider never charged this payment".into()),
            )),
        ),
        Evidence::TooEarly => rest(PaymentStatus::Pending, FailureFields::Keep),
        Evidence::Inconclusive { .. } => {
            let recovery_attempts = facts.recovery_attempts.saturating_add(1);
            let gives_up = recovery_attempts >= limits.max_recovery_attempts
                && facts.status == PaymentStatus::Pending;
            Decision {
                status: if gives_up {
                    PaymentStatus::NeedsReview
                } else {
                    PaymentStatus::Pending
                },
                failure: FailureFields::Keep,
                next_attempt_at: None,
                recovery_attempts,
            }
        }
    }
}

fn decide_answer(
    class: OutcomeClass,
    code: &Option<String>,
    message: &Option<String>,
    budget_exhausted: bool,
    facts: Facts,
    limits: &Limits,
    now: Timestamp,
) -> Decision {
    let decision = |status, failure: FailureFields| Decision {
        status,
        failure,
        next_attempt_at: None,
        recovery_attempts: facts.recovery_attempts,
    };
    match class {
        OutcomeClass::Succeeded => decision(PaymentStatus::Succeeded, FailureFields::Clear),
        OutcomeClass::HardDecline | OutcomeClass::Invalid => decision(
            PaymentStatus::Failed,
            FailureFields::Set(Failure::new(
                code.as_deref().unwrap_or(DEFAULT_DECLINE_CODE),
                message.clone(),
            )),
        ),
        OutcomeClass::SoftDecline => {
            let failure = match code {
                Some(code) => FailureFields::Set(Failure::new(code, message.clone())),
                None => FailureFields::Clear,
            };
            if facts.soft_declines >= limits.soft_decline.max_attempts {
                return decision(PaymentStatus::Failed, failure);
            }
            let delay_ms = limits.soft_decline.delay_secs.saturating_mul(1000);
            Decision {
                next_attempt_at: Some(now.plus_millis(delay_ms)),
                ..decision(PaymentStatus::RetryScheduled, failure)
            }
        }
        OutcomeClass::TransientNotCharged => {
            let why = if budget_exhausted {
                "the retry budget is spent"
            } else {
                "every try was refused"
            };
            let message = format!(
                "no provider could take the payment ({why}); last answer: {}",
                code.as_deref().unwrap_or("none")
            );
            decision(
                PaymentStatus::Failed,
                FailureFields::Set(Failure::new("provider_unavailable", Some(message))),
            )
        }
        OutcomeClass::Unknown => decision(PaymentStatus::Pending, FailureFields::Keep),
    }
}

/// Applies `decision` to `payment`: its status (through the transition
/// table), failure fields, schedule and recovery count. Returns the status
/// it had when the status changed.
pub fn apply(
    payment: &mut Payment,
    decision: &Decision,
) -> Result<Option<PaymentStatus>, TransitionError> {
    let from = payment.status;
    if decision.status != from {
        payment.status = from.transition(decision.status)?;
    }
    match &decision.failure {
        FailureFields::Keep => {}
        FailureFields::Clear => {
            payment.failure_code = None;
            payment.failure_message = None;
        }
        FailureFields::Set(failure) => {
            payment.failure_code = Some(failure.code.clone());
            payment.failure_message = failure.message.clone();
        }
    }
    payment.next_attempt_at = decision.next_attempt_at;
    payment.recovery_attempts = decision.recovery_attempts;
    Ok((decision.status != from).then_some(from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutcomeClass::{HardDecline, Invalid, SoftDecline, TransientNotCharged, Unknown};
    use PaymentStatus::*;

    const LIMITS: Limits = Limits {
        soft_decline: ScheduledPolicy {
            max_attempts: 3,
            delay_secs: 60,
        },
        max_recovery_attempts: 5,
    };

    fn answer(class: OutcomeClass, code: Option<&str>) -> Evidence {
        Evidence::Answer {
            class,
            code: code.map(str::to_string),
            message: None,
            budget_exhausted: false,
        }
    }

    fn facts(status: PaymentStatus, soft_declines: u32, recovery_attempts: u32) -> Facts {
        Facts {
            status,
            soft_declines,
            recovery_attempts,
        }
    }

    /// (evidence, facts) → (status, failure code, next attempt due, recovery attempts)
    type Case = (
        Evidence,
        Facts,
        PaymentStatus,
        Option<&'static str>,
        Option<Timestamp>,
        u32,
    );

    #[test]
    fn every_case_of_the_table() {
        let now = Timestamp::from_micros(1_000_000).expect("in range");
        let later = Some(now.plus_millis(60_000));
        let inconclusive = Evidence::Inconclusive {
            reason: "timeout".into(),
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (answer(OutcomeClass::Succeeded, None), facts(Processing, 0, 0), Succeeded, None, None, 0),
            (answer(HardDecline, Some("expired_card")), facts(Processing, 0, 0), Failed, Some("expired_card"), None, 0),
            (answer(HardDecline, None), facts(Processing, 0, 0), Failed, Some("card_declined"), None, 0),
            (answer(Invalid, Some("invalid_request")), facts(Processing, 0, 0), Failed, Some("invalid_request"), None, 0),
            (answer(SoftDecline, Some("insufficient_funds")), facts(Processing, 1, 0), RetryScheduled, Some("insufficient_funds"), later, 0),
            (answer(SoftDecline, Some("insufficient_funds")), facts(Processing, 2, 0), RetryScheduled, Some("insufficient_funds"), later, 0),
            (answer(SoftDecline, Some("insufficient_funds")), facts(Processing, 3, 0), Failed, Some("insufficient_funds"), None, 0),
            (answer(TransientNotCharged, Some("rate_limited")), facts(Processing, 0, 0), Failed, Some("provider_unavailable"), None, 0),
            (answer(Unknown, Some("timeout")), facts(Processing, 0, 0), Pending, None, None, 0),
            (Evidence::Charged, facts(Pending, 0, 2), Succeeded, None, None, 2),
            (Evidence::Charged, facts(Processing, 0, 0), Succeeded, None, None, 0),
            (Evidence::NotCharged, facts(Pending, 0, 1), Failed, Some("not_charged"), None, 1),
            (Evidence::TooEarly, facts(Pending, 0, 4), Pending, None, None, 4),
            (Evidence::TooEarly, facts(Processing, 0, 0), Pending, None, None, 0),
            (inconclusive.clone(), facts(Processing, 0, 0), Pending, None, None, 1),
            (inconclusive.clone(), facts(Pending, 0, 3), Pending, None, None, 4),
            (inconclusive.clone(), facts(Pending, 0, 4), NeedsReview, None, None, 5),
            // Only a payment already pending goes to review: one found
            // `processing` after a crash is first made pending.
            (inconclusive, facts(Processing, 0, 9), Pending, None, None, 10),
        ];
        for (evidence, facts, status, code, next, recovery) in cases {
            let decision = decide(&evidence, facts, &LIMITS, now);
            let case = format!("{evidence:?} on {facts:?}");
            assert_eq!(decision.status, status, "{case}");
            assert_eq!(decision.failure.code(), code, "{case}");
            assert_eq!(decision.next_attempt_at, next, "{case}");
            assert_eq!(decision.recovery_attempts, recovery, "{case}");
        }
    }

    #[test]
    fn an_exhausted_budget_is_named_in_the_failure() {
        let evidence = Evidence::Answer {
            class: TransientNotCharged,
            code: Some("http_503".into()),
            message: None,
            budget_exhausted: true,
        };
        let decision = decide(
            &evidence,
            facts(Processing, 0, 0),
            &LIMITS,
            Timestamp::from_micros(0).expect("in range"),
        );
        let FailureFields::Set(failure) = decision.failure else {
            panic!("a failed payment says why");
        };
        let message = failure.message.unwrap_or_default();
        assert!(message.contains("retry budget"), "{message}");
        assert!(message.contains("http_503"), "{message}");
    }

    #[test]
    fn every_decided_status_is_reachable_from_where_it_is_decided() {
        // The caller applies the decision through the transition table; a
        // decision the table refuses would be an internal error at run time.
        let now = Timestamp::from_micros(0).expect("in range");
        let evidences = [
            answer(OutcomeClass::Succeeded, None),
            answer(HardDecline, None),
            answer(SoftDecline, Some("x")),
            answer(TransientNotCharged, None),
            answer(Unknown, None),
            Evidence::Charged,
            Evidence::NotCharged,
            Evidence::TooEarly,
            Evidence::Inconclusive {
                reason: String::new(),
            },
        ];
        let from_answer = [Processing];
        let from_lookup = [Processing, Pending];
        for (i, evidence) in evidences.iter().enumerate() {
            let froms: &[PaymentStatus] = if i < 5 { &from_answer } else { &from_lookup };
            for &from in froms {
                let to = decide(evidence, facts(from, 1, 4), &LIMITS, now).status;
                assert!(
                    to == from || from.transition(to).is_ok(),
                    "{from} -> {to} after {evidence:?}"
                );
            }
        }
    }
}
