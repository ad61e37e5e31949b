//! Capture: the bytes a session received before `Connected`, written as `.bin` files that
//! `sluice inspect` reads and the tests use as fixtures unchanged.
//!
//! The loop never touches the disk: it hands a copy of the bytes to a writer thread over a
//! bounded channel (a full channel drops the capture and counts it). The thread writes
//! `<unix_ms>-<pid>-<sid>-<reason>.bin` atomically (temp file, rename) and then deletes the
//! oldest captures until at most `max_files` files and `max_bytes` bytes remain.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Captures waiting for the writer before new ones are dropped.
const QUEUE: usize = 256;

struct Job {
    name: String,
    bytes: Vec<u8>,
}

/// The loop's handle on the capture writer.
pub struct Capture {
    tx: SyncSender<Job>,
    /// Captures handed to the writer.
    pub queued: u64,
    /// Captures dropped because the writer lagged.
    pub dropped: u64,
}

impl Capture {
    /// Starts the writer for `dir` (created if missing; a directory it cannot write in is
    /// refused here rather than failing every capture later).
    pub fn start(dir: &str, max_files: usize, max_bytes: u64) -> std::io::Result<Capture> {
        crate::preflight::writable_dir(dir)
            .map_err(|e| std::io::Error::other(format!("ENVOY_CAPTURE_DIR {dir}: {e}")))?;
        let dir = PathBuf::from(dir);
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                for job in rx {
                    let path = dir.join(&job.name);
                    let tmp = dir.join(format!(".{}.tmp", job.name));
                    let written =
                        std::fs::write(&tmp, &job.bytes).and_then(|_| std::fs::rename(&tmp, &path));
                    if let Err(e) = written {
                        log::warn!(
                            "capture not written path={} error={}",
                            crate::logfmt::Shown(path.display()),
                            crate::logfmt::Shown(&e)
                        );
                    }
                    prune(&dir, max_files, max_bytes);
                }
            })?;
        Ok(Capture {
            tx,
            queued: 0,
            dropped: 0,
        })
    }

    /// Queues `bytes` of session `sid`, which ended (or is traced) for `reason`.
    pub fn save(&mut self, sid: u64, reason: &str, bytes: &[u8]) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("{ms:013}-{}-{sid}-{reason}.bin", std::process::id());
        match self.tx.try_send(Job {
            name,
            bytes: bytes.to_vec(),
        }) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }
}

/// Deletes the oldest `.bin` files (names start with the time) beyond the limits.
fn prune(dir: &Path, max_files: usize, max_bytes: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(String, u64)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let len = e.metadata().ok()?.len();
            name.ends_with(".bin").then_some((name, len))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let mut count = files.len();
    for (name, len) in files {
        if count <= max_files && total <= max_bytes {
            break;
        }
        if std::fs::remove_file(dir.join(&name)).is_ok() {
            count -= 1;
            total = total.saturating_sub(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_keeps_only_the_newest() {
        let dir = std::env::temp_dir().join(format!("sluice-capture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Capture::start(dir.to_str().unwrap(), 3, 1 << 20).unwrap();
        for i in 0..6u64 {
            c.save(i, "invalid_tls", &[i as u8; 10]);
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let mut names = Vec::new();
        for _ in 0..100 {
            names = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".bin"))
                .collect::<Vec<_>>();
            names.sort();
            if names.len() == 3 && names[2].contains("-5-") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(
            names[0].contains("-3-invalid_tls.bin"),
            "the oldest went first: {names:?}"
        );
        assert_eq!(std::fs::read(dir.join(&names[2])).unwrap(), vec![5u8; 10]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
