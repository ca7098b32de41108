//! Test: no module imports from a layer above its own (STYLE.md's dependency direction:
//! model → lineproto, config → router → storage → catalog → region, compaction → query →
//! cluster → http). Read from the source, so a new `use` that runs back up fails here.

use std::path::Path;

/// Layers, lowest first; a module may import its own layer and those below. Modules not
/// listed (small helpers used across layers) are not checked.
const LAYERS: &[&[&str]] = &[
    &["model", "rollup"],
    &["lineproto", "config", "influxql"],
    &["router", "routing"],
    &["storage"],
    &["catalog"],
    &["region", "compaction"],
    &["query"],
    &["cluster"],
    &["http"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `crate::<module>` a source file names.
fn imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs");
        let Some(own) = rank(top) else { continue };
        let text = std::fs::read_to_string(f).expect("source is UTF-8");
        for m in imports(&text) {
            if rank(&m).is_some_and(|r| r > own) {
                wrong.push(format!("{} imports crate::{m}", rel.display()));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that run back up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_that_runs_back_up() {
    let found = imports("use crate::query::index::FileIndex;\nuse crate::storage::schema;");
    assert_eq!(found, ["query", "storage"]);
    assert!(rank("query") > rank("region"));
    assert!(rank("region") > rank("storage"));
}
