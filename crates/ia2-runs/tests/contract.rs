//! The on-disk contract: keys round trip, identities, locking and crash recovery of run directories.

use ia2_runs::replace::ReplaceOptions;
use ia2_runs::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn config(epochs: usize) -> RunConfig {
    RunConfig {
        dataset: "sst2".into(),
        training_method: "tok".parse().unwrap(),
        model_name: "model".into(),
        lora_type: "qko".into(),
        lora_r: 8,
        lora_alpha: 8,
        ia3_type: "qko".into(),
        num_virtual_tokens: 20,
        num_train_examples: 4,
        num_generated_tokens: 1,
        lr: 1e-4,
        ce_loss_weight: None,
        label_type: LabelType::IclOutputs,
        run_idx: 0,
        output_dir: "outputs/tok/sst2".into(),
        ldr_mode: false,
        num_labelled_samples: None,
        num_unlabelled_samples: None,
        max_permutations: None,
        tokl_top_k: None,
        ia2: Ia2RunConfig {
            version: "0.1.0".into(),
            model_id: "/models/a/model".into(),
            base_model_fingerprint: "fp-a".into(),
            dtype: "f32".into(),
            train_file: "data/sst2/train/4_0.json".into(),
            train_file_sha256: "abc".into(),
            seed: 42,
            num_train_epochs: epochs,
            batch_size: 4,
            micro_batch: 0,
            patience: 5,
            dev_eval_steps: 2,
            gradient_clip_val: None,
            shuffle_demos: false,
            num_shuffles: None,
            fixed_demos: false,
            adam: AdamSettings::with_lr(1e-4),
            continued_from: None,
            num_train_sequences: 3,
            num_dev_sequences: 1,
            continued_from_identity: None,
            code_version: String::new(),
            identity: None,
        },
    }
    .seal()
}

fn stats() -> FinalStats {
    FinalStats {
        best_dev_loss: Some(0.5),
        current_train_loss: TrainLoss {
            mse: 0.0,
            ce: 0.25,
            total: 0.25,
        },
        training_completed: true,
        final_epoch: 3,
        total_steps: 12,
        early_stopped: false,
        best_step: Some(10),
    }
}

/// Serialize → deserialize → serialize gives the same JSON: every key written is read back.
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) {
    let a = serde_json::to_value(v).unwrap();
    let back: T = serde_json::from_value(a.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), a);
}

#[test]
fn every_key_written_is_read_back() {
    let c = config(50);
    round_trips(&c);
    round_trips(&stats());
    round_trips(&MetricsRecord {
        step: 1,
        epoch: 0,
        train: TrainLoss::default(),
        dev: Some(TrainLoss::default()),
        grad_norm: 1.0,
        weight_norm: 2.0,
        lr: 1e-4,
        examples: 4,
        seconds: 0.1,
    });
    // The lenient reader reads every seed key of what we write.
    let v = serde_json::to_value(&c).unwrap();
    let l = TrainingConfig::from_value(&v, Path::new("training_config.json")).unwrap();
    assert_eq!(l.dataset.as_deref(), Some("sst2"));
    assert_eq!(l.training_method.as_deref(), Some("tok"));
    assert_eq!(l.lora_r, Some(8));
    assert_eq!(l.lr, Some(1e-4));
    assert_eq!(l.label_type.as_deref(), Some("icl_outputs"));
    assert_eq!(l.run_idx, Some(0));
    assert_eq!(l.base_model_fingerprint.as_deref(), Some("fp-a"));
    assert_eq!(l.identity, c.ia2.identity);
    // Seed statistics (no ia2 keys) read.
    let seed: FinalStats = serde_json::from_value(json!({"best_dev_loss": 0.5,
        "current_train_loss": {"mse": 0.0, "ce": 1.0, "total": 1.0},
        "training_completed": true, "final_epoch": 3, "total_steps": 12}))
    .unwrap();
    assert_eq!(seed.final_epoch, 3);
}

#[test]
fn identity_covers_every_hyper_parameter_but_not_locations() {
    let a = config(50);
    let mut moved = a.clone();
    moved.output_dir = "elsewhere".into();
    moved.ia2.model_id = "/models/b/model".into();
    moved.ia2.train_file = "copy.json".into();
    assert_eq!(moved.compute_identity(), a.identity());
    let smoke = config(0);
    assert_ne!(smoke.identity(), a.identity());
    let d = identity::diff(&smoke.identity_inputs(), &a.identity_inputs());
    assert_eq!(d, ["ia2.num_train_epochs: 0 → 50"]);
    for change in [
        |c: &mut RunConfig| c.ia2.base_model_fingerprint = "fp-b".into(),
        |c: &mut RunConfig| c.ia2.train_file_sha256 = "def".into(),
        |c: &mut RunConfig| c.ia2.seed = 1,
        |c: &mut RunConfig| c.ia2.batch_size = 2,
        |c: &mut RunConfig| c.ia2.patience = 1,
        |c: &mut RunConfig| c.ia2.dtype = "bf16".into(),
    ] {
        let mut b = a.clone();
        change(&mut b);
        assert_ne!(b.clone().seal().identity(), a.identity(), "{b:?}");
    }
}

