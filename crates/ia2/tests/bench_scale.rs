//! `ia2 bench --suite scale` end to end on the hidden `tiny` shape: the binary writes the synthetic
//! checkpoint into `$IA2_CACHE/synthetic`, runs every measurement in a child process of itself, prints the
//! table and writes a JSON report whose fields are present and consistent. No timing assertions.

use std::path::Path;
use std::process::{Command, Output};

fn ia2(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ia2"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("IA2_CACHE", cache)
        .env("RAYON_NUM_THREADS", "2")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start ia2")
}

#[test]
fn the_scale_suite_runs_end_to_end_on_a_tiny_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let json = tmp.path().join("scale.json");
    let out = ia2(
        &[
            "bench",
            "--suite",
            "scale",
            "--sizes",
            "tiny",
            "--dtypes",
            "f32,bf16",
            "--repetitions",
            "2",
            "--seq-len",
            "24",
            "--response-tokens",
            "3",
            "--train-steps",
            "2",
            "--scale-eval-batch",
            "3",
            // Without the model suite, --json is the scale suite's.
            "--json",
            json.to_str().unwrap(),
        ],
        &cache,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("scale benchmark"), "{stdout}");
    for dtype in ["f32", "bf16"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("tiny") && l.contains(&format!(" {dtype} "))),
            "no table row for tiny {dtype}:\n{stdout}"
        );
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).unwrap();
    // One checkpoint per dtype, its files in that dtype.
    let ckpts = report["checkpoints"].as_array().unwrap();
    assert_eq!(ckpts.len(), 2);
    for (ckpt, (dtype, torch)) in ckpts.iter().zip([("f32", "float32"), ("bf16", "bfloat16")]) {
        assert_eq!(ckpt["size"], "tiny");
        assert_eq!(ckpt["dtype"], dtype);
        let dir = Path::new(ckpt["dir"].as_str().unwrap());
        assert!(
            dir.starts_with(cache.join("synthetic")),
            "{}",
            dir.display()
        );
        assert!(dir.join("model.safetensors.index.json").is_file());
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["torch_dtype"], torch);
    }

    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    // Tiny: 2 × (320 × 64 embedding + 2 layers) parameters.
    let params = results[0]["params"].as_u64().unwrap();
    assert!(params > 20_480 && params < 200_000, "{params}");
    for (r, (dtype, bytes)) in results.iter().zip([("f32", 4), ("bf16", 2)]) {
        assert_eq!(r["size"], "tiny");
        assert_eq!(r["dtype"], dtype);
        assert_eq!(r["status"], "ok", "{r}");
        let weight_bytes = r["weight_bytes"].as_u64().unwrap();
        assert_eq!(weight_bytes, params * bytes);
        assert!(r["estimate_bytes"].as_u64().unwrap() > weight_bytes);
        let runs = r["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{r}");
        for run in runs {
            let f = |k: &str| {
                run[k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("field {k} missing in {run}"))
            };
            assert_eq!(run["weight_bytes"].as_u64(), Some(weight_bytes));
            assert_eq!(run["held_dtype"], dtype);
            assert!(f("load_s") > 0.0);
            assert!(f("peak_rss") >= weight_bytes as f64);
            assert!(f("peak_rss") >= f("peak_load") && f("peak_rss") >= f("peak_train"));
            assert!(f("peak_rss") >= f("peak_eval"));
            assert!(f("rss_after_load") > 0.0 && f("peak_load") >= f("rss_after_load"));
            assert!(
                f("rss_anon_after_load") + f("rss_file_after_load") <= f("rss_after_load") + 1e6
            );
            assert!((f("peak_over_weights") - f("peak_rss") / weight_bytes as f64).abs() < 1e-6);
            let t = &run["train"];
            let steps = t["step_s"].as_array().unwrap();
            assert_eq!(steps.len(), 2);
            assert!(steps.iter().all(|s| s.as_f64().unwrap() > 0.0));
            assert!(t["warmup_s"].as_f64().unwrap() > 0.0);
            assert!(t["forward_s"].as_f64().unwrap() > 0.0);
            assert!(t["backward_s"].as_f64().unwrap() > 0.0);
            // LoRA r8 on q, k, o of 2 layers: A and B each.
            assert_eq!(t["trainable_tensors"].as_u64(), Some(2 * 3 * 2));
            // q: 64 → 64, k: 64 → 32, o: 64 → 64, rank 8: 8 × (in + out) each.
            assert_eq!(
                t["trainable_params"].as_u64(),
                Some(2 * 8 * ((64 + 64) + (64 + 32) + (64 + 64)))
            );
            assert!(t["first_loss"].as_f64().unwrap() > 0.0);
            assert!(t["last_grad_norm"].as_f64().unwrap() > 0.0);
            let e = &run["eval"];
            assert_eq!(e["batch"].as_u64(), Some(3));
            assert!(e["seconds"].as_f64().unwrap() > 0.0);
            assert_eq!(e["finite"], true);
            // Prompts of 24, 22 and 20 tokens.
            assert_eq!(e["tokens"].as_u64(), Some(24 + 22 + 20));
        }
        let s = &r["summary"];
        for k in ["load_s", "peak_rss_gb", "train_step_s", "eval_batch_s"] {
            let (lo, hi) = (s[k]["min"].as_f64().unwrap(), s[k]["max"].as_f64().unwrap());
            assert!(lo > 0.0 && lo <= hi, "{k}: {lo} {hi}");
        }
    }

    // A second run reuses the cached checkpoint.
    let out = ia2(
        &[
            "bench",
            "--suite",
            "scale",
            "--sizes",
            "tiny",
            "--dtypes",
            "bf16",
            "--repetitions",
            "1",
            "--seq-len",
            "8",
            "--train-steps",
            "1",
            "--scale-eval-batch",
            "1",
        ],
        &cache,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cached"), "{stdout}");
}

#[test]
fn scale_flags_are_checked_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (
            &["bench", "--suite", "scale", "--json", "/"][..],
            "is a directory",
        ),
        (
            &["bench", "--suite", "scale", "--scale-threads", "0"][..],
            "--scale-threads",
        ),
        (
            &[
                "bench",
                "--suite",
                "scale",
                "--seq-len",
                "4",
                "--response-tokens",
                "4",
            ][..],
            "--response-tokens",
        ),
        (
            &["bench", "--suite", "scale", "--sizes", "qwen3-8b"][..],
            "qwen3-8b",
        ),
        (
            &["bench", "--scale-child", "{not json"][..],
            "--scale-child",
        ),
    ] {
        let out = ia2(args, tmp.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(!tmp.path().join("synthetic").exists(), "nothing written");
}
