//! End to end on the built-in tiny Qwen3 model: a tiny dataset and its training set made with ia2-data, a
//! LoRA run (merged) and a prompt-tuning run (through the forward pass, seed-style config without the
//! "ia2" block) saved as PEFT directories with hand-written training_config.json, then `ia2_eval::run`:
//! both modes in every result, metrics equal to what the records say, resumability, partial files,
//! uncertainty mode, merge and batch invariance, clear errors on bad input, and the throughput bench.

use burn::tensor::Device;
use ia2_adapters::{LoraConfig, LoraInit, PeftConfig, PromptTuningConfig, init_adapter, save_peft};
use ia2_data::schema::{Example, MainFile};
use ia2_data::train_sets::TrainSetsConfig;
use ia2_eval::metrics::{ece, entropy, renormalize};
use ia2_eval::{EvalConfig, Summary};
use ia2_load::ModelOptions;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const LORA_RUN: &str = "tiny-qwen3_qvo_4_8_1_4_0.0001_0_ground_truth";
const PROMPT_RUN: &str = "tiny-qwen3_prompt_3_1_4_0.0001_0";

struct Fixture {
    _root: tempfile::TempDir,
    data: PathBuf,
    outputs: PathBuf,
    fingerprint: String,
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn examples(prefix: &str, n: usize, labels: &[&str], offset: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            idx: i + offset,
            // Lengths vary, so sorting prompts by length reorders them.
            question: format!(
                "Text:{prefix}{} number {}\nLabel:",
                " very".repeat((i * 5) % 4),
                i + offset
            ),
            answer: labels[(i * 7 + offset) % labels.len()].to_string(),
        })
        .collect()
}

