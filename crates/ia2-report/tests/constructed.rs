//! Selection, aggregation, tables and bad input on constructed result files with known answers.

use ia2_eval::results::{ModeResults, Record, ResultFile, write_result};
use ia2_report::aggregate::{AggregateConfig, aggregate, sign_test};
use ia2_report::select::{HpSelection, load_results, select};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn record(idx: usize, correct: bool) -> Record {
    Record {
        idx,
        query: format!("Text:q{idx}\nLabel:"),
        full_answer_text: "1".into(),
        parsed_answer: "1".into(),
        full_generated_text: if correct { "1" } else { "0" }.into(),
        generated_answer: Some(if correct { "1" } else { "0" }.into()),
        correct,
        prompt_tokens: 3,
        stop_reason: None,
        prob_info: None,
    }
}

struct Spec<'a> {
    method: &'a str,
    eval: &'a str,
    lr: f64,
    run: u32,
    n: usize,
    dev_loss: Option<f64>,
    /// Without-ICL correctness per example (4 examples); with-ICL all correct.
    without: [bool; 4],
}

/// Writes a run directory (training_config.json, final_loss_statistics.json) and its result file.
fn write(outputs: &Path, s: &Spec) -> PathBuf {
    let base = s.method == "base";
    // Outside the outputs tree: these are not complete runs (no adapter), only what the report reads.
    let run_dir = outputs
        .with_file_name("runs")
        .join(s.method)
        .join("toy")
        .join(format!("r_{}_{}_{}", s.n, s.lr, s.run));
    let cfg = json!({
        "dataset": "toy", "training_method": s.method, "model_name": "tiny",
        "lora_type": "qko", "lora_r": 4, "lora_alpha": 8, "num_train_examples": s.n,
        "num_generated_tokens": 1, "lr": s.lr, "label_type": "icl_outputs", "run_idx": s.run,
        "ldr_mode": false
    });
    if !base {
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("training_config.json"), cfg.to_string()).unwrap();
        std::fs::write(
            run_dir.join("final_loss_statistics.json"),
            json!({"best_dev_loss": s.dev_loss, "training_completed": true}).to_string(),
        )
        .unwrap();
    }
    let without: Vec<Record> = s
        .without
        .iter()
        .enumerate()
        .map(|(i, &c)| record(i, c))
        .collect();
    let with: Vec<Record> = (0..4).map(|i| record(i, true)).collect();
    let results = ModeResults {
        with_icl: with,
        without_icl: without,
    };
    let metrics =
        ia2_eval::results::compute_metrics(&results, ia2_eval::results::MetricsKind::Standard);
    let file = ResultFile {
        trained_model_params: if base {
            json!({"model_type": "base", "num_train_examples": s.n, "run_idx": s.run})
        } else {
            cfg
        },
        evaluation_config: json!({
            "model_type": s.method,
            "trained_dataset": if base { Value::Null } else { json!("toy") },
            "eval_dataset_name": s.eval, "icl_source_dataset": s.eval, "icl_max_demos": 3,
            "num_train_examples": s.n, "run_idx": s.run, "num_generated_tokens_eval": 1,
            "uncertainty_analysis": false, "top_k": 10,
            "model": {"model_name": "tiny", "dtype": "f32"},
            "adapter": if base { Value::Null } else { json!({"dir": run_dir.display().to_string()}) },
        }),
        metrics,
        results,
        status: "complete".into(),
    };
    let path = outputs
        .join("evaluations")
        .join(s.method)
        .join("toy")
        .join(format!(
            "{}_{}_N{}_{}_{}.json",
            s.method, s.eval, s.n, s.lr, s.run
        ));
    write_result(&path, &file).unwrap();
    path
}

const T: bool = true;
const F: bool = false;

