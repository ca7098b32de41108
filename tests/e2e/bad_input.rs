//! Hostile input (SPEC §4, §7): no body, query string or header may cause a 5xx, a panic or a
//! hang, and no name from a request may create a file outside the data dir.

use std::io::Read;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};

use crate::support::Rng;
use crate::support::*;

const T0: i64 = BASE_S * SEC_NS;
const WRITE_PATHS: [&str; 3] = [
    "/write?db=bad",
    "/api/v2/write?bucket=bad",
    "/api/v3/write_lp?db=bad",
];

/// Everything under the temp root must be the config or inside `data/`.
fn assert_nothing_outside_data_dir(server: &TestServer) {
    for rel in tree(server.root()) {
        assert!(
            rel == "regions.toml" || rel == "data/" || rel.starts_with("data/"),
            "file outside the data dir: {rel}"
        );
    }
}

/// Databases that exist on disk, per region.
fn db_dirs(server: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    for region in REGIONS {
        let Ok(rd) = std::fs::read_dir(server.data_dir().join(region)) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() && name != "wal" && name != "_manifest" {
                out.push(name);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Garbage, binary and malformed bodies: 400 (or 204 when there is nothing to write), the
/// server stays healthy, and valid writes still work.
#[test]
fn garbage_and_binary_bodies_are_client_errors() {
    let mut server = TestServer::start(ServerConfig::default());
    let mut rng = Rng::new(0xBAD);
    let random: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    // (body, expected status: Some(400) bad, Some(204) nothing to write, None = any 2xx/4xx)
    let bodies: Vec<(Vec<u8>, Option<u16>)> = vec![
        (random, Some(400)),
        (b"\x00\x01\x02\x03".to_vec(), Some(400)),
        (b"not line protocol at all".to_vec(), Some(400)),
        (b"=,= ,".to_vec(), Some(400)),
        (b"m".to_vec(), Some(400)),
        (b"m ".to_vec(), Some(400)),
        (b"m v".to_vec(), Some(400)),
        (b"m v=".to_vec(), Some(400)),
        (b"m,t v=1".to_vec(), Some(400)),
        (b"m,t= v=1".to_vec(), Some(400)),
        (b"m v=1 notatime".to_vec(), Some(400)),
        (b"m v=1 1 extra".to_vec(), Some(400)),
        (b"m v=\"unterminated".to_vec(), Some(400)),
        (b"m v=1u2".to_vec(), Some(400)),
        (b"m v=-1u".to_vec(), Some(400)),
        (b"m v=99999999999999999999i".to_vec(), Some(400)),
        (b"m v=18446744073709551616u".to_vec(), Some(400)),
        (b"m v=1,v2".to_vec(), Some(400)),
        (b"m,a=1,a=2 v=1".to_vec(), Some(400)),
        (b"\xEF\xBB\xBFm v=1".to_vec(), None), // BOM: an odd but legal measurement name
        (
            "\u{FEFF}m v=1"
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect(),
            Some(400),
        ),
        (b"".to_vec(), Some(204)),
        (b"\n\n\r\n   \n".to_vec(), Some(204)),
        (b"# only a comment\n".to_vec(), Some(204)),
        (
            format!("#{}\n", "x".repeat(100_000)).into_bytes(),
            Some(204),
        ),
    ];
    for (body, expect) in &bodies {
        for path in WRITE_PATHS {
            let r = server.post(path, body.clone());
            assert!(
                r.status < 500,
                "{path} {:?}: 5xx {r:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            if let Some(want) = expect {
                assert_eq!(
                    r.status,
                    *want,
                    "{path} {:?}: {r:?}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                );
            }
            if r.status == 400 {
                r.json();
            }
        }
    }
    server.assert_healthy();
    server.write_ok("bad", &format!("ok v=1 {T0}"));
    server.stop();
    assert_clean_data_dir(&server.data_dir());
    assert_nothing_outside_data_dir(&server);
}

/// A 2 MB single line: too long a name or string value is a 400 naming the line, not a
/// crash or a hang; the server keeps serving.
#[test]
fn two_megabyte_single_lines_are_rejected_cleanly() {
    let mut server = TestServer::start(ServerConfig::default());
    let big = "a".repeat(2 << 20);
    let bodies = [
        format!("{big} v=1 {T0}"),
        format!("m,t={big} v=1 {T0}"),
        format!("m {big}=1 {T0}"),
        format!("m s=\"{big}\" {T0}"),
        big.clone(),
        format!("m v=1 {T0}{big}"),
    ];
    for body in &bodies {
        for path in WRITE_PATHS {
            let t = std::time::Instant::now();
            let r = server.post(path, body.clone());
            assert_eq!(
                r.status,
                400,
                "{path}: {}",
                &r.body[..r.body.len().min(300)]
            );
            assert!(r.body.len() < 64 * 1024, "error echoes the whole line back");
            assert!(
                t.elapsed().as_secs() < 10,
                "a 2 MB line took {:?}",
                t.elapsed()
            );
        }
    }
    // One 2 MB valid body of many short lines is fine.
    let many: String = (0..40_000)
        .map(|i| format!("many,h=x v={i}i {}\n", T0 + i))
        .collect();
    assert!(many.len() > 1 << 20);
    let r = server.post("/write?db=big", many);
    assert_eq!(r.status, 204, "{r:?}");
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    assert_eq!(rows.len(), 40_000);
}

/// Bodies over `max_body_bytes` (raw, chunked, or inflating past it) are 413; bad gzip is 400.
#[test]
fn body_limits_and_gzip_errors() {
    let mut server = TestServer::start(ServerConfig::default().max_body_bytes("256KiB"));
    let limit = 256 * 1024;
    let line = format!("lim,h=a v=1 {T0}\n");
    let over: String = line.repeat(limit / line.len() + 10);
    assert!(over.len() > limit);
    for path in WRITE_PATHS {
        let r = server.post_fresh(path, over.clone(), &[]);
        assert_eq!(r.status, 413, "{path}: {r:?}");
    }
    // Chunked (no Content-Length): the limit holds while streaming.
    let r = fresh_client()
        .post(server.url("/write?db=lim"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            over.clone().into_bytes(),
        )))
        .send()
        .expect("chunked request");
    assert_eq!(r.status().as_u16(), 413);
    // Exactly at the limit is fine.
    let at: String = {
        let mut s = line.repeat(limit / line.len());
        while s.len() < limit {
            s.push('\n');
        }
        s
    };
    assert_eq!(at.len(), limit);
    let r = server.post_fresh("/write?db=lim", at, &[]);
    assert_eq!(r.status, 204, "{r:?}");

    let gz = [("Content-Encoding", "gzip")];
    // A gzip bomb: 64 MiB of zeros in a few KB.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..64 {
            std::io::Write::write_all(&mut e, &zeros).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(bomb.len() < limit);
    for path in WRITE_PATHS {
        let t = std::time::Instant::now();
        let r = server.post_fresh(path, bomb.clone(), &gz);
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert!(t.elapsed().as_secs() < 10);
    }
    let valid_gz = gzip(format!("gz,h=a v=2 {T0}\n").as_bytes());
    let mut truncated = valid_gz.clone();
    truncated.truncate(valid_gz.len() - 5);
    for (body, what) in [
        (b"definitely not gzip".to_vec(), "not gzip"),
        (truncated, "truncated gzip"),
        (vec![0x1f, 0x8b], "gzip magic only"),
        (Vec::new(), "empty gzip"),
    ] {
        for path in WRITE_PATHS {
            let r = server.post_fresh(path, body.clone(), &gz);
            assert!(
                r.status == 400 || (what == "empty gzip" && r.status == 204),
                "{what} to {path}: {r:?}"
            );
        }
    }
    let r = server.post_fresh(
        "/write?db=lim",
        b"x".to_vec(),
        &[("Content-Encoding", "br")],
    );
    assert_eq!(r.status, 400, "unsupported encoding: {r:?}");
    let r = server.post_fresh("/write?db=gz", valid_gz, &gz);
    assert_eq!(r.status, 204, "{r:?}");
    server.assert_healthy();
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let dbs: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.db.as_str()).collect();
    assert_eq!(dbs.into_iter().collect::<Vec<_>>(), vec!["gz", "lim"]);
    assert_nothing_outside_data_dir(&server);
}

/// Reads one HTTP/1.1 response (headers + Content-Length body) from a raw socket.
fn read_response(stream: &mut std::net::TcpStream) -> Result<(u16, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("connection closed after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read error: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + len {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed in the body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read error in the body: {e}")),
        }
    }
    Ok((status, head))
}

