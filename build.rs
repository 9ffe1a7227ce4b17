//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds
//! the files of `migrations/` at compile time, and cargo does not watch a
//! directory for new files on its own (sqlx's documented remedy).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
