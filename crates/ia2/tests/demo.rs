//! `ia2 demo` end to end (fewer runs and validation examples than the default): the toy model learns in
//! context, training lowers the losses, evaluation files hold both modes, and a second demo reuses everything.
//!
//! The toy model comes from the shared cache (`$IA2_CACHE/toy` or `~/.cache/ia2/toy`): pretrained once (about
//! two minutes on 2 cores), then reused by every later demo and test.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn demo(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ia2"))
        .args([
            "demo",
            "--dir",
            dir.to_str().unwrap(),
            "--num-runs",
            "2",
            "--num-val-examples",
            "32",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ia2 demo");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ia2 demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

#[test]
fn demo_shows_ia2_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let table = demo(&dir);
    for row in [
        "base, with ICL demos",
        "base, no demos",
        "tok (LoRA)",
        "act (LoRA)",
        "a2t (LoRA)",
    ] {
        assert!(table.contains(row), "missing row {row:?} in\n{table}");
    }

    // The model learns in context: the held-out evaluation stored with it.
    let model_line = table.lines().find(|l| l.starts_with("model:")).unwrap();
    let model_dir = Path::new(model_line.trim_start_matches("model:").trim());
    let info = json(&model_dir.join("toy_model.json"));
    let acc = |demos: u64| {
        info["icl_eval"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sampling"] == "random" && r["demos"] == demos)
            .unwrap()["accuracy"]
            .as_f64()
            .unwrap()
    };
    assert!(acc(4) >= 0.9, "accuracy with 4 demos {}", acc(4));
    assert!(acc(0) <= 0.2, "accuracy without demos {}", acc(0));

    // Training lowered every run's loss.
    let runs = files(&dir.join("outputs"), "metrics.jsonl");
    assert_eq!(runs.len(), 6, "tok, act, a2t × 2 runs");
    for m in &runs {
        let losses: Vec<f64> = std::fs::read_to_string(m)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["train"]["total"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            best < losses[0],
            "{}: loss never went below {}",
            m.display(),
            losses[0]
        );
    }

    // Every evaluation holds both modes over the same examples; the base model is far better with demos.
    let results = files(&dir.join("outputs/evaluations"), ".json");
    assert_eq!(results.len(), 8, "base + 3 methods, 2 runs each");
    for r in &results {
        let v = json(r);
        let (with, without) = (&v["results"]["with_icl"], &v["results"]["without_icl"]);
        assert_eq!(with.as_array().unwrap().len(), 32, "{}", r.display());
        assert_eq!(without.as_array().unwrap().len(), 32, "{}", r.display());
        let m = &v["metrics"];
        if r.to_string_lossy().contains("/base_uncertainty/") {
            let gain = m["with_icl_accuracy_label_set"].as_f64().unwrap()
                - m["without_icl_accuracy_label_set"].as_f64().unwrap();
            assert!(
                gain >= 25.0,
                "{}: ICL gains only {gain} points",
                r.display()
            );
        }
    }

    // A second demo reuses the model, the runs and the evaluations, and reports the same table.
    let again = demo(&dir);
    let rows = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("±"))
            .map(String::from)
            .collect()
    };
    assert_eq!(rows(&table), rows(&again));
}
