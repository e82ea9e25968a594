//! Both analyses end to end on runs from real `ia2 train` calls (tok, act, a2t; N = 4, two runs) and their
//! real `ia2 eval` results, on the qwen3-tiny fixture model.

use ia2_analyze::SelectionConfig;
use ia2_analyze::similarity::{self, BASE_NO_DEMOS, ModelSpec, SimilarityConfig};
use ia2_analyze::subspace::{self, SubspaceConfig};
use std::path::Path;

fn dataset(data_dir: &Path, n: usize, runs: u32) {
    ia2_testkit::review_dataset(data_dir, "toy", 4, n, runs);
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn subspace_and_similarity_on_trained_runs() {
    let Some(fixture) = ia2_testkit::fixture("qwen3-tiny") else {
        return;
    };
    let model = fixture.join("model");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, outputs) = (root.join("data"), root.join("outputs"));
    dataset(&data, 4, 2);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let model_options = ia2_load::ModelOptions {
        model: s(&model),
        ..Default::default()
    };
    for method in ["tok", "act", "a2t"] {
        let args = ia2_train::TrainConfig {
            model: model_options.clone(),
            training_method: method.parse().unwrap(),
            dataset: "toy".into(),
            data_dir: data.clone(),
            output_dir: outputs.clone(),
            num_train_examples: 4,
            num_runs: 2,
            lr: 0.05,
            num_train_epochs: 2,
            lora_r: 4,
            ..Default::default()
        };
        ia2_train::run(&args).unwrap();
    }
    let eval = ia2_eval::EvalConfig {
        model: model_options,
        model_types: vec!["tok".into(), "act".into(), "a2t".into()],
        trained_datasets: vec!["toy".into()],
        eval_datasets: vec!["toy".into()],
        outputs_dir: outputs.clone(),
        data_dir: data.clone(),
        uncertainty_analysis: true,
        ..Default::default()
    };
    ia2_eval::run(&eval).unwrap();

    let selection = SelectionConfig {
        outputs: outputs.clone(),
        ..SelectionConfig::default()
    };
    let out = outputs.join("analysis");

    // --- subspace ---
    let report = subspace::run(&SubspaceConfig {
        selection: selection.clone(),
        out_dir: out.clone(),
        ..SubspaceConfig::default()
    })
    .unwrap();
    assert_eq!(report.groups.len(), 1);
    let g = &report.groups[0];
    assert_eq!(g.n, 4);
    assert_eq!(
        g.pairs.len(),
        3,
        "tok-act, tok-a2t, act-a2t; tna pairs skipped"
    );
    assert_eq!(g.skipped_pairs.len(), 3);
    for p in &g.pairs {
        let m = p.overall.unwrap();
        assert_eq!(m.count, 2, "{}: two runs", p.pair);
        assert!((0.0..=1.0 + 1e-9).contains(&m.mean), "{}: {m:?}", p.pair);
        for r in &p.runs {
            // qko r4 on 3 layers: 9 sites per adapter.
            assert_eq!(r.used_sites + r.excluded_sites, 9);
        }
    }
    // a2t starts from act's adapter, so their subspaces overlap more than tok's and act's.
    let get = |id: &str| {
        g.pairs
            .iter()
            .find(|p| p.pair == id)
            .unwrap()
            .overall
            .unwrap()
            .mean
    };
    assert!(
        get("act-a2t") > get("tok-act"),
        "{} vs {}",
        get("act-a2t"),
        get("tok-act")
    );

    // --- similarity ---
    let cfg = SimilarityConfig {
        selection,
        model: ModelSpec {
            model: s(&model),
            ..ModelSpec::default()
        },
        data_dir: data.clone(),
        num_examples: 3,
        num_generated_tokens: Some(2),
        out_dir: out.clone(),
        ..SimilarityConfig::default()
    };
    let rep = similarity::run(&cfg).unwrap();
    assert_eq!(rep.groups.len(), 1);
    let g = &rep.groups[0];
    assert_eq!((g.num_examples, g.num_generated_tokens, g.demos), (3, 2, 3));
    for variant in ["free_running", "teacher_forced"] {
        let v = &g.variants[variant];
        for m in [BASE_NO_DEMOS, "tok", "act", "a2t"] {
            let r = &v[m];
            assert_eq!(r.runs.len(), 2, "{variant} {m}");
            let o = r.aggregate.overall.unwrap();
            assert_eq!(o.count, 6, "3 examples × 2 runs");
            assert!((-1.0..=1.0).contains(&o.mean));
            assert_eq!(r.aggregate.layerwise.len(), 3);
            assert!(r.runs.values().all(|x| !x.cached));
            // Token-wise counts never exceed the examples, and step 1 is reached by all.
            assert_eq!(r.aggregate.token_counts[0], 6);
        }
    }
    // Similarity vs performance: every trained (method, run, variant) joined with its own evaluation.
    let vs = rep.vs_performance.as_ref().unwrap();
    assert_eq!(vs.rows.len(), 2 * 3 * 2);
    assert_eq!(vs.unmatched, 0);
    assert!(
        vs.rows
            .iter()
            .all(|r| r.accuracy.is_some() && r.ece.is_some())
    );
    let csv = std::fs::read_to_string(out.join("similarity_vs_performance.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + vs.rows.len());
    let names = files(&out);
    for f in [
        "subspace.json",
        "similarity.json",
        "similarity_vs_performance.csv",
    ] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    for prefix in [
        "similarity_bars_teacher_forced_",
        "similarity_layers_free_running_",
        "similarity_tokens_teacher_forced_act_",
        "similarity_vs_accuracy_single-token_teacher_forced",
    ] {
        for ext in [".svg", ".png", ".pdf"] {
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(prefix) && n.ends_with(ext)),
                "{prefix}*{ext} in {names:?}"
            );
        }
    }

    // A second run reuses every cached result and reproduces the numbers exactly.
    let again = similarity::run(&cfg).unwrap();
    let (a, b) = (&rep.groups[0].variants, &again.groups[0].variants);
    for (variant, methods) in a {
        for (m, r) in methods {
            let r2 = &b[variant][m];
            assert!(r2.runs.values().all(|x| x.cached), "{variant} {m} cached");
            assert_eq!(r.aggregate, r2.aggregate);
        }
    }
    // A different M is another cache key.
    let fewer = similarity::run(&SimilarityConfig {
        num_examples: 2,
        plots: false,
        ..cfg.clone()
    })
    .unwrap();
    let act = &fewer.groups[0].variants["teacher_forced"]["act"];
    assert!(act.runs.values().all(|x| !x.cached));
    assert_eq!(act.aggregate.overall.unwrap().count, 4);
}