fn fixture(outputs: &Path) {
    // tok, lr 0.01: dev losses 0.5, 0.9, 0.9 (mean 0.7667) but the single lowest run loss; best accuracy.
    // tok, lr 0.1: dev losses 0.6 (mean 0.6): the honest dev-loss choice.
    let acc_hi = [[T, T, T, T], [T, T, T, F], [T, T, T, T]];
    let acc_lo = [[T, T, F, F], [T, T, T, F], [T, T, T, T]]; // 50, 75, 100
    for run in 0..3u32 {
        let r = run as usize;
        write(
            outputs,
            &Spec {
                method: "tok",
                eval: "toy",
                lr: 0.01,
                run,
                n: 4,
                dev_loss: Some([0.5, 0.9, 0.9][r]),
                without: acc_hi[r],
            },
        );
        write(
            outputs,
            &Spec {
                method: "tok",
                eval: "toy",
                lr: 0.1,
                run,
                n: 4,
                dev_loss: Some(0.6),
                without: acc_lo[r],
            },
        );
        write(
            outputs,
            &Spec {
                method: "base",
                eval: "toy",
                lr: 0.0,
                run,
                n: 4,
                dev_loss: None,
                without: [F, F, F, T],
            },
        );
    }
    // act: runs 0 and 1 only (run 2 missing).
    for run in 0..2u32 {
        write(
            outputs,
            &Spec {
                method: "act",
                eval: "toy",
                lr: 0.1,
                run,
                n: 4,
                dev_loss: Some(0.3),
                without: [T, T, T, T],
            },
        );
    }
    // A single-run key: tok evaluated on another dataset.
    write(
        outputs,
        &Spec {
            method: "tok",
            eval: "other",
            lr: 0.1,
            run: 0,
            n: 4,
            dev_loss: Some(0.6),
            without: [T, F, F, F],
        },
    );
    // A truncated and an unfinished file.
    let dir = outputs.join("evaluations/tok/toy");
    std::fs::write(dir.join("truncated.json"), "{\"status\": \"comp").unwrap();
    std::fs::write(
        dir.join("unfinished.json"),
        json!({"status": "running", "results": {}}).to_string(),
    )
    .unwrap();
}

/// An interrupted training run: a run directory without its adapter and statistics.
fn unfinished_run(outputs: &Path) {
    let dir = outputs.join("act/toy/interrupted");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("training_config.json"), "{}").unwrap();
}

#[test]
fn dev_loss_selection_uses_the_mean_over_runs_and_performance_is_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    fixture(&outputs);
    let loaded = load_results(&outputs).unwrap();
    assert_eq!(loaded.entries.len(), 3 + 3 + 3 + 2 + 1);
    let kinds: Vec<&str> = loaded.problems.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["incomplete", "incomplete"], "{:?}", loaded.problems);

    let (sel, _) = select(&loaded.entries, HpSelection::DevLoss);
    let tok = sel
        .iter()
        .find(|s| s.key.method == "tok" && s.key.eval == "toy")
        .unwrap();
    assert_eq!(tok.selected.lr, Some(0.1), "mean dev loss 0.6 < 0.767");
    let c01 = tok
        .candidates
        .iter()
        .find(|c| c.hp.lr == Some(0.01))
        .unwrap();
    assert!((c01.mean_dev_loss.unwrap() - (0.5 + 0.9 + 0.9) / 3.0).abs() < 1e-12);
    let (sel, _) = select(&loaded.entries, HpSelection::Performance);
    let tok = sel
        .iter()
        .find(|s| s.key.method == "tok" && s.key.eval == "toy")
        .unwrap();
    assert_eq!(tok.selected.lr, Some(0.01), "higher mean accuracy");
    assert!(HpSelection::Performance.label().contains("EVALUATION SET"));
}

