//! End-to-end tests of the `ia2` binary on the shared fixtures: outputs equal transformers / PEFT, and bad
//! input fails with one clear error (exit code 1, never a panic).

use ia2_hf::Weights;
use ia2_testkit::{ADAPTER_KINDS, fixtures_root, max_abs_diff};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ia2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ia2"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ia2")
}

fn ok(args: &[&str]) -> Output {
    let out = ia2(args);
    assert!(
        out.status.success(),
        "ia2 {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail cleanly and returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = ia2(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "ia2 {args:?} should exit 1; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "ia2 {args:?} panicked: {stderr}"
    );
    stderr
}

fn texts(model_dir: &Path) -> Vec<String> {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("FIXTURE.json")).unwrap())
            .unwrap();
    fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn generate_reproduces_transformers_greedy_tokens() {
    let Some(fx) = fixtures_root() else { return };
    for name in ["qwen3-tiny", "llama-tiny"] {
        let dir = fx.join(name);
        let model = dir.join("model");
        let cases = Weights::open_file(dir.join("cases.safetensors")).unwrap();
        let texts = texts(&dir);
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--max-new-tokens",
            "8",
            "--ignore-eos",
        ];
        for t in &texts[..2] {
            args.extend(["--prompt", t.as_str()]);
        }
        let out = ok(&args);
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for (i, line) in lines.iter().enumerate() {
            let (want, _) = cases.get_i64(&format!("case{i}.greedy")).unwrap();
            let got: Vec<i64> = line["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "{name} case{i}");
        }
    }
}

#[test]
fn activations_match_transformers_with_and_without_adapters() {
    let Some(fx) = fixtures_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for name in ["qwen3-tiny", "llama-tiny"] {
        let dir = fx.join(name);
        let model = dir.join("model");
        let text = texts(&dir)[0].clone();
        let mut runs: Vec<(String, Option<PathBuf>, bool)> = vec![("base".into(), None, false)];
        for kind in ADAPTER_KINDS {
            runs.push((kind.into(), Some(dir.join("adapters").join(kind)), false));
            if kind.starts_with("lora") || kind.starts_with("ia3") {
                runs.push((
                    format!("{kind}-merged"),
                    Some(dir.join("adapters").join(kind)),
                    true,
                ));
            }
        }
        for (label, adapter, merge) in runs {
            let out_path = tmp.path().join(format!("{name}-{label}.safetensors"));
            let mut args = vec![
                "activations",
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                &text,
            ];
            args.extend(["-o", out_path.to_str().unwrap()]);
            if let Some(a) = &adapter {
                args.extend(["--adapter", a.to_str().unwrap()]);
            }
            if merge {
                args.push("--merge-adapter");
            }
            ok(&args);
            let got = Weights::open_file(&out_path).unwrap();
            let expected = match &adapter {
                Some(a) => Weights::open_file(a.join("expected.safetensors")).unwrap(),
                None => Weights::open_file(dir.join("cases.safetensors")).unwrap(),
            };
            for field in ["logits", "attn"] {
                let g = got.get(&format!("prompt0.{field}")).unwrap();
                let w = expected.get(&format!("case0.{field}")).unwrap();
                assert_eq!(g.shape(), w.shape(), "{name} {label} {field} shape");
                let err = max_abs_diff(&g.to_f32_vec(), &w.to_f32_vec());
                assert!(err <= 1e-4, "{name} {label} {field}: max abs error {err}");
            }
        }
    }
}

#[test]
fn generate_runs_with_every_adapter_kind() {
    let Some(fx) = fixtures_root() else { return };
    let dir = fx.join("llama-tiny");
    let model = dir.join("model");
    for kind in ["lora", "ia3", "prompt", "prefix"] {
        let adapter = dir.join("adapters").join(kind);
        let out = ok(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--prompt",
            "Text:a joy\nLabel:",
            "--prompt",
            "Question:2+2?\nAnswer:",
            "--max-new-tokens",
            "4",
        ]);
        let lines = String::from_utf8(out.stdout).unwrap();
        assert_eq!(lines.lines().count(), 2, "{kind}: {lines}");
    }
}

