//! `ia2 sweep` end to end on the built-in model and a toy task: a grid with a2t and t2a evaluated with
//! uncertainty; kill -9 of the coordinator at seeded random moments, then a rerun, gives exactly the runs and
//! results of an uninterrupted sweep; a failing job shows its error in `status` and blocks only its
//! dependents; timeouts; tokl is not retrained; the same grid on a real single-node Slurm.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ia2");

fn write_plan(root: &Path, grid: &str) -> PathBuf {
    let text = format!(
        r#"model = "builtin:tiny-qwen3"
datasets = ["toy_task"]
data_dir = "{data}"
output_dir = "{out}"
{grid}
[train]
num_train_epochs = 1
batch_size = 2
[eval]
uncertainty_analysis = true
icl_max_demos = [3]
max_eval_examples = 6
[[data.toy]]
name = "toy_task"
num_train = 24
num_val = 8
"#,
        data = root.join("data").display(),
        out = root.join("outputs").display(),
    );
    let p = root.join("plan.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn sweep(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("sweep").args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running ia2 sweep")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Relative paths of every finished run directory and result file under `outputs`.
fn products(outputs: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.')
                || ["evaluation_summaries", "teacher_cache", "report"].contains(&name.as_str())
            {
                continue;
            }
            if p.is_dir() {
                if p.join("final_loss_statistics.json").is_file() {
                    out.insert(p.strip_prefix(root).unwrap().display().to_string());
                } else {
                    walk(&p, root, out);
                }
            } else if name.ends_with(".json") {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                assert_eq!(v["status"], "complete", "{}", p.display());
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(outputs, outputs, &mut out);
    out
}

/// Done / start events per job in the ledger.
fn ledger_counts(dir: &Path) -> (BTreeMap<String, usize>, BTreeMap<String, usize>, usize) {
    let text = std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap();
    let (mut done, mut start, mut loads) = (BTreeMap::new(), BTreeMap::new(), 0);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let job = v["job"].as_str().unwrap_or_default().to_string();
        match v["ev"].as_str() {
            Some("done") => *done.entry(job).or_insert(0) += 1,
            Some("start") => *start.entry(job).or_insert(0) += 1,
            Some("model_load") => loads += 1,
            _ => {}
        }
    }
    (done, start, loads)
}

fn status_json(dir: &Path) -> Value {
    let o = sweep(&["status", dir.to_str().unwrap(), "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The issue's grid: 3 methods with a2t and t2a (their tok / act phase-1 runs are added), 2 N, 2 lrs, 2 runs,
/// every run and the base model evaluated with uncertainty; 2 workers.
#[test]
fn a_grid_with_a2t_and_t2a_runs_end_to_end_and_resumes_without_redoing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plan = write_plan(
        root,
        "training_methods = [\"act\", \"a2t\", \"t2a\"]\nnum_train_examples = [4, 6]\nlrs = [0.01, 0.03]\nnum_runs = 2",
    );
    let dir = root.join("sweep");
    let d = dir.to_str().unwrap();
    let p = plan.to_str().unwrap();
    let o = sweep(&["run", p, "--dir", d, "--dry-run"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let dry = text(&o);
    assert!(
        dry.contains("train-2") && dry.contains("teacher") && dry.contains("eval"),
        "{dry}"
    );
    assert!(
        !dir.join("ledger.jsonl").exists(),
        "a dry run writes nothing"
    );

    let t = Instant::now();
    let o = sweep(
        &["run", p, "--dir", d, "--max-parallel", "2", "--no-progress"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("grid took {:.1} s", t.elapsed().as_secs_f64());
    let st = status_json(&dir);
    assert_eq!(st["total"]["done"], st["total"]["total"], "{st}");
    // 8 runs each of act, a2t, t2a and (implicit) tok; 24 + 2 evaluations; 4 teacher collections.
    assert_eq!(st["stages"]["train-1"]["total"], 16);
    assert_eq!(st["stages"]["train-2"]["total"], 16);
    assert_eq!(st["stages"]["teacher"]["total"], 4);
    assert_eq!(st["stages"]["eval"]["total"], 26);
    let made = products(&root.join("outputs"));
    let runs = made
        .iter()
        .filter(|p| !p.starts_with("evaluations"))
        .count();
    assert_eq!(runs, 32);
    let results: Vec<&String> = made
        .iter()
        .filter(|p| p.starts_with("evaluations"))
        .collect();
    // 24 adapter evaluations + base: 2 N × 2 runs.
    assert_eq!(results.len(), 28, "{results:#?}");
    assert!(
        results
            .iter()
            .any(|p| p.starts_with("evaluations/t2a_uncertainty/"))
    );
    // t2a continued its tok run.
    let t2a = made.iter().find(|p| p.starts_with("t2a/")).unwrap();
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("outputs").join(t2a).join("training_config.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        cfg["ia2"]["continued_from"]
            .as_str()
            .unwrap()
            .contains("/tok/")
    );
    // One model load per worker, not one per job.
    let (done, _, loads) = ledger_counts(&dir);
    assert!(loads <= 2, "{loads} model loads");
    assert!(done.values().all(|&n| n == 1));
    // The summary lands in the sweep directory (the seed's ignored --output_dir).
    assert!(dir.join("summary.json").is_file());
    // The report stage ran over every result.
    assert!(root.join("outputs/report/report.html").is_file());

    // Again: nothing is redone.
    let o = sweep(&["run", p, "--dir", d, "--no-progress"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (done2, _, _) = ledger_counts(&dir);
    assert_eq!(done, done2, "a finished sweep ran jobs again");
    // A deleted run directory is noticed (its identity is checked) and only it (and what reads it) runs again.
    let victim = root.join("outputs").join(t2a);
    std::fs::remove_dir_all(&victim).unwrap();
    let o = sweep(&["run", p, "--dir", d, "--no-progress"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(victim.join("final_loss_statistics.json").is_file());
    let (done3, _, _) = ledger_counts(&dir);
    let mut again: Vec<&str> = done3
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.split('/').next().unwrap())
        .collect();
    again.sort();
    // The run, its evaluation and the report, nothing else.
    assert_eq!(again, ["eval", "report", "train"], "{done3:?}");
    // The evaluation of the retrained run was computed again, not taken from the stale result.
    let ledger = std::fs::read_to_string(dir.join("ledger.jsonl")).unwrap();
    let last_eval = ledger
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ev"] == "done" && v["job"].as_str().unwrap_or("").starts_with("eval/t2a/"))
        .unwrap();
    assert!(
        last_eval["note"]
            .as_str()
            .unwrap()
            .starts_with("1 evaluated"),
        "{last_eval}"
    );
    assert_eq!(products(&root.join("outputs")), made);
}

/// Seeded "random" delays (an LCG), so the test is reproducible.
fn delays(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((x >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

#[test]
fn kill_9_of_the_coordinator_then_a_rerun_gives_exactly_the_uninterrupted_result() {
    let grid = "training_methods = [\"tok\", \"a2t\"]\nnum_train_examples = [4, 6]\nlrs = [0.01, 0.03]\nnum_runs = 2";
    // Uninterrupted.
    let a = tempfile::tempdir().unwrap();
    let plan_a = write_plan(a.path(), grid);
    let dir_a = a.path().join("sweep");
    let o = sweep(
        &[
            "run",
            plan_a.to_str().unwrap(),
            "--dir",
            dir_a.to_str().unwrap(),
            "--max-parallel",
            "2",
            "--no-progress",
            "--set",
            "train.num_train_epochs=4",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let want = products(&a.path().join("outputs"));
    assert!(want.len() > 10);

    // Interrupted three times at seeded moments, then run to the end.
    let b = tempfile::tempdir().unwrap();
    let plan_b = write_plan(b.path(), grid);
    let dir_b = b.path().join("sweep");
    let mut interrupted = 0;
    for secs in delays(7, 4, 0.2, 1.2) {
        let mut child = Command::new(BIN)
            .args([
                "sweep",
                "run",
                plan_b.to_str().unwrap(),
                "--dir",
                dir_b.to_str().unwrap(),
            ])
            .args([
                "--max-parallel",
                "2",
                "--no-progress",
                "--set",
                "train.num_train_epochs=4",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(secs));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The workers die with it (PR_SET_PDEATHSIG).
        std::thread::sleep(Duration::from_millis(300));
        if dir_b.join("plan.json").is_file() {
            let st = status_json(&dir_b);
            eprintln!(
                "killed after {secs:.2} s: {} of {} jobs done",
                st["total"]["done"], st["total"]["total"]
            );
            if st["total"]["done"] != st["total"]["total"] {
                interrupted += 1;
            }
        }
    }
    assert!(interrupted >= 1, "no kill landed before the sweep finished");
    let o = sweep(
        &[
            "run",
            plan_b.to_str().unwrap(),
            "--dir",
            dir_b.to_str().unwrap(),
            "--no-progress",
            "--set",
            "train.num_train_epochs=4",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(products(&b.path().join("outputs")), {
        // Same relative paths (the data and output dirs differ only in their root).
        want.clone()
    });
    // A job that finished was never started again.
    let (done, _, _) = ledger_counts(&dir_b);
    assert!(done.values().all(|&n| n == 1), "{done:?}");
    let st = status_json(&dir_b);
    assert_eq!(st["total"]["done"], st["total"]["total"]);
}

#[test]
fn a_failing_job_shows_its_error_blocks_only_its_dependents_and_retry_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = write_plan(
        tmp.path(),
        "training_methods = [\"act\", \"a2t\", \"tok\"]\nnum_train_examples = [4]\nlrs = [0.03]\nnum_runs = 2\n\
         [execution]\nmax_attempts = 2",
    );
    let dir = tmp.path().join("sweep");
    let (p, d) = (plan.to_str().unwrap(), dir.to_str().unwrap());
    let o = sweep(
        &["run", p, "--dir", d, "--no-progress"],
        &[(
            "IA2_SWEEP_FAIL_JOB",
            "train/act/toy_task/T1/N4/lr0.03/lora-qko-r8-a8/run0",
        )],
    );
    assert!(!o.status.success(), "a sweep with a failed job must fail");
    let st = status_json(&dir);
    let failures = st["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{st}");
    assert_eq!(failures[0]["attempts"], 2);
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
    // Blocked: a2t run 0, the evaluations of act run 0 and a2t run 0, and the report — nothing else.
    let blocked: Vec<&str> = st["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap())
        .collect();
    assert_eq!(blocked.len(), 4, "{blocked:?}");
    assert!(blocked.contains(&"report"));
    assert!(
        blocked
            .iter()
            .all(|b| *b == "report" || b.ends_with("run0"))
    );
    assert_eq!(
        st["total"]["done"].as_u64().unwrap() + 5,
        st["total"]["total"].as_u64().unwrap()
    );
    let o = sweep(&["status", d], &[]);
    let shown = text(&o);
    assert!(
        shown.contains("injected failure") && shown.contains("blocked"),
        "{shown}"
    );
    // Retry without the fault: everything finishes.
    let o = sweep(&["retry", d, "--no-progress"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let st = status_json(&dir);
    assert_eq!(st["total"]["done"], st["total"]["total"]);
}

#[test]
fn a_job_past_its_timeout_is_killed_and_recorded_and_tokl_is_not_retrained() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = write_plan(
        tmp.path(),
        "training_methods = [\"tokl\"]\ntokl_top_k = [\"5\"]\nnum_train_examples = [4]\nlrs = [0.03]\nnum_runs = 1\n\
         [execution]\nmax_attempts = 1\njob_timeout_s = 8.0",
    );
    let dir = tmp.path().join("sweep");
    let (p, d) = (plan.to_str().unwrap(), dir.to_str().unwrap());
    let o = sweep(
        &["run", p, "--dir", d, "--no-progress", "--eval", "false"],
        &[("IA2_SWEEP_SLOW_JOB", "train/tokl:120")],
    );
    assert!(!o.status.success());
    let st = status_json(&dir);
    let f = &st["failures"][0];
    assert!(
        f["job"].as_str().unwrap().starts_with("train/tokl/"),
        "{st}"
    );
    assert!(f["error"].as_str().unwrap().contains("timed out"), "{st}");
    // Without the hang: trained once; a second sweep (and one with a fresh ledger) does not train it again.
    let o = sweep(&["retry", d, "--no-progress"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sweep(
        &["run", p, "--dir", d, "--no-progress", "--eval", "false"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (done, _, _) = ledger_counts(&dir);
    let tokl: Vec<_> = done
        .iter()
        .filter(|(k, _)| k.starts_with("train/tokl/"))
        .collect();
    assert_eq!(tokl.len(), 1);
    assert_eq!(*tokl[0].1, 1);
    let dir2 = tmp.path().join("sweep2");
    let o = sweep(
        &[
            "run",
            p,
            "--dir",
            dir2.to_str().unwrap(),
            "--no-progress",
            "--eval",
            "false",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let ledger = std::fs::read_to_string(dir2.join("ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("finished run found"),
        "the finished tokl run (top-k 5) was not recognised"
    );
}

#[test]
fn the_grid_runs_on_a_real_single_node_slurm() {
    let Some(_slurm) = ia2_sweep::slurm_setup::ensure_slurm().expect("setting up Slurm") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plan = write_plan(
        tmp.path(),
        "training_methods = [\"tok\", \"a2t\", \"t2a\"]\nnum_train_examples = [4]\nlrs = [0.03]\nnum_runs = 2",
    );
    let dir = tmp.path().join("sweep");
    let (p, d) = (plan.to_str().unwrap(), dir.to_str().unwrap());
    let o = sweep(
        &[
            "run",
            p,
            "--dir",
            d,
            "--executor",
            "slurm",
            "--time",
            "00:10:00",
            "--wait",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    assert!(shown.contains("Slurm array"), "{shown}");
    let st = status_json(&dir);
    assert_eq!(st["total"]["done"], st["total"]["total"], "{st}");
    let made = products(&tmp.path().join("outputs"));
    assert!(
        made.iter().any(|p| p.starts_with("t2a/")) && made.iter().any(|p| p.starts_with("a2t/"))
    );
    // A rerun submits nothing.
    let o = sweep(
        &["run", p, "--dir", d, "--executor", "slurm", "--wait"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing to submit"), "{}", text(&o));
}