fn training_config(method: &str, extra: Value, fingerprint: Option<&str>) -> Value {
    let mut c = json!({
        "dataset": "sst2", "training_method": method, "model_name": "tiny-qwen3",
        "lora_type": null, "lora_r": null, "lora_alpha": null, "ia3_type": null,
        "num_virtual_tokens": null, "num_train_examples": 4, "num_generated_tokens": 1, "lr": 0.0001,
        "ce_loss_weight": null, "label_type": null, "run_idx": 0, "output_dir": "outputs",
        "ldr_mode": false, "num_labelled_samples": null, "num_unlabelled_samples": null,
        "max_permutations": null, "tokl_top_k": null
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if let Some(fp) = fingerprint {
        c["ia2"] = json!({"model_id": "builtin:tiny-qwen3", "base_model_fingerprint": fp});
    }
    c
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let outputs = root.path().join("outputs");
    let sst2 = MainFile {
        metadata: json!({"max_choices": 2, "remap_dict": null}),
        train_examples: examples("good", 16, &["0", "1"], 0),
        val_examples: examples("fine", 6, &["0", "1"], 100),
    };
    // A dataset outside the registry, with remapped labels and no training pool (evaluation only).
    let toy = MainFile {
        metadata: json!({"max_choices": 2, "remap_dict": {"0": "apple", "1": "Friday"}}),
        train_examples: Vec::new(),
        val_examples: examples("toy", 5, &["apple", "Friday"], 200),
    };
    write_json(
        &data.join("sst2/main.json"),
        &serde_json::to_value(&sst2).unwrap(),
    );
    write_json(
        &data.join("toy/main.json"),
        &serde_json::to_value(&toy).unwrap(),
    );
    ia2_data::train_sets::run(TrainSetsConfig {
        num_runs: 1,
        ..TrainSetsConfig::new("sst2", data.clone(), vec![4])
    })
    .unwrap();

    let model_dir =
        ia2_model::builtin::materialize("tiny-qwen3", &ia2_model::builtin::default_cache_root())
            .unwrap();
    let fingerprint = ia2_eval::base_model_fingerprint(&model_dir).unwrap();
    let model = ia2_model::builtin::builtin_config("tiny-qwen3").unwrap();
    let device = Device::flex();

    // LoRA with a nonzero B (PEFT's `init_lora_weights: false`), so it changes the model.
    let lora = PeftConfig::Lora(LoraConfig {
        init_lora_weights: LoraInit::Bool(false),
        ..LoraConfig::new(4, 8.0, &["q_proj", "v_proj", "o_proj"])
    });
    let dir = outputs.join("tok/sst2").join(LORA_RUN);
    save_peft(
        &dir,
        &init_adapter(&lora, &model, 7, &device).unwrap(),
        &lora,
    )
    .unwrap();
    write_json(
        &dir.join("training_config.json"),
        &training_config(
            "tok",
            json!({"lora_type": "qvo", "lora_r": 4, "lora_alpha": 8, "label_type": "ground_truth"}),
            Some(&fingerprint),
        ),
    );
    write_json(
        &dir.join("final_loss_statistics.json"),
        &json!({"best_dev_loss": 0.5, "training_completed": true, "final_epoch": 3, "total_steps": 12}),
    );

    // Prompt tuning, seed-style config (no "ia2" block).
    let prompt = PeftConfig::PromptTuning(PromptTuningConfig::new(3, &model));
    let dir = outputs.join("prompt-act/sst2").join(PROMPT_RUN);
    save_peft(
        &dir,
        &init_adapter(&prompt, &model, 8, &device).unwrap(),
        &prompt,
    )
    .unwrap();
    write_json(
        &dir.join("training_config.json"),
        &training_config("prompt-act", json!({"num_virtual_tokens": 3}), None),
    );
    Fixture {
        _root: root,
        data,
        outputs,
        fingerprint,
    }
}

/// The options every evaluation of these tests shares; the rest are the command line's defaults.
fn args(fx: &Fixture) -> EvalConfig {
    EvalConfig {
        model: ModelOptions::default(),
        outputs_dir: fx.outputs.clone(),
        data_dir: fx.data.clone(),
        icl_max_demos: vec![3],
        ..EvalConfig::default()
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: {a} != {b}");
}

fn find<'a>(s: &'a Summary, model_type: &str, eval: &str) -> &'a Path {
    &s.entries
        .iter()
        .find(|e| e.model_type == model_type && e.eval_dataset == eval)
        .unwrap_or_else(|| panic!("no {model_type} on {eval} in the summary"))
        .result_path
}

/// Accuracy, deltas and agreement recomputed from the records.
fn check_standard_metrics(r: &Value) {
    let m = &r["metrics"];
    let mut answers = Vec::new();
    for mode in ["with_icl", "without_icl"] {
        let recs = r["results"][mode].as_array().unwrap();
        let mut hits = 0;
        let mut modes = Vec::new();
        for rec in recs {
            let gen_answer = rec["generated_answer"].as_str().map(str::to_string);
            // Classification parser: the stripped text.
            assert_eq!(
                gen_answer.as_deref(),
                Some(rec["full_generated_text"].as_str().unwrap().trim())
            );
            let correct = gen_answer.as_deref() == rec["parsed_answer"].as_str();
            assert_eq!(rec["correct"].as_bool().unwrap(), correct);
            hits += usize::from(correct);
            modes.push((gen_answer, correct));
        }
        close(
            f(&m[format!("{mode}_accuracy")]),
            100.0 * hits as f64 / recs.len() as f64,
            mode,
        );
        assert_eq!(m[format!("{mode}_total_examples")], recs.len());
        answers.push(modes);
    }
    close(
        f(&m["accuracy_delta"]),
        f(&m["with_icl_accuracy"]) - f(&m["without_icl_accuracy"]),
        "delta",
    );
    let (w, o) = (&answers[0], &answers[1]);
    let agree = w.iter().zip(o).filter(|(a, b)| a.0 == b.0).count();
    let both = w.iter().zip(o).filter(|(a, b)| a.1 && b.1).count();
    let only_icl = w.iter().zip(o).filter(|(a, b)| a.1 && !b.1).count();
    close(
        f(&m["agreement_rate"]),
        100.0 * agree as f64 / w.len() as f64,
        "agreement",
    );
    assert_eq!(m["both_correct"], both);
    assert_eq!(m["only_icl_correct"], only_icl);
    assert_eq!(m["comparable_examples"], w.len());
}

#[test]
fn standard_mode_both_modes_resumable() {
    let fx = fixture();
    // The evaluations of this test: 3 model types on 2 datasets, demos from sst2, T = 4.
    let evals = EvalConfig {
        model_types: strs(&["base", "tok", "prompt-act"]),
        eval_datasets: strs(&["sst2", "toy"]),
        icl_source_datasets: strs(&["sst2"]),
        num_gen_tokens_eval: Some(4),
        ..args(&fx)
    };
    let a = EvalConfig {
        batch_size: 4,
        ..evals.clone()
    };
    let s = ia2_eval::run(&a).unwrap();
    assert_eq!((s.evaluated, s.skipped, s.failed), (6, 0, 0), "{s}");
    let summary_file = s.path.clone().unwrap();
    assert!(summary_file.starts_with(fx.outputs.join("evaluation_summaries")));
    assert_eq!(read(&summary_file)["evaluated"], 6);

    // The name encodes the run, eval dataset, demo source, D, N, run and T.
    let lora = fx
        .outputs
        .join("evaluations/tok/sst2")
        .join(format!("{LORA_RUN}__sst2_from_sst2_d3_N4_run0_T4.json"));
    assert_eq!(find(&s, "tok", "sst2"), lora);
    assert_eq!(
        find(&s, "base", "toy"),
        fx.outputs
            .join("evaluations/base/toy/tiny-qwen3_base__toy_from_sst2_d3_N4_run0_T4.json")
    );
    // Demo sets were built on the fly (D in the name).
    assert!(fx.data.join("sst2/val/sst2/4_0_d3.json").is_file());
    assert!(fx.data.join("toy/val/sst2/4_0_d3.json").is_file());

    let sst2_sha = ia2_eval::fingerprint::sha256_file(&fx.data.join("sst2/main.json")).unwrap();
    for e in &s.entries {
        let r = read(&e.result_path);
        assert_eq!(r["status"], "complete");
        let n = if e.eval_dataset == "toy" { 5 } else { 6 };
        for mode in ["with_icl", "without_icl"] {
            let recs = r["results"][mode].as_array().unwrap();
            assert_eq!(recs.len(), n, "{mode} of {}", e.result_path.display());
            for rec in recs {
                let stop = rec["stop_reason"].as_str().unwrap();
                assert!(["eos", "stop_string", "max_new_tokens"].contains(&stop));
            }
        }
        // Every example has its demos with ICL and none without.
        for (w, o) in r["results"]["with_icl"]
            .as_array()
            .unwrap()
            .iter()
            .zip(r["results"]["without_icl"].as_array().unwrap())
        {
            assert_eq!(w["query"], o["query"]);
            assert!(f(&w["prompt_tokens"]) > f(&o["prompt_tokens"]) + 30.0);
        }
        check_standard_metrics(&r);
        let c = &r["evaluation_config"];
        assert_eq!(c["icl_max_demos"], 3);
        assert_eq!(c["icl_max_demos_requested"], 3);
        assert_eq!(c["num_generated_tokens_eval"], 4);
        assert_eq!(c["model"]["fingerprint"], fx.fingerprint.as_str());
        assert_eq!(c["invocation"]["batch_size"], 4);
        let files = c["data_files"].as_array().unwrap();
        let roles: Vec<&str> = files.iter().map(|d| d["role"].as_str().unwrap()).collect();
        assert!(roles.contains(&"eval_demos") && roles.contains(&"icl_source_train"));
        if e.eval_dataset == "sst2" {
            let main = files.iter().find(|d| d["role"] == "eval_main").unwrap();
            assert_eq!(main["sha256"], sst2_sha.as_str());
        } else {
            assert!(roles.contains(&"icl_source_main"), "cross-dataset demos");
            assert_eq!(c["label_tokens"], json!(["apple", "Friday"]));
            assert_eq!(c["dataset_in_registry"], false);
        }
    }
    let r = read(&lora);
    assert_eq!(r["trained_model_params"]["lora_r"], 4);
    assert_eq!(
        r["trained_model_params"]["ia2"]["base_model_fingerprint"],
        fx.fingerprint.as_str()
    );
    assert_eq!(r["evaluation_config"]["adapter"]["merged"], true);
    assert_eq!(
        r["evaluation_config"]["adapter"]["final_loss_statistics"]["total_steps"],
        12
    );
    let p = read(find(&s, "prompt-act", "sst2"));
    assert_eq!(p["evaluation_config"]["adapter"]["merged"], false);
    assert_eq!(
        p["evaluation_config"]["adapter"]["peft_type"],
        "PROMPT_TUNING"
    );

    // A second run finds everything finished and rewrites nothing.
    let before = std::fs::read(&lora).unwrap();
    let s2 = ia2_eval::run(&a).unwrap();
    assert_eq!((s2.evaluated, s2.skipped), (0, 6), "{s2}");
    assert_eq!(std::fs::read(&lora).unwrap(), before);

    // A truncated result and a stray temporary never count as finished.
    std::fs::write(&lora, &before[..before.len() / 2]).unwrap();
    std::fs::write(lora.with_file_name(".partial.json.123.tmp"), b"{").unwrap();
    let dry = ia2_eval::run(&EvalConfig {
        dry_run: true,
        ..evals.clone()
    })
    .unwrap();
    assert_eq!(dry.skipped, 5);
    assert_eq!(
        dry.entries.iter().filter(|e| e.status == "planned").count(),
        1
    );
    let s3 = ia2_eval::run(&a).unwrap();
    assert_eq!((s3.evaluated, s3.skipped), (1, 5), "{s3}");
    assert_eq!(read(&lora)["status"], "complete");
    check_standard_metrics(&read(&lora));

    // Results computed from data that changed since are evaluated again (checksums recorded per input).
    let toy_main = fx.data.join("toy/main.json");
    let mut toy = read(&toy_main);
    toy["metadata"]["note"] = json!("edited");
    write_json(&toy_main, &toy);
    let s4 = ia2_eval::run(&a).unwrap();
    assert_eq!((s4.evaluated, s4.skipped), (3, 3), "{s4}");
    assert!(
        s4.entries
            .iter()
            .all(|e| (e.status == "evaluated") == (e.eval_dataset == "toy"))
    );
}

fn next_token_infos(r: &Value, mode: &str) -> Vec<Value> {
    r["results"][mode]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec["prob_info"].clone())
        .collect()
}

