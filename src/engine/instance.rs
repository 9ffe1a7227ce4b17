//! Who this process is in order leases: a stable instance id, and the
//! incarnation the store hands out at each boot (DESIGN §5).
//!
//! The id is configured (`engine.instance_id`), or derived from the host
//! name and the data directory, so that restarting one deployment (a
//! `kill -9` of the embedded default, say) comes back under the same id and
//! recovers at once what its earlier incarnations held. Two processes
//! sharing one data directory must not share an id, or each would take the
//! other's live leases for dead ones: each derived id therefore holds an
//! exclusive lock on a slot file in the data directory, and a second
//! process takes the next free slot. The operating system releases the
//! lock when a process dies, however it dies.

use crate::config::Config;
use crate::error::EngineError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// Processes that may share one data directory, each under its own id.
const MAX_INSTANCE_SLOTS: u32 = 64;
/// Hex digits of the data directory's digest kept in a derived id.
const DATA_DIR_DIGEST_CHARS: usize = 8;

/// This process's instance id, and the lock that keeps it ours.
pub(super) struct Instance {
    pub id: String,
    /// Held for the life of the engine; `None` for a configured id (its
    /// uniqueness is the operator's to keep).
    pub _lock: Option<File>,
}

/// The configured id, or the first free derived one.
pub(super) fn claim(config: &Config) -> Result<Instance, EngineError> {
    if let Some(id) = &config.engine.instance_id {
        return Ok(Instance {
            id: id.clone(),
            _lock: None,
        });
    }
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        EngineError::Config(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let base = derived_base(dir);
    for slot in 0..MAX_INSTANCE_SLOTS {
        let path = dir.join(format!("instance-{slot}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::Config(format!("cannot open {}: {e}", path.display())))?;
        if file.try_lock().is_ok() {
            let id = if slot == 0 {
                base
            } else {
                format!("{base}-{slot}")
            };
            return Ok(Instance {
                id,
                _lock: Some(file),
            });
        }
    }
    Err(EngineError::Config(format!(
        "more than {MAX_INSTANCE_SLOTS} processes share the data directory {}",
        dir.display()
    )))
}

/// `{host}-{digest of the data directory}`: the same after a restart.
fn derived_base(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let absolute = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = format!(
        "{:x}",
        Sha256::digest(absolute.to_string_lossy().as_bytes())
    );
    format!("{host}-{}", &digest[..DATA_DIR_DIGEST_CHARS])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_directory_gives_the_same_id_and_a_second_process_the_next_slot() {
        let dir = tempfile::tempdir().expect("dir");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let first = claim(&config).expect("first");
        let second = claim(&config).expect("second");
        assert_ne!(first.id, second.id, "two live holders never share an id");
        assert!(second.id.starts_with(&first.id));
        let first_id = first.id.clone();
        drop(first);
        let again = claim(&config).expect("again");
        assert_eq!(again.id, first_id, "a restart comes back under the same id");
    }
}
