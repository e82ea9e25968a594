//! Subspace overlap on constructed PEFT LoRA adapters with known answers, and `subspace::run` over a
//! constructed outputs tree (selection, missing methods, flagged matrices, JSON, figures).

use burn::tensor::Device;
use ia2_adapters::{LoraConfig, PeftConfig};
use ia2_analyze::subspace::{self, SubspaceConfig, compare, load_bases};
use ia2_analyze::{RankTolerance, SelectionConfig};
use ia2_model::ModelConfig;
use serde_json::json;
use std::path::Path;

const LAYERS: usize = 2;

fn model_config() -> ModelConfig {
    let mut c = ia2_model::builtin::builtin_config("tiny-qwen3").unwrap();
    c.num_hidden_layers = LAYERS;
    c
}

/// A tiny deterministic generator (tests only).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

/// `[d, r]` row-major from column vectors.
fn from_columns(cols: &[Vec<f32>]) -> Vec<f32> {
    let (d, r) = (cols[0].len(), cols.len());
    let mut out = vec![0.0; d * r];
    for (j, c) in cols.iter().enumerate() {
        for i in 0..d {
            out[i * r + j] = c[i];
        }
    }
    out
}

/// Unit vector e_k of length d, plus `mix` times a second unit vector (to avoid axis-aligned bases).
fn e(d: usize, k: usize) -> Vec<f32> {
    let mut v = vec![0.0; d];
    v[k] = 1.0;
    v
}

/// `B · R` for an r×r matrix R (row-major): another basis of the same span when R is invertible.
fn times(b: &[f32], d: usize, r: usize, rot: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; d * r];
    for i in 0..d {
        for j in 0..r {
            out[i * r + j] = (0..r).map(|k| b[i * r + k] * rot[k * r + j]).sum();
        }
    }
    out
}

/// Writes a real PEFT LoRA adapter (q_proj and v_proj of every layer, rank r): `b_of(layer, proj, d_out)`
/// gives B `[d_out, r]` row-major; A is random.
fn write_adapter(dir: &Path, r: usize, b_of: &dyn Fn(usize, &str, usize) -> Vec<f32>) {
    let mc = model_config();
    std::fs::create_dir_all(dir).unwrap();
    let cfg = PeftConfig::Lora(LoraConfig::new(r, 8.0, &["q_proj", "v_proj"]));
    std::fs::write(
        dir.join("adapter_config.json"),
        cfg.to_json_string().unwrap(),
    )
    .unwrap();
    let mut rng = Lcg(7);
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for l in 0..LAYERS {
        for (p, proj) in [
            ("q_proj", ia2_model::Proj::Q),
            ("v_proj", ia2_model::Proj::V),
        ] {
            let (fan_in, fan_out) = proj.shape(&mc);
            let base = format!("base_model.model.model.layers.{l}.self_attn.{p}");
            let a: Vec<f32> = (0..r * fan_in).map(|_| rng.next()).collect();
            owned.push((format!("{base}.lora_A.weight"), vec![r, fan_in], a));
            owned.push((
                format!("{base}.lora_B.weight"),
                vec![fan_out, r],
                b_of(l, p, fan_out),
            ));
        }
    }
    let views: Vec<(&str, &[usize], &[f32])> = owned
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    ia2_hf::save_safetensors_f32(dir.join("adapter_model.safetensors"), &views, None).unwrap();
    // It is a real PEFT adapter: ia2's PEFT loader accepts it for the model.
    ia2_adapters::load_peft(dir, &mc, &Device::flex()).expect("a loadable PEFT adapter");
}

fn random_b(seed: u64) -> impl Fn(usize, &str, usize) -> Vec<f32> {
    move |l, p, d| {
        let mut rng = Lcg(seed + 31 * l as u64 + p.len() as u64);
        (0..d * 4).map(|_| rng.next()).collect()
    }
}

const TOL: RankTolerance = RankTolerance {
    relative: 1e-6,
    absolute: 1e-10,
};

