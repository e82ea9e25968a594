//! The bad-input corpus: every command of the `ia2` binary, given bad options, files or models, must fail
//! cleanly. Each case runs the built binary as a subprocess (with a timeout) and asserts:
//! - the exit code is 1 (an error) or 2 (a command-line error), never 101 (panic), 134 / 137 (abort, kill)
//!   or a signal, and it ends within the timeout (no hang);
//! - stderr names the offending file, field or flag (every needle of the case, case-insensitive);
//! - nothing half-written remains: the case's own directory and the shared data directory hold exactly the
//!   files they held before (no new, changed or temporary files).
//!
//! Models: the built-in tiny model, and corrupt copies of it (truncated tokenizer / weights, absurd
//! config.json values). Cases run in parallel on a few threads; the whole corpus takes well under a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(60);

/// One bad input.
struct Case {
    name: &'static str,
    /// Arguments; `{M}` (the model copy), `{D}` (the data directory), `{X}` (corrupt models and files,
    /// `{X}/name`) and `{out}` (this case's own empty directory) are substituted.
    args: Vec<&'static str>,
    /// Substrings stderr must contain (all of them, case-insensitive).
    needles: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&'static str], needles: &[&'static str]) -> Case {
    Case {
        name,
        args: args.to_vec(),
        needles: needles.to_vec(),
    }
}

/// Shared inputs of the corpus.
struct World {
    root: tempfile::TempDir,
}

impl World {
    fn model(&self) -> PathBuf {
        self.root.path().join("model")
    }
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    fn x(&self) -> PathBuf {
        self.root.path().join("x")
    }
    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }
}

fn ia2(args: &[String], cache: &Path, cwd: &Path) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ia2"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env("IA2_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ia2");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    let code = match status {
        // A hang.
        None => Some(-1),
        Some(s) => s.code(),
    };
    (code, text, start.elapsed())
}

