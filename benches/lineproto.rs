//! Line protocol parser throughput on TSBS-like `cpu` lines (10k lines per body).
//!
//! Run with `cargo bench --bench lineproto`. Reports bytes/s (group `lineproto_bytes`) and
//! lines/s (group `lineproto_lines`) for integer, float and escape/string-heavy bodies.

// The only crate-specific line: in `meridian` this becomes `use meridian::lineproto::...`.
use meridian::lineproto::{FieldValue, lines};

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LINES: usize = 10_000;

/// Deterministic xorshift so the bodies are identical on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: [(&str, &str); 4] = [
    ("eu-west-1", "eu-west-1a"),
    ("us-east-1", "us-east-1b"),
    ("ap-southeast-2", "ap-southeast-2c"),
    ("sa-east-1", "sa-east-1a"),
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ENVS: [&str; 3] = ["staging", "production", "test"];
const FIELDS: [&str; 10] = [
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

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Mixed,
}

/// `cpu,hostname=host_12,region=eu-west-1,... usage_user=58i,... 1451606400000000000`
fn body(kind: Kind) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(LINES * 450);
    for n in 0..LINES {
        let host = rng.below(4000);
        let (region, dc) = REGIONS[rng.below(4) as usize];
        let os = OS[rng.below(3) as usize];
        let env = ENVS[rng.below(3) as usize];
        match kind {
            Kind::Mixed => out.push_str(&format!(
                "cpu,hostname=host\\ {host},region={region},datacenter={dc},rack={},os={os},arch=x64,team=SF\\,NY,service={},service_version=1,service_environment={env} ",
                rng.below(100),
                rng.below(20),
            )),
            _ => out.push_str(&format!(
                "cpu,hostname=host_{host},region={region},datacenter={dc},rack={},os={os},arch=x64,team=SF,service={},service_version=1,service_environment={env} ",
                rng.below(100),
                rng.below(20),
            )),
        }
        for (i, field) in FIELDS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = rng.below(100);
            match kind {
                Kind::Int => out.push_str(&format!("{field}={v}i")),
                Kind::Float => out.push_str(&format!("{field}={v}.{:02}", rng.below(100))),
                Kind::Mixed => match i % 3 {
                    0 => out.push_str(&format!("{field}={v}.{:02}", rng.below(100))),
                    1 => out.push_str(&format!("{field}={v}i")),
                    _ => out.push_str(&format!("{field}=\"state \\\"{v}\\\", ok\"")),
                },
            }
        }
        out.push_str(&format!(
            " {}\n",
            1_451_606_400_000_000_000u64 + n as u64 * 10_000_000_000
        ));
    }
    out.into_bytes()
}

/// Parses the whole body and folds the results so nothing is optimized away. Like the
/// server (`region::prepare`), it hands each parsed line back to the iterator for reuse.
fn parse_body(body: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut lines = lines(body);
    while let Some(item) = lines.next() {
        match item.result {
            Ok(line) => {
                acc = acc.wrapping_add(line.tags.len() as u64);
                if let Some((_, FieldValue::Integer(v))) = line.fields.first() {
                    acc = acc.wrapping_add(*v as u64);
                }
                acc = acc.wrapping_add(line.timestamp.unwrap_or(0) as u64);
                lines.recycle(line);
            }
            Err(e) => panic!("line {} failed: {e}", item.line_number),
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    let bodies = [
        ("tsbs_cpu_int", body(Kind::Int)),
        ("tsbs_cpu_float", body(Kind::Float)),
        ("escaped_strings", body(Kind::Mixed)),
    ];
    for (name, body) in &bodies {
        eprintln!(
            "{name}: {} lines, {} bytes, {:.0} bytes/line",
            LINES,
            body.len(),
            body.len() as f64 / LINES as f64
        );
        // Sanity: every line parses.
        black_box(parse_body(body));
    }

    let mut group = c.benchmark_group("lineproto_bytes");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse_body(black_box(body))));
    }
    group.finish();

    let mut group = c.benchmark_group("lineproto_lines");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (name, body) in &bodies {
        group.throughput(Throughput::Elements(LINES as u64));
        group.bench_function(*name, |b| b.iter(|| parse_body(black_box(body))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
