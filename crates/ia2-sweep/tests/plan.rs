//! The experiment file, its checks and the DAG, without running anything; and the seed sweep's bugs
//! (analysis.md, bug 2) that can be shown on the plan alone.

use ia2_sweep::config::SweepConfig;
use ia2_sweep::ledger::{Ev, Ledger};
use ia2_sweep::plan::{JobKind, Plan, Stage};
use ia2_sweep::worker::{Readiness, readiness};
use std::path::Path;

fn config(dir: &Path, toml: &str, sets: &[&str]) -> anyhow::Result<SweepConfig> {
    let file = dir.join("plan.toml");
    std::fs::write(
        &file,
        format!("{toml}\n[[data.toy]]\nname = \"toy_task\"\n"),
    )
    .unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let mut c = SweepConfig::load(Some(&file), &[], &sets)?;
    c.absolutize(dir);
    c.validate()?;
    Ok(c)
}

const BASE: &str = r#"
model = "builtin:tiny-qwen3"
datasets = ["toy_task"]
num_train_examples = [4, 8]
lrs = [0.01, 0.03]
num_runs = 2
"#;

fn plan(toml: &str, sets: &[&str]) -> Plan {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), toml, sets).unwrap();
    Plan::build(&c).unwrap()
}

fn err(toml: &str, sets: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    match config(tmp.path(), toml, sets).and_then(|c| Plan::build(&c)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn ids(p: &Plan, stage: Stage) -> Vec<&str> {
    p.jobs
        .iter()
        .filter(|j| j.stage == stage)
        .map(|j| j.id.as_str())
        .collect()
}

#[test]
fn the_grid_expands_into_stages_with_one_teacher_per_training_file() {
    let p = plan(
        &format!(
            "{BASE}training_methods = [\"tok\", \"act\", \"a2t\", \"t2a\", \"tna\", \"tokl\"]\n"
        ),
        &[],
    );
    let count = |s| ids(&p, s).len();
    assert_eq!(count(Stage::Data), 1);
    assert_eq!(count(Stage::TrainSets), 1);
    // (N, run) = 4 training files; tokl needs distributions: a second entry per file.
    assert_eq!(count(Stage::Teacher), 8);
    // 2 N × 2 lr × 2 runs = 8 runs per method; tok, act, tokl in phase 1, a2t, t2a, tna in phase 2.
    assert_eq!(count(Stage::Train1), 24);
    assert_eq!(count(Stage::Train2), 24);
    // Every run evaluated, plus the base model per N.
    assert_eq!(count(Stage::Eval), 48 + 2);
    // Dependencies always come earlier (Plan::build checks it), and each training needs its teacher.
    for j in &p.jobs {
        if let JobKind::Train { point, run } = &j.kind {
            assert!(
                j.deps.iter().any(|d| d.starts_with("teacher/")),
                "{} has no teacher",
                j.id
            );
            let t = j.deps.iter().find(|d| d.starts_with("teacher/")).unwrap();
            assert!(t.ends_with(&format!("/run{run}")));
            assert!(t.contains(&format!("/N{}/", point.num_train_examples)));
        }
    }
}

/// Seed bug: `t2a` crashed (no branch for it); a2t / t2a had no dependency check.
#[test]
fn phase_two_depends_on_its_phase_one_run_with_matching_settings() {
    let p = plan(
        &format!(
            "{BASE}training_methods = [\"a2t\", \"t2a\"]\nlabel_types = [\"icl_outputs\", \"ground_truth\"]\n"
        ),
        &[],
    );
    for j in &p.jobs {
        let JobKind::Train { point, run } = &j.kind else {
            continue;
        };
        let m = point.method.to_string();
        if m == "a2t" || m == "t2a" {
            assert_eq!(j.stage, Stage::Train2);
            let p1 = point.phase_one().unwrap();
            let want = format!("train/{}/run{run}", p1.key());
            assert!(j.deps.contains(&want), "{} lacks {want}", j.id);
            let dep = p.get(&want).unwrap();
            assert!(dep.implicit, "act / tok were not asked for: implicit");
            let JobKind::Train { point: d, .. } = &dep.kind else {
                unreachable!()
            };
            assert_eq!(
                (d.lr, d.num_train_examples),
                (point.lr, point.num_train_examples)
            );
            if m == "t2a" {
                // t2a continues the tok run of the same label type.
                assert_eq!(d.label_type, point.label_type);
            }
        }
    }
    // act ignores the label type: one act run per (N, lr, run), shared by both a2t label types.
    let act = p
        .jobs
        .iter()
        .filter(|j| j.id.starts_with("train/act/"))
        .count();
    assert_eq!(act, 8);
    // implicit runs are not evaluated; a2t and t2a runs are.
    assert!(p.jobs.iter().all(|j| !j.id.starts_with("eval/act/")));
    assert_eq!(
        p.jobs
            .iter()
            .filter(|j| j.id.starts_with("eval/t2a/"))
            .count(),
        16
    );
}

/// Seed bug: tokl was in neither phase (silently dropped); its skip check omitted top-k.
#[test]
fn tokl_is_trained_in_phase_one_once_per_top_k() {
    let p = plan(
        &format!(
            "{BASE}training_methods = [\"tokl\", \"ia3-tokl\"]\ntokl_top_k = [\"all\", \"5\"]\n"
        ),
        &[],
    );
    let tokl: Vec<&str> = ids(&p, Stage::Train1)
        .into_iter()
        .filter(|i| i.starts_with("train/tokl/"))
        .collect();
    assert_eq!(tokl.len(), 16);
    assert!(tokl.iter().any(|i| i.contains("/topkall/")));
    assert!(tokl.iter().any(|i| i.contains("/topk5/")));
    assert_eq!(
        ids(&p, Stage::Train1)
            .iter()
            .filter(|i| i.starts_with("train/ia3-tokl/"))
            .count(),
        16
    );
    // The distributions teacher differs per top-k.
    assert!(
        ids(&p, Stage::Teacher)
            .iter()
            .any(|i| i.contains("/dist-5/"))
    );
    assert!(
        ids(&p, Stage::Teacher)
            .iter()
            .any(|i| i.contains("/dist-all/"))
    );
}

/// Seed bug: LoRA LDR jobs passed their arguments in the wrong order. Every option goes by name here.
#[test]
fn lora_ldr_jobs_get_every_option_in_its_place() {
    let p = plan(
        &format!(
            "{BASE}training_methods = [\"act\"]\nldr_mode = true\nnum_labelled_samples = [6]\nnum_unlabelled_samples = [20]\n\
             max_permutations = [3]\nlora_types = [\"qv\"]\nlora_rs = [16]\nlora_alphas = [32]\n"
        ),
        &[],
    );
    let job = p
        .jobs
        .iter()
        .find(|j| j.stage == Stage::Train1)
        .expect("a training job");
    let JobKind::Train { point, run } = &job.kind else {
        unreachable!()
    };
    let a = ia2_sweep::jobs::train_args(&p.config, point, *run).unwrap();
    assert_eq!(a.lora_type, "qv");
    assert_eq!((a.lora_r, a.lora_alpha), (16, 32));
    assert!(a.ldr_mode);
    assert_eq!(
        (
            a.num_labelled_samples,
            a.num_unlabelled_samples,
            a.max_permutations
        ),
        (6, 20, 3)
    );
    assert!(
        a.data_file(*run)
            .ends_with(format!("toy_task-ldr/train/6_20_3_{run}.json"))
    );
    assert!(ids(&p, Stage::TrainSets).contains(&"ldr-sets/toy_task"));
}

/// Seed bug: `--wandb_log` / `--sequential_last` could not be turned off: every boolean here can be set
/// either way, and later sources win (file < command line < --set).
#[test]
fn booleans_turn_off_and_later_sources_override_earlier_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "{BASE}training_methods = [\"tok\"]\n[train]\nshuffle_demos = true\n[eval]\nuncertainty_analysis = true\n"
    );
    let c = config(tmp.path(), &toml, &[]).unwrap();
    assert!(c.train.shuffle_demos && c.eval.uncertainty_analysis);
    let c = config(
        tmp.path(),
        &toml,
        &[
            "train.shuffle_demos=false",
            "eval.uncertainty-analysis=false",
            "lrs=0.5",
            "num_runs=3",
        ],
    )
    .unwrap();
    assert!(!c.train.shuffle_demos && !c.eval.uncertainty_analysis);
    assert_eq!(c.lrs, vec![0.5]);
    assert_eq!(c.num_runs, 3);
    let file = tmp.path().join("plan.toml");
    let over = vec![(
        "train.shuffle_demos".to_string(),
        toml::Value::Boolean(false),
    )];
    let c = SweepConfig::load(Some(&file), &over, &[]).unwrap();
    assert!(!c.train.shuffle_demos);
}

