//! A TSBS "cpu-only"-like data set shared by the benches, imitating `meridian-loadgen`:
//! measurement `cpu`, 12 tags (hostname, region, datacenter, rack, os, arch, team, service,
//! service_version, service_environment, lat, lon), 10 `usage_*` fields doing a bounded
//! random walk, rows in time-major order (all hosts at t0, then t1, ...), one point every
//! 10 s from 2026-01-01. Deterministic (fixed seed), no extra dependency.

#![allow(dead_code)]

use meridian::lineproto::FieldValue;
use meridian::region::block::Block;
use meridian::router::series_hash;

pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];
pub const REGIONS: [&str; 10] = [
    "us-east-1",
    "us-west-2",
    "sa-east-1",
    "ca-central-1",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "ap-south-1",
];
/// 2026-01-01T00:00:00Z in ns, the loadgen's default start.
pub const START_NS: i64 = 1_767_225_600_000_000_000;
pub const INTERVAL_NS: i64 = 10_000_000_000;

/// splitmix64: a tiny deterministic generator, so the benches need no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// One simulated host: its sorted tag set and the current value (hundredths) of each field.
pub struct Host {
    /// Sorted by key.
    pub tags: Vec<(String, String)>,
    pub hash: u64,
    pub values: [i64; 10],
}

/// A TSBS-like data set generated row by row in time-major order.
pub struct Dataset {
    pub hosts: Vec<Host>,
    rng: Rng,
}

impl Dataset {
    pub fn new(hosts: usize) -> Dataset {
        let mut rng = Rng(42);
        let hosts = (0..hosts)
            .map(|i| {
                let region = REGIONS[i % REGIONS.len()];
                let mut tags = vec![
                    ("hostname".to_string(), format!("host_{i}")),
                    ("region".to_string(), region.to_string()),
                    (
                        "datacenter".to_string(),
                        format!("{region}{}", ["a", "b", "c"][rng.below(3) as usize]),
                    ),
                    ("rack".to_string(), rng.below(100).to_string()),
                    (
                        "os".to_string(),
                        ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"][rng.below(3) as usize]
                            .to_string(),
                    ),
                    (
                        "arch".to_string(),
                        ["x86", "x64"][rng.below(2) as usize].to_string(),
                    ),
                    (
                        "team".to_string(),
                        ["SF", "NYC", "LON", "CHI"][rng.below(4) as usize].to_string(),
                    ),
                    ("service".to_string(), rng.below(20).to_string()),
                    ("service_version".to_string(), rng.below(2).to_string()),
                    (
                        "service_environment".to_string(),
                        ["production", "staging", "test"][rng.below(3) as usize].to_string(),
                    ),
                    (
                        "lat".to_string(),
                        format!("{:.4}", rng.below(1_800_000) as f64 / 1e4 - 90.0),
                    ),
                    (
                        "lon".to_string(),
                        format!("{:.4}", rng.below(3_600_000) as f64 / 1e4 - 180.0),
                    ),
                ];
                tags.sort();
                let hash = series_hash("cpu", &tags);
                let mut values = [0i64; 10];
                for v in &mut values {
                    *v = rng.below(10_001) as i64;
                }
                Host { tags, hash, values }
            })
            .collect();
        Dataset { hosts, rng }
    }

    /// Advances host `h`'s random walk and returns its field values (hundredths).
    pub fn step(&mut self, h: usize) -> [i64; 10] {
        let host = &mut self.hosts[h];
        let out = host.values;
        for v in &mut host.values {
            *v = (*v + self.rng.below(201) as i64 - 100).clamp(0, 10_000);
        }
        out
    }

    /// Line protocol for `steps` timestamps of every host: `int` writes TSBS-style integers
    /// (`58i`), otherwise floats with two decimals (`58.63`), as `meridian-loadgen` does.
    pub fn line_protocol(&mut self, steps: usize, int: bool) -> Vec<u8> {
        use std::fmt::Write;
        let mut s = String::new();
        for t in 0..steps {
            let ts = START_NS + t as i64 * INTERVAL_NS;
            for h in 0..self.hosts.len() {
                let vals = self.step(h);
                s.push_str("cpu");
                for (k, v) in &self.hosts[h].tags {
                    let _ = write!(s, ",{k}={v}");
                }
                for (i, (name, v)) in FIELDS.iter().zip(vals).enumerate() {
                    let sep = if i == 0 { ' ' } else { ',' };
                    if int {
                        let _ = write!(s, "{sep}{name}={}i", (v + 50) / 100);
                    } else {
                        let _ = write!(s, "{sep}{name}={}.{:02}", v / 100, v % 100);
                    }
                }
                let _ = writeln!(s, " {ts}");
            }
        }
        s.into_bytes()
    }

    pub fn field_values(vals: [i64; 10], int: bool) -> Vec<(&'static str, FieldValue<'static>)> {
        FIELDS
            .iter()
            .zip(vals)
            .map(|(n, v)| {
                let fv = if int {
                    FieldValue::Integer((v + 50) / 100)
                } else {
                    FieldValue::Float(v as f64 / 100.0)
                };
                (*n, fv)
            })
            .collect()
    }
}

/// A block of `hosts × steps` rows, filled outside any measurement.
pub fn filled_block(hosts: usize, steps: usize, int: bool) -> Block {
    let mut data = Dataset::new(hosts);
    let mut block = Block::new();
    for t in 0..steps {
        let ts = START_NS + t as i64 * INTERVAL_NS;
        for h in 0..hosts {
            let vals = data.step(h);
            let fields = Dataset::field_values(vals, int);
            let host = &data.hosts[h];
            block.append(host.hash, &host.tags, &fields, ts, false);
        }
    }
    block
}
