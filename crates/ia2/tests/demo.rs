//! `ia2 demo` end to end, on a reduced grid (one held-out task, N ∈ {4, 8}, 2 runs, 2 learning rates, few
//! epochs), through the same code path as the full demo: the plan file, the sweep, both analyses and the
//! report. Checks the report's presence and contents (every table and plot section, every plot, every
//! analysis figure), not its numbers; that the plan file is what `ia2 sweep run` reruns; and that a second
//! demo retrains nothing (no new job starts in the sweep's ledger).
//!
//! The toy model comes from the shared cache (`$IA2_CACHE/toy` or `~/.cache/ia2/toy`): pretrained once (one to
//! three minutes on 2 cores), then reused by every later demo and test.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const METHODS: [&str; 4] = ["tok", "act", "a2t", "tna"];

fn ia2(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ia2"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ia2");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "ia2 {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn demo(dir: &Path) -> (String, String) {
    ia2(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--task-seeds",
        "1",
        "--num-train-examples",
        "4",
        "8",
        "--num-runs",
        "2",
        "--lrs",
        "0.0005",
        "0.001",
        "--num-val-examples",
        "12",
        "--num-dev-examples",
        "8",
        "--num-train-epochs",
        "6",
        "--patience",
        "2",
        "--similarity-examples",
        "4",
        "--no-progress",
    ])
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// `start` events of the sweep's ledger (one per attempt of a job).
fn starts(sweep: &Path) -> usize {
    std::fs::read_to_string(sweep.join("ledger.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["ev"] == "start")
        .count()
}

#[test]
fn demo_runs_the_sweep_analyses_and_report_and_reuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (table, log) = demo(&dir);

    // Progress: the five stages and the jobs.
    for stage in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(log.contains(stage), "missing stage {stage} in\n{log}");
    }
    // The main table: every row (base both modes, four adapters) at both N, with intervals.
    for (row, n) in [
        ("base, with demos", 4),
        ("base, no demos", 4),
        ("tok LoRA", 4),
        ("act LoRA", 4),
        ("a2t LoRA", 4),
        ("tna LoRA", 4),
    ]
    .into_iter()
    .flat_map(|(r, _)| [(r, 4), (r, 8)])
    {
        let line = table
            .lines()
            .find(|l| l.starts_with(row) && l.split_whitespace().any(|w| w == n.to_string()))
            .unwrap_or_else(|| panic!("no row {row:?} N={n} in\n{table}"));
        assert_eq!(line.matches('±').count(), 2, "{line}");
        assert_eq!(
            line.matches('[').count(),
            2,
            "accuracy and ECE intervals: {line}"
        );
    }
    assert!(table.contains("What the toy shows") && table.contains("What it does not show"));

    // The plan file is what `ia2 sweep run` reruns: nothing left to do.
    let plan = dir.join("plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    for key in [
        "[[data.toy]]",
        "training_methods",
        "lrs",
        "uncertainty_analysis = true",
    ] {
        assert!(text.contains(key), "plan.toml lacks {key}:\n{text}");
    }
    let sweep = dir.join("sweep");
    let (dry, _) = ia2(&[
        "sweep",
        "run",
        plan.to_str().unwrap(),
        "--dir",
        sweep.to_str().unwrap(),
        "--dry-run",
    ]);
    let all = dry
        .lines()
        .find(|l| l.starts_with("sweep "))
        .unwrap_or_else(|| panic!("no header in\n{dry}"));
    let total: usize = all.split_whitespace().nth(3).unwrap().parse().unwrap();
    // 4 methods × 2 N × 2 lrs × 2 runs trainings and as many evaluations, the base per N, data, sets, teachers.
    assert_eq!(total, 32 + 32 + 2 + 1 + 1 + 4, "{dry}");
    for line in dry.lines().skip(2).take_while(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.last(), Some(&"0"), "jobs left to run: {line}\n{dry}");
    }

    // The report: every section, every plot of its summary inline, the analyses' figures and summaries.
    let report = dir.join("outputs/report");
    let html_path = table
        .lines()
        .find_map(|l| l.strip_prefix("report:"))
        .map(|p| PathBuf::from(p.trim()))
        .expect("the report's path is printed");
    assert_eq!(html_path, report.join("report.html"));
    let html = std::fs::read_to_string(&html_path).unwrap();
    for id in [
        "config",
        "problems",
        "tables",
        "comparisons",
        "results",
        "adapters",
        "training",
        "analysis",
        "runs",
    ] {
        assert!(
            html.contains(&format!("<h2 id=\"{id}\">")),
            "report.html lacks section {id}"
        );
    }
    let summary = json(&report.join("summary.json"));
    let figures = summary["figures"].as_array().unwrap();
    for section in ["results", "adapters", "training"] {
        assert!(
            figures.iter().any(|f| f["section"] == section),
            "no {section} figure in summary.json"
        );
    }
    for f in figures {
        let name = f["name"].as_str().unwrap();
        assert!(
            html.contains(&format!("({name}.svg")),
            "figure {name} not in the HTML"
        );
        for ext in ["svg", "png", "pdf"] {
            let p = report.join("plots").join(format!("{name}.{ext}"));
            assert!(p.is_file(), "{} missing", p.display());
        }
    }
    // Aggregates of every method and the base, at both N, selected among the two learning rates.
    let aggregates = summary["aggregates"].as_array().unwrap();
    for method in METHODS.iter().chain(&["base"]) {
        for n in [4, 8] {
            assert!(
                aggregates
                    .iter()
                    .any(|a| a["key"]["method"] == *method && a["n"] == n),
                "no aggregate of {method} at N={n}"
            );
        }
    }
    assert!(
        summary["problems"].as_array().unwrap().is_empty(),
        "{:#}",
        summary["problems"]
    );
    for t in ["tables.md", "results.csv", "tables.tex"] {
        assert!(report.join(t).is_file(), "{t} missing");
    }
    assert!(html.contains("Sweep configuration") && html.contains("toy_s1"));

    let analysis = dir.join("outputs/analysis");
    for j in ["subspace.json", "similarity.json"] {
        assert!(analysis.join(j).is_file(), "{j} missing");
        assert!(
            html.contains(&format!("<h3>{j}</h3>")),
            "{j} not in the HTML"
        );
    }
    assert!(analysis.join("similarity_vs_performance.csv").is_file());
    let svgs = files(&analysis, "svg");
    let stems: Vec<String> = svgs
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    for kind in ["subspace", "similarity_bars", "similarity_vs_accuracy"] {
        assert!(
            stems.iter().any(|s| s.starts_with(kind)),
            "no {kind} figure among {stems:?}"
        );
    }
    for p in &svgs {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            html.contains(&format!("<h3>{name}</h3>")),
            "analysis figure {name} not in the HTML"
        );
    }

    // A second demo retrains and re-evaluates nothing (no job starts), and prints the same table.
    let before = starts(&sweep);
    let (again, log2) = demo(&dir);
    assert_eq!(
        starts(&sweep),
        before,
        "the second demo started jobs:\n{log2}"
    );
    assert!(log2.contains("jobs run now: 0"), "{log2}");
    let rows = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains('±'))
            .map(String::from)
            .collect()
    };
    assert_eq!(rows(&table), rows(&again));
}
