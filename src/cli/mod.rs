//! Subcommands of the `payments` binary that are not part of the library:
//! they use the engine only through its public API (`payments::…`), like
//! any other program would. `tests/integration/layers.rs` treats `cli` as
//! it treats `main.rs`: binary-only, above every layer.

pub mod bench;