/// HTTP hygiene after an answer sent before the body was read (413 on Content-Length, 400 on
/// a bad parameter): the server must either read the rest of the body, keeping the
/// keep-alive connection usable, or send `Connection: close`. Closing silently breaks a
/// client's next request on that connection (reqwest/hyper: "IncompleteMessage"). Checked
/// on a raw socket, so the result does not depend on a client's timing.
#[test]
fn early_error_answers_leave_keep_alive_connections_usable() {
    use std::io::Write;
    let mut server = TestServer::start(ServerConfig::default().max_body_bytes("256KiB"));
    let big = format!("ka,h=a v=1 {T0}\n").repeat(300 * 1024 / 20);
    let mut problems = Vec::new();
    for (path, want, len) in [
        ("/write?db=ka", 413, big.len()),
        ("/write?db=ka&precision=bogus", 400, 200 * 1024),
        ("/api/v3/write_lp?db=..", 400, 200 * 1024),
    ] {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let body = &big.as_bytes()[..len];
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n\r\n",
            server.addr()
        );
        // The server may answer (and close) before the whole body is sent: ignore write errors.
        let _ = s.write_all(req.as_bytes()).and_then(|_| s.write_all(body));
        let (status, head) = match read_response(&mut s) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("{path}: no answer: {e}"));
                continue;
            }
        };
        assert_eq!(status, want, "{path}: {head}");
        if head.contains("connection: close") {
            continue; // announced: the client will not reuse the connection
        }
        let next = format!("ka,h=b v=1 {T0}");
        let req2 = format!(
            "POST /write?db=ka HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{next}",
            server.addr(),
            next.len()
        );
        let outcome = s
            .write_all(req2.as_bytes())
            .map_err(|e| format!("write error: {e}"))
            .and_then(|_| read_response(&mut s));
        match outcome {
            Ok((204, _)) => {}
            other => problems.push(format!(
                "after {want} from {path} without `Connection: close`, the next request on the \
                 same connection got {other:?}"
            )),
        }
    }
    server.assert_healthy();
    server.stop();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Bad precision, missing or unsafe db names: 400, nothing written anywhere; unknown