#[test]
fn known_overlaps_of_constructed_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let r = 4;
    // Identical bases.
    write_adapter(&root.join("a"), r, &random_b(1));
    write_adapter(&root.join("a_copy"), r, &random_b(1));
    // Same span, another basis: B · R with R invertible (a rotation-and-scale mix).
    let rot: Vec<f32> = vec![
        0.6, -0.8, 0.0, 0.3, 0.8, 0.6, 0.1, 0.0, 0.0, 0.2, 1.5, -0.4, 0.5, 0.0, 0.3, 2.0,
    ];
    let rb = random_b(1);
    write_adapter(&root.join("a_rotated"), r, &|l, p, d| {
        times(&rb(l, p, d), d, r, &rot)
    });
    // Orthogonal spans: e0..e3 (mixed) vs e4..e7 (mixed).
    write_adapter(&root.join("low"), r, &|_, _, d| {
        times(
            &from_columns(&[e(d, 0), e(d, 1), e(d, 2), e(d, 3)]),
            d,
            r,
            &rot,
        )
    });
    write_adapter(&root.join("high"), r, &|_, _, d| {
        from_columns(&[e(d, 4), e(d, 5), e(d, 6), e(d, 7)])
    });
    // Half shared: e0, e1, e8, e9 against e0..e3 → 2 / 4.
    write_adapter(&root.join("half"), r, &|_, _, d| {
        from_columns(&[e(d, 0), e(d, 1), e(d, 8), e(d, 9)])
    });

    let load = |n: &str| load_bases(&root.join(n), TOL).unwrap();
    let a = load("a");
    assert_eq!(a.sites.len(), 2 * LAYERS);
    for b in a.sites.values() {
        assert_eq!(b.effective_rank, r);
        assert!(!b.flagged());
    }
    let check = |x: &str, y: &str, want: f64| {
        let c = compare(&load(x), &load(y));
        assert_eq!(c.used, 2 * LAYERS, "{x} vs {y}: every site used");
        assert_eq!(c.excluded, 0);
        for s in &c.sites {
            let o = s.overlap.unwrap();
            assert!(
                (o - want).abs() < 1e-9,
                "{x} vs {y} at layer {} {}: {o}, expected {want}",
                s.layer,
                s.proj
            );
        }
        assert!((c.mean.unwrap() - want).abs() < 1e-9);
        for (p, v) in &c.per_projection {
            assert!((v - want).abs() < 1e-9, "{p}");
        }
    };
    check("a", "a_copy", 1.0);
    check("a", "a_rotated", 1.0);
    check("low", "high", 0.0);
    check("low", "half", 0.5);
    // Symmetric.
    check("half", "low", 0.5);
    // Two independent random 4-dimensional subspaces of R^64 / R^32 overlap little but not zero.
    let c = compare(&load("a"), &load("high"));
    assert!(c.mean.unwrap() > 0.0 && c.mean.unwrap() < 0.5);
}