/// Writes a complete fake run into `dir`.
fn write_run(dir: &Path, c: &RunConfig, marker: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(c).unwrap()).unwrap();
    std::fs::write(
        dir.join(STATS_FILE),
        serde_json::to_string(&stats()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("adapter_config.json"), marker).unwrap();
}

fn marker(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()
}

fn hidden(parent: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".ia2-tmp-"))
        .collect();
    v.sort();
    v
}

/// Trains (fakes) one run the way `ia2 train` does; returns whether it trained.
fn train(
    final_dir: &Path,
    c: &RunConfig,
    force: bool,
    opts: ReplaceOptions,
) -> anyhow::Result<bool> {
    let slot = RunSlot::acquire(final_dir, Wait::Block)?;
    match slot.existing(c) {
        ExistingRun::Same(_) if !force => return Ok(false),
        ExistingRun::Different(d) if !force => anyhow::bail!(
            "{}",
            identity::mismatch_message("run", final_dir, &d, "--force")
        ),
        _ => {}
    }
    let mut out = slot.start()?;
    out.write_json(CONFIG_FILE, c)?;
    for step in 0..5 {
        out.log(&json!({"step": step}))?;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    out.write_json(STATS_FILE, &stats())?;
    std::fs::write(
        out.tmp.join("adapter_config.json"),
        format!("{}", std::process::id()),
    )?;
    out.finish_with(opts)?;
    Ok(true)
}

#[test]
fn concurrent_trainings_of_one_run_end_with_one_complete_run() {
    let d = tempfile::tempdir().unwrap();
    let c = config(50);
    let dir = c.dir(d.path());
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (dir, c) = (dir.clone(), c.clone());
            std::thread::spawn(move || train(&dir, &c, false, ReplaceOptions::default()).unwrap())
        })
        .collect();
    let trained: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(trained.iter().filter(|t| **t).count(), 1, "{trained:?}");
    assert!(is_complete(&dir));
    let lines = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    assert_eq!(lines.lines().count(), 5, "metrics.jsonl complete");
    assert!(hidden(dir.parent().unwrap()).is_empty());
    let (runs, _) = list_runs(d.path()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].identity(), c.ia2.identity);
    // A second process refusing instead of waiting says who holds the run.
    let _held = Lock::acquire(&dir, Wait::Fail).unwrap();
    let e = RunSlot::acquire(&dir, Wait::Fail).unwrap_err();
    assert!(format!("{e:#}").contains("another ia2 process"));
}

#[test]
fn smoke_run_then_real_run_needs_force_and_says_what_differs() {
    let d = tempfile::tempdir().unwrap();
    let smoke = config(0);
    let real = config(50);
    let dir = real.dir(d.path());
    assert!(train(&dir, &smoke, false, ReplaceOptions::default()).unwrap());
    let e = train(&dir, &real, false, ReplaceOptions::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("ia2.num_train_epochs: 0 → 50") && msg.contains("--force"),
        "{msg}"
    );
    assert!(train(&dir, &real, true, ReplaceOptions::default()).unwrap());
    let recorded: RunConfig = read_json(&dir.join(CONFIG_FILE)).unwrap();
    assert_eq!(recorded.ia2.num_train_epochs, 50);
    assert!(!train(&dir, &real, false, ReplaceOptions::default()).unwrap());
}

fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A directory under the temporary scheme owned by a dead process.
fn dead_tmp(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!("{}{}-0badc0de-{name}", tmp::TMP_PREFIX, dead_pid()))
}