/// parameters are ignored.
#[test]
fn bad_parameters_and_unsafe_names() {
    let mut server = TestServer::start(ServerConfig::default());
    let body = format!("p,h=a v=1 {}", BASE_S);
    for path in [
        "/write?db=x&precision=x",
        "/write?db=x&precision=nanoseconds",
        "/api/v2/write?bucket=x&precision=m",
        "/api/v2/write?bucket=x&precision=h",
        "/api/v3/write_lp?db=x&precision=minute",
        "/api/v3/write_lp?db=x&accept_partial=maybe",
        "/api/v3/write_lp?db=x&no_sync=perhaps",
        "/write",
        "/write?precision=s",
        "/api/v2/write",
        "/api/v2/write?db=x",
        "/api/v3/write_lp",
        "/api/v3/write_lp?bucket=x",
        // Names of the directories beside the databases.
        "/write?db=wal",
        "/write?db=_manifest",
        "/api/v2/write?bucket=_manifest",
    ] {
        let r = server.post(path, body.clone());
        assert_eq!(r.status, 400, "{path}: {r:?}");
        r.json();
    }
    let r = server.post("/write?db=_manifest", body.clone());
    assert!(r.body.contains("reserved"), "{r:?}");
    let long = "d".repeat(65);
    let unsafe_names = [
        "..%2Fx",
        "../x",
        "..",
        ".",
        "a/b",
        "a%2Fb",
        "",
        long.as_str(),
        "-x",
        "a%20b",
        "%C3%A9",
        "a%00b",
        "x%5Cy",
        "%2E%2E",
        "/etc",
        "a.b",
    ];
    for name in unsafe_names {
        for (prefix, key) in [
            ("/write", "db"),
            ("/api/v2/write", "bucket"),
            ("/api/v3/write_lp", "db"),
        ] {
            let path = format!("{prefix}?{key}={name}&precision=s");
            let r = server.post(&path, body.clone());
            assert_eq!(r.status, 400, "{path}: {r:?}");
        }
    }
    let ok64 = "D".repeat(64);
    let r = server.post(&format!("/write?db={ok64}&precision=s"), body.clone());
    assert_eq!(r.status, 204, "a 64-character name is valid: {r:?}");
    let r = server.post(
        "/write?db=unk&precision=s&u=user&p=&consistency=any&foo=bar&foo=baz&rp=x",
        body.clone(),
    );
    assert_eq!(r.status, 204, "unknown parameters are ignored: {r:?}");
    let r = server.post(
        "/api/v3/write_lp?db=unk3&precision=second&whatever=1&db=ignored-second",
        body.clone(),
    );
    assert_eq!(r.status, 204, "{r:?}");
    // Measurement names that look like paths are only names: percent-encoded on disk.
    let tricky = [
        "..",
        "../../x",
        "a/b",
        "/etc/passwd",
        ".",
        "%2F",
        "C:\\x",
        "nul\u{1}x",
    ];
    let mut body = String::new();
    for (i, m) in tricky.iter().enumerate() {
        body.push_str(&format!("{} v={i} {}\n", esc_measurement(m), T0 + i as i64));
    }
    let r = server.post("/write?db=paths", body);
    // The control character is not allowed in a name: that one line is rejected.
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("line 8"), "{r:?}");
    server.stop();
    assert_nothing_outside_data_dir(&server);
    assert_clean_data_dir(&server.data_dir());
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let mut names: Vec<String> = rows
        .iter()
        .filter(|r| r.db == "paths")
        .map(|r| r.measurement.clone())
        .collect();
    names.sort();
    let mut want: Vec<String> = tricky[..7].iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        db_dirs(&server),
        vec![
            ok64,
            "paths".to_string(),
            "unk".to_string(),
            "unk3".to_string()
        ]
    );
}