#[test]
fn aggregates_match_hand_computation_and_bad_input_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    fixture(&outputs);
    unfinished_run(&outputs);
    let loaded = load_results(&outputs).unwrap();
    let agg = aggregate(&loaded, &AggregateConfig::default());
    assert!(
        agg.problems
            .iter()
            .any(|p| p.kind == "unfinished_run" && p.detail.contains("interrupted")),
        "{:?}",
        agg.problems
    );
    let find = |m: &str, eval: &str| {
        agg.aggregates
            .iter()
            .find(|a| a.key.method == m && a.key.eval == eval)
            .unwrap()
    };
    let tok = find("tok", "toy");
    let acc = tok.metric("without_icl_accuracy").unwrap();
    assert_eq!(acc.values, [50.0, 75.0, 100.0]);
    assert_eq!(acc.runs, [0, 1, 2]);
    assert!((acc.mean - 75.0).abs() < 1e-12);
    let pop_std = ((25.0f64 * 25.0 * 2.0) / 3.0).sqrt();
    assert!((acc.std - pop_std).abs() < 1e-12, "population std (ddof 0)");
    let (lo, hi) = acc.ci95.unwrap();
    assert!((50.0..=75.0).contains(&lo) && (75.0..=100.0).contains(&hi));
    // One run: std 0, flagged, no interval.
    let single = find("tok", "other");
    assert!(single.single_run);
    assert_eq!(single.metric("without_icl_accuracy").unwrap().std, 0.0);
    assert_eq!(single.metric("without_icl_accuracy").unwrap().ci95, None);
    // act lacks run 2: listed, aggregated over runs 0 and 1 only.
    let act = find("act", "toy");
    assert_eq!(act.runs, [0, 1]);
    assert_eq!(act.missing_runs, [2]);
    assert!(
        agg.problems
            .iter()
            .any(|p| p.kind == "missing_runs" && p.path.contains("act")),
        "{:?}",
        agg.problems
    );
    assert_eq!(
        agg.problems
            .iter()
            .filter(|p| p.kind == "incomplete")
            .count(),
        2
    );
    // Paired comparison act vs tok (lr 0.1) on runs 0, 1: act right on every example; tok wrong on 2 + 1.
    let c = agg
        .comparisons
        .iter()
        .find(|c| c.key.method == "act")
        .unwrap();
    assert_eq!(c.reference.method, "tok");
    assert_eq!(c.common_runs, [0, 1]);
    assert_eq!(c.differences, [50.0, 25.0]);
    assert_eq!(
        (c.method_only, c.reference_only, c.paired_examples),
        (3, 0, 8)
    );
    assert!((c.p_value - sign_test(3, 0)).abs() < 1e-15);
    assert!((c.p_value - 0.25).abs() < 1e-12);

    // Tables: the CSV has the hp selection, D and T; LaTeX per N with bold best and base columns.
    let csv = ia2_report::tables::csv(&agg);
    let header = csv.lines().next().unwrap();
    for col in ["hp_selection", "D", "train_T", "eval_T", "std", "N"] {
        assert!(header.split(',').any(|c| c == col), "{col} in {header}");
    }
    let row = csv
        .lines()
        .find(|l| {
            l.contains(",tok,") && l.contains(",toy,toy,") && l.contains(",without_icl_accuracy,")
        })
        .unwrap();
    assert!(row.contains(",dev_loss,lr=0.1,"), "{row}");
    assert!(row.contains(&format!(",75,{pop_std},3,")), "{row}");
    let tables = ia2_report::tables::tables(&agg);
    assert_eq!(tables.len(), 1, "one setting, one N");
    let tex = ia2_report::tables::latex(&tables[0]);
    assert!(tex.contains("\\textbf{100.0} (0.0)"), "act is best: {tex}");
    assert!(tex.contains("75.0 (20.4)"), "{tex}");
    assert!(tex.contains("\\toprule") && tex.contains("\\bottomrule"));
    // Trained on toy: evaluated on toy and (out of domain, one run) on other.
    assert!(tex.contains("\\multirow{2}{*}{toy}"), "{tex}");
    assert!(tex.contains("other* acc"), "{tex}");
    assert!(tex.contains("$^\\dagger$"), "one-run cell marked: {tex}");
    // Base columns: w/o ICL 25 (std 0 over 3 runs), ICL 100.
    assert!(tex.contains("& 25.0 (0.0) & 100.0 (0.0)"), "{tex}");
}

