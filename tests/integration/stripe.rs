//! Stripe adapter tests (in progress).