#[test]
fn unknown_keys_methods_datasets_and_impossible_combinations_are_rejected_by_name() {
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\nlearning_rate = 1\n"),
        &[],
    );
    assert!(e.contains("unknown key `learning_rate`"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n[train]\nepochs = 1\n"),
        &[],
    );
    assert!(e.contains("`train.epochs`"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n"),
        &["eval.nope=1"],
    );
    assert!(e.contains("`eval.nope`"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\", \"lora-act\"]\n"),
        &[],
    );
    assert!(
        e.contains("training_methods") && e.contains("lora-act"),
        "{e}"
    );
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n"),
        &["datasets=[\"nonesuch\"]"],
    );
    assert!(e.contains("datasets") && e.contains("nonesuch"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n"),
        &["datasets=[\"sst2\"]"],
    );
    assert!(e.contains("not prepared") && e.contains("sst2"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tokl\"]\nlabel_types = [\"ground_truth\"]\n"),
        &[],
    );
    assert!(e.contains("tokl") && e.contains("label_types"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tna\"]\nce_loss_weights = [1.5]\n"),
        &[],
    );
    assert!(e.contains("ce_loss_weights"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\nnum_train_examples = [1]\n"),
        &[],
    );
    assert!(e.contains("num_train_examples"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\nlora_types = [\"qx\"]\n"),
        &[],
    );
    assert!(e.contains("lora_types"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n"),
        &["execution.executor=\"k8s\""],
    );
    assert!(e.contains("execution.executor"), "{e}");
    let e = err(
        &format!("{BASE}training_methods = [\"tok\"]\n"),
        &["data.toy=[{name=\"toy_task\", num_train=2}]"],
    );
    assert!(e.contains("num_train"), "{e}");
}

/// Seed bug: partial runs were redone whole (one job trained every run of a grid point). Jobs are per run,
/// and readiness follows the ledger: a finished run is done, its siblings still to do, a failure blocks only
/// its dependents.
#[test]
fn jobs_are_per_run_and_a_failure_blocks_only_its_dependents() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(
        tmp.path(),
        &format!("{BASE}training_methods = [\"act\", \"a2t\"]\n"),
        &[
            "num_train_examples=[4]",
            "lrs=[0.01]",
            "execution.max_attempts=1",
        ],
    )
    .unwrap();
    let p = Plan::build(&c).unwrap();
    let dir = tmp.path().join("sweep");
    p.write(&dir).unwrap();
    let ledger = Ledger::open(&dir).unwrap();
    let done = |id: &str| {
        ledger
            .record(
                Some(id),
                Ev::Done {
                    secs: 0.0,
                    outputs: vec![],
                    identity: None,
                    note: String::new(),
                },
            )
            .unwrap()
    };
    for j in &p.jobs {
        if matches!(j.stage, Stage::Data | Stage::TrainSets | Stage::Teacher) {
            done(&j.id);
        }
    }
    let act0 = p
        .jobs
        .iter()
        .find(|j| j.id.starts_with("train/act/") && j.id.ends_with("run0"))
        .unwrap()
        .id
        .clone();
    let act1 = act0.replace("run0", "run1");
    done(&act1);
    let (_lock, _) = ledger.claim(&act0, 1, "w").unwrap().unwrap();
    ledger
        .record(
            Some(&act0),
            Ev::Fail {
                attempt: 1,
                secs: 0.0,
                error: "boom".into(),
                stderr_tail: String::new(),
                host: "h".into(),
                pid: 1,
            },
        )
        .unwrap();
    let r = readiness(&p, &ledger.snapshot().unwrap(), 1);
    let of = |id: &str| r[p.position(id).unwrap()];
    assert_eq!(of(&act0), Readiness::Failed);
    assert_eq!(of(&act1), Readiness::Done);
    // a2t's key has a label type: find the jobs by prefix and run.
    let find = |prefix: &str, run: &str| {
        p.jobs
            .iter()
            .find(|j| j.id.starts_with(prefix) && j.id.ends_with(run))
            .unwrap()
            .id
            .clone()
    };
    assert_eq!(of(&find("train/a2t/", "run0")), Readiness::Blocked);
    assert_eq!(of(&find("train/a2t/", "run1")), Readiness::Ready);
    assert_eq!(of(&find("eval/a2t/", "run0")), Readiness::Blocked);
    assert_eq!(of(&find("eval/a2t/", "run1")), Readiness::Waiting);
    assert_eq!(of("eval-base/N4"), Readiness::Ready);
    let st = ia2_sweep::status::status(&dir).unwrap();
    let text = st.to_string();
    assert!(text.contains("boom") && text.contains(&act0), "{text}");
    assert_eq!(st.total.failed, 1);
    // a2t run 0, its evaluation, act run 0's evaluation and the report over all evaluations.
    assert_eq!(st.total.blocked, 4);
    assert_eq!(of("report"), Readiness::Blocked);
    assert_eq!(of(&find("eval/act/", "run0")), Readiness::Blocked);
}

#[test]
fn slurm_options_pass_through_to_sbatch() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config(
        tmp.path(),
        &format!("{BASE}training_methods = [\"tok\"]\n[slurm]\npartition = \"gpu\"\ntime = \"01:00:00\"\nmem = \"16G\"\ncpus_per_task = 4\ngres = \"gpu:1\"\naccount = \"lab\"\nextra_args = [\"--qos=high\"]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        ia2_sweep::slurm::sbatch_options(&c.slurm),
        [
            "--partition=gpu",
            "--time=01:00:00",
            "--mem=16G",
            "--cpus-per-task=4",
            "--gres=gpu:1",
            "--account=lab",
            "--qos=high"
        ]
    );
    assert!(ia2_sweep::slurm::sbatch_options(&SweepConfig::default().slurm).is_empty());
}