#[test]
fn builtin_model_generates_and_writes_output_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("out.jsonl");
    ok(&[
        "generate",
        "-e",
        "--prompt",
        r"Text:fine\nLabel:",
        "--max-new-tokens",
        "5",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out_file).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["prompt"], "Text:fine\nLabel:");
    assert!(line["tokens"].as_array().unwrap().len() <= 5);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("out.jsonl.config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["max_new_tokens"], 5);
    assert_eq!(config["model"]["model_arg"], "builtin:tiny-qwen3");
}

#[test]
fn bad_input_fails_with_a_clear_error() {
    let Some(fx) = fixtures_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = fx.join("qwen3-tiny/model");

    let err = fails(&["generate", "--model", "/nonexistent/model", "--prompt", "x"]);
    assert!(err.contains("/nonexistent/model"), "{err}");

    // A copy of the fixture model, broken in several ways.
    let copy = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&model).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        dir
    };
    let no_tok = copy("no-tokenizer");
    std::fs::remove_file(no_tok.join("tokenizer.json")).unwrap();
    let err = fails(&[
        "generate",
        "--model",
        no_tok.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(err.contains("tokenizer.json"), "{err}");

    let bad_type = copy("bad-type");
    let cfg = std::fs::read_to_string(bad_type.join("config.json"))
        .unwrap()
        .replace("\"qwen3\"", "\"mamba\"");
    std::fs::write(bad_type.join("config.json"), cfg).unwrap();
    let err = fails(&[
        "generate",
        "--model",
        bad_type.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(err.contains("model_type") && err.contains("mamba"), "{err}");

    let truncated = copy("truncated");
    let bytes = std::fs::read(truncated.join("model.safetensors")).unwrap();
    std::fs::write(
        truncated.join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = fails(&[
        "generate",
        "--model",
        truncated.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(err.contains("model.safetensors"), "{err}");

    let wrong_shape = copy("wrong-shape");
    let cfg = std::fs::read_to_string(wrong_shape.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 160", "\"intermediate_size\": 128");
    std::fs::write(wrong_shape.join("config.json"), cfg).unwrap();
    let err = fails(&[
        "generate",
        "--model",
        wrong_shape.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(
        err.contains("gate_proj") && err.contains("expected shape"),
        "{err}"
    );

    // A pickled PEFT adapter (adapter_model.bin) is refused by name.
    let bin_adapter = tmp.path().join("bin-adapter");
    std::fs::create_dir_all(&bin_adapter).unwrap();
    std::fs::copy(
        fx.join("qwen3-tiny/adapters/lora/adapter_config.json"),
        bin_adapter.join("adapter_config.json"),
    )
    .unwrap();
    std::fs::write(bin_adapter.join("adapter_model.bin"), b"pickle").unwrap();
    let err = fails(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        bin_adapter.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(err.contains("adapter_model.bin"), "{err}");

    let err = fails(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "tpu",
        "--prompt",
        "x",
    ]);
    assert!(err.contains("--device"), "{err}");

    let err = fails(&[
        "generate",
        "--model-id",
        "nobody/not-cached",
        "--prompt",
        "x",
    ]);
    assert!(err.contains("nobody/not-cached"), "{err}");
}

#[test]
fn activations_accepts_several_token_id_sequences() {
    let Some(fx) = fixtures_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = fx.join("qwen3-tiny/model");
    let out = tmp.path().join("ids.safetensors");
    ok(&[
        "activations",
        "--model",
        model.to_str().unwrap(),
        "--token-ids",
        "5,6,7",
        "--token-ids",
        "9,10",
        "--positions",
        "last",
        "-o",
        out.to_str().unwrap(),
    ]);
    let w = Weights::open_file(&out).unwrap();
    assert_eq!(w.get_i64("prompt0.input_ids").unwrap().0, vec![5, 6, 7]);
    assert_eq!(w.get_i64("prompt1.input_ids").unwrap().0, vec![9, 10]);
    assert_eq!(w.get("prompt1.logits").unwrap().shape(), &[1, 1024]);
    let bad = ia2(&[
        "activations",
        "--model",
        model.to_str().unwrap(),
        "--token-ids",
        "5,x",
        "-o",
        out.to_str().unwrap(),
    ]);
    // A malformed value is a usage error: clap's exit code 2 and a message naming the value.
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("token id \"x\""), "{err}");
    let err = fails(&[
        "activations",
        "--model",
        model.to_str().unwrap(),
        "--token-ids",
        "5000",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("5000") && err.contains("vocabulary"), "{err}");
}

#[test]
fn train_from_the_command_line_and_load_every_adapter_kind_in_activations() {
    let Some(fx) = fixtures_root() else { return };
    let model = fx.join("llama-tiny/model");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let outputs = tmp.path().join("outputs");
    let rows: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"idx": i, "question": format!("Text:item {i}\nLabel:"), "answer": (i % 2).to_string()}))
        .collect();
    std::fs::create_dir_all(data.join("toy")).unwrap();
    std::fs::write(
        data.join("toy/main.json"),
        serde_json::json!({"metadata": {"max_choices": 2}, "train_examples": rows, "val_examples": rows[..4]})
            .to_string(),
    )
    .unwrap();
    let (m, d, o) = (
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        outputs.to_str().unwrap(),
    );
    ok(&[
        "data",
        "train-sets",
        "--dataset",
        "toy",
        "--num-train-examples",
        "4",
        "--num-runs",
        "1",
        "--data-dir",
        d,
    ]);
    // `ia2 teacher` fills the cache that the training runs then reuse.
    ok(&[
        "teacher",
        "--model",
        m,
        "--dataset",
        "toy",
        "--data-dir",
        d,
        "--output-dir",
        o,
        "--num-runs",
        "1",
        "--training-method",
        "act",
    ]);
    // (Lock files `.ia2-lock-teacher-*` lie beside the entries.)
    let cache: Vec<_> = std::fs::read_dir(outputs.join("teacher_cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("teacher-"))
        .collect();
    assert_eq!(cache.len(), 1);
    for method in ["act", "ia3-tok", "prompt-tna", "prefix-act"] {
        // The seed's snake_case spellings work as well.
        ok(&[
            "train",
            "--model",
            m,
            "--dataset",
            "toy",
            "--data_dir",
            d,
            "--output_dir",
            o,
            "--num_runs",
            "1",
            "--training_method",
            method,
            "--num_train_epochs",
            "2",
            "--num_virtual_tokens",
            "3",
        ]);
        let parent = outputs.join(method).join("toy");
        let run = std::fs::read_dir(&parent)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let out = tmp.path().join(format!("{method}.safetensors"));
        ok(&[
            "activations",
            "--model",
            m,
            "--adapter",
            run.to_str().unwrap(),
            "--prompt",
            "Text:item 3\nLabel:",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            Weights::open_file(&out)
                .unwrap()
                .get("prompt0.attn")
                .is_ok()
        );
    }
    // `ia2 eval` finds the runs from their training_config.json and evaluates both modes.
    let out = ok(&[
        "eval",
        "--model",
        m,
        "--outputs-dir",
        o,
        "--data-dir",
        d,
        "--trained-datasets",
        "toy",
        "--model-types",
        "base",
        "act",
        "prefix-act",
        "--num-examples",
        "4",
        "--uncertainty-analysis",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("3 evaluated"), "{table}");
    let evals = outputs.join("evaluations");
    for kind in [
        "base_uncertainty",
        "act_uncertainty",
        "prefix-act_uncertainty",
    ] {
        let dir = std::fs::read_dir(evals.join(kind))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let file = std::fs::read_dir(dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            v["results"]["with_icl"].as_array().unwrap().len(),
            4,
            "{}",
            file.display()
        );
        assert_eq!(v["results"]["without_icl"].as_array().unwrap().len(), 4);
    }
    assert_eq!(
        std::fs::read_dir(outputs.join("teacher_cache"))
            .unwrap()
            .count(),
        1,
        "one entry served all"
    );
    let err = fails(&[
        "train",
        "--model",
        m,
        "--dataset",
        "nope",
        "--data-dir",
        d,
        "--output-dir",
        o,
    ]);
    assert!(err.contains("nope/train/4_0.json"), "{err}");
    // A malformed option is a usage error (clap's exit code 2), with the accepted spellings.
    let out = ia2(&["train", "--model", m, "--training-method", "lora-act"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("unknown training method") && err.contains("ia3-|prompt-|prefix-"),
        "{err}"
    );
}
