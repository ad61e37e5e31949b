//! Records what `sluice --version` and `show stats` say about the build: the git commit
//! (`git rev-parse --short HEAD`, or "unknown" outside a checkout or without git) and the
//! build date (UTC, from SOURCE_DATE_EPOCH when set, for reproducible builds; else now).
//! Std only: no build dependency.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SLUICE_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=SLUICE_BUILD_DATE={}", date(epoch));
    // Run again when HEAD moves (a commit, a checkout), not on every edit: the date is that
    // of the first build at a commit. Without git, the default rule (any file changed) holds.
    let watched: Vec<String> = ["HEAD", "packed-refs"]
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .chain(
            git(&["symbolic-ref", "-q", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        )
        .filter(|p| Path::new(p).exists())
        .collect();
    if !watched.is_empty() {
        println!("cargo:rerun-if-changed=build.rs");
        for p in watched {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// One line of git's output, run in the crate's directory; `None` if git is not there.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    if !out.status.success() || line.is_empty() {
        return None;
    }
    // --git-path answers relative to the directory git ran in.
    let p = Path::new(line);
    Some(if args.contains(&"--git-path") && p.is_relative() {
        Path::new(&dir).join(p).to_string_lossy().into_owned()
    } else {
        line.to_string()
    })
}

/// `YYYY-MM-DD` of a Unix time, UTC (days to a civil date, as in the logger).
fn date(epoch: u64) -> String {
    let z = (epoch / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