#[test]
fn plots_over_n_use_a_log_axis_error_bars_and_base_references() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    if let Ok(keep) = std::env::var("IA2_REPORT_KEEP") {
        std::mem::forget(tmp);
        eprintln!("kept in {keep}");
    }
    for n in [2usize, 4, 8, 32] {
        for run in 0..3u32 {
            for (method, without) in [
                ("tok", [T, F, run == 0, F]),
                ("act", [T, T, run != 1, F]),
                ("a2t", [T, T, T, run == 2]),
                ("base", [F, F, F, T]),
            ] {
                write(
                    &outputs,
                    &Spec {
                        method,
                        eval: "toy",
                        lr: 0.1,
                        run,
                        n,
                        dev_loss: Some(0.5),
                        without,
                    },
                );
            }
        }
    }
    let out = ia2_report::run(&ia2_report::ReportConfig {
        outputs: outputs.clone(),
        plots: ia2_report::plots::PlotConfig {
            png_dpi: 96.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    assert_eq!(out.problems, 0);
    let svgs: Vec<&PathBuf> = out
        .plots
        .iter()
        .filter(|p| p.extension().unwrap() == "svg")
        .collect();
    assert_eq!(
        svgs.len(),
        2 + 1,
        "standard mode: with / without ICL accuracy, and the adapter comparison (no metrics.jsonl here)"
    );
    for p in &out.plots {
        assert!(std::fs::metadata(p).unwrap().len() > 500, "{}", p.display());
    }
    let without = std::fs::read_to_string(
        svgs.iter()
            .find(|p| p.to_string_lossy().ends_with("_without_icl_accuracy.svg"))
            .unwrap(),
    )
    .unwrap();
    for label in [
        "N (log2 scale)",
        "base (no demos)",
        "base (with ICL, reference)",
        "tok (icl_outputs)",
        "a2t (icl_outputs)",
        "hp selected by mean dev loss",
    ] {
        assert!(without.contains(label), "{label}");
    }
    // Tick labels of the log axis are the N values; "act" has no label type.
    let compact: String = without.split_whitespace().collect();
    for label in [">2<", ">32<", ">act<"] {
        assert!(compact.contains(label), "{label}");
    }
    // The seed's colours: tok blue, act green, a2t purple.
    for colour in ["#1F77B4", "#2CA02C", "#9467BD"] {
        assert!(
            without.to_uppercase().contains(colour),
            "{colour} in the plot"
        );
    }
    // LaTeX: one table per N.
    let per_n = out
        .latex
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("tables"))
        .count();
    assert_eq!(per_n, 4);
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert_eq!(html.matches("<svg").count(), svgs.len());
}

#[test]
fn a_run_directory_recorded_relative_to_another_directory_is_found_under_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    let path = write(
        &outputs,
        &Spec {
            method: "tok",
            eval: "toy",
            lr: 0.1,
            run: 0,
            n: 4,
            dev_loss: Some(0.25),
            without: [T, T, F, F],
        },
    );
    // As if `ia2 eval --outputs-dir outputs` had run in another working directory.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let recorded = PathBuf::from(v["evaluation_config"]["adapter"]["dir"].as_str().unwrap());
    let name = recorded.file_name().unwrap().to_owned();
    let here = outputs.join("tok/toy").join(&name);
    std::fs::create_dir_all(here.parent().unwrap()).unwrap();
    std::fs::rename(&recorded, &here).unwrap();
    v["evaluation_config"]["adapter"]["dir"] =
        json!(format!("elsewhere/tok/toy/{}", name.to_string_lossy()));
    std::fs::write(&path, v.to_string()).unwrap();
    let loaded = load_results(&outputs).unwrap();
    assert_eq!(loaded.entries[0].run_dir.as_deref(), Some(here.as_path()));
    assert_eq!(loaded.entries[0].best_dev_loss, Some(0.25));
}
