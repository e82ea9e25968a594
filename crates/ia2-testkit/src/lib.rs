//! Test helpers shared by the ia2 crates' tests: locating the golden fixtures in `../shared/fixtures`
//! (transformers + PEFT reference outputs) and comparing tensors against them.

use burn::tensor::{Device, Tensor};
use ia2_hf::Weights;
use std::path::{Path, PathBuf};

/// The fixture models.
pub const MODELS: [&str; 2] = ["qwen3-tiny", "llama-tiny"];

/// The adapter fixtures of every model (`adapters/<kind>/`).
pub const ADAPTER_KINDS: [&str; 6] = [
    "lora",
    "lora_qkv_mlp",
    "ia3",
    "ia3_kv_ff",
    "prompt",
    "prefix",
];

/// Values and shape of a tensor.
pub type Values = (Vec<f32>, Vec<usize>);

/// `../shared/fixtures` beside the checkout, or None (with a loud notice) when the shared folder is absent.
///
/// # Panics
///
/// When the fixtures are absent and the environment variable `CI` is set (to anything but `""`, `0` or
/// `false`): in CI a fixture test must fail, not pass silently.
pub fn fixtures_root() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    resolve_fixtures(dir, in_ci())
}

/// `../shared/<rel>` beside the checkout (raw data, tokenizers, fixtures), or None (with a loud notice) when
/// it is absent; like [`fixtures_root`] it panics instead when `CI` is set.
pub fn shared_path(rel: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel);
    resolve_fixtures(dir, in_ci())
}

/// Whether the environment variable `CI` is set to something other than `""`, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

fn resolve_fixtures(dir: PathBuf, ci: bool) -> Option<PathBuf> {
    if dir.exists() {
        Some(dir)
    } else if ci {
        panic!(
            "shared test data {} not found, and CI is set: fixture tests must not be skipped in CI",
            dir.display()
        );
    } else {
        eprintln!(
            "SKIPPED: shared test data {} not found (with CI set this is a failure)",
            dir.display()
        );
        None
    }
}

/// `../shared/fixtures/<name>`, or None (with a notice) when the shared folder is absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    fixtures_root().map(|root| root.join(name))
}

/// The CPU device every test runs on.
pub fn device() -> Device {
    Device::flex()
}

/// Token ids of `case{i}.input_ids` in a fixture's cases file.
pub fn ids(cases: &Weights, i: usize) -> Vec<u32> {
    let (v, _) = cases
        .get_i64(&format!("case{i}.input_ids"))
        .expect("input ids");
    v.into_iter().map(|x| x as u32).collect()
}

/// A stored reference tensor as f32 values and shape.
pub fn expected(w: &Weights, name: &str) -> Values {
    let view = w.get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (view.to_f32_vec(), view.shape().to_vec())
}

/// A tensor's values (read without autodiff) and shape.
pub fn values<const D: usize>(t: Tensor<D>) -> Values {
    let dims = t.dims().to_vec();
    let data = t
        .without_autodiff()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data");
    (data, dims)
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// ‖a − b‖ / ‖b‖
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Asserts equal shapes and a max absolute error of at most `tol`.
pub fn assert_close(what: &str, got: Values, want: Values, tol: f32) {
    assert_eq!(got.1, want.1, "{what}: shape");
    let err = max_abs_diff(&got.0, &want.0);
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
}

/// Stacks per-layer `[1, S, H]` attention outputs into `[layers, S, H]` values.
pub fn stack_attn(attn: Vec<Tensor<3>>) -> Values {
    let t: Tensor<4> = Tensor::stack(attn, 0);
    let [l, _, s, h] = t.dims();
    values(t.reshape([l, s, h]))
}

/// Twelve short film reviews, labelled 1 / 0 alternately: the tiny classification task of the training,
/// report and analysis tests.
const REVIEWS: [&str; 12] = [
    "a gripping film",
    "dull and slow",
    "funny and moving",
    "a waste of time",
    "brilliant acting",
    "tedious plot",
    "warm and clever",
    "flat jokes",
    "a joy to watch",
    "painfully long",
    "sharp writing",
    "lifeless",
];

/// Writes `<data_dir>/<name>/main.json` (the 12 reviews as training examples, the first `num_val` as
/// validation examples; prompts `Text:{review}\nLabel:`, answers 1 / 0) and its training files for `n`
/// examples and `runs` runs (`ia2 data train-sets`).
pub fn review_dataset(data_dir: &Path, name: &str, num_val: usize, n: usize, runs: u32) {
    use ia2_data::schema::{Example, MainFile};
    let ex = |i: usize, w: &str| Example {
        idx: i,
        question: format!("Text:{w}\nLabel:"),
        answer: (1 - i % 2).to_string(),
    };
    let main = MainFile {
        metadata: serde_json::json!({"max_choices": 2, "remap_dict": {"0": null, "1": null}}),
        train_examples: REVIEWS.iter().enumerate().map(|(i, w)| ex(i, w)).collect(),
        val_examples: REVIEWS[..num_val]
            .iter()
            .enumerate()
            .map(|(i, w)| ex(i, w))
            .collect(),
    };
    ia2_data::io::write_json_atomic(&data_dir.join(name).join("main.json"), &main)
        .expect("writing main.json");
    ia2_data::train_sets::run(ia2_data::train_sets::TrainSetsConfig {
        num_runs: runs,
        ..ia2_data::train_sets::TrainSetsConfig::new(name, data_dir.to_path_buf(), vec![n])
    })
    .expect("building the training sets");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fixtures_fail_in_ci_and_skip_elsewhere() {
        let gone = PathBuf::from("/nonexistent/ia2/fixtures");
        assert_eq!(resolve_fixtures(gone.clone(), false), None);
        let caught = std::panic::catch_unwind(|| resolve_fixtures(gone, true));
        assert!(
            caught.is_err(),
            "CI must turn absent fixtures into a failure"
        );
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(resolve_fixtures(here.clone(), true), Some(here));
    }

    #[test]
    fn comparisons_detect_differences() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(rel_err(&[1.0, 1.0], &[1.0, 0.0]), 1.0);
        let caught = std::panic::catch_unwind(|| {
            assert_close("x", (vec![1.0], vec![1]), (vec![1.1], vec![1]), 1e-3)
        });
        assert!(caught.is_err());
    }
}
