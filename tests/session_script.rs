#![cfg(test)]
//! The session fuzz target's rig (`fuzz/src/session.rs`) in `make test`: a real worker loop
//! in this process, real loopback sockets, scripts of bytes and events. Replays a seed made
//! from every capture in `fixtures/` on both workers (copying and splicing), every saved
//! regression in `fuzz/regressions/session/`, a few scripts written by hand, and a bounded
//! number of pseudo-random scripts. The rig's asserts are the checks: nothing held and no
//! descriptor left after every peer closed, every byte a window of what the other side sent.

#[path = "../fuzz/src/session.rs"]
#[allow(dead_code)]
mod rig;

use std::path::Path;

use rig::session as run;

/// One test, one thread: the rig counts the whole process's descriptors around each script,
/// and a rig (two workers, per thread) closing on another thread would upset the count.
#[test]
fn scripts() {
    every_capture_on_both_workers();
    saved_regressions();
    hand_written_scripts();
    random_scripts();
}

fn files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| ext.is_empty() || p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn every_capture_on_both_workers() {
    let captures = files("fixtures", "bin");
    assert!(captures.len() >= 20, "fixtures/ missing");
    for f in captures {
        let bytes = std::fs::read(&f).unwrap();
        for splice in [false, true] {
            run(&rig::seed_from_capture(&bytes, splice));
        }
    }
}

fn saved_regressions() {
    for f in files("fuzz/regressions/session", "") {
        eprintln!("replaying {}", f.display());
        run(&std::fs::read(&f).unwrap());
    }
}

/// Scripts that reach the paths a capture alone does not: bursts against a client that does
/// not read, resets on either side mid-stream, clocks moved past each timeout, four clients.
fn hand_written_scripts() {
    let hello = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lb-haproxy-2.6-v2-tcp4-curl.bin"),
    )
    .unwrap();
    let base = rig::seed_from_capture(&hello, false);
    // The seed without its ending: header and hello sent, upstream connected.
    let opened = &base[..base.len() - 6];
    let scripts: Vec<Vec<u8>> = vec![
        // upstream bursts 256 KiB x3 to a client that does not read, then the client reads
        [opened, &[7, 255, 7, 255, 7, 255, 5, 5, 5, 5]].concat(),
        // the client bursts, the upstream resets mid-stream (0x80 | 9)
        [opened, &[2, 255, 0x89, 2, 10]].concat(),
        // the client resets mid-stream while the upstream bursts
        [opened, &[7, 100, 0x84, 7, 100, 10]].concat(),
        // idle timeout: the clock moves 3.5 s with nothing sent
        [opened, &[11, 70, 5, 10]].concat(),
        // header timeout: a client sends half a header and waits
        [&[0u8, 0, 1, 10][..], &hello[..10], &[11, 30, 5]].concat(),
        // a hello cut after 255 bytes, then the clock past the header timeout, twice
        [&base[..2 + 2 + 255], &[11, 30, 11, 30]].concat(),
        // four clients interleaved, each half a capture, one half-closing early
        [
            &[0u8, 0, 0, 0, 0][..],
            &[0x01, 20],
            &hello[..20],
            &[0x11, 20],
            &hello[..20],
            &[0x23, 0x21, 20],
            &hello[..20],
            &[0x31, 20],
            &hello[..20],
            &[11, 100],
        ]
        .concat(),
    ];
    for (i, s) in scripts.iter().enumerate() {
        eprintln!("script {i}");
        run(s);
        let mut spliced = s.clone();
        spliced[0] = 1;
        run(&spliced);
    }
}

/// Pseudo-random scripts (xorshift, fixed seed): a short fuzz run that needs no nightly.
fn random_scripts() {
    let hello = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/lb-nginx-1.22-stream-v1-tcp4-curl.bin"),
    )
    .unwrap();
    let base = rig::seed_from_capture(&hello, false);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let mut s = base.clone();
        s[0] = (next() & 1) as u8;
        // cut the capture somewhere, then random ops with small random arguments
        let cut = 2 + (next() as usize % (base.len() - 2));
        s.truncate(cut);
        for _ in 0..(next() % 24) {
            let op = next() as u8;
            s.push(op);
            if matches!((op & 0x0f) % 12, 1 | 2 | 6 | 7 | 11) {
                s.push((next() % 40) as u8);
            }
        }
        run(&s);
    }
}