#[test]
fn rank_deficient_and_zero_b_are_flagged_and_excluded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let r = 4;
    let good = random_b(3);
    // Layer 0 q_proj: the 4th column is the sum of the first two (rank 3); layer 1 v_proj: zero.
    write_adapter(&root.join("bad"), r, &|l, p, d| {
        let mut b = good(l, p, d);
        if l == 0 && p == "q_proj" {
            for i in 0..d {
                b[i * r + 3] = b[i * r] + b[i * r + 1];
            }
        }
        if l == 1 && p == "v_proj" {
            b.iter_mut().for_each(|x| *x = 0.0);
        }
        b
    });
    write_adapter(&root.join("good"), r, &good);
    let bad = load_bases(&root.join("bad"), TOL).unwrap();
    let q0 = &bad.sites[&(0, "q_proj".to_string())];
    assert_eq!(q0.effective_rank, 3);
    assert!(q0.flagged() && !q0.near_zero());
    let v1 = &bad.sites[&(1, "v_proj".to_string())];
    assert_eq!(v1.effective_rank, 0);
    assert!(v1.near_zero());
    let c = compare(&bad, &load_bases(&root.join("good"), TOL).unwrap());
    assert_eq!(c.excluded, 2);
    assert_eq!(c.used, 2 * LAYERS - 2);
    let reasons: Vec<_> = c.sites.iter().filter_map(|s| s.excluded.clone()).collect();
    assert!(
        reasons.contains(&"rank-deficient B".to_string()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"near-zero B".to_string()), "{reasons:?}");
    // The other two sites are the same B: overlap 1, so the mean is exactly 1.
    assert!((c.mean.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn a_non_lora_adapter_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ia3_run");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = PeftConfig::Ia3(ia2_adapters::Ia3Config::new(&["k_proj"], &[] as &[&str]));
    std::fs::write(
        dir.join("adapter_config.json"),
        cfg.to_json_string().unwrap(),
    )
    .unwrap();
    let err = format!("{:#}", load_bases(&dir, TOL).unwrap_err());
    assert!(
        err.contains("ia3_run") && err.contains("IA3") && err.contains("not LoRA"),
        "{err}"
    );
    let missing = format!(
        "{:#}",
        load_bases(&tmp.path().join("nothing"), TOL).unwrap_err()
    );
    assert!(missing.contains("nothing"), "{missing}");
}

/// A finished run directory as `ia2 train` writes it (the files the analyses read).
#[allow(clippy::too_many_arguments)]
fn write_run(
    outputs: &Path,
    method: &str,
    name: &str,
    n: usize,
    run: u32,
    lr: f64,
    dev_loss: f64,
    b: &dyn Fn(usize, &str, usize) -> Vec<f32>,
) {
    let dir = outputs.join(method).join("toy").join(name);
    write_adapter(&dir, 4, b);
    let config = json!({
        "dataset": "toy", "training_method": method, "model_name": "tiny-qwen3",
        "lora_type": "qv", "lora_r": 4, "lora_alpha": 8, "num_train_examples": n,
        "num_generated_tokens": 1, "lr": lr, "ce_loss_weight": 0.5, "label_type": "icl_outputs",
        "run_idx": run,
    });
    std::fs::write(dir.join("training_config.json"), config.to_string()).unwrap();
    let stats = json!({"best_dev_loss": dev_loss, "training_completed": true, "final_epoch": 0,
        "total_steps": 1, "current_train_loss": {"mse": 0.0, "ce": 0.0, "total": 0.0},
        "early_stopped": false, "best_step": 1});
    std::fs::write(dir.join("final_loss_statistics.json"), stats.to_string()).unwrap();
}

#[test]
fn run_selects_pairs_skips_missing_methods_and_writes_json_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    let low = |_: usize, _: &str, d: usize| from_columns(&[e(d, 0), e(d, 1), e(d, 2), e(d, 3)]);
    let half = |_: usize, _: &str, d: usize| from_columns(&[e(d, 0), e(d, 1), e(d, 8), e(d, 9)]);
    let high = |_: usize, _: &str, d: usize| from_columns(&[e(d, 4), e(d, 5), e(d, 6), e(d, 7)]);
    for (n, runs) in [(4usize, 2u32), (8, 2)] {
        for run in 0..runs {
            // tok: two learning rates; the one with the lower mean dev loss (1e-3) is "low".
            write_run(
                &outputs,
                "tok",
                &format!("tok_n{n}_r{run}_lr1e-3"),
                n,
                run,
                1e-3,
                0.1,
                &low,
            );
            write_run(
                &outputs,
                "tok",
                &format!("tok_n{n}_r{run}_lr1e-4"),
                n,
                run,
                1e-4,
                0.9,
                &high,
            );
            write_run(
                &outputs,
                "act",
                &format!("act_n{n}_r{run}"),
                n,
                run,
                1e-3,
                0.2,
                &half,
            );
            write_run(
                &outputs,
                "a2t",
                &format!("a2t_n{n}_r{run}"),
                n,
                run,
                1e-3,
                0.2,
                &high,
            );
        }
    }
    // An interrupted run (no final stats marking completion) is ignored.
    let partial = outputs.join("act/toy/.act_partial");
    std::fs::create_dir_all(&partial).unwrap();

    let out = tmp.path().join("analysis");
    let cfg = SubspaceConfig {
        selection: SelectionConfig {
            outputs: outputs.clone(),
            ..SelectionConfig::default()
        },
        out_dir: out.clone(),
        ..SubspaceConfig::default()
    };
    let report = subspace::run(&cfg).unwrap();
    assert_eq!(report.groups.len(), 2);
    for g in &report.groups {
        assert_eq!(g.selected_hp["tok"], "lr=0.001");
        // No evaluation results: selected from the run directories' dev losses.
        assert!(g.selection_source["tok"].starts_with("run directories"));
        let get = |id: &str| g.pairs.iter().find(|p| p.pair == id).unwrap();
        let approx = |id: &str, want: f64| {
            let m = get(id).overall.unwrap();
            assert!((m.mean - want).abs() < 1e-9 && m.std < 1e-9, "{id}: {m:?}");
            assert_eq!(m.count, 2);
        };
        approx("tok-act", 0.5);
        approx("tok-a2t", 0.0);
        // act = e0 e1 e8 e9 vs a2t = e4..e7.
        approx("act-a2t", 0.0);
        assert_eq!(get("tok-act").label, "SFT only vs IA2 only");
        assert_eq!(get("tok-a2t").label, "SFT only vs IA2 → SFT");
        assert_eq!(get("act-a2t").label, "IA2 only vs IA2 → SFT");
        // Pairs with tna are skipped with a message; the rest is computed.
        assert_eq!(g.skipped_pairs.len(), 3, "{:?}", g.skipped_pairs);
        assert!(g.skipped_pairs.iter().all(|s| s.contains("tna")));
        assert_eq!(g.pairs.len(), 3);
        assert!(get("tok-act").per_projection.contains_key("q_proj"));
    }
    assert_eq!(report.aggregate["tok-act"][&4].mean, 0.5);
    assert_eq!(report.per_run_values["tok-act"].len(), 4);
    assert_eq!(report.flagged_sites, 0);
    // The JSON holds the full configuration and reads back.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("subspace.json")).unwrap()).unwrap();
    assert_eq!(v["config"]["tolerance"]["relative"], 1e-6);
    assert_eq!(v["config"]["selection"]["hp_selection"], "dev_loss");
    assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    // Figures: overlap vs N, by projection, bars, box, violin; SVG and PNG and PDF.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for stem in [
        "subspace_overlap_bars",
        "subspace_overlap_box",
        "subspace_overlap_violin",
    ] {
        for ext in ["svg", "png", "pdf"] {
            assert!(
                names.contains(&format!("{stem}.{ext}")),
                "{stem}.{ext} in {names:?}"
            );
        }
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("subspace_overlap_vs_n_") && n.ends_with(".svg"))
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("subspace_by_projection_tok-act_") && n.ends_with(".svg"))
    );
    let svg = std::fs::read_to_string(out.join("subspace_overlap_box.svg")).unwrap();
    assert!(svg.contains("SFT only vs IA2 only") && svg.contains("IA2 only vs IA2 → SFT"));
}