#[test]
fn kill_at_every_rename_leaves_a_complete_run_after_the_next_start() {
    let d = tempfile::tempdir().unwrap();
    let old = config(0);
    let new = config(50);
    let dir = new.dir(d.path());
    let parent = dir.parent().unwrap().to_path_buf();
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let reset = || {
        for e in std::fs::read_dir(&parent).unwrap().flatten() {
            if e.path().is_dir() {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
    };
    let epochs = |p: &Path| {
        read_json::<RunConfig>(&p.join(CONFIG_FILE))
            .unwrap()
            .ia2
            .num_train_epochs
    };

    // 1. Killed while training (before any rename): the half-written temporary goes, the old run stays.
    write_run(&dir, &old, "old");
    let t = dead_tmp(&parent, &name);
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join(METRICS_FILE), "{").unwrap();
    let slot = RunSlot::acquire(&dir, Wait::Fail).unwrap();
    assert!(matches!(slot.existing(&old), ExistingRun::Same(_)));
    drop(slot);
    assert!(hidden(&parent).is_empty());
    assert_eq!(marker(&dir), "old");

    // 2. Killed after the exchange, before removing the old run (now under the temporary name).
    for no_exchange in [false, true] {
        reset();
        write_run(&dir, &old, "old");
        // Run the real thing up to the crash point (our own pid), then pretend we died: rename our leftovers
        // to a dead owner's name.
        let opts = ReplaceOptions {
            no_exchange,
            crash_after_first_rename: true,
        };
        assert!(train(&dir, &new, true, opts).is_err());
        let dead = dead_pid();
        for n in hidden(&parent) {
            let t = tmp::parse(&n).unwrap();
            std::fs::rename(
                parent.join(&n),
                parent.join(format!("{}{dead}-{}-{}", tmp::TMP_PREFIX, t.nonce, t.name)),
            )
            .unwrap();
        }
        let slot = RunSlot::acquire(&dir, Wait::Fail).unwrap();
        drop(slot);
        assert!(hidden(&parent).is_empty(), "{:?}", hidden(&parent));
        assert!(is_complete(&dir), "no_exchange {no_exchange}");
        if no_exchange {
            // The old run had been moved aside, the new one not yet in place: the old one comes back.
            assert_eq!(epochs(&dir), 0);
        } else {
            // Exchanged: the new run is in place; the old one (under the temporary name) is gone.
            assert_eq!(epochs(&dir), 50);
        }
    }

    // 3. A complete new run and no old one, killed before its only rename: nothing is left, no run claimed.
    reset();
    let t = dead_tmp(&parent, &name);
    write_run(&t, &new, "new");
    drop(RunSlot::acquire(&dir, Wait::Fail).unwrap());
    assert!(!dir.exists() && hidden(&parent).is_empty());

    // 4. The full replacement without crashes, both ways.
    for no_exchange in [false, true] {
        reset();
        write_run(&dir, &old, "old");
        let opts = ReplaceOptions {
            no_exchange,
            crash_after_first_rename: false,
        };
        assert!(train(&dir, &new, true, opts).unwrap());
        assert_eq!(epochs(&dir), 50);
        assert!(hidden(&parent).is_empty());
    }

    // 5. Leftovers of a live owner are never touched without its lock (a concurrent writer).
    let live = parent.join(tmp::tmp_name(&name));
    std::fs::create_dir_all(&live).unwrap();
    tmp::remove_leftovers(&parent, &name, false).unwrap();
    assert!(live.exists());
}

#[test]
fn result_files_with_missing_records_or_other_identity_are_not_reused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("evaluations/base/sst2/r.json");
    let rec = Record {
        idx: 0,
        query: "q".into(),
        full_answer_text: "a".into(),
        parsed_answer: "a".into(),
        full_generated_text: "a".into(),
        generated_answer: Some("a".into()),
        correct: true,
        prompt_tokens: 3,
        stop_reason: None,
        prob_info: None,
    };
    let inputs = json!({"model_fingerprint": "fp-a", "eval_dataset": "sst2"});
    let file = |n: usize, total: usize, inputs: &Value| ResultFile {
        trained_model_params: json!({}),
        evaluation_config: json!({"num_eval_examples": total, "identity": identity_of(inputs),
                                  "identity_inputs": inputs}),
        metrics: Default::default(),
        results: ModeResults {
            with_icl: vec![rec.clone(); n],
            without_icl: vec![rec.clone(); n],
        },
        status: COMPLETE.into(),
    };
    assert_eq!(existing_result(&p, &inputs), ExistingResult::Missing);
    results::write_result(&p, &file(3, 40, &inputs)).unwrap();
    assert!(matches!(
        existing_result(&p, &inputs),
        ExistingResult::Incomplete(_)
    ));
    results::write_result(&p, &file(40, 40, &inputs)).unwrap();
    round_trips(&file(2, 2, &inputs));
    assert_eq!(existing_result(&p, &inputs), ExistingResult::Same);
    let other = json!({"model_fingerprint": "fp-b", "eval_dataset": "sst2"});
    assert_eq!(
        existing_result(&p, &other),
        ExistingResult::Different(vec!["model_fingerprint: \"fp-a\" → \"fp-b\"".into()])
    );
    let (found, _) = list_results(d.path()).unwrap();
    assert_eq!(found.len(), 1);
}
