//! The handle's sandbox methods (DESIGN §7): the record of what each
//! sandbox provider really charged, its fault knobs, and the operator
//! hooks that make it disagree with the engine.
//!
//! They run on the caller's runtime, not the engine's: the record is its
//! own connection pool, so a heavy or abusive request costs the HTTP
//! worker that made it and never delays a payment.

use super::EngineHandle;
use crate::error::EngineError;
use crate::providers::sandbox::{
    ChargeFilter, ChargeUpdate, SandboxCharge, SandboxFaults, SandboxProvider, UnsolicitedCharge,
    MAX_CHARGES_PER_PAGE,
};
use serde::Serialize;
use std::sync::Arc;

/// A page of `GET /v1/sandbox/{provider}/charges`.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxChargePage {
    pub data: Vec<SandboxCharge>,
    pub has_more: bool,
}

fn unknown_provider() -> EngineError {
    EngineError::NotFound {
        resource: "provider",
    }
}

fn unknown_charge() -> EngineError {
    EngineError::NotFound { resource: "charge" }
}

fn record_error(error: sqlx::Error) -> EngineError {
    EngineError::Provider(error.into())
}

impl EngineHandle {
    /// The sandbox provider called `name`, if one is configured.
    pub fn sandbox(&self, name: &str) -> Option<Arc<SandboxProvider>> {
        self.inner.sandboxes.get(name).cloned()
    }

    /// Whether any sandbox provider is configured (its routes exist only then).
    pub fn has_sandbox(&self) -> bool {
        !self.inner.sandboxes.is_empty()
    }

    fn existing_sandbox(&self, name: &str) -> Result<Arc<SandboxProvider>, EngineError> {
        self.sandbox(name).ok_or_else(unknown_provider)
    }

    /// A page of what the sandbox `name` really charged, newest first, of
    /// `filter.limit` charges clamped to 1..=[`MAX_CHARGES_PER_PAGE`].
    pub async fn sandbox_charges(
        &self,
        name: &str,
        mut filter: ChargeFilter,
    ) -> Result<SandboxChargePage, EngineError> {
        let sandbox = self.existing_sandbox(name)?;
        let limit = filter.limit.clamp(1, MAX_CHARGES_PER_PAGE);
        // One extra row tells whether another page exists.
        filter.limit = limit + 1;
        let mut data = sandbox.charges(&filter).await.map_err(record_error)?;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(SandboxChargePage { data, has_more })
    }

    /// Sets the fault knobs of the sandbox `name`.
    pub fn set_sandbox_faults(&self, name: &str, faults: SandboxFaults) -> Result<(), EngineError> {
        let sandbox = self.existing_sandbox(name)?;
        faults
            .validate()
            .map_err(|param| EngineError::invalid(param, "out of range"))?;
        sandbox.set_faults(faults);
        Ok(())
    }

    /// Overwrites fields of the sandbox `name`'s charge `id` (an operator
    /// hook): the charge as it is now.
    pub async fn update_sandbox_charge(
        &self,
        name: &str,
        id: &str,
        update: &ChargeUpdate,
    ) -> Result<SandboxCharge, EngineError> {
        self.existing_sandbox(name)?
            .update_charge(id, update)
            .await
            .map_err(record_error)?
            .ok_or_else(unknown_charge)
    }

    /// Deletes the sandbox `name`'s charge `id` and its refunds (an
    /// operator hook).
    pub async fn delete_sandbox_charge(&self, name: &str, id: &str) -> Result<(), EngineError> {
        let deleted = self
            .existing_sandbox(name)?
            .delete_charge(id)
            .await
            .map_err(record_error)?;
        deleted.then_some(()).ok_or_else(unknown_charge)
    }

    /// Records a charge the engine never asked for at the sandbox `name`
    /// (an operator hook).
    pub async fn create_sandbox_charge(
        &self,
        name: &str,
        charge: &UnsolicitedCharge,
    ) -> Result<SandboxCharge, EngineError> {
        self.existing_sandbox(name)?
            .create_charge(charge)
            .await
            .map_err(record_error)
    }
}