#[test]
fn run_on_non_lora_runs_is_an_error_naming_the_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    for (method, run_name) in [("ia3-tok", "ia3_tok_run"), ("ia3-act", "ia3_act_run")] {
        let dir = outputs.join(method).join("toy").join(run_name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = PeftConfig::Ia3(ia2_adapters::Ia3Config::new(&["k_proj"], &[] as &[&str]));
        std::fs::write(
            dir.join("adapter_config.json"),
            cfg.to_json_string().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("adapter_model.safetensors"), b"").unwrap();
        let config = json!({"dataset": "toy", "training_method": method, "model_name": "m",
            "ia3_type": "k", "num_train_examples": 4, "run_idx": 0, "lr": 0.001});
        std::fs::write(dir.join("training_config.json"), config.to_string()).unwrap();
    }
    let cfg = SubspaceConfig {
        selection: SelectionConfig {
            outputs: outputs.clone(),
            methods: vec!["ia3-tok".into(), "ia3-act".into()],
            ..SelectionConfig::default()
        },
        out_dir: tmp.path().join("analysis"),
        plots: false,
        ..SubspaceConfig::default()
    };
    let err = format!("{:#}", subspace::run(&cfg).unwrap_err());
    assert!(
        err.contains("ia3_act_run") && err.contains("IA3 adapter, not LoRA"),
        "{err}"
    );
    // An outputs directory that does not exist is named.
    let missing = SubspaceConfig {
        selection: SelectionConfig {
            outputs: tmp.path().join("nowhere"),
            ..SelectionConfig::default()
        },
        ..cfg
    };
    let err = format!("{:#}", subspace::run(&missing).unwrap_err());
    assert!(err.contains("nowhere"), "{err}");
}
