//! Stripe adapter (in progress).
