//! Adyen adapter tests (in progress).
