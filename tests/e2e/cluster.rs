//! Cluster mode (SPEC §8) on a real NATS server with JetStream (Debian's `nats-server`,
//! started here on a free loopback port with its own store dir): node A hosts `americas`
//! and `global`, node B hosts `eu` and `apac`, both read one `regions.toml` with a
//! `[cluster]` section and are told apart by `--node`.
//!
//! What is checked against sums computed here from the points written:
//! - a write is acknowledged once JetStream holds it, whichever regions it touches;
//! - with B killed (-9), writes to A touching B's regions are still acknowledged, and B
//!   finds them all when it comes back, each once;
//! - with A killed right after its writes were acknowledged (before it split them), A
//!   splits them when it comes back;
//! - a point rewritten later wins;
//! - with a Meridian node hung (SIGSTOP), writes are still acknowledged at once and a query
//!   costs at most its deadline, its regions reported as `timeout`;
//! - with NATS hung (SIGSTOP) or down, a write is refused with 503 within the publish
//!   timeout, and nothing of it is stored; writes resume when NATS returns.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Node, ServerConfig, free_port, http_client};

const NATS_MISSING: &str = "`nats-server` is not installed, and the cluster tests need it: \
install Debian's package (`apt-get install nats-server`), or set MERIDIAN_NATS_SERVER";