/// Invalid UTF-8, NaN/Inf, out-of-range numbers and timestamps that overflow at the request
/// precision are bad lines (400 naming the line); valid lines of the same body are written.
#[test]
fn invalid_utf8_nan_inf_and_overflowing_timestamps() {
    let mut server = TestServer::start(ServerConfig::default());
    // Valid lines without a timestamp (server time), so they suit every precision.
    let good = |i: usize, j: usize| format!("u8,h=ok,i={i},j={j} v=1\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/write?db=v", b"u8\xff v=1 1\n".to_vec()),
        ("/write?db=v", b"u8,h=\xc3\x28 v=1 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v\xfe=1 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a s=\"\xed\xa0\x80\" 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=NaN 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=nan 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=inf 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=-Inf 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=Infinity 1\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=1e400 1\n".to_vec()),
        (
            "/write?db=v&precision=s",
            b"u8,h=a v=1 9223372036854775\n".to_vec(),
        ),
        (
            "/write?db=v&precision=s",
            b"u8,h=a v=1 -9223372036854775\n".to_vec(),
        ),
        ("/write?db=v&precision=h", b"u8,h=a v=1 3000000\n".to_vec()),
        (
            "/write?db=v&precision=m",
            b"u8,h=a v=1 200000000\n".to_vec(),
        ),
        (
            "/write?db=v&precision=ms",
            b"u8,h=a v=1 9223372036854776\n".to_vec(),
        ),
        (
            "/api/v2/write?bucket=v&precision=s",
            b"u8,h=a v=1 9223372036854775\n".to_vec(),
        ),
        (
            "/api/v3/write_lp?db=v&precision=second",
            b"u8,h=a v=1 9223372036854775\n".to_vec(),
        ),
        ("/write?db=v", b"u8,h=a v=1 9223372036854775808\n".to_vec()),
        ("/write?db=v", b"u8,h=a v=1 -9223372036854775809\n".to_vec()),
    ];
    for (i, (path, bad)) in cases.iter().enumerate() {
        let mut body = good(i, 0).into_bytes();
        body.extend_from_slice(bad);
        body.extend_from_slice(good(i, 1).as_bytes());
        let r = server.post(path, body);
        assert_eq!(
            r.status,
            400,
            "{path} {:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
        let msg = r.body.clone();
        assert!(
            msg.contains("line 2") || msg.contains("\"line_number\":2"),
            "{path} {:?}: must name line 2: {msg}",
            String::from_utf8_lossy(bad)
        );
    }
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    assert_eq!(rows.len(), cases.len() * 2, "the valid lines are written");
    assert!(rows.iter().all(|r| r.tags["h"] == "ok"));
}

