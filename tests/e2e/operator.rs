//! What an operator meets on the first day: the start-up summary and config errors that name
//! the key, the value and what is valid, without a backtrace.

use std::process::Command;

use crate::support::{ServerConfig, TestServer};

/// Start-up logs a line per region (hosted here: storage, files, bytes; elsewhere: its
/// node), the WAL replay and the limits in force.
#[test]
fn start_up_summarises_regions_replay_and_limits() {
    let mut s = TestServer::start(ServerConfig {
        memory_limit: "96MiB".into(),
        ..ServerConfig::default()
    });
    s.write_ok(
        "ops",
        "cpu,region=eu-west-1 v=1 1\ncpu,region=us-east-1 v=2 1\n",
    );
    s.stop();
    s.restart();
    s.write_ok("ops", "cpu,region=eu-west-1 v=3 2\n");
    s.kill9();
    s.restart();
    let logs = s.logs();
    let hosted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("region hosted here"))
        .collect();
    assert_eq!(hosted.len(), 4, "a line per region:\n{logs}");
    let eu = hosted
        .iter()
        .find(|l| l.contains("region=eu"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        eu.contains("files=1") && eu.contains("file_rows=1"),
        "eu: one flushed file: {eu}"
    );
    assert!(eu.contains("storage="), "{eu}");
    let replay = logs
        .lines()
        .find(|l| l.contains("WAL replayed"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(replay.contains("wal_points=1"), "{replay}");
    let limits = logs
        .lines()
        .find(|l| l.contains("limits in force"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        limits.contains(&format!("memory_limit={}", 96 << 20))
            && limits.contains("series_catalog="),
        "{limits}"
    );
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regions.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text)
}

/// `check-config` refuses what `serve` would, each error in a line or two naming the key,
/// the value and what is valid, and no backtrace although RUST_BACKTRACE is set.
#[test]
fn config_errors_name_key_value_and_what_is_valid() {
    let base = include_str!("../../regions.toml");
    // (a line of the repo's file, what it becomes, what the error must name)
    let cases = [
        (
            "segment_bytes = \"64MiB\"",
            "segment_bytes = \"64mb\"",
            &["segment_bytes", "\"mb\"", "MiB"][..],
        ),
        (
            "listen = \"127.0.0.1:8086\"",
            "listen = \"127.0.0.1\"",
            &["http.listen", "\"127.0.0.1\"", "host:port"][..],
        ),
        (
            "high_water = \"768MiB\"",
            "high_water = \"768MiB\"\nseries_catalog = \"1GiB\"",
            &["memory.series_catalog", "memory.high_water"][..],
        ),
    ];
    for (line, changed, words) in cases {
        assert!(base.contains(line), "{line}");
        let text = base.replacen(line, changed, 1);
        let extra = changed;
        let (ok, err) = check_config(&text);
        assert!(!ok, "accepted:\n{extra}");
        for w in words {
            assert!(err.contains(w), "{extra}: {err:?} should name {w}");
        }
        assert!(
            !err.to_lowercase().contains("backtrace") && err.lines().count() <= 2,
            "{err}"
        );
    }
    let (ok, out) = check_config(base);
    assert!(ok, "{out}");
}