/// `nats-server` with JetStream on a free loopback port; killed when dropped.
struct Nats {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        Nats::start_with(dir, "nats", "", free_port())
    }

    /// A server named `name` (its files under `dir/name*`), with `extra` config lines.
    fn start_with(dir: &Path, name: &str, extra: &str, port: u16) -> Nats {
        let conf = dir.join(format!("{name}.conf"));
        let store = dir.join(format!("{name}-jetstream"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{ store_dir: {:?} }}\n{extra}",
                store.display().to_string()
            ),
        )
        .expect("writing nats.conf");
        let mut n = Nats {
            child: None,
            port,
            conf,
            log: dir.join(format!("{name}.log")),
        };
        n.spawn();
        n
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let program =
            std::env::var("MERIDIAN_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = File::create(&self.log).expect("creating the NATS log");
        let child = Command::new(&program)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{NATS_MISSING} ({program}: {e})"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("Server is ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nats-server did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running nats-server").id()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

const GEOS: [(&str, &str); 4] = [
    ("us-east-1", "americas"),
    ("eu-west-1", "eu"),
    ("ap-south-1", "apac"),
    ("af-south-1", "global"),
];
const T0: i64 = 1_767_225_600_000_000_000;
const PER_GEO: i64 = 25;

/// Per geo value: (points, sum of v) as the engine must answer them.
type Expected = BTreeMap<String, (i64, i64)>;

/// Body `b`: 25 points per geo, each of its own time; `v = base + b * 1000 + i`. Body
/// numbers are distinct per call site, so the points of two bodies never coincide unless
/// a test rewrites one on purpose (same `b`, other `base`).
fn body(b: i64, base: i64, expected: &mut Expected) -> String {
    let mut out = String::new();
    for (g, (geo, _)) in GEOS.iter().enumerate() {
        for i in 0..PER_GEO {
            let v = base + b * 1000 + i;
            let t = T0 + (b * 100 + i) * 1_000_000_000 + g as i64;
            out.push_str(&format!("cpu,region={geo},host=h{i} v={v}i {t}\n"));
            let e = expected.entry(geo.to_string()).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    out
}

fn write(node: &Node, body: &str) -> (u16, String) {
    let r = http_client()
        .post(format!("{}/write?db=cl", node.url))
        .body(body.to_string())
        .send()
        .expect("write");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// (count, sum) per geo value, as node `via` answers after fanning out; `None` if partial.
fn answer(via: &Node) -> Option<Expected> {
    let j: serde_json::Value = http_client()
        .get(format!(
            "{}/api/v1/query?db=cl&measurement=cpu&fields=v&agg=count,sum&group_by=region",
            via.url
        ))
        .send()
        .ok()?
        .json()
        .ok()?;
    if j["partial"] != false {
        return None;
    }
    let mut out = Expected::new();
    for s in j["series"].as_array()? {
        let geo = s["tags"]["region"].as_str()?.to_string();
        let cols: Vec<&str> = s["columns"]
            .as_array()?
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        let row = s["values"][0].as_array()?;
        let at = |name: &str| cols.iter().position(|c| *c == name).map(|i| &row[i]);
        out.insert(geo, (at("count_v")?.as_i64()?, at("sum_v")?.as_i64()?));
    }
    Some(out)
}

/// Waits until `via` answers exactly `expected` (the logs are applied asynchronously).
fn wait_for(via: &Node, expected: &Expected, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = answer(via);
        if last.as_ref() == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: expected {expected:?}, last answer {last:?}");
}

/// Two free ports for nodes A and B, and [`cluster_config`] for them on NATS `nats`.
fn two_node_config(root: &Path, nats: &str) -> (PathBuf, u16, u16) {
    let (pa, pb) = (free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    (cluster_config(root, nats, &url(pa), &url(pb)), pa, pb)
}

/// Adds `line` under every `[[region]]` of the config at `path` (each name found once).
fn add_to_regions(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).expect("config");
    for region in ["eu", "apac", "americas", "global"] {
        let at = format!("name = \"{region}\"\n");
        assert_eq!(text.matches(&at).count(), 1, "{region} in {text}");
        text = text.replacen(&at, &format!("{at}{line}\n"), 1);
    }
    std::fs::write(path, text).expect("config");
}

fn cluster_config(root: &Path, nats: &str, a: &str, b: &str) -> PathBuf {
    // A short query timeout: a hung node costs a query at most that (replicas are asked
    // after a quarter of it).
    let mut cfg = ServerConfig::default()
        .query_line("timeout = \"4s\"")
        .render();
    for (name, url) in [("americas", a), ("global", a), ("eu", b), ("apac", b)] {
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nurl = \"{url}\"\n"),
            1,
        );
    }
    cfg.push_str(&format!(
        "\n[cluster]\nnats = [\"{nats}\"]\npublish_timeout = \"2s\"\n"
    ));
    let path = root.join("regions.toml");
    std::fs::write(&path, cfg).expect("writing config");
    path
}

#[test]
fn writes_cross_regions_through_jetstream_and_survive_node_and_nats_kills() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut nats = Nats::start(root.path());
    let (config, pa, pb) = two_node_config(root.path(), &nats.url());
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let mut a = Node::start(&da, &config, pa, &["americas", "global"], &["--node", "a"]);
    let mut b = Node::start(&db, &config, pb, &["eu", "apac"], &["--node", "b"]);
    let mut expected = Expected::new();

    // Both nodes up: bodies touching every region, through either node.
    for n in 0..6 {
        let node = if n % 2 == 0 { &a } else { &b };
        let (status, text) = write(node, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "both nodes up");
    wait_for(&b, &expected, "both nodes up, asked through B");

    // B killed: writes touching its regions are acknowledged all the same.
    b.kill9();
    for n in 6..12 {
        let (status, text) = write(&a, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "with B down: {text}");
    }
    b.restart();
    wait_for(&a, &expected, "B back after kill -9");

    // B hung (SIGSTOP): writes touching its regions are still acknowledged at once, and a
    // query costs at most its deadline (4 s), with B's regions reported as `timeout`.
    let b_pid = b.pid().to_string();
    let sig = |s: &str, pid: &str| {
        assert!(
            Command::new("kill")
                .args([s, pid])
                .status()
                .expect("kill")
                .success()
        );
    };
    sig("-STOP", &b_pid);
    let started = Instant::now();
    let (status, text) = write(&a, &body(20, 0, &mut expected));
    assert_eq!(status, 204, "with B hung: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let j: serde_json::Value = http_client()
        .get(format!(
            "{}/api/v1/query?db=cl&measurement=cpu&fields=v&agg=count",
            a.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("query");
    let took = started.elapsed();
    sig("-CONT", &b_pid);
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    assert_eq!(j["partial"], true, "{j}");
    assert_eq!(j["regions"]["eu"]["status"], "timeout", "{j}");
    assert_eq!(j["regions"]["americas"]["status"], "ok", "{j}");
    wait_for(&a, &expected, "B resumed");

    // A killed right after its writes were acknowledged: what it had not split yet is
    // split when it returns.
    for n in 12..18 {
        let (status, text) = write(&a, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    a.kill9();
    a.restart();
    wait_for(&b, &expected, "A back after kill -9");

    // A point rewritten later wins: body 3 again with other values, through the other node.
    let mut old = Expected::new();
    body(3, 0, &mut old);
    let mut new = Expected::new();
    let rewrite = body(3, 500_000, &mut new);
    for (geo, (_, sum)) in expected.iter_mut() {
        *sum += new[geo].1 - old[geo].1;
    }
    let (status, text) = write(&a, &rewrite);
    assert_eq!(status, 204, "{text}");
    wait_for(&b, &expected, "rewritten points");

    // A delete right after writes were acknowledged: they are applied before it runs, on
    // every node, so none of them comes back after it. B is down while the writes are
    // acknowledged and the delete is sent as soon as it is back, while it still has them
    // to apply. Bodies 50..250 lie in [T0 + 5000 s, T0 + 25000 s).
    b.kill9();
    let mut deleted = Expected::new();
    for n in 50..250 {
        let (status, text) = write(&a, &body(n, 0, &mut deleted));
        assert_eq!(status, 204, "{text}");
    }
    b.restart();
    let r = http_client()
        .post(format!("{}/query", a.url))
        .form(&[
            ("db", "cl"),
            (
                "q",
                "DELETE FROM cpu WHERE time >= '2026-01-01T01:23:20Z' AND time < '2026-01-01T06:56:40Z'",
            ),
        ])
        .send()
        .expect("delete");
    let status = r.status();
    let text = r.text().unwrap_or_default();
    assert!(status == 200 && !text.contains("error"), "{status} {text}");
    std::thread::sleep(Duration::from_millis(1500));
    wait_for(&a, &expected, "after the delete");

    // NATS hung (SIGSTOP) for longer than the publish timeout and the clock margin: the
    // write is refused (503) within the timeout. Then either the node gives the connection
    // up as stale (a ping a second) and the body is never stored, or JetStream stores it
    // when it resumes, after the body's deadline, and the splitter drops it (counted):
    // either way nothing of it is applied.
    let pid = nats.pid().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    signal("-STOP");
    let started = Instant::now();
    let mut refused = Expected::new();
    let (status, text) = write(&a, &body(30, 0, &mut refused));
    let took = started.elapsed();
    assert_eq!(status, 503, "{text}");
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    std::thread::sleep(Duration::from_secs(6).saturating_sub(took));
    signal("-CONT");
    // Writes resume once the node is connected again (503 until then, never lost).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut e = expected.clone();
        let (status, text) = write(&a, &body(31, 0, &mut e));
        if status == 204 {
            expected = e;
            break;
        }
        assert_eq!(status, 503, "{text}");
        assert!(Instant::now() < deadline, "writes did not resume: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(&b, &expected, "after NATS resumed");
    let metrics = http_client()
        .get(format!("{}/metrics", a.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains("meridian_cluster_bodies_expired_total 1")
            || metrics.contains("meridian_cluster_bodies_expired_total 0"),
        "{metrics}"
    );

    // NATS down: refused within the publish timeout, nothing stored.
    nats.kill9();
    let started = Instant::now();
    let mut refused = Expected::new();
    let (status, text) = write(&a, &body(40, 0, &mut refused));
    assert_eq!(status, 503, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );
    nats.spawn();
    // The client reconnects on its own; until then writes are refused (503), never lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 41;
    loop {
        let mut e = expected.clone();
        let (status, text) = write(&b, &body(n, 0, &mut e));
        if status == 204 {
            expected = e;
            break;
        }
        assert_eq!(status, 503, "{text}");
        assert!(Instant::now() < deadline, "writes did not resume: {text}");
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(&a, &expected, "after NATS came back");

    // Stopped cleanly, every point was flushed to the hosting node's files.
    a.stop();
    b.stop();
}

/// JetStream answers once the servers elected a metadata leader (nats-server logs "new
/// metadata leader" on the others and "is new JetStream cluster metadata leader" on it;
/// "no metadata leader" does not count).
fn wait_for_metadata_leader(servers: &[&Nats]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !servers.iter().any(|n| {
        let log = n.log_text();
        log.contains("new metadata leader")
            || log.contains("is new JetStream cluster metadata leader")
    }) {
        assert!(Instant::now() < deadline, "no JetStream metadata leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Puts a routing lead of 8 s in the config at `path` (a publish must land within a quarter
/// of it, also on a busy machine) and returns its text.
fn with_short_lead(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("config") + "routing_lead = \"8s\"\n";
    std::fs::write(path, &text).expect("config");
    text
}

/// Node A (americas, global) and node B (eu, apac), each with its config and its data dir
/// under `root`.
fn two_nodes(root: &Path, configs: (&Path, &Path), ports: (u16, u16)) -> (Node, Node) {
    let a = Node::start(
        &root.join("a"),
        configs.0,
        ports.0,
        &["americas", "global"],
        &["--node", "a"],
    );
    let b = Node::start(
        &root.join("b"),
        configs.1,
        ports.1,
        &["eu", "apac"],
        &["--node", "b"],
    );
    (a, b)
}

/// Node A (americas, global) and nodes B and C (both eu and apac), each with its data dir
/// under `root`.
fn three_nodes(root: &Path, config: &Path, ports: (u16, u16, u16)) -> (Node, Node, Node) {
    let dir = |n: &str| root.join(n);
    let a = Node::start(
        &dir("a"),
        config,
        ports.0,
        &["americas", "global"],
        &["--node", "a"],
    );
    let b = Node::start(
        &dir("b"),
        config,
        ports.1,
        &["eu", "apac"],
        &["--node", "b"],
    );
    let c = Node::start(
        &dir("c"),
        config,
        ports.2,
        &["eu", "apac"],
        &["--node", "c"],
    );
    (a, b, c)
}

/// A region hosted by two nodes (cluster mode): each applies the region's log into its own
/// data dir; queries through a third node fail over to the replica when the first node is
/// killed, and a node that comes back catches up from where it stopped.
#[test]
fn a_region_hosted_by_two_nodes_answers_while_either_is_down() {
    let root = tempfile::tempdir().expect("temp dir");
    let nats = Nats::start(root.path());
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let config = cluster_config(root.path(), &nats.url(), &url(pa), &url(pb));
    let text = std::fs::read_to_string(&config).expect("config");
    let mut text = text;
    for r in ["eu", "apac"] {
        text = text.replacen(
            &format!("name = \"{r}\"\nurl = \"{}\"\n", url(pb)),
            &format!(
                "name = \"{r}\"\nurl = \"{}\"\nreplicas = [\"{}\"]\n",
                url(pb),
                url(pc)
            ),
            1,
        );
    }
    assert_eq!(text.matches("replicas").count(), 2, "{text}");
    std::fs::write(&config, &text).expect("config");
    let (a, mut b, mut c) = three_nodes(root.path(), &config, (pa, pb, pc));
    let mut expected = Expected::new();
    for n in 0..4 {
        let (status, text) = write(&a, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "both replicas up");
    wait_for(&b, &expected, "asked through B");
    wait_for(&c, &expected, "asked through C");

    // B (the region's url) killed: A's answers come from C, complete.
    b.kill9();
    for n in 4..8 {
        let (status, text) = write(&a, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "B down, C answers");

    // B back and hung (SIGSTOP): a query through A asks B (the url), then C after a quarter
    // of the query timeout (1 s), and is answered complete.
    b.restart();
    wait_for(&b, &expected, "B back");
    let signal = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let started = Instant::now();
    signal("-STOP", b.pid());
    let got = answer(&a);
    let took = started.elapsed();
    signal("-CONT", b.pid());
    assert_eq!(got.as_ref(), Some(&expected), "with B hung");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");

    // C killed: B answers alone, with what was written meanwhile.
    c.kill9();
    let (status, text) = write(&a, &body(8, 0, &mut expected));
    assert_eq!(status, 204, "{text}");
    wait_for(&a, &expected, "C down, B caught up");
    c.restart();
    wait_for(&c, &expected, "C caught up");
    a.stop();
    b.stop();
    c.stop();
}

/// JetStream on a cluster of three NATS servers, streams with three replicas: a NATS
/// server killed (-9), then another while the first is back, costs at most a few refused
/// writes (503, retried by the client as any client retries) and no acknowledged point.
#[test]
fn writes_survive_the_loss_of_a_nats_server() {
    let root = tempfile::tempdir().expect("temp dir");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, c)| format!("\"nats://127.0.0.1:{c}\""))
        .collect();
    let mut servers: Vec<Nats> = ports
        .iter()
        .enumerate()
        .map(|(i, (p, c))| {
            let extra = format!(
                "cluster {{ name: \"mc\", listen: 127.0.0.1:{c}, routes: [{}] }}\n",
                routes.join(", ")
            );
            Nats::start_with(root.path(), &format!("n{i}"), &extra, *p)
        })
        .collect();
    wait_for_metadata_leader(&servers.iter().collect::<Vec<_>>());
    let urls: Vec<String> = servers.iter().map(|n| format!("\"{}\"", n.url())).collect();
    let (config, pa, pb) = two_node_config(root.path(), &servers[0].url());
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replacen(
            &format!("nats = [\"{}\"]", servers[0].url()),
            &format!(
                "nats = [{}]\nreplicas = 3\nnats_cluster = \"mc\"",
                urls.join(", ")
            ),
            1,
        )
        // eu's stream placed on the NATS cluster by name (its geography).
        .replacen(
            "name = \"eu\"\n",
            "name = \"eu\"\nnats_cluster = \"mc\"\n",
            1,
        );
    assert!(text.contains("replicas = 3"), "{text}");
    assert_eq!(text.matches("nats_cluster").count(), 2, "{text}");
    std::fs::write(&config, text).expect("config");
    let (a, b) = two_nodes(root.path(), (&config, &config), (pa, pb));
    let mut expected = Expected::new();
    // Writes as a client does them: a 503 is retried (the same body: idempotent).
    let mut refused = 0;
    let mut write_retrying = |node: &Node, n: i64, expected: &mut Expected| {
        let mut e = Expected::new();
        let text = body(n, 0, &mut e);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, msg) = write(node, &text);
            if status == 204 {
                break;
            }
            assert_eq!(status, 503, "{msg}");
            refused += 1;
            assert!(Instant::now() < deadline, "writes did not resume: {msg}");
            std::thread::sleep(Duration::from_millis(200));
        }
        for (k, (c, s)) in e {
            let x = expected.entry(k).or_default();
            x.0 += c;
            x.1 += s;
        }
    };
    for n in 0..4 {
        write_retrying(if n % 2 == 0 { &a } else { &b }, n, &mut expected);
    }
    wait_for(&a, &expected, "three NATS servers");
    servers[0].kill9();
    for n in 4..10 {
        write_retrying(if n % 2 == 0 { &a } else { &b }, n, &mut expected);
    }
    wait_for(&a, &expected, "one NATS server killed");
    servers[0].spawn();
    servers[1].kill9();
    for n in 10..16 {
        write_retrying(if n % 2 == 0 { &a } else { &b }, n, &mut expected);
    }
    wait_for(&b, &expected, "another NATS server killed");
    eprintln!("writes refused (503) while NATS servers were lost: {refused}");
    a.stop();
    b.stop();
}

/// (tags, time, fields) of a line of `shapes`, as written.
type ShapeLine = (
    Vec<(&'static str, &'static str)>,
    i64,
    Vec<(&'static str, serde_json::Value)>,
);

/// Per (tags, time): the fields of the point.
type ShapeRows = BTreeMap<(Vec<(String, String)>, i64), BTreeMap<String, serde_json::Value>>;

/// The data shapes agents send, as two writes: a tagless series, optional tags, a sparse
/// line, every field type; then points rewritten with only some of their fields.
fn shapes_lines() -> (Vec<ShapeLine>, Vec<ShapeLine>) {
    use serde_json::json;
    let first: Vec<ShapeLine> = vec![
        (
            vec![],
            T0,
            vec![
                ("f", json!(1.5)),
                ("i", json!(3)),
                ("s", json!("x y")),
                ("b", json!(true)),
                ("u", json!(7)),
            ],
        ),
        (
            vec![("host", "a"), ("region", "eu-west-1")],
            T0,
            vec![("f", json!(2.5)), ("i", json!(4))],
        ),
        (
            vec![("region", "eu-west-1")],
            T0 + 1,
            vec![("f", json!(3.5))],
        ),
        (
            vec![("host", "b"), ("region", "eu-west-1")],
            T0 + 2,
            vec![("s", json!("only, a string"))],
        ),
        (
            vec![("host", "c")],
            T0 + 3,
            vec![("b", json!(false)), ("u", json!(18446744073709551615u64))],
        ),
        (
            vec![("host", "d"), ("region", "ap-south-1")],
            T0 + 4,
            vec![("i", json!(-9)), ("s", json!("=\"q\""))],
        ),
    ];
    let second: Vec<ShapeLine> = vec![
        (vec![], T0, vec![("f", json!(9.5))]),
        (
            vec![("host", "a"), ("region", "eu-west-1")],
            T0,
            vec![("i", json!(40))],
        ),
        (
            vec![("host", "d"), ("region", "ap-south-1")],
            T0 + 4,
            vec![("b", json!(true))],
        ),
    ];
    (first, second)
}

/// `lines` as line protocol of measurement `shapes`.
fn shapes_lp(lines: &[ShapeLine]) -> String {
    use serde_json::Value;
    let mut out = String::new();
    for (tags, t, fields) in lines {
        out.push_str("shapes");
        for (k, v) in tags {
            out.push_str(&format!(",{k}={v}"));
        }
        let fs: Vec<String> = fields
            .iter()
            .map(|(k, v)| match (k, v) {
                (_, Value::String(s)) => {
                    format!("{k}=\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                }
                (&"i", v) => format!("{k}={v}i"),
                (&"u", v) => format!("{k}={v}u"),
                (_, v) => format!("{k}={v}"),
            })
            .collect();
        out.push_str(&format!(" {} {t}\n", fs.join(",")));
    }
    out
}

/// Last write wins, field by field, over `first` then `second`.
fn shapes_model(first: &[ShapeLine], second: &[ShapeLine]) -> ShapeRows {
    let mut model = ShapeRows::new();
    for (tags, t, fields) in first.iter().chain(second) {
        let key = (
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            *t,
        );
        let row = model.entry(key).or_default();
        for (k, v) in fields {
            row.insert(k.to_string(), v.clone());
        }
    }
    model
}

/// What a node answers, as the model's shape: tags present, time, non-null fields;
/// through the native API, or InfluxQL's `SELECT *` (whose columns come from the
/// schema of every region, the other node's too).
fn shapes_answer(node: &Node, influxql: bool) -> Option<ShapeRows> {
    use serde_json::Value;
    let path = if influxql {
        "/query?db=cl&epoch=ns&q=SELECT%20*%20FROM%20shapes"
    } else {
        "/api/v1/query?db=cl&measurement=shapes&epoch=ns"
    };
    let j: Value = http_client()
        .get(format!("{}{path}", node.url))
        .send()
        .ok()?
        .json()
        .ok()?;
    if !influxql && j["partial"] != false {
        return None;
    }
    let s = if influxql {
        &j["results"][0]["series"][0]
    } else {
        &j["series"][0]
    };
    let cols: Vec<&str> = s["columns"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = BTreeMap::new();
    for row in s["values"].as_array()? {
        let row = row.as_array()?;
        let (mut tags, mut fields) = (Vec::new(), BTreeMap::new());
        for (c, v) in cols.iter().zip(row).skip(1) {
            match (*c, v) {
                (_, Value::Null) => {}
                ("host" | "region", Value::String(s)) => tags.push((c.to_string(), s.clone())),
                _ => {
                    fields.insert(c.to_string(), v.clone());
                }
            }
        }
        tags.sort();
        out.insert((tags, row[0].as_i64()?), fields);
    }
    Some(out)
}

/// The data shapes agents send, through the whole JetStream path (received by one node,
/// split, sourced, checked again and applied by another): a tagless series, optional
/// tags, a sparse line, every field type, and points rewritten later through the other
/// node with only some of their fields. Every raw row, through either node, must be what
/// a small model of last-write-wins, field by field, computes from the lines written.
#[test]
fn mixed_shapes_and_partial_overwrites_arrive_as_written() {
    use serde_json::Value;
    let root = tempfile::tempdir().expect("temp dir");
    let nats = Nats::start(root.path());
    let (config, pa, pb) = two_node_config(root.path(), &nats.url());
    // Raw rows may cross nodes here, so either node can answer with all of them.
    add_to_regions(&config, "export = \"raw\"");
    let (a, b) = two_nodes(root.path(), (&config, &config), (pa, pb));

    let (first, second) = shapes_lines();
    let model = shapes_model(&first, &second);
    let (status, text) = write(&a, &shapes_lp(&first));
    assert_eq!(status, 204, "{text}");
    let (status, text) = write(&b, &shapes_lp(&second));
    assert_eq!(status, 204, "{text}");

    for (node, influxql) in [(&a, false), (&b, false), (&a, true), (&b, true)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline {
            last = shapes_answer(node, influxql);
            if last.as_ref() == Some(&model) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            last.as_ref(),
            Some(&model),
            "through {} (InfluxQL: {influxql})",
            node.url
        );
    }
    // SHOW FIELD KEYS lists every region's fields on either node.
    for node in [&a, &b] {
        let j: Value = http_client()
            .get(format!("{}/query?db=cl&q=SHOW%20FIELD%20KEYS", node.url))
            .send()
            .and_then(|r| r.json())
            .expect("SHOW FIELD KEYS");
        let keys: Vec<&str> = j["results"][0]["series"][0]["values"]
            .as_array()
            .expect("field keys")
            .iter()
            .filter_map(|r| r[0].as_str())
            .collect();
        assert_eq!(keys, ["b", "f", "i", "s", "u"], "through {}: {j}", node.url);
    }
    a.stop();
    b.stop();
}

/// Runs `meridian ARGS --config CFG`: whether it succeeded, and its stdout and stderr.
fn meridian_cli(args: &[&str], cfg: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .expect("running meridian");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A raw query through `via` for the points of `geo`: its status and body.
fn raw_query(via: &Node, geo: &str) -> (u16, String) {
    let r = http_client()
        .get(format!(
            "{}/api/v1/query?db=cl&measurement=cpu&fields=v&agg=none&where=region={geo}",
            via.url
        ))
        .send()
        .expect("query");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// `/api/v1/regions` of `node`: the region named `name`.
fn region_status(node: &Node, name: &str) -> serde_json::Value {
    let j: serde_json::Value = http_client()
        .get(format!("{}/api/v1/regions", node.url))
        .send()
        .and_then(|r| r.json())
        .expect("regions");
    j["regions"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .cloned()
        .unwrap_or_default()
}

/// Polls `f` every 100 ms for up to 30 s until it returns true.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 30 s");
}

/// Region definitions (url, replicas, export) published at runtime are in force on every
/// node without a restart: a replica added to eu and apac answers for them once B is
/// killed, eu's raw points may cross once its export is "raw" and no longer once it is
/// back to "aggregates"; a url that would leave a node unable to reach a region is not
/// taken by that node (the export rule beside it is); definitions no node can read keep
/// every region's raw points on its nodes until they are replaced.
#[test]
fn region_definitions_change_at_runtime_on_every_node() {
    let root = tempfile::tempdir().expect("temp dir");
    let nats = Nats::start(root.path());
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    // C hosts eu and apac too, but the config names only B for them.
    let config = cluster_config(root.path(), &nats.url(), &url(pa), &url(pb));
    let base = std::fs::read_to_string(&config).expect("config");
    let (a, mut b, c) = three_nodes(root.path(), &config, (pa, pb, pc));
    let mut expected = Expected::new();
    for n in 0..3 {
        let (status, text) = write(&a, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "all nodes up");
    wait_for(&c, &expected, "C applied eu and apac");
    // eu keeps its raw points (export = "aggregates", the default).
    let (status, text) = raw_query(&a, "eu-west-1");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("\\\"eu\\\"") && text.contains("export"),
        "{text}"
    );

    // B killed: without C among eu's nodes, A's answers are partial.
    b.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        answer(&a),
        None,
        "answered complete with eu's only known node down"
    );

    // Published: C is a replica of eu and apac, eu exports raw rows.
    let mut changed = base.clone();
    for r in ["eu", "apac"] {
        let at = format!("name = \"{r}\"\nurl = \"{}\"\n", url(pb));
        assert_eq!(changed.matches(&at).count(), 1, "{r}");
        let extra = if r == "eu" { "export = \"raw\"\n" } else { "" };
        changed = changed.replacen(
            &at,
            &format!("{at}replicas = [\"{}\"]\n{extra}", url(pc)),
            1,
        );
    }
    let published = root.path().join("published.toml");
    std::fs::write(&published, &changed).expect("config");
    let (ok, out) = meridian_cli(&["routing", "publish"], &published);
    assert!(ok, "{out}");
    assert!(out.contains("published region definitions"), "{out}");
    assert!(!out.contains("published routing version"), "{out}");
    // Without a restart, A asks C: complete answers, and eu's raw rows once C read the
    // definitions too (each node reads them within a second, on its own).
    wait_for(&a, &expected, "C answers for eu and apac");
    let mut last = (0, String::new());
    eventually("eu's raw rows answered", || {
        last = raw_query(&a, "eu-west-1");
        last.0 == 200
    });
    let text = last.1;
    let j: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let rows = j["series"][0]["values"].as_array().map_or(0, Vec::len);
    assert_eq!(rows as i64, expected["eu-west-1"].0, "{text}");
    assert_eq!(j["partial"], false, "{text}");
    // apac still keeps its raw points.
    assert_eq!(raw_query(&a, "ap-south-1").0, 403);
    let eu = region_status(&a, "eu");
    assert_eq!(eu["replicas"], serde_json::json!([url(pc)]), "{eu}");
    assert_eq!(eu["export"], "raw", "{eu}");
    let (ok, out) = meridian_cli(&["routing", "show"], &config);
    assert!(ok && out.contains("region definitions published"), "{out}");
    assert!(out.contains(&format!("replicas [{}]", url(pc))), "{out}");
    // The same again: nothing to publish.
    let (ok, out) = meridian_cli(&["routing", "publish"], &published);
    assert!(!ok && out.contains("unchanged"), "{out}");

    // B back: it starts with the published definitions, not its file's.
    b.restart();
    let eu_b = region_status(&b, "eu");
    assert_eq!(eu_b["export"], "raw", "{eu_b}");
    wait_for(&b, &expected, "B back");

    // eu back to aggregates: raw rows refused again, on the node hosting it.
    let (ok, out) = meridian_cli(&["routing", "publish"], &config);
    assert!(ok, "{out}");
    let aggregates = |n: &Node| region_status(n, "eu")["export"]["aggregates"].is_object();
    eventually("eu's raw rows refused again", || {
        raw_query(&a, "eu-west-1").0 == 403
    });
    eventually("C keeps eu's raw points too", || aggregates(&c));
    eventually("A forgot C", || {
        region_status(&a, "eu")["replicas"] == serde_json::json!([])
    });

    // Definitions leaving B no url for americas (which it does not host), and americas'
    // export "raw": B keeps americas' url but takes its export rule, and eu's "raw"; A,
    // which hosts americas, takes them whole.
    let no_url = changed
        .replacen(&format!("url = \"{}\"\n", url(pa)), "", 2)
        .replacen(
            "name = \"americas\"\n",
            "name = \"americas\"\nexport = \"raw\"\n",
            1,
        );
    assert!(!no_url.contains(&url(pa)), "{no_url}");
    let unreachable = root.path().join("unreachable.toml");
    std::fs::write(&unreachable, &no_url).expect("config");
    let (ok, out) = meridian_cli(&["routing", "publish"], &unreachable);
    assert!(ok, "{out}");
    assert!(out.contains("no url"), "{out}");
    for n in [&a, &b] {
        eventually("eu exports raw rows", || {
            region_status(n, "eu")["export"] == "raw"
        });
    }
    assert_eq!(
        region_status(&a, "americas")["url"],
        serde_json::Value::Null
    );
    let am = region_status(&b, "americas");
    assert_eq!(
        (&am["url"], &am["export"]),
        (&url(pa).into(), &"raw".into()),
        "{am}"
    );
    wait_for(&b, &expected, "B still reaches americas");

    // Definitions no node can read (a newer format): eu's raw points stay on its nodes;
    // `routing show` names the problem; a publish replaces them.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value("MERIDIAN_ROUTING").await.expect("bucket");
        let newer = serde_json::json!({"format": 99, "recorded_at": 0, "regions": []});
        kv.put("regions", newer.to_string().into())
            .await
            .expect("put");
    });
    for n in [&a, &b, &c] {
        eventually("raw points kept in", || aggregates(n));
    }
    assert_eq!(raw_query(&a, "eu-west-1").0, 403);
    let (ok, out) = meridian_cli(&["routing", "show"], &config);
    assert!(ok && out.contains("format 99"), "{out}");
    let (ok, out) = meridian_cli(&["routing", "publish"], &published);
    assert!(ok && out.contains("published region definitions"), "{out}");
    for n in [&b, &c] {
        eventually("eu exports raw rows again", || {
            region_status(n, "eu")["export"] == "raw"
        });
    }
    a.stop();
    b.stop();
    c.stop();
}

/// A node that cannot read the published region definitions for three quarters of the
/// routing lead (NATS stopped: they may have tightened a region's export meanwhile) keeps
/// every region's raw points in; once it reads them again, the published rules are back.
#[test]
fn raw_exports_are_held_back_while_the_definitions_cannot_be_read() {
    let root = tempfile::tempdir().expect("temp dir");
    let nats = Nats::start(root.path());
    let (config, pa, pb) = two_node_config(root.path(), &nats.url());
    // A lead of 8 s: exports are held back after 6 s without a read. eu and apac (on B)
    // export raw rows: a node whose routing versions are older than half the lead asks
    // every region, so a raw query for eu's points asks apac too.
    let base = with_short_lead(&config);
    let raw = ["eu", "apac"].iter().fold(base, |text, r| {
        let at = format!("name = \"{r}\"\n");
        text.replacen(&at, &format!("{at}export = \"raw\"\n"), 1)
    });
    std::fs::write(&config, &raw).expect("config");
    let (a, b) = two_nodes(root.path(), (&config, &config), (pa, pb));
    let (ok, out) = meridian_cli(&["routing", "publish"], &config);
    assert!(ok && out.contains("published region definitions"), "{out}");
    // Held back only where definitions were published and read.
    eventually("B read the definitions", || {
        metric(&b, "meridian_cluster_definitions_revision").is_some_and(|r| r > 0.0)
    });
    let mut expected = Expected::new();
    let (status, text) = write(&a, &body(0, 0, &mut expected));
    assert_eq!(status, 204, "{text}");
    eventually("eu's raw rows through A", || {
        raw_query(&a, "eu-west-1").0 == 200
    });

    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &nats.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    signal("-STOP");
    let stopped = Instant::now();
    eventually("eu's raw rows held back", || {
        raw_query(&a, "eu-west-1").0 == 403
    });
    let after = stopped.elapsed();
    signal("-CONT");
    // Not before three quarters of the lead (6 s) without a read; soon after it (the failing
    // reads take up to two publish timeouts, 2 s each here, and a tick).
    assert!(
        after >= Duration::from_secs(5) && after < Duration::from_secs(16),
        "held back after {after:?}"
    );
    eventually("eu's raw rows back", || raw_query(&a, "eu-west-1").0 == 200);
    a.stop();
    b.stop();
}

/// `name`'s value in `node`'s `/metrics` (`None` when it cannot be read).
fn metric(node: &Node, name: &str) -> Option<f64> {
    let text = http_client()
        .get(format!("{}/metrics", node.url))
        .send()
        .and_then(|r| r.text())
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Three NATS servers with JetStream, one cluster each ("eu", "us", "ap"), joined by
/// gateways (a supercluster), with eu's and us's monitoring ports. JetStream's meta layer
/// spans the three: with one cluster away it keeps its quorum (with two servers it would
/// lose it, and JetStream then refuses even reads of a KV entry).
struct Supercluster {
    eu: Nats,
    us: Nats,
    /// eu's and us's monitoring (`/jsz`) ports.
    he: u16,
    hu: u16,
    _ap: Nats,
}

impl Supercluster {
    fn start(root: &Path) -> Supercluster {
        let (pe, pu, pp) = (free_port(), free_port(), free_port());
        let (ce, cu, cp, ge, gu, gp, he, hu, hp) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let gateways = format!(
            "gateways: [{{name: \"eu\", url: \"nats://127.0.0.1:{ge}\"}}, {{name: \"us\", url: \"nats://127.0.0.1:{gu}\"}}, {{name: \"ap\", url: \"nats://127.0.0.1:{gp}\"}}]"
        );
        // A one-server cluster still lists a route (its own) so that JetStream runs
        // clustered.
        let extra = |name: &str, c: u16, g: u16, h: u16| {
            format!(
                "cluster {{ name: \"{name}\", listen: 127.0.0.1:{c}, routes: [\"nats://127.0.0.1:{c}\"] }}\n\
                 gateway {{ name: \"{name}\", listen: \"127.0.0.1:{g}\", {gateways} }}\n\
                 http: 127.0.0.1:{h}\n"
            )
        };
        let eu = Nats::start_with(root, "se", &extra("eu", ce, ge, he), pe);
        let us = Nats::start_with(root, "su", &extra("us", cu, gu, hu), pu);
        let ap = Nats::start_with(root, "sp", &extra("ap", cp, gp, hp), pp);
        wait_for_metadata_leader(&[&eu, &us, &ap]);
        Supercluster {
            eu,
            us,
            he,
            hu,
            _ap: ap,
        }
    }
}

/// `text` (a config whose `[cluster] nats` is `us`) with eu and apac's logs in NATS cluster
/// "eu", americas' and global's and the cluster's own in "us".
fn in_geographies(text: &str, us: &Nats) -> String {
    let mut text = text.replacen(
        &format!("nats = [\"{}\"]", us.url()),
        &format!("nats = [\"{}\"]\nnats_cluster = \"us\"", us.url()),
        1,
    );
    for (region, cluster) in [
        ("eu", "eu"),
        ("apac", "eu"),
        ("americas", "us"),
        ("global", "us"),
    ] {
        text = text.replacen(
            &format!("name = \"{region}\"\n"),
            &format!("name = \"{region}\"\nnats_cluster = \"{cluster}\"\n"),
            1,
        );
    }
    assert_eq!(text.matches("nats_cluster").count(), 5, "{text}");
    text
}

/// Writes at `path` a node's config: `text` with `shared_nats` (its `nats = [...]` line)
/// replaced by `server` and the node's `site` (its bodies wait in MERIDIAN_IN_<site>).
fn site_config(path: &Path, text: &str, shared_nats: &str, server: &Nats, site: &str) -> PathBuf {
    let own = text.replacen(
        shared_nats,
        &format!("nats = [\"{}\"]\nsite = \"{site}\"", server.url()),
        1,
    );
    std::fs::write(path, own).expect("config");
    path.to_path_buf()
}

/// The streams a NATS server (monitoring port `h`) stores: (name, cluster holding it).
fn streams_on(h: u16) -> Vec<(String, String)> {
    let j: serde_json::Value = http_client()
        .get(format!(
            "http://127.0.0.1:{h}/jsz?accounts=true&streams=true"
        ))
        .send()
        .expect("jsz")
        .json()
        .expect("jsz json");
    j["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["cluster"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// A region on shared storage with its own NATS cluster keeps its flush lease there
/// (`MERIDIAN_LEASES_<region>`): with the us cluster (which holds the routing versions
/// and the americas logs) away, eu's nodes keep a lease holder and flush what they take
/// to the bucket; americas' parts wait in eu's intake until us returns.
#[test]
fn a_shared_region_keeps_flushing_while_another_geographys_nats_is_away() {
    let root = tempfile::tempdir().expect("temp dir");
    let Supercluster {
        eu,
        us,
        he,
        hu,
        _ap,
    } = Supercluster::start(root.path());
    let moto = crate::s3::Moto::start();
    moto.create_bucket("geo-lease");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (config, _) = shared_storage_config(root.path(), &us, &moto, "geo-lease", (pa, pb, pc));
    let text = in_geographies(&std::fs::read_to_string(&config).expect("config"), &us);
    let shared_nats = format!("nats = [\"{}\"]", us.url());
    let at = |f: &str, server: &Nats, site: &str| {
        site_config(&root.path().join(f), &text, &shared_nats, server, site)
    };
    let (config_a, config_eu) = (at("a.toml", &us, "us"), at("eu.toml", &eu, "eu"));
    let dir = |n: &str| root.path().join(n);

    // A node of an older build held eu's lease in the one MERIDIAN_LEASES: while that lease
    // is live, a node of this build refuses to start; once it lapsed, the node retires it
    // there (a holder that never lapses, for older builds to follow).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let legacy = rt.block_on(async {
        let client = async_nats::connect(eu.url()).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        // As older builds made it: in the cluster's own NATS cluster (us).
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "KV_MERIDIAN_LEASES".into(),
            description: Some("Meridian's flush leases of regions on shared storage".into()),
            subjects: vec!["$KV.MERIDIAN_LEASES.>".into()],
            max_messages_per_subject: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: false,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            placement: Some(async_nats::jetstream::stream::Placement {
                cluster: Some("us".into()),
                tags: Vec::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("legacy bucket");
        js.get_key_value("MERIDIAN_LEASES").await.expect("kv")
    });
    let old_holder = |until: i64| {
        let value = serde_json::json!({"node": "old-node", "until": until}).to_string();
        rt.block_on(legacy.put("flush.eu", value.into()))
            .expect("put");
    };
    old_holder(i64::MAX / 2);
    let (status, stderr) = serve_refused(
        &config_eu,
        &dir("refused"),
        &["--region", "eu", "--node", "geo-b"],
    );
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {stderr}");
    assert!(
        stderr.contains("\"old-node\" holds region \"eu\"'s flush lease in MERIDIAN_LEASES,"),
        "{stderr}"
    );
    old_holder(0);
    let a = Node::start(
        &dir("a"),
        &config_a,
        pa,
        &["americas", "global"],
        &["--node", "geo-a"],
    );
    let b = Node::start(
        &dir("b"),
        &config_eu,
        pb,
        &["eu", "apac"],
        &["--node", "geo-b"],
    );
    let c = Node::start(
        &dir("c"),
        &config_eu,
        pc,
        &["eu", "apac"],
        &["--node", "geo-c"],
    );
    let retired: serde_json::Value = rt
        .block_on(legacy.get("flush.eu"))
        .expect("get")
        .and_then(|v| serde_json::from_slice(&v).ok())
        .expect("legacy entry");
    assert_eq!(retired["until"], i64::MAX, "{retired}");
    assert!(
        retired["node"]
            .as_str()
            .is_some_and(|n| n.contains("moved")),
        "{retired}"
    );
    let mut expected = Expected::new();
    for n in 0..2 {
        let (status, text) = write(&b, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "through A");
    // The shared regions' lease buckets are in eu, and there is no shared one.
    let (on_eu, on_us) = (streams_on(he), streams_on(hu));
    for name in ["KV_MERIDIAN_LEASES_eu", "KV_MERIDIAN_LEASES_apac"] {
        assert!(
            on_eu.iter().any(|(n, c)| n == name && c == "eu"),
            "{on_eu:?}"
        );
        assert!(!on_us.iter().any(|(n, _)| n == name), "{on_us:?}");
    }

    // us away: writes through B go on (to eu's intake and logs), and eu's holder flushes
    // them: the bucket's files come to hold every eu point.
    let mut us = us;
    us.kill9();
    for n in 2..5 {
        let (status, text) = write(&b, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "a write in eu while us is away: {text}");
    }
    let eu_points = expected["eu-west-1"].0 as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = Some((shared_view(&b, "eu"), shared_view(&c, "eu")));
        let flushed =
            |v: &Option<(bool, u64, u64)>| v.is_some_and(|(_, files, _)| files == eu_points);
        if last
            .as_ref()
            .is_some_and(|(vb, vc)| flushed(vb) && flushed(vc))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (vb, vc) = last.expect("asked");
    assert!(
        vb.is_some_and(|v| v.1 == eu_points) && vc.is_some_and(|v| v.1 == eu_points),
        "eu's files while us is away: B {vb:?}, C {vc:?}, want {eu_points} rows"
    );
    wait_until(
        "a holder of eu's lease",
        Duration::from_secs(30),
        || holder(&b, &c, "eu"),
        Option::is_some,
    );
    us.spawn();
    wait_for(&a, &expected, "us back, through A");
    a.stop();
    b.stop();
    c.stop();
}

/// A directory of 20,000 tenants, published twice: each version's rules alone are more
/// than a NATS server takes in one message by default (1 MiB), so the history is kept
/// compressed; every node reads both versions, and a point of a listed tenant goes to the
/// region the directory names once the version is in force.
#[test]
fn a_directory_of_twenty_thousand_tenants_is_published_and_read_by_every_node() {
    let root = tempfile::tempdir().expect("temp dir");
    // NATS's default message size limit (the others here take 8 MB).
    let nats = Nats::start_with(root.path(), "nats", "max_payload: 1MB", free_port());
    let (config, pa, pb) = two_node_config(root.path(), &nats.url());
    let base = with_short_lead(&config);
    let (a, b) = two_nodes(root.path(), (&config, &config), (pa, pb));
    let directory = |to: &str| {
        let mut d = String::from("[directory]\n");
        for i in 0..20_000u32 {
            let region = if i.is_multiple_of(3) { to } else { "apac" };
            d.push_str(&format!("\"tenant=customer-{i:06}\" = \"{region}\"\n"));
        }
        d
    };
    for (version, to) in [(2, "eu"), (3, "americas")] {
        let path = root.path().join(format!("directory-{version}.toml"));
        std::fs::write(&path, base.replace("[directory]\n", &directory(to))).expect("config");
        let (ok, out) = meridian_cli(&["routing", "publish"], &path);
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("published routing version {version}")),
            "{out}"
        );
        for n in [&a, &b] {
            eventually("the node read the version", || {
                metric(n, "meridian_cluster_routing_version") == Some(version as f64)
            });
        }
    }
    let (ok, out) = meridian_cli(&["routing", "show", "--json"], &config);
    assert!(ok, "{out}");
    assert!(out.len() > 2 << 20, "{} bytes", out.len());
    let history: serde_json::Value = serde_json::from_str(&out).expect("history JSON");
    let v3 = &history["versions"][2];
    let tenants: Vec<&serde_json::Value> = v3["rules"]["directory"]
        .as_array()
        .expect("directory")
        .iter()
        .filter(|e| {
            e["value"]
                .as_str()
                .is_some_and(|v| v.starts_with("customer-"))
        })
        .collect();
    assert_eq!(tenants.len(), 20_000);
    assert_eq!(tenants[0]["value"], "customer-000000");
    assert_eq!(tenants[0]["region"], "americas");

    // Once version 3 is in force: customer-000000 (geo tag us-east-1, so americas by
    // geography) goes to americas, customer-000001 to apac.
    let from = v3["effective_from"].as_i64().expect("effective_from");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    while now() < from + 500_000_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = now();
    let body = format!(
        "cpu,tenant=customer-000000,region=eu-west-1 v=1i {t}\ncpu,tenant=customer-000001,region=eu-west-1 v=2i {t}\n"
    );
    let (status, text) = write(&a, &body);
    assert_eq!(status, 204, "{text}");
    let rows = |n: &Node, region: &str| region_status(n, region)["memory"]["rows"].as_i64();
    eventually("each point in its directory's region", || {
        rows(&a, "americas") == Some(1) && rows(&b, "apac") == Some(1)
    });
    assert_eq!(rows(&b, "eu"), Some(0));
    a.stop();
    b.stop();
}

/// A routing change mid-load (SPEC §8: routing in JetStream KV, versioned with effective
/// times). Writers keep writing through both nodes, points stamped with the wall clock and
/// rewrites of points written earlier, while `meridian routing publish` moves tenant
/// `globex` from americas (its geo tag) to eu, in force a lead (8 s) later. Every
/// acknowledged point is found once, with its last value: points before the version's time
/// in americas' files (rewrites too, whenever they came), later ones in eu's. Then a
/// version naming a region the nodes' regions.toml lacks: points after its time are
/// refused (503 naming it), earlier ones are still taken, queries still answer whole.
#[test]
fn a_routing_change_mid_load_moves_later_points_only() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let root = tempfile::tempdir().expect("temp dir");
    let nats = Nats::start(root.path());
    let (config, pa, pb) = two_node_config(root.path(), &nats.url());
    let base = with_short_lead(&config);
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let a = Node::start(&da, &config, pa, &["americas", "global"], &["--node", "a"]);
    let b = Node::start(&db, &config, pb, &["eu", "apac"], &["--node", "b"]);
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    let meridian = meridian_cli;

    // (host, time) → v of every acknowledged point.
    let model: Arc<Mutex<BTreeMap<(i64, i64), i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (model, stop) = (model.clone(), stop.clone());
        let urls = [a.url.clone(), b.url.clone()];
        std::thread::spawn(move || {
            let (mut n, mut refused) = (0i64, 0);
            while !stop.load(Ordering::Relaxed) {
                let mut body = String::new();
                let mut points = Vec::new();
                let t = now_ns() / 1000 * 1000;
                for k in 0..20 {
                    points.push(((n + k) % 5, t + k, n + k));
                }
                // A rewrite of an earlier point, with a new value.
                if let Some((&(h, t), _)) = model.lock().unwrap().iter().nth((n as usize * 7) % 97)
                {
                    points.push((h, t, 1_000_000 + n));
                }
                for (h, t, v) in &points {
                    body.push_str(&format!(
                        "cpu,tenant=globex,region=us-east-1,host=h{h} v={v}i {t}\n"
                    ));
                }
                let r = http_client()
                    .post(format!("{}/write?db=cl", urls[(n / 20) as usize % 2]))
                    .body(body)
                    .send()
                    .expect("write");
                if r.status().as_u16() == 204 {
                    let mut m = model.lock().unwrap();
                    for (h, t, v) in points {
                        m.insert((h, t), v);
                    }
                } else {
                    refused += 1;
                }
                n += 20;
                std::thread::sleep(Duration::from_millis(20));
            }
            refused
        })
    };

    std::thread::sleep(Duration::from_secs(2));
    let moved = root.path().join("moved.toml");
    std::fs::write(
        &moved,
        base.replace("[directory]\n", "[directory]\n\"tenant=globex\" = \"eu\"\n"),
    )
    .expect("config");
    let (ok, out) = meridian(&["routing", "publish"], &moved);
    assert!(ok, "{out}");
    assert!(out.contains("published routing version 2"), "{out}");
    let (ok, out) = meridian(&["routing", "show", "--json"], &config);
    assert!(ok, "{out}");
    let history: serde_json::Value = serde_json::from_str(&out).expect("history JSON");
    let effective = history["versions"][1]["effective_from"]
        .as_i64()
        .expect("effective_from");
    // Publishing the same routing again is refused: nothing changed.
    let (ok, out) = meridian(&["routing", "publish"], &moved);
    assert!(!ok && out.contains("unchanged"), "{out}");
    while now_ns() < effective + 3_000_000_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        writer.join().expect("writer"),
        0,
        "writes refused under load"
    );
    let model = model.lock().unwrap().clone();
    assert!(
        model.keys().any(|(_, t)| *t < effective) && model.keys().any(|(_, t)| *t >= effective),
        "points on both sides of the change"
    );

    // Both nodes answer every point once, with its last value.
    let want = (model.len() as i64, model.values().sum::<i64>());
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            let j: serde_json::Value = http_client()
                .get(format!(
                    "{}/api/v1/query?db=cl&measurement=cpu&fields=v&agg=count,sum&where=tenant=globex&start=0&end=9000000000000000000",
                    node.url
                ))
                .send()
                .and_then(|r| r.json())
                .expect("query");
            let row = &j["series"][0]["values"][0];
            last = Some((row[1].as_i64(), row[2].as_i64(), j["partial"].clone()));
            if last == Some((Some(want.0), Some(want.1), serde_json::Value::Bool(false))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            last,
            Some((Some(want.0), Some(want.1), serde_json::Value::Bool(false))),
            "{}",
            node.url
        );
    }

    // A version naming a region these nodes do not have: refused from its time on.
    let mars = root.path().join("mars.toml");
    std::fs::write(
        &mars,
        std::fs::read_to_string(&moved).expect("config")
            + "\n[[region]]\nname = \"mars\"\ntag_values = [\"mars-*\"]\n",
    )
    .expect("config");
    let (ok, out) = meridian(&["routing", "publish"], &mars);
    assert!(ok, "{out}");
    let (_, out) = meridian(&["routing", "show", "--json"], &config);
    let history: serde_json::Value = serde_json::from_str(&out).expect("history JSON");
    let mars_from = history["versions"][2]["effective_from"]
        .as_i64()
        .expect("effective_from");
    while now_ns() < mars_from + 1_500_000_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = |t: i64| format!("cpu,tenant=globex,region=us-east-1,host=late v=1i {t}\n");
    let (status, text) = write(&a, &line(now_ns()));
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("routing version 3 is not known here") && text.contains("mars"),
        "{text}"
    );
    let (status, text) = write(&b, &line(mars_from - 1));
    assert_eq!(status, 204, "a point before the unknown version: {text}");
    // A point far ahead of the nodes' clocks may fall under a version not published yet.
    let (status, text) = write(&b, &line(now_ns() + 3_600_000_000_000));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("ahead of this node's clock"), "{text}");

    // Files: every point in one region only, before the change in americas, after in eu.
    a.stop();
    b.stop();
    let mut rows = crate::support::read_rows(&da, 3_600_000_000_000);
    rows.extend(crate::support::read_rows(&db, 3_600_000_000_000));
    let mut found: BTreeMap<(i64, i64), (String, i64)> = BTreeMap::new();
    for region in ["americas", "eu", "apac", "global"] {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| {
                r.region == region && r.tags.get("host").map(String::as_str) != Some("late")
            })
            .cloned()
            .collect();
        for (key, row) in crate::support::rows_by_key_merged(&mine) {
            let host: i64 = key.2["host"][1..].parse().expect("host number");
            let v = match row.fields.get("v") {
                Some(crate::support::Value::Int(v)) => *v,
                other => panic!("v = {other:?}"),
            };
            let before = found.insert((host, key.3), (region.to_string(), v));
            assert!(before.is_none(), "{key:?} in {before:?} and {region}");
        }
    }
    assert_eq!(found.len(), model.len(), "points in files");
    for ((h, t), (region, v)) in &found {
        let want = if *t < effective { "americas" } else { "eu" };
        assert_eq!(region, want, "point h{h} at {t}");
        assert_eq!(Some(v), model.get(&(*h, *t)), "point h{h} at {t}");
    }
}

/// Node `n`'s view of a region on shared storage: (whether it flushes the region, rows of
/// the files its manifest lists, rows it holds in memory).
fn shared_view(n: &Node, region: &str) -> Option<(bool, u64, u64)> {
    let j: serde_json::Value = http_client()
        .get(format!("{}/api/v1/regions", n.url))
        .send()
        .ok()?
        .json()
        .ok()?;
    let r = j["regions"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == region)?;
    Some((
        r["shared_storage"]["flushes"].as_bool()?,
        r["file_rows"].as_u64()?,
        r["memory"]["rows"].as_u64()?,
    ))
}

/// `/api/v1/regions`' `shared_storage` object of `region` on node `n`.
fn shared_view_json(n: &Node, region: &str) -> serde_json::Value {
    let j: serde_json::Value = http_client()
        .get(format!("{}/api/v1/regions", n.url))
        .send()
        .expect("regions")
        .json()
        .expect("json");
    j["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == region))
        .map(|r| r["shared_storage"].clone())
        .unwrap_or_default()
}

/// Starts `meridian serve` on `config` and `data_dir` with `args`, expecting it to refuse:
/// its exit status (`None`: it was still running after 30 s, and was killed) and stderr.
/// Bounded, so a node that starts anyway fails the test instead of hanging it.
fn serve_refused(
    config: &Path,
    data_dir: &Path,
    args: &[&str],
) -> (Option<std::process::ExitStatus>, String) {
    let log = data_dir.with_extension("refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log"))
        .spawn()
        .expect("running meridian");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for meridian") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Which of B and C flushes `region` (exactly one of them, once settled; `None` meanwhile).
fn holder(b: &Node, c: &Node, region: &str) -> Option<char> {
    match (shared_view(b, region), shared_view(c, region)) {
        (Some((true, ..)), Some((false, ..))) => Some('b'),
        (Some((false, ..)), Some((true, ..))) => Some('c'),
        _ => None,
    }
}

/// The one of B and C that holds eu's lease, waited for (15 s at most).
fn now_holding(b: &Node, c: &Node) -> char {
    let mut h = None;
    wait_until(
        "one holder",
        Duration::from_secs(15),
        || {
            h = holder(b, c, "eu");
            h
        },
        |h| h.is_some(),
    );
    h.expect("a holder")
}

/// Waits until `check` holds for what `f` returns, or panics naming `what` and the last value.
fn wait_until<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut last = f();
    while !check(&last) {
        assert!(started.elapsed() < within, "{what}: last {last:?}");
        std::thread::sleep(Duration::from_millis(100));
        last = f();
    }
    started.elapsed()
}

/// What a three-node test on shared storage runs on: a temporary root, NATS, moto with one
/// bucket, three free ports and [`shared_storage_config`] written for them. The nodes are
/// started by [`three_nodes`], after any change the test makes to the config.
struct SharedStorage {
    root: tempfile::TempDir,
    nats: Nats,
    moto: crate::s3::Moto,
    ports: (u16, u16, u16),
    config: PathBuf,
    partition_ns: i64,
}

impl SharedStorage {
    fn start(bucket: &str) -> SharedStorage {
        let root = tempfile::tempdir().expect("temp dir");
        let nats = Nats::start(root.path());
        let moto = crate::s3::Moto::start();
        moto.create_bucket(bucket);
        let ports = (free_port(), free_port(), free_port());
        let (config, partition_ns) =
            shared_storage_config(root.path(), &nats, &moto, bucket, ports);
        SharedStorage {
            root,
            nats,
            moto,
            ports,
            config,
            partition_ns,
        }
    }
}

/// A three-node config on `nats` and `moto`'s `bucket`: americas and global on node A (port
/// `pa`); eu and apac on B and C, on shared storage (`s3://bucket/<region>`). Returns its
/// path and the partition duration.
fn shared_storage_config(
    root: &Path,
    nats: &Nats,
    moto: &crate::s3::Moto,
    bucket: &str,
    (pa, pb, pc): (u16, u16, u16),
) -> (PathBuf, i64) {
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let storage = format!(
        "[storage]\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\n\
         secret_access_key = \"test\"\nallow_http = true\n",
        moto.endpoint()
    );
    // A delete on a follower waits for a few lease ticks (its request, the holder's flush,
    // the mark, the follower's read of it): more than 4 s on a busy machine.
    let base = ServerConfig::default()
        .query_line("timeout = \"15s\"")
        .flush(1_000_000, "64MiB", "8s")
        .toml(&storage);
    let partition_ns = base.partition_ns();
    let mut cfg = base.render();
    for name in ["americas", "global"] {
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nurl = \"{}\"\n", url(pa)),
            1,
        );
    }
    for name in ["eu", "apac"] {
        cfg = cfg.replacen(
            &format!("name = \"{name}\"\n"),
            &format!(
                "name = \"{name}\"\nurl = \"{}\"\nreplicas = [\"{}\"]\nshared_storage = true\nstorage = \"s3://{bucket}/{name}\"\n",
                url(pb),
                url(pc)
            ),
            1,
        );
    }
    assert_eq!(cfg.matches("shared_storage").count(), 2, "{cfg}");
    cfg.push_str(&format!(
        "\n[cluster]\nnats = [\"{}\"]\npublish_timeout = \"2s\"\nlease_ttl = \"3s\"\n",
        nats.url()
    ));
    let config = root.join("regions.toml");
    std::fs::write(&config, cfg).expect("config");
    (config, partition_ns)
}

/// The data shapes agents send (`shapes_lines`) through a region on shared storage, answered
/// by every node as a model of last-write-wins computes: written through a node that does
/// not host it, from memory, then from the holder's files; rewritten in part through a node
/// that hosts it, over the flushed points; then after the holder is killed (-9) before it
/// flushed the rewrites and the other node takes over and flushes them.
#[test]
fn mixed_shapes_through_a_shared_region_arrive_as_written() {
    let shared = SharedStorage::start("shapes-e2e");
    add_to_regions(&shared.config, "export = \"raw\"");
    let (a, mut b, mut c) = three_nodes(shared.root.path(), &shared.config, shared.ports);
    let (first, second) = shapes_lines();
    // Rows of eu points a set of lines holds (each line its own point within a set).
    let eu_lines = |lines: &[ShapeLine]| {
        lines
            .iter()
            .filter(|(tags, _, _)| {
                tags.iter()
                    .any(|(k, v)| *k == "region" && v.starts_with("eu"))
            })
            .count() as u64
    };
    let agree = |nodes: &[&Node], model: &ShapeRows, what: &str| {
        for node in nodes {
            for influxql in [false, true] {
                wait_until(
                    &format!("{what}, through {} (InfluxQL: {influxql})", node.url),
                    Duration::from_secs(30),
                    || shapes_answer(node, influxql),
                    |got| got.as_ref() == Some(model),
                );
            }
        }
    };
    let flushed = |nodes: &[&Node], rows: u64, what: &str| {
        for n in nodes {
            wait_until(
                what,
                Duration::from_secs(30),
                || shared_view(n, "eu"),
                |v| v.is_some_and(|(_, files, mem)| files == rows && mem == 0),
            );
        }
    };
    // The first lines through A (which does not host eu): answered from memory, then from
    // the holder's files once it flushed them.
    let (status, text) = write(&a, &shapes_lp(&first));
    assert_eq!(status, 204, "{text}");
    let written = shapes_model(&first, &[]);
    agree(&[&a, &b, &c], &written, "as written");
    flushed(
        &[&b, &c],
        eu_lines(&first),
        "eu flushed and dropped from memory",
    );
    agree(&[&a, &b, &c], &written, "from the files");
    // Partial overwrites through B, of points now in files: merged field by field.
    let (status, text) = write(&b, &shapes_lp(&second));
    assert_eq!(status, 204, "{text}");
    let model = shapes_model(&first, &second);
    agree(&[&a, &b, &c], &model, "overwritten across a flush");
    // The holder killed (the overwrites flushed or not, as its 8 s flush age falls): the
    // other node takes the lease over, has the overwrites in files, and answers alone.
    let b_holds = now_holding(&b, &c) == 'b';
    if b_holds {
        b.kill9()
    } else {
        c.kill9()
    }
    let survivor = if b_holds { &c } else { &b };
    let all_rows = eu_lines(&first) + eu_lines(&second);
    wait_until(
        "the survivor takes eu over and flushes the overwrites",
        Duration::from_secs(30),
        || shared_view(survivor, "eu"),
        |v| v.is_some_and(|(holds, files, mem)| holds && files == all_rows && mem == 0),
    );
    agree(&[&a, survivor], &model, "after the takeover");
    a.stop();
    if b_holds { c.stop() } else { b.stop() }
}

/// Two nodes host `eu` and `apac` on shared storage (one bucket prefix per region, moto):
/// exactly one node flushes each region (the JetStream KV lease), the other serves queries
/// from the shared files and its own copy of what is not flushed yet, and drops that copy
/// once the holder's log mark covers it. Killed (-9), the holder is replaced within seconds
/// by the other node, which flushes from the mark on; restarted, it reads its region's log
/// from the mark and follows. Stopped (SIGSTOP) past its lease, a holder is replaced and,
/// resumed, steps down (its edits would be refused: the manifest's fence, unit-tested).
/// Through every step, each acknowledged point is answered once by every node, and the
/// files in the bucket (read with the parquet crate) hold every point with its value.
#[test]
fn a_region_on_shared_storage_is_flushed_by_one_node_and_taken_over_when_it_fails() {
    let bucket = "shared-e2e";
    // Bound to a name, not `_`: NATS must run until the end of the test.
    let SharedStorage {
        root,
        nats: _nats,
        moto,
        ports,
        config,
        partition_ns,
    } = SharedStorage::start(bucket);
    let (a, mut b, mut c) = three_nodes(root.path(), &config, ports);
    let mut expected = Expected::new();
    let mut next_body = 0;
    // Writes `n` bodies through A; returns the number of the first.
    let mut write_bodies = |n: i64, expected: &mut Expected| {
        let first = next_body;
        for _ in 0..n {
            let (status, text) = write(&a, &body(next_body, 0, expected));
            assert_eq!(status, 204, "{text}");
            next_body += 1;
        }
        first
    };
    let points = |expected: &Expected, geo: &str| expected.get(geo).map_or(0, |e| e.0) as u64;

    // 1. One holder per region; both nodes answer every point once; once flushed, the
    //    files hold each eu point once and the follower's copy is gone.
    write_bodies(6, &mut expected);
    for (n, what) in [(&a, "through A"), (&b, "through B"), (&c, "through C")] {
        wait_for(n, &expected, what);
    }
    for region in ["eu", "apac"] {
        wait_until(
            "one holder",
            Duration::from_secs(15),
            || holder(&b, &c, region),
            |h| h.is_some(),
        );
    }
    let eu_points = points(&expected, "eu-west-1");
    for n in [&b, &c] {
        wait_until(
            "eu flushed once and dropped from memory",
            Duration::from_secs(20),
            || shared_view(n, "eu"),
            |v| v.is_some_and(|(_, files, mem)| files == eu_points && mem == 0),
        );
    }

    // A node whose ingest shard count differs from the running nodes' is refused at
    // start-up (files name shards: two counts would count points twice).
    let text = std::fs::read_to_string(&config).expect("config");
    let shards_line = text
        .lines()
        .find(|l| l.starts_with("shards_per_region"))
        .expect("the config names its shard count")
        .to_string();
    let other = root.path().join("other-shards.toml");
    std::fs::write(
        &other,
        text.replacen(&shards_line, "shards_per_region = 7", 1),
    )
    .expect("config");
    let (status, stderr) = serve_refused(
        &other,
        &root.path().join("d"),
        &["--region", "eu", "--node", "d"],
    );
    assert!(
        status.is_some_and(|s| !s.success())
            && stderr.contains("this node 7")
            && stderr.contains("ingest shards"),
        "{status:?}: {stderr}"
    );

    // 2. The holder killed while it holds rows it has not flushed (blocks flush 8 s after
    //    they start), which the other node holds too: the other node takes eu over within
    //    the lease's ttl and a few ticks, while writes go on, and flushes them.
    let first = holder(&b, &c, "eu").expect("a holder");
    let (killed, survivor) = if first == 'b' {
        (&mut b, &c)
    } else {
        (&mut c, &b)
    };
    let written = Instant::now();
    let pre_kill = write_bodies(3, &mut expected);
    wait_for(survivor, &expected, "the follower has the new points");
    // Long enough for a log mark and its reading by the follower (a tick each), short of
    // the holder's flush: a mark that ran ahead of the holder's memory would have made the
    // follower drop rows no file holds.
    std::thread::sleep(Duration::from_millis(2400).saturating_sub(written.elapsed()));
    let (_, _, unflushed) = shared_view(killed, "eu").expect("the holder's view");
    println!("shared storage: the holder is killed holding {unflushed} eu rows in memory");
    assert!(
        unflushed > 0,
        "the holder flushed before it was killed ({:?} after the writes): the takeover of unflushed rows is not exercised",
        written.elapsed()
    );
    killed.kill9();
    let killed_at = Instant::now();
    write_bodies(6, &mut expected);
    wait_until(
        "the survivor takes eu over",
        Duration::from_secs(20),
        || shared_view(survivor, "eu"),
        |v| v.is_some_and(|(flushes, ..)| flushes),
    );
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_secs(12),
        "took over after {takeover:?}"
    );
    wait_for(&a, &expected, "holder killed, through A");
    wait_for(survivor, &expected, "holder killed, through the survivor");
    // Last write wins across the takeover: points the old holder flushed (bodies 0 and 1)
    // and points it died holding are written again with other values under the new one.
    for b in [0, 1, pre_kill, pre_kill + 2] {
        let (mut old, mut new) = (Expected::new(), Expected::new());
        body(b, 0, &mut old);
        let (status, text) = write(&a, &body(b, 7_000_000, &mut new));
        assert_eq!(status, 204, "{text}");
        for (geo, (_, sum)) in new {
            let e = expected.entry(geo.clone()).or_default();
            e.1 += sum - old[&geo].1;
        }
    }
    wait_for(&a, &expected, "rewritten across the takeover, through A");
    wait_for(
        survivor,
        &expected,
        "rewritten across the takeover, through the survivor",
    );

    // 3. Restarted, it reads the log from the mark, follows, and answers everything once.
    killed.restart();
    let killed: &Node = killed;
    wait_for(killed, &expected, "restarted node");
    let (flushes, ..) = shared_view(killed, "eu").expect("view");
    assert!(!flushes, "the restarted node must follow the new holder");

    // 4. The holder stopped past its lease: the other node takes over; resumed, the old
    //    holder steps down, and every point is still answered once.
    let (stopped, other) = if now_holding(&b, &c) == 'b' {
        (&b, &c)
    } else {
        (&c, &b)
    };
    let signal = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    signal("-STOP", stopped.pid());
    write_bodies(4, &mut expected);
    wait_until(
        "the other node takes eu over from the stopped one",
        Duration::from_secs(20),
        || shared_view(other, "eu"),
        |v| v.is_some_and(|(flushes, ..)| flushes),
    );
    write_bodies(2, &mut expected);
    signal("-CONT", stopped.pid());
    wait_until(
        "the resumed node steps down",
        Duration::from_secs(10),
        || shared_view(stopped, "eu"),
        |v| v.is_some_and(|(flushes, ..)| !flushes),
    );
    for (n, what) in [(&a, "through A"), (&b, "through B"), (&c, "through C")] {
        wait_for(n, &expected, what);
    }

    // 5. A delete through A reaches both nodes hosting eu: it returns once the rows it
    //    takes are in files and the log mark covers them (a node starting afterwards reads
    //    the log from the mark and must not bring them back), on either node. Then the
    //    holder is killed and restarted: the deleted points stay deleted everywhere.
    let mut deleted = Expected::new();
    let first_deleted = write_bodies(3, &mut deleted);
    let mut all = expected.clone();
    for (geo, (n, sum)) in &deleted {
        let e = all.entry(geo.clone()).or_default();
        e.0 += n;
        e.1 += sum;
    }
    for (n, what) in [(&b, "through B"), (&c, "through C")] {
        wait_for(n, &all, what);
    }
    let applied = |n: &Node| {
        shared_view_json(n, "eu")["log_applied_through"]
            .as_u64()
            .expect("log_applied_through")
    };
    let before = (applied(&b), applied(&c));
    let lo = T0 + first_deleted * 100 * 1_000_000_000;
    let hi = T0 + (first_deleted + 3) * 100 * 1_000_000_000;
    let r = http_client()
        .post(format!("{}/query", a.url))
        .form(&[
            ("db", "cl"),
            (
                "q",
                &format!("DELETE FROM cpu WHERE time >= {lo} AND time < {hi}"),
            ),
        ])
        .send()
        .expect("delete");
    let status = r.status();
    let text = r.text().unwrap_or_default();
    assert!(status == 200 && !text.contains("error"), "{status} {text}");
    let marked = |n: &Node| shared_view_json(n, "eu")["log_in_files_through"].as_u64();
    assert!(
        marked(&b) >= Some(before.0) && marked(&c) >= Some(before.1),
        "the mark after the delete: {:?} {:?}, applied before it {before:?}",
        marked(&b),
        marked(&c)
    );
    if now_holding(&b, &c) == 'b' {
        b.restart();
    } else {
        c.restart();
    }
    for (n, what) in [
        (&a, "after the delete, through A"),
        (&b, "through B"),
        (&c, "through C"),
    ] {
        wait_for(n, &expected, what);
    }

    // 6. Everything flushed: the bucket's files (the manifest's live ones, read with the
    //    parquet crate in seq order, a later file's value of a point replacing an earlier
    //    one's: last write wins as the README says it is decided) hold every eu and apac
    //    point with its latest value, never missing.
    for region in ["eu", "apac"] {
        for n in [&b, &c] {
            wait_until(
                "everything flushed",
                Duration::from_secs(20),
                || shared_view(n, region),
                |v| v.is_some_and(|(_, _, mem)| mem == 0),
            );
        }
    }
    let copy = root.path().join("bucket");
    for region in ["eu", "apac"] {
        assert!(moto.download(bucket, &format!("{region}/"), &copy.join(region)) > 0);
    }
    let mut stored: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for row in crate::support::read_rows(&copy, partition_ns) {
        let geo = row.tags.get("region").cloned().unwrap_or_default();
        let host = row.tags.get("host").cloned().unwrap_or_default();
        let v = match row.fields.get("v") {
            Some(crate::support::Value::Int(v)) => *v,
            other => panic!("v of {row:?}: {other:?}"),
        };
        stored.insert((geo, host, row.time), v);
    }
    let mut in_files = Expected::new();
    for ((geo, _, _), v) in &stored {
        let e = in_files.entry(geo.clone()).or_default();
        e.0 += 1;
        e.1 += v;
    }
    for geo in ["eu-west-1", "ap-south-1"] {
        assert_eq!(
            in_files.get(geo),
            expected.get(geo),
            "{geo} in the bucket's files"
        );
    }
    println!("shared storage: eu taken over {takeover:?} after its holder was killed");
    drop(a);
    drop(b);
    drop(c);
}

/// A NATS supercluster: two JetStream clusters, "eu" and "us" (one server each), joined by
/// gateways. eu's and apac's region logs are placed in "eu", americas' and global's in
/// "us" (`[[region]] nats_cluster`), the routing bucket in "us" (`[cluster] nats_cluster`).
/// Node B (eu, apac) talks to the eu server only, with `site = "eu"`; node A to the us
/// server only, with `site = "us"`: each node's bodies wait in its site's intake. Writes
/// through either node reach every region across the gateways, each point found once;
/// each server's JetStream report (`/jsz`) holds the region logs and the intake of its own
/// geography only, and no `MERIDIAN_IN`. With the us server killed, B still acknowledges
/// writes for every region; once it is back, every point is found once.
#[test]
fn regions_logs_live_in_their_own_cluster_of_a_supercluster() {
    let root = tempfile::tempdir().expect("temp dir");
    let Supercluster {
        eu,
        us,
        he,
        hu,
        _ap,
    } = Supercluster::start(root.path());
    let (pa, pb) = (free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let base = cluster_config(root.path(), &us.url(), &url(pa), &url(pb));
    let text = in_geographies(&std::fs::read_to_string(&base).expect("config"), &us);
    let shared_nats = format!("nats = [\"{}\"]", us.url());
    let node_config = |file: &str, server: &Nats, site: &str| {
        site_config(&root.path().join(file), &text, &shared_nats, server, site)
    };
    let config_a = node_config("a.toml", &us, "us");
    let config_b = node_config("b.toml", &eu, "eu");
    let (a, b) = two_nodes(root.path(), (&config_a, &config_b), (pa, pb));
    let mut expected = Expected::new();
    for n in 0..6 {
        let via = if n % 2 == 0 { &a } else { &b };
        let (status, text) = write(via, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "{text}");
    }
    wait_for(&a, &expected, "through A (us)");
    wait_for(&b, &expected, "through B (eu)");
    // Each server reports the streams it stores (names, and the cluster that holds each).
    let (on_eu, on_us) = (streams_on(he), streams_on(hu));
    for (name, home, other, cluster) in [
        ("MERIDIAN_R_eu", &on_eu, &on_us, "eu"),
        ("MERIDIAN_R_apac", &on_eu, &on_us, "eu"),
        ("MERIDIAN_R_americas", &on_us, &on_eu, "us"),
        ("MERIDIAN_R_global", &on_us, &on_eu, "us"),
        ("MERIDIAN_IN_eu", &on_eu, &on_us, "eu"),
        ("MERIDIAN_IN_us", &on_us, &on_eu, "us"),
    ] {
        assert!(
            home.iter().any(|(n, c)| n == name && c == cluster),
            "{name} not stored in cluster {cluster}: {home:?}"
        );
        assert!(
            !other.iter().any(|(n, _)| n == name),
            "{name} stored in the other cluster too: {other:?}"
        );
    }
    assert!(
        !on_eu.iter().chain(&on_us).any(|(n, _)| n == "MERIDIAN_IN"),
        "nodes with a site use their site's intake only"
    );

    // The us cluster down: B, in eu, still takes writes for every region (its intake and
    // eu's logs are in eu); the parts for the us regions wait in eu's intake and reach
    // their logs when us returns.
    let mut us = us;
    us.kill9();
    for n in 6..9 {
        let (status, text) = write(&b, &body(n, 0, &mut expected));
        assert_eq!(status, 204, "a write in eu while us is down: {text}");
    }
    us.spawn();
    wait_for(&a, &expected, "us back, through A");
    wait_for(&b, &expected, "us back, through B");
    a.stop();
    b.stop();

    // B's site changed while a body of B's waits in its former intake (published here as
    // B would have, B being stopped before splitting it): B refuses to start, naming it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(eu.url()).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        js.publish("meridian.site.eu.body.b", "unsplit".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
    let moved = node_config("b-moved.toml", &eu, "us");
    let (status, stderr) = serve_refused(
        &moved,
        &root.path().join("b"),
        &["--region", "eu", "--region", "apac", "--node", "b"],
    );
    assert!(
        status.is_some_and(|s| !s.success()) && stderr.contains("still wait in MERIDIAN_IN_eu"),
        "{status:?}: {stderr}"
    );
}