/// Every file below `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p.clone());
                // Temporary directories count even when empty.
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name.contains(".tmp") || name.contains(".partial") || name.contains(".replaced")
                {
                    out.insert(p, (0, None));
                }
            } else {
                out.insert(p, (meta.len(), meta.modified().ok()));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A copy of the model with `edit` applied to its config.json.
fn config_variant(w: &World, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let dir = w.x().join(name);
    copy_dir(&w.model(), &dir);
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A copy of the model with `file` cut to `keep` of its length.
fn truncated_variant(w: &World, name: &str, file: &str, keep: f64) {
    let dir = w.x().join(name);
    copy_dir(&w.model(), &dir);
    let path = dir.join(file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

fn setup() -> World {
    let w = World {
        root: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir_all(w.x()).unwrap();
    std::fs::create_dir_all(w.cache()).unwrap();
    let built = ia2_model::builtin::materialize("tiny-qwen3", &w.root.path().join("builtin"))
        .expect("built-in model");
    copy_dir(&built, &w.model());

    // Corrupt models.
    truncated_variant(&w, "tok_truncated", "tokenizer.json", 0.5);
    truncated_variant(&w, "weights_truncated", "model.safetensors", 0.5);
    config_variant(&w, "layers_huge", |v| {
        v["num_hidden_layers"] = serde_json::json!(1_000_000_000_000_000u64)
    });
    config_variant(&w, "layers_mismatch", |v| {
        v["num_hidden_layers"] = serde_json::json!(3)
    });
    config_variant(&w, "vocab_huge", |v| {
        v["vocab_size"] = serde_json::json!(1_000_000_000_000u64)
    });
    config_variant(&w, "hidden_mismatch", |v| {
        let h = v["hidden_size"].as_u64().unwrap();
        v["hidden_size"] = serde_json::json!(h + 2);
    });
    config_variant(&w, "maxpos_huge", |v| {
        v["max_position_embeddings"] = serde_json::json!(1_000_000_000_000_000u64)
    });
    config_variant(&w, "heads_zero", |v| {
        v["num_attention_heads"] = serde_json::json!(0)
    });
    {
        let dir = w.x().join("config_invalid");
        copy_dir(&w.model(), &dir);
        std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,").unwrap();
        let dir = w.x().join("no_weights");
        copy_dir(&w.model(), &dir);
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        let dir = w.x().join("tok_garbage");
        copy_dir(&w.model(), &dir);
        std::fs::write(dir.join("tokenizer.json"), b"\x00\xffnot json").unwrap();
    }
    // Corrupt adapters.
    let ad = w.x().join("adapter_invalid");
    std::fs::create_dir_all(&ad).unwrap();
    std::fs::write(ad.join("adapter_config.json"), "{\"peft_type\": ").unwrap();
    let ad = w.x().join("adapter_empty");
    std::fs::create_dir_all(&ad).unwrap();

    // Files.
    let x = w.x();
    std::fs::write(x.join("bad.jsonl"), "{\"prompt\": \"a\"}\n{not json\n").unwrap();
    std::fs::write(x.join("noprompt.jsonl"), "{\"text\": \"a\"}\n").unwrap();
    std::fs::write(x.join("long.txt"), "a".repeat(5000) + "\n").unwrap();
    std::fs::create_dir_all(x.join("a_directory")).unwrap();
    std::fs::write(x.join("plain_file"), "x").unwrap();
    // Sweep plans and result files for `sweep`, `report`, `analyze`.
    for (name, text) in [
        ("plan_syntax.toml", "training_methods = [\n"),
        ("plan_unknown_key.toml", "learning_rates = [0.1]\n"),
        ("plan_unknown_method.toml", "training_methods = [\"sft\"]\n"),
        ("plan_unknown_dataset.toml", "datasets = [\"nosuchset\"]\n"),
        ("plan_zero_runs.toml", "num_runs = 0\n"),
        ("plan_wrong_type.toml", "num_train_examples = \"four\"\n"),
        ("plan_unknown_train_key.toml", "[train]\nepochs = 3\n"),
        ("result_truncated.json", "{\"status\": \"compl"),
    ] {
        std::fs::write(x.join(name), text).unwrap();
    }
    std::fs::write(
        x.join("truncated_tokenizer.json"),
        "{\"version\": \"1.0\", \"mod",
    )
    .unwrap();

    // Data: a toy dataset with training files and demo sets, and broken datasets beside it.
    let d = w.data();
    let d_s = d.to_str().unwrap().to_string();
    let run_ok = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, err, _) = ia2(&args, &w.cache(), w.root.path());
        assert_eq!(code, Some(0), "setup {args:?}: {err}");
    };
    run_ok(&["toy", "dataset", "--name", "toy", "--data-dir", &d_s]);
    run_ok(&[
        "data",
        "train-sets",
        "--dataset",
        "toy",
        "--num-train-examples",
        "4",
        "--num-runs",
        "1",
        "--data-dir",
        &d_s,
    ]);
    let main: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("toy/main.json")).unwrap()).unwrap();
    let write_main = |name: &str, v: &serde_json::Value| {
        std::fs::create_dir_all(d.join(name)).unwrap();
        std::fs::write(
            d.join(name).join("main.json"),
            serde_json::to_string(v).unwrap(),
        )
        .unwrap();
    };
    let mut big = main.clone();
    big["metadata"]["max_choices"] = serde_json::json!(1_000_000_000_000u64);
    write_main("bigchoices", &big);
    let mut long = main.clone();
    for ex in long["val_examples"].as_array_mut().unwrap() {
        ex["question"] = serde_json::json!("word ".repeat(2000) + "\nLabel:");
    }
    write_main("longprompts", &long);
    let mut empty = main.clone();
    empty["train_examples"] = serde_json::json!([]);
    write_main("emptytrain", &empty);
    let mut wrong = main.clone();
    wrong["train_examples"] = serde_json::json!(5);
    write_main("wrongtype", &wrong);
    std::fs::create_dir_all(d.join("truncated")).unwrap();
    let text = std::fs::read_to_string(d.join("toy/main.json")).unwrap();
    std::fs::write(d.join("truncated/main.json"), &text[..text.len() / 2]).unwrap();
    // `data show` reads registry datasets: sst2 directories holding broken or good files.
    for (dir, text) in [
        ("d_truncated", text[..text.len() / 2].to_string()),
        ("d_wrongtype", serde_json::to_string(&wrong).unwrap()),
        ("d_ok", text.clone()),
    ] {
        std::fs::create_dir_all(w.x().join(dir).join("sst2")).unwrap();
        std::fs::write(w.x().join(dir).join("sst2/main.json"), text).unwrap();
    }
    // Evaluation demo sets of the long-prompt dataset.
    run_ok(&[
        "data",
        "eval-demos",
        "--eval-dataset",
        "longprompts",
        "--icl-source",
        "toy",
        "--num-train-examples",
        "4",
        "--num-runs",
        "1",
        "--data-dir",
        &d_s,
    ]);
    // A training file cut in half.
    std::fs::create_dir_all(d.join("cuttrain/train")).unwrap();
    std::fs::copy(d.join("toy/main.json"), d.join("cuttrain/main.json")).unwrap();
    let t = std::fs::read_to_string(d.join("toy/train/4_0.json")).unwrap();
    std::fs::write(d.join("cuttrain/train/4_0.json"), &t[..t.len() / 2]).unwrap();
    w
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // ---- data prepare
        case("prepare_unknown_dataset", &["data", "prepare", "--dataset", "nosuchset", "--data-dir", "{out}"], &["nosuchset"]),
        case("prepare_missing_source", &["data", "prepare", "--dataset", "sst2", "--source", "{X}/missing_source", "--data-dir", "{out}"], &["missing_source"]),
        case("prepare_empty_source", &["data", "prepare", "--dataset", "sst2", "--source", "{X}/adapter_empty", "--data-dir", "{out}"], &["adapter_empty"]),
        case("prepare_truncated_tokenizer", &["data", "prepare", "--dataset", "sst2", "--source", "{X}/adapter_empty", "--tokenizer", "{X}/truncated_tokenizer.json", "--data-dir", "{out}"], &["truncated_tokenizer.json"]),
        case("prepare_bad_number", &["data", "prepare", "--dataset", "sst2", "--num-train-samples=-5"], &["--num-train-samples"]),
        // ---- data show
        case("show_unknown_dataset", &["data", "show", "--dataset", "absent", "--data-dir", "{D}"], &["absent"]),
        case("show_missing_main", &["data", "show", "--dataset", "sst2", "--data-dir", "{D}"], &["sst2", "main.json"]),
        case("show_truncated_main", &["data", "show", "--dataset", "sst2", "--data-dir", "{X}/d_truncated"], &["d_truncated", "main.json"]),
        case("show_wrong_type", &["data", "show", "--dataset", "sst2", "--data-dir", "{X}/d_wrongtype"], &["main.json", "train_examples"]),
        case("show_truncated_tokenizer", &["data", "show", "--dataset", "sst2", "--data-dir", "{X}/d_ok", "--tokenizer", "{X}/truncated_tokenizer.json"], &["truncated_tokenizer.json"]),
        case("show_tokenizer_is_directory", &["data", "show", "--dataset", "sst2", "--data-dir", "{X}/d_ok", "--tokenizer", "{X}/a_directory"], &["a_directory"]),
        // ---- data train-sets
        case("train_sets_zero_examples", &["data", "train-sets", "--dataset", "toy", "--data-dir", "{D}", "--num-train-examples", "0", "--num-runs", "1"], &["num-train-examples"]),
        case("train_sets_huge_examples", &["data", "train-sets", "--dataset", "toy", "--data-dir", "{D}", "--num-train-examples", "1000000000000", "--num-runs", "1"], &["1000000000000"]),
        case("train_sets_missing_dataset", &["data", "train-sets", "--dataset", "absent", "--data-dir", "{out}", "--num-train-examples", "4"], &["absent"]),
        case("train_sets_zero_runs", &["data", "train-sets", "--dataset", "toy", "--data-dir", "{D}", "--num-train-examples", "4", "--num-runs", "0"], &["--num-runs"]),
        case("train_sets_huge_runs", &["data", "train-sets", "--dataset", "toy", "--data-dir", "{D}", "--num-train-examples", "4", "--num-runs", "4000000000"], &["--num-runs"]),
        case("train_sets_truncated_main", &["data", "train-sets", "--dataset", "truncated", "--data-dir", "{D}", "--num-train-examples", "4", "--num-runs", "1"], &["truncated", "main.json"]),
        case("train_sets_wrong_type", &["data", "train-sets", "--dataset", "wrongtype", "--data-dir", "{D}", "--num-train-examples", "4", "--num-runs", "1"], &["wrongtype", "train_examples"]),
        case("train_sets_not_a_number", &["data", "train-sets", "--dataset", "toy", "--num-train-examples", "four"], &["--num-train-examples"]),
        // ---- data eval-demos
        case("eval_demos_missing_eval", &["data", "eval-demos", "--eval-dataset", "absent", "--icl-source", "toy", "--data-dir", "{D}", "--num-train-examples", "4"], &["absent"]),
        case("eval_demos_missing_source", &["data", "eval-demos", "--eval-dataset", "toy", "--icl-source", "absent", "--data-dir", "{D}", "--num-train-examples", "4"], &["absent"]),
        case("eval_demos_huge_n", &["data", "eval-demos", "--eval-dataset", "toy", "--icl-source", "toy", "--data-dir", "{D}", "--num-train-examples", "1000000000000", "--num-runs", "1"], &["1000000000000"]),
        // ---- data ldr
        case("ldr_missing_dataset", &["data", "ldr", "--dataset", "absent", "--data-dir", "{D}", "--num-labelled", "4", "--num-unlabelled", "8"], &["absent"]),
        case("ldr_huge_unlabelled", &["data", "ldr", "--dataset", "toy", "--data-dir", "{D}", "--num-labelled", "4", "--num-unlabelled", "1000000000000", "--num-runs", "1"], &["1000000000000"]),
        case("ldr_zero_labelled", &["data", "ldr", "--dataset", "toy", "--data-dir", "{D}", "--num-labelled", "0", "--num-unlabelled", "8", "--num-runs", "1"], &["labelled"]),
        // ---- train
        case("train_negative_lr", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lr=-1"], &["--lr"]),
        case("train_nan_lr", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lr", "NaN"], &["--lr"]),
        // Valid, but the run diverges (collapse): failed, nothing kept.
        case("train_absurd_lr", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lr", "1e30", "--label-type", "ground_truth", "--num-runs", "1", "--num-virtual-tokens", "4"], &["diverged", "--lr", "tok run 0"]),
        case("train_absurd_lr_ia3", &["train", "--training-method", "ia3-tok", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lr", "1e30", "--label-type", "ground_truth", "--num-runs", "1"], &["diverged", "ia3-tok run 0"]),
        case("train_zero_batch", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--batch-size", "0"], &["--batch-size"]),
        case("train_unknown_method", &["train", "--training-method", "magic", "--output-dir", "{out}"], &["magic"]),
        case("train_bad_lora_type", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lora-type", "xyz"], &["--lora-type"]),
        case("train_ce_weight_out_of_range", &["train", "--training-method", "tna", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--ce-loss-weight", "2"], &["--ce-loss-weight"]),
        case("train_tokl_ground_truth", &["train", "--training-method", "tokl", "--label-type", "ground_truth", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}"], &["--label-type"]),
        case("train_missing_training_file", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-train-examples", "8", "--num-runs", "1"], &["8_0.json", "train-sets"]),
        case("train_huge_num_runs", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1000000000000"], &["--num-runs"]),
        case("train_virtual_tokens_past_positions", &["train", "--training-method", "prompt-tok", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-virtual-tokens", "50000", "--num-runs", "1"], &["--num-virtual-tokens", "max_position_embeddings"]),
        case("train_prefix_virtual_tokens_past_positions", &["train", "--training-method", "prefix-act", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-virtual-tokens", "50000", "--num-runs", "1"], &["--num-virtual-tokens"]),
        case("train_huge_lora_rank", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--lora-r", "100000000", "--num-runs", "1"], &["--lora-r"]),
        case("train_huge_t", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-generated-tokens", "5000", "--num-runs", "1"], &["--num-generated-tokens"]),
        case("train_negative_clip", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--gradient-clip-val=-1"], &["--gradient-clip-val"]),
        case("train_dataset_path", &["train", "--model", "{M}", "--dataset", "../toy", "--data-dir", "{D}", "--output-dir", "{out}"], &["--dataset"]),
        case("train_with_adapter", &["train", "--model", "{M}", "--adapter", "{X}/adapter_empty", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["--adapter"]),
        case("train_missing_model", &["train", "--model", "{X}/no_such_model", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["no_such_model"]),
        case("train_truncated_tokenizer", &["train", "--model", "{X}/tok_truncated", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["tokenizer.json"]),
        case("train_huge_layer_count", &["train", "--model", "{X}/layers_huge", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["num_hidden_layers"]),
        case("train_truncated_weights", &["train", "--model", "{X}/weights_truncated", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["model.safetensors"]),
        case("train_truncated_training_file", &["train", "--model", "{M}", "--dataset", "cuttrain", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["4_0.json"]),
        case("train_zero_epochs_dev_steps", &["train", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--dev-eval-steps", "0"], &["--dev-eval-steps"]),
        // ---- teacher
        case("teacher_zero_batch", &["teacher", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--teacher-batch", "0"], &["--teacher-batch"]),
        case("teacher_missing_file", &["teacher", "--model", "{M}", "--dataset", "absent", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["absent", "train-sets"]),
        case("teacher_virtual_tokens", &["teacher", "--training-method", "prefix-act", "--model", "{M}", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-virtual-tokens", "50000", "--num-runs", "1"], &["--num-virtual-tokens"]),
        case("teacher_bad_config", &["teacher", "--model", "{X}/config_invalid", "--dataset", "toy", "--data-dir", "{D}", "--output-dir", "{out}", "--num-runs", "1"], &["config.json"]),
        // ---- eval
        case("eval_zero_batch", &["eval", "--model", "{M}", "--model-types", "base", "--outputs-dir", "{out}", "--data-dir", "{D}", "--batch-size", "0"], &["--batch-size"]),
        case("eval_zero_top_k", &["eval", "--model", "{M}", "--model-types", "base", "--outputs-dir", "{out}", "--data-dir", "{D}", "--top-k", "0"], &["--top-k"]),
        case("eval_unknown_model_type", &["eval", "--model", "{M}", "--model-types", "nonsense", "--outputs-dir", "{out}", "--data-dir", "{D}"], &["nonsense"]),
        case("eval_dataset_path", &["eval", "--model", "{M}", "--model-types", "base", "--trained-datasets", "../etc", "--outputs-dir", "{out}", "--data-dir", "{D}"], &["../etc"]),
        case("eval_huge_gen_tokens", &["eval", "--model", "{M}", "--model-types", "base", "--outputs-dir", "{out}", "--data-dir", "{D}", "--num-gen-tokens-eval", "100000000"], &["--num-gen-tokens-eval"]),
        case("eval_huge_max_choices", &["eval", "--model", "{M}", "--model-types", "base", "--eval-datasets", "bigchoices", "--icl-source-datasets", "toy", "--num-examples", "4", "--run-indices", "0", "--outputs-dir", "{out}", "--data-dir", "{D}"], &["max_choices"]),
        case("eval_prompts_past_positions", &["eval", "--model", "{M}", "--model-types", "base", "--eval-datasets", "longprompts", "--icl-source-datasets", "toy", "--num-examples", "4", "--run-indices", "0", "--outputs-dir", "{out}", "--data-dir", "{D}"], &["max_position_embeddings"]),
        case("eval_truncated_tokenizer", &["eval", "--model", "{X}/tok_truncated", "--model-types", "base", "--eval-datasets", "toy", "--num-examples", "4", "--run-indices", "0", "--outputs-dir", "{out}", "--data-dir", "{D}"], &["tokenizer.json"]),
        case("eval_bad_lr_filter", &["eval", "--model", "{M}", "--outputs-dir", "{out}", "--data-dir", "{D}", "--lrs=-1"], &["--lrs"]),
        // ---- generate
        case("generate_past_positions", &["generate", "--model", "{M}", "--prompt", "hello", "--max-new-tokens", "100000"], &["--max-new-tokens", "max_position_embeddings"]),
        case("generate_no_prompts", &["generate", "--model", "{M}"], &["--prompt"]),
        case("generate_zero_batch", &["generate", "--model", "{M}", "--prompt", "a", "--batch-size", "0"], &["--batch-size"]),
        case("generate_zero_new_tokens", &["generate", "--model", "{M}", "--prompt", "a", "--max-new-tokens", "0"], &["--max-new-tokens"]),
        case("generate_missing_prompts_file", &["generate", "--model", "{M}", "--prompts-file", "{X}/absent.jsonl"], &["absent.jsonl"]),
        case("generate_bad_jsonl", &["generate", "--model", "{M}", "--prompts-file", "{X}/bad.jsonl"], &["bad.jsonl", "line 2"]),
        case("generate_jsonl_without_prompt", &["generate", "--model", "{M}", "--prompts-file", "{X}/noprompt.jsonl"], &["noprompt.jsonl", "prompt"]),
        case("generate_empty_stop", &["generate", "--model", "{M}", "--prompt", "a", "--stop", ""], &["--stop"]),
        case("generate_prompt_past_positions", &["generate", "--model", "{M}", "--prompts-file", "{X}/long.txt", "--max-new-tokens", "1"], &["max_position_embeddings"]),
        case("generate_missing_adapter", &["generate", "--model", "{M}", "--prompt", "a", "--adapter", "{X}/no_adapter"], &["no_adapter"]),
        case("generate_invalid_adapter_config", &["generate", "--model", "{M}", "--prompt", "a", "--adapter", "{X}/adapter_invalid"], &["adapter_config.json"]),
        case("generate_unknown_builtin", &["generate", "--model", "builtin:nope", "--prompt", "a"], &["nope"]),
        case("generate_bad_device", &["generate", "--model", "{M}", "--prompt", "a", "--device", "tpu"], &["--device"]),
        case("generate_output_is_directory", &["generate", "--model", "{M}", "--prompt", "a", "--max-new-tokens", "2", "-o", "{X}/a_directory"], &["a_directory"]),
        case("generate_truncated_tokenizer", &["generate", "--model", "{X}/tok_truncated", "--prompt", "a"], &["tokenizer.json"]),
        case("generate_garbage_tokenizer", &["generate", "--model", "{X}/tok_garbage", "--prompt", "a"], &["tokenizer.json"]),
        case("generate_huge_vocab", &["generate", "--model", "{X}/vocab_huge", "--prompt", "a"], &["vocab_size"]),
        case("generate_layer_mismatch", &["generate", "--model", "{X}/layers_mismatch", "--prompt", "a"], &["num_hidden_layers"]),
        case("generate_hidden_mismatch", &["generate", "--model", "{X}/hidden_mismatch", "--prompt", "a"], &["hidden_size"]),
        case("generate_huge_max_positions", &["generate", "--model", "{X}/maxpos_huge", "--prompt", "a"], &["max_position_embeddings"]),
        case("generate_zero_heads", &["generate", "--model", "{X}/heads_zero", "--prompt", "a"], &["num_attention_heads"]),
        case("generate_no_weights", &["generate", "--model", "{X}/no_weights", "--prompt", "a"], &["safetensors"]),
        // ---- activations
        case("activations_token_out_of_range", &["activations", "--model", "{M}", "--token-ids", "1,999999", "-o", "{out}/a.safetensors"], &["--token-ids", "999999"]),
        case("activations_nothing", &["activations", "--model", "{M}", "-o", "{out}/a.safetensors"], &["--token-ids"]),
        case("activations_output_is_directory", &["activations", "--model", "{M}", "--token-ids", "1,2", "-o", "{X}/a_directory"], &["a_directory"]),
        case("activations_bad_ids", &["activations", "--model", "{M}", "--token-ids", "1,x", "-o", "{out}/a.safetensors"], &["--token-ids"]),
        case("activations_past_positions", &["activations", "--model", "{M}", "--prompts-file", "{X}/long.txt", "-o", "{out}/a.safetensors"], &["max_position_embeddings"]),
        case("activations_truncated_weights", &["activations", "--model", "{X}/weights_truncated", "--token-ids", "1,2", "-o", "{out}/a.safetensors"], &["model.safetensors"]),
        // ---- toy
        case("toy_dataset_bad_name", &["toy", "dataset", "--name", "../escape", "--data-dir", "{out}"], &["../escape"]),
        case("toy_dataset_zero_samples", &["toy", "dataset", "--num-train-samples", "0", "--data-dir", "{out}"], &["--num-train-samples"]),
        case("toy_dataset_huge_samples", &["toy", "dataset", "--num-val-samples", "1000000000000", "--data-dir", "{out}"], &["--num-val-samples"]),
        case("toy_pretrain_zero_steps", &["toy", "pretrain", "--steps", "0", "--out", "{out}/toy"], &["steps"]),
        case("toy_pretrain_out_is_file", &["toy", "pretrain", "--steps", "1", "--out", "{X}/plain_file"], &["plain_file"]),
        // ---- bench
        case("bench_zero_steps", &["bench", "--suite", "model", "--steps", "0"], &["--steps"]),
        case("bench_zero_threads", &["bench", "--suite", "model", "--threads", "0"], &["--threads"]),
        case("bench_unknown_suite", &["bench", "--suite", "everything"], &["everything"]),
        case("bench_later_suite_checked_first", &["bench", "--suite", "model", "eval", "--eval-batch-size", "0"], &["--eval-batch-size"]),
        case("bench_zero_sequences", &["bench", "--suite", "train", "--sequences", "0"], &["--sequences"]),
        // ---- the command line itself
        case("unknown_command", &["frobnicate"], &["frobnicate"]),
        case("unknown_flag", &["generate", "--no-such-flag"], &["--no-such-flag"]),
    ]
}

/// Cases for the commands that other parts add (`sweep`, `report`, `analyze`), when the binary has them.
fn later_cases(help: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let has = |cmd: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{cmd} ")))
    };
    if has("sweep") {
        out.push(case(
            "sweep_unknown_flag",
            &["sweep", "--no-such-flag"],
            &["--no-such-flag"],
        ));
        out.push(case(
            "sweep_missing_file",
            &["sweep", "run", "{X}/absent_sweep.toml"],
            &["absent_sweep"],
        ));
        #[rustfmt::skip]
        out.extend([
            case("sweep_toml_syntax", &["sweep", "run", "{X}/plan_syntax.toml", "--dir", "{out}/s", "--dry-run"], &["plan_syntax.toml", "TOML"]),
            case("sweep_unknown_key", &["sweep", "run", "{X}/plan_unknown_key.toml", "--dir", "{out}/s", "--dry-run"], &["learning_rates"]),
            case("sweep_unknown_nested_key", &["sweep", "run", "{X}/plan_unknown_train_key.toml", "--dir", "{out}/s", "--dry-run"], &["train.epochs"]),
            case("sweep_unknown_method", &["sweep", "run", "{X}/plan_unknown_method.toml", "--dir", "{out}/s", "--dry-run"], &["training_methods", "sft"]),
            case("sweep_unknown_dataset", &["sweep", "run", "{X}/plan_unknown_dataset.toml", "--dir", "{out}/s", "--dry-run"], &["datasets", "nosuchset"]),
            case("sweep_zero_runs", &["sweep", "run", "{X}/plan_zero_runs.toml", "--dir", "{out}/s", "--dry-run"], &["num_runs"]),
            case("sweep_wrong_type", &["sweep", "run", "{X}/plan_wrong_type.toml", "--dir", "{out}/s", "--dry-run"], &["num_train_examples"]),
            case("sweep_bad_set", &["sweep", "run", "{X}/plan_zero_runs.toml", "--dir", "{out}/s", "--set", "num_runs=[", "--dry-run"], &["--set", "num_runs"]),
            case("sweep_status_not_a_sweep", &["sweep", "status", "{X}/a_directory"], &["a_directory", "plan.json"]),
            case("sweep_retry_missing", &["sweep", "retry", "{X}/no_sweep"], &["no_sweep"]),
        ]);
    }
    if has("report") {
        out.push(case(
            "report_unknown_flag",
            &["report", "--no-such-flag"],
            &["--no-such-flag"],
        ));
        #[rustfmt::skip]
        out.extend([
            case("report_missing_outputs", &["report", "--outputs-dir", "{X}/no_outputs", "--report-dir", "{out}/r"], &["no_outputs"]),
            case("report_bad_hp_selection", &["report", "--hp-selection", "best"], &["hp-selection", "best"]),
            case("reparse_missing_file", &["report", "reparse", "--files", "{X}/no_result.json"], &["no_result.json"]),
            case("reparse_truncated_file", &["report", "reparse", "--files", "{X}/result_truncated.json"], &["result_truncated.json"]),
        ]);
    }
    if has("analyze") {
        out.push(case(
            "analyze_unknown_flag",
            &["analyze", "--no-such-flag"],
            &["--no-such-flag"],
        ));
        #[rustfmt::skip]
        out.extend([
            case("subspace_missing_outputs", &["analyze", "subspace", "--outputs-dir", "{X}/no_outputs", "--out", "{out}/a"], &["no_outputs"]),
            case("similarity_missing_outputs", &["analyze", "similarity", "--model", "{M}", "--outputs-dir", "{X}/no_outputs", "--out", "{out}/a"], &["no_outputs"]),
            case("similarity_missing_model", &["analyze", "similarity", "--model", "{X}/no_model", "--outputs-dir", "{X}/a_directory", "--out", "{out}/a"], &["no_model"]),
        ]);
    }
    out
}

fn substitute(arg: &str, w: &World, out: &Path) -> String {
    arg.replace("{M}", w.model().to_str().unwrap())
        .replace("{D}", w.data().to_str().unwrap())
        .replace("{X}", w.x().to_str().unwrap())
        .replace("{out}", out.to_str().unwrap())
}

#[test]
fn bad_inputs_fail_cleanly() {
    let w = setup();
    let help = {
        let out = Command::new(env!("CARGO_BIN_EXE_ia2"))
            .arg("--help")
            .output()
            .expect("ia2 --help");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut all = cases();
    all.extend(later_cases(&help));
    assert!(all.len() >= 60, "the corpus has {} cases", all.len());
    let names: std::collections::HashSet<_> = all.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), all.len(), "case names are unique");
    let shared_before = snapshot(w.root.path());
    let failures = Mutex::new(Vec::<String>::new());
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = all.get(i) else { break };
                    let out = w.root.path().join("cases").join(c.name);
                    std::fs::create_dir_all(&out).unwrap();
                    let args: Vec<String> =
                        c.args.iter().map(|a| substitute(a, &w, &out)).collect();
                    let (code, stderr, took) = ia2(&args, &w.cache(), &out);
                    let mut problems = Vec::new();
                    match code {
                        Some(1) | Some(2) => {}
                        Some(-1) => problems.push(format!("hung (killed after {TIMEOUT:?})")),
                        Some(c) => problems.push(format!("exit code {c}")),
                        None => problems.push("killed by a signal".to_string()),
                    }
                    if stderr.contains("panicked") {
                        problems.push("panicked".into());
                    }
                    let lower = stderr.to_lowercase();
                    for n in &c.needles {
                        if !lower.contains(&n.to_lowercase()) {
                            problems.push(format!("stderr does not name {n:?}"));
                        }
                    }
                    let mut left = snapshot(&out);
                    // `ia2 eval` records every invocation, failed evaluations included, in a summary
                    // (complete, written atomically): not a half-written result.
                    // Advisory lock files (`.ia2-lock-*`, ia2-runs) stay by design: they hold no data and
                    // the kernel releases the lock with its holder.
                    left.retain(|p, _| {
                        let lock = p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(".ia2-lock-"));
                        let summary = p
                            .parent()
                            .is_some_and(|d| d.ends_with("evaluation_summaries"))
                            && p.extension().is_some_and(|e| e == "json");
                        !(lock || summary)
                    });
                    if !left.is_empty() {
                        problems.push(format!(
                            "left files behind: {:?}",
                            left.keys().collect::<Vec<_>>()
                        ));
                    }
                    if std::env::var_os("IA2_BAD_INPUT_VERBOSE").is_some() {
                        eprintln!(
                            "{} → {code:?}: {}",
                            c.name,
                            stderr.lines().next_back().unwrap_or("")
                        );
                    }
                    if !problems.is_empty() {
                        failures.lock().unwrap().push(format!(
                            "{} (ia2 {}): {} [{:.1} s]\n    stderr: {}",
                            c.name,
                            args.join(" "),
                            problems.join("; "),
                            took.as_secs_f64(),
                            stderr.trim().replace('\n', "\n    ")
                        ));
                    }
                }
            });
        }
    });
    // Nothing outside the cases' own directories was written or changed (data, models, corrupt copies).
    let mut shared_after = snapshot(w.root.path());
    shared_after
        .retain(|p, _| !p.starts_with(w.root.path().join("cases")) && !p.starts_with(w.cache()));
    let mut before = shared_before;
    before.retain(|p, _| !p.starts_with(w.root.path().join("cases")) && !p.starts_with(w.cache()));
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not handled cleanly:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    assert_eq!(before, shared_after, "shared inputs were modified");
    eprintln!(
        "{} bad inputs, all handled cleanly, in {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
}
