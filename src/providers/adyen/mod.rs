//! Adyen adapter (in progress).