fn top_probs(r: &Value, mode: &str) -> Vec<Vec<f64>> {
    next_token_infos(r, mode)
        .iter()
        .map(|i| i["top_k_probs"].as_array().unwrap().iter().map(f).collect())
        .collect()
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn uncertainty_mode_label_sets_merge_and_padding() {
    let fx = fixture();
    let common = EvalConfig {
        eval_datasets: strs(&["sst2", "toy"]),
        icl_source_datasets: strs(&["sst2"]),
        uncertainty_analysis: true,
        top_k: 5,
        ..args(&fx)
    };
    let run = |a: EvalConfig| ia2_eval::run(&a).unwrap();
    let s = run(EvalConfig {
        model_types: strs(&["base", "tok", "prompt-act"]),
        batch_size: 4,
        ..common.clone()
    });
    assert_eq!(s.evaluated, 6, "{s}");
    for e in &s.entries {
        // T defaults to 1 for classification datasets; k is part of the name.
        assert!(e.result_path.to_str().unwrap().ends_with("_T1_k5.json"));
        assert!(e.result_path.to_str().unwrap().contains("_uncertainty/"));
        let r = read(&e.result_path);
        let m = &r["metrics"];
        assert_eq!(
            r["evaluation_config"]["label_token_ids"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        for mode in ["with_icl", "without_icl"] {
            let infos = next_token_infos(&r, mode);
            let n = infos.len() as f64;
            let mut conf = Vec::new();
            let mut hits = Vec::new();
            let mut lconf = Vec::new();
            let mut lhits = Vec::new();
            let mut ent = 0.0;
            for (rec, i) in r["results"][mode].as_array().unwrap().iter().zip(&infos) {
                let probs: Vec<f64> = i["top_k_probs"].as_array().unwrap().iter().map(f).collect();
                assert_eq!(probs.len(), 5);
                assert!(probs.windows(2).all(|w| w[0] >= w[1]), "top-k sorted");
                let q = renormalize(&probs);
                close(f(&i["top1"]["confidence"]), q[0], "top-1 confidence");
                close(f(&i["top1"]["entropy"]), entropy(&q), "top-k entropy");
                ent += entropy(&q) / n;
                let top1 = i["top_k_tokens"][0].as_str().unwrap().trim();
                let gold = rec["parsed_answer"].as_str().unwrap();
                assert_eq!(i["correct_top1"].as_bool().unwrap(), top1 == gold);
                conf.push(q[0]);
                hits.push(top1 == gold);
                // Label set: P(label) of the first sub-token, renormalised, the gold one the largest.
                let labels = i["label_probs"].as_object().unwrap();
                assert_eq!(labels.len(), 2);
                let gp = f(&labels[gold]);
                let lp: Vec<f64> = labels.values().map(f).collect();
                let correct = lp.iter().all(|&p| gp >= p);
                assert_eq!(i["correct_label_set"].as_bool().unwrap(), correct);
                let sum: f64 = lp.iter().sum();
                close(
                    f(&i["label"]["confidence"]),
                    lp.iter().copied().fold(0.0, f64::max) / sum,
                    "label confidence",
                );
                lconf.push(lp.iter().copied().fold(0.0, f64::max) / sum);
                lhits.push(correct);
            }
            let pct = |h: &[bool]| 100.0 * h.iter().filter(|&&x| x).count() as f64 / n;
            close(
                f(&m[format!("{mode}_accuracy_top1")]),
                pct(&hits),
                "top-1 accuracy",
            );
            close(
                f(&m[format!("{mode}_accuracy_label_set")]),
                pct(&lhits),
                "label-set accuracy",
            );
            close(
                f(&m[format!("{mode}_ece_top1")]),
                ece(&conf, &hits, 15),
                "ECE top-1",
            );
            close(
                f(&m[format!("{mode}_ece_label")]),
                ece(&lconf, &lhits, 15),
                "ECE label",
            );
            close(
                f(&m[format!("{mode}_entropy_top1_mean")]),
                ent,
                "entropy mean",
            );
        }
        for k in [
            "accuracy_delta_top1",
            "accuracy_delta_label_set",
            "ece_delta_label",
            "agreement_rate",
        ] {
            assert!(m[k].is_number(), "{k} missing");
        }
    }

    // Each record is its own example's prompt (no mix-up through sorting and batching): recompute single
    // prompts directly, with the demos of the demo file.
    let model_dir =
        ia2_model::builtin::materialize("tiny-qwen3", &ia2_model::builtin::default_cache_root())
            .unwrap();
    let device = Device::flex();
    let decoder = ia2_model::load_decoder(&model_dir, burn::tensor::DType::F32, &device).unwrap();
    let tok = ia2_hf::Tokenizer::from_dir(&model_dir).unwrap();
    let (prompt_adapter, _) = ia2_adapters::load_peft(
        fx.outputs.join("prompt-act/sst2").join(PROMPT_RUN),
        &decoder.config,
        &device,
    )
    .unwrap();
    let demos = read(&fx.data.join("sst2/val/sst2/4_0_d3.json"));
    for (model_type, adapter) in [("base", None), ("prompt-act", Some(&prompt_adapter))] {
        let r = read(find(&s, model_type, "sst2"));
        for mode in ["with_icl", "without_icl"] {
            for (i, rec) in r["results"][mode].as_array().unwrap().iter().enumerate() {
                let q = demos["examples"][i]["question"].as_str().unwrap();
                assert_eq!(rec["query"], q);
                let text = if mode == "with_icl" {
                    let d: Vec<String> = demos["icl_demos"][i]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect();
                    format!("{}\n\n{q}", d.join("\n\n"))
                } else {
                    q.to_string()
                };
                let ids = tok.encode(&text, true).unwrap();
                assert_eq!(rec["prompt_tokens"], ids.len());
                let d = ia2_eval::engine::next_token(&decoder, adapter, &[ids], 0, 5, &[]).unwrap();
                let want: Vec<f64> = d[0].top.iter().map(|t| t.1).collect();
                let got: Vec<f64> = rec["prob_info"]["top_k_probs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(f)
                    .collect();
                assert!(
                    max_diff(&[want], &[got]) < 1e-4,
                    "{model_type} {mode} example {i} differs from its own prompt"
                );
            }
        }
    }

    // The adapters change the model's distribution.
    let base = top_probs(&read(find(&s, "base", "sst2")), "without_icl");
    let lora_path = find(&s, "tok", "sst2").to_path_buf();
    let lora = top_probs(&read(&lora_path), "without_icl");
    let prompt_path = find(&s, "prompt-act", "sst2").to_path_buf();
    let prompt = top_probs(&read(&prompt_path), "with_icl");
    assert!(max_diff(&base, &lora) > 1e-3, "LoRA had no effect");
    assert!(
        max_diff(
            &base,
            &top_probs(&read(find(&s, "prompt-act", "sst2")), "without_icl")
        ) > 1e-3
    );

    // Merged LoRA = LoRA through the forward pass.
    let s2 = run(EvalConfig {
        model_types: strs(&["tok"]),
        no_merge: true,
        overwrite: true,
        ..common.clone()
    });
    assert_eq!(s2.evaluated, 2);
    let unmerged = read(&lora_path);
    assert_eq!(unmerged["evaluation_config"]["adapter"]["merged"], false);
    assert!(max_diff(&lora, &top_probs(&unmerged, "without_icl")) < 1e-4);

    // Left padding (batch 4) = no padding (batch 1), also with prompt-tuning virtual tokens.
    let s3 = run(EvalConfig {
        model_types: strs(&["prompt-act"]),
        batch_size: 1,
        overwrite: true,
        ..common.clone()
    });
    assert_eq!(s3.evaluated, 2);
    let unpadded = read(&prompt_path);
    assert!(max_diff(&prompt, &top_probs(&unpadded, "with_icl")) < 1e-4);
}

#[test]
fn uncertainty_mode_per_step_distributions() {
    let fx = fixture();
    let s = ia2_eval::run(&EvalConfig {
        model_types: strs(&["base"]),
        eval_datasets: strs(&["sst2"]),
        num_examples: vec![4],
        run_indices: vec![0],
        uncertainty_analysis: true,
        num_gen_tokens_eval: Some(3),
        max_eval_examples: Some(4),
        ..args(&fx)
    })
    .unwrap();
    assert_eq!(s.evaluated, 1);
    let path = &s.entries[0].result_path;
    assert!(path.to_str().unwrap().ends_with("_T3_k10_first4.json"));
    let r = read(path);
    let m = &r["metrics"];
    for mode in ["with_icl", "without_icl"] {
        let recs = r["results"][mode].as_array().unwrap();
        assert_eq!(recs.len(), 4);
        let mut all = Vec::new();
        for rec in recs {
            let info = &rec["prob_info"];
            let steps = info["prob_matrix"].as_array().unwrap();
            assert!(!steps.is_empty() && steps.len() <= 3);
            assert_eq!(info["token_matrix"].as_array().unwrap().len(), steps.len());
            assert_eq!(info["generated_text"], rec["full_generated_text"]);
            for (step, e) in steps.iter().zip(info["step_entropies"].as_array().unwrap()) {
                let p: Vec<f64> = step.as_array().unwrap().iter().map(f).collect();
                assert_eq!(p.len(), 10);
                close(f(e), entropy(&renormalize(&p)), "step entropy");
                all.push(f(e));
            }
        }
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        close(
            f(&m[format!("{mode}_entropy_topk_mean")]),
            mean,
            "entropy over steps",
        );
        assert_eq!(m[format!("{mode}_topk_value")], 10);
    }
    assert!(m["entropy_delta_topk"].is_number() && m["accuracy_delta"].is_number());
}

fn err(a: EvalConfig) -> String {
    match ia2_eval::run(&a) {
        Ok(s) => panic!("expected an error, got {s}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let fx = fixture();
    let types = |t: &[&str]| EvalConfig {
        model_types: strs(t),
        ..args(&fx)
    };
    let e = err(types(&["act"]));
    assert!(e.contains("no matching adapters"), "{e}");
    let e = err(EvalConfig {
        lora_rs: vec![16],
        ..types(&["tok"])
    });
    assert!(
        e.contains("no matching adapters") && e.contains("lora_r 4 not in [16]"),
        "{e}"
    );

    // Runs of another base model are passed over (with the reason).
    let foreign = fx
        .outputs
        .join("tok/finsen/Qwen3-4B-Base_qko_8_8_1_4_0.0001_0_ground_truth");
    std::fs::create_dir_all(&foreign).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(
            fx.outputs.join("tok/sst2").join(LORA_RUN).join(f),
            foreign.join(f),
        )
        .unwrap();
    }
    let mut c = training_config("tok", json!({"label_type": "ground_truth"}), None);
    c["model_name"] = json!("Qwen3-4B-Base");
    c["dataset"] = json!("finsen");
    write_json(&foreign.join("training_config.json"), &c);
    let e = err(EvalConfig {
        trained_datasets: strs(&["finsen"]),
        ..types(&["tok"])
    });
    assert!(e.contains("trained on base model \"Qwen3-4B-Base\""), "{e}");

    // Same name, different weights: an error, not a silent evaluation.
    let other = fx.outputs.join("act/sst2/tiny-qwen3_qvo_4_8_1_4_0.0001_0");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(
            fx.outputs.join("tok/sst2").join(LORA_RUN).join(f),
            other.join(f),
        )
        .unwrap();
    }
    write_json(
        &other.join("training_config.json"),
        &training_config("act", json!({}), Some("ia2-fp1:0000")),
    );
    let e = err(types(&["act"]));
    assert!(e.contains("different base model"), "{e}");

    // An explicit --adapter of another model, or without a training config.
    let adapter = EvalConfig {
        model: ModelOptions {
            adapter: Some(foreign.clone()),
            ..ModelOptions::default()
        },
        ..args(&fx)
    };
    let e = err(EvalConfig {
        eval_datasets: strs(&["sst2"]),
        ..adapter.clone()
    });
    assert!(e.contains("Qwen3-4B-Base"), "{e}");
    std::fs::remove_file(foreign.join("training_config.json")).unwrap();
    let e = err(adapter);
    assert!(e.contains("training_config.json"), "{e}");

    // A training config with a wrongly typed field names the file and the field.
    write_json(
        &foreign.join("training_config.json"),
        &json!({"lora_r": [8], "training_method": "tok"}),
    );
    let e = err(EvalConfig {
        trained_datasets: strs(&["finsen"]),
        ..types(&["tok"])
    });
    assert!(
        e.contains("training_config.json") && e.contains("lora_r"),
        "{e}"
    );

    // Missing demo source: toy has no training file to draw demos from.
    let base = EvalConfig {
        num_examples: vec![4],
        run_indices: vec![0],
        ..types(&["base"])
    };
    let e = err(EvalConfig {
        eval_datasets: strs(&["sst2"]),
        icl_source_datasets: strs(&["toy"]),
        ..base.clone()
    });
    assert!(
        e.contains("missing demo source") && e.contains("toy/train/4_0.json"),
        "{e}"
    );
    let e = err(EvalConfig {
        eval_datasets: strs(&["nosuch"]),
        ..base
    });
    assert!(e.contains("nosuch") && e.contains("main.json"), "{e}");
    let e = err(EvalConfig {
        eval_datasets: strs(&["sst2"]),
        ..types(&["base"])
    });
    assert!(e.contains("--num-examples"), "{e}");
    let e = err(EvalConfig {
        eval_datasets: strs(&["../x"]),
        ..types(&["tok"])
    });
    assert!(e.contains("invalid dataset name"), "{e}");
    // Nothing was evaluated or written by any of these.
    assert!(!fx.outputs.join("evaluations").exists());
}

#[test]
fn bench_reports_both_modes() {
    for gen_tokens in [1, 3] {
        let report = ia2_eval::run_bench(&ia2_eval::EvalBenchConfig {
            size: ia2_model::bench::BenchSize::Tiny,
            examples: 4,
            demos: 2,
            query_tokens: 8,
            batch_size: 2,
            gen_tokens,
        })
        .unwrap();
        assert_eq!(report.with_icl.examples, 4);
        assert!(report.with_icl.mean_prompt_tokens > report.without_icl.mean_prompt_tokens + 15.0);
        assert!(report.with_icl.examples_per_s > 0.0 && report.without_icl.examples_per_s > 0.0);
        let text = report.to_string();
        assert!(
            text.contains("with ICL") && text.contains("without ICL"),
            "{text}"
        );
    }
}
