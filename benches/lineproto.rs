//! Line protocol parser throughput on TSBS-like `cpu` lines (10k lines per body).
//!
//! Run with `cargo bench --bench lineproto`. Reports wall-clock bytes/s (group
//! `lineproto_bytes`) and lines/s (group `lineproto_lines`), and bytes per second of the
//! benchmark thread's CPU time (group `lineproto_cpu`: the speed of one core, less disturbed
//! by other work on a shared machine) for integer, float and escape/string-heavy bodies.

// The only crate-specific line: in `meridian` this becomes `use meridian::lineproto::...`.
use meridian::lineproto::{FieldValue, lines};

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter};
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

fn bodies() -> [(&'static str, Vec<u8>); 3] {
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
    bodies
}

/// Wall-clock bytes/s and lines/s.
fn bench(c: &mut Criterion) {
    let bodies = bodies();
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

/// Bytes per second of the benchmark thread's CPU time: the parse speed of one core, which
/// wall-clock figures on a shared machine understate whenever the core is taken away.
fn bench_cpu(c: &mut Criterion<ThreadCpu>) {
    let bodies = bodies();
    let mut group = c.benchmark_group("lineproto_cpu");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (name, body) in &bodies {
        group.throughput(Throughput::BytesDecimal(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse_body(black_box(body))));
    }
    group.finish();
}

/// Criterion measurement: CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time, and throughput per CPU-second (decimal units).
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values.iter_mut() {
            *v /= 1e6;
        }
        "ms CPU"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iter, unit) = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (*n as f64 / 1e6, "MB/CPU-s"),
            Throughput::Elements(n) => (*n as f64 / 1e6, "Melem/CPU-s"),
            Throughput::Bits(n) => (*n as f64 / 1e6, "Mbit/CPU-s"),
        };
        for v in values.iter_mut() {
            // `v` is nanoseconds per iteration.
            *v = per_iter * 1e9 / v.max(1.0);
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