/// Extreme but representable timestamps (the ends of the i64 ns range) never cause a 5xx;
/// if accepted, the point is stored in the partition its time says.
#[test]
fn extreme_timestamps_never_cause_a_server_error() {
    let mut server = TestServer::start(ServerConfig::default());
    let mut accepted = Vec::new();
    for (i, ts) in [
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 2,
        -9_223_372_036_854_775_806,
        -9_223_369_200_000_000_001, // just below the lowest whole 1h partition start
        -1,
        0,
        i64::MAX - 1,
        i64::MAX,
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!("ext,i={i} v=1 {ts}");
        let r = server.post("/write?db=ext", body.clone());
        assert!(r.status == 204 || r.status == 400, "{body}: {r:?}");
        if r.status == 204 {
            accepted.push(ts);
        }
        server.assert_healthy();
    }
    server.stop();
    let rows = read_rows(&server.data_dir(), HOUR_NS);
    let mut times: Vec<i64> = rows.iter().map(|r| r.time).collect();
    times.sort();
    accepted.sort();
    assert_eq!(times, accepted);
}

fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// Property: random bytes (and near-line-protocol text) as bodies, with random encodings and
/// junk query strings, never give a 5xx or a dropped connection; the server stays healthy,
/// stops cleanly, and writes nothing outside its data dir.
#[test]
fn random_bodies_never_cause_a_server_error() {
    let mut server = TestServer::start(ServerConfig::default().max_body_bytes("64KiB"));
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        "[a-z0-9,= \"\\\\.#\n\r\tiu\\-eE]{0,400}".prop_map(String::into_bytes),
        (
            "[a-z]{1,8}(,[a-z]{1,4}=[a-z0-9\\\\ ,=]{1,6}){0,3}",
            "[a-z]{1,4}=(-?[0-9]{1,25}(\\.[0-9]*)?(e-?[0-9]{1,4})?[iu]?|\"[^\"]{0,20}\"|t|F|NaN)",
            "( -?[0-9]{0,22})?"
        )
            .prop_map(|(a, b, c)| format!("{a} {b}{c}\n").into_bytes()),
    ];
    let strategy = (
        body,
        0usize..3,
        0usize..6,
        proptest::collection::vec(any::<u8>(), 0..24),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(PtConfig {
        cases: 64,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let client = http_client();
    let base = server.addr().to_string();
    let result = runner.run(&strategy, |(body, ep, enc, junk, junk_in_precision)| {
        let path = WRITE_PATHS[ep];
        let mut url = format!("http://{base}{path}");
        if junk_in_precision {
            url.push_str(&format!("&precision={}", pct(&junk)));
        } else {
            url.push_str(&format!("&{}={}", pct(&junk), pct(&junk)));
        }
        let (body, headers): (Vec<u8>, Vec<(&str, &str)>) = match enc {
            0 => (gzip(&body), vec![("Content-Encoding", "gzip")]),
            1 => (body, vec![("Content-Encoding", "gzip")]),
            2 => (body, vec![("Content-Encoding", "identity")]),
            3 => (body, vec![("Content-Type", "application/octet-stream")]),
            _ => (body, vec![]),
        };
        let r = try_post(&client, &url, body, &headers)
            .map_err(|e| TestCaseError::fail(format!("request failed (dropped?): {e}")))?;
        prop_assert!(r.status < 500, "{url}: {r:?}");
        prop_assert!(
            r.status == 204 || r.status == 400 || r.status == 413,
            "{url}: {r:?}"
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver stderr:\n{}", server.logs());
    }
    server.assert_healthy();
    // A GET on a write endpoint, an unknown path, odd methods: 4xx.
    for path in [
        "/write",
        "/nope",
        "/api/v3/write_lp/../../etc/passwd",
        "/%2e%2e/x",
    ] {
        let r = server.get(path);
        assert!((400..500).contains(&r.status), "GET {path}: {r:?}");
    }
    let mut r = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .delete(server.url("/write?db=x"))
        .send()
        .unwrap();
    let mut sink = String::new();
    let _ = r.read_to_string(&mut sink);
    assert!((400..500).contains(&r.status().as_u16()));
    server.stop();
    assert_clean_data_dir(&server.data_dir());
    assert_nothing_outside_data_dir(&server);
}
