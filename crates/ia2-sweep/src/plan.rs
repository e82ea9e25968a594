//! The grid as a DAG of jobs.
//!
//! Stages, in order (a job depends only on jobs of earlier stages, so Slurm can submit one array per stage):
//!
//! | stage | jobs |
//! |---|---|
//! | `data` | a dataset's `main.json` when the sweep creates it (toy task, `ia2 data prepare`) |
//! | `train-sets` | `ia2 data train-sets` for every dataset and N (and `ia2 data ldr` in LDR mode) |
//! | `teacher` | one teacher collection per (model, data file, T, dtype[, tokl distribution]), shared by every method and run |
//! | `train-1` | tok, tokl, act (every adapter), one job per run |
//! | `train-2` | a2t / t2a (each depends on its phase-1 run with matching settings, added when not asked for) and tna |
//! | `eval` | each trained run; the base model per N |
//! | `report` | the report over all results (when `ia2-report` is available) |
//!
//! A new stage: add a [`Stage`] variant (in order), a [`JobKind`] variant, create its jobs in [`Plan::build`],
//! and run / verify them in [`crate::jobs`].

use crate::config::SweepConfig;
use anyhow::{Context, Result, bail};
use ia2_train::{AdapterKind, LabelType, Objective, TopK, TrainingMethod};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Stages in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Data,
    TrainSets,
    Teacher,
    #[serde(rename = "train-1")]
    Train1,
    #[serde(rename = "train-2")]
    Train2,
    Eval,
    Report,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Data,
        Stage::TrainSets,
        Stage::Teacher,
        Stage::Train1,
        Stage::Train2,
        Stage::Eval,
        Stage::Report,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Data => "data",
            Stage::TrainSets => "train-sets",
            Stage::Teacher => "teacher",
            Stage::Train1 => "train-1",
            Stage::Train2 => "train-2",
            Stage::Eval => "eval",
            Stage::Report => "report",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Low-data-regime setting of a point: N labelled, M unlabelled, K permutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ldr {
    pub n: usize,
    pub m: usize,
    pub k: usize,
}

/// One grid point of one method (everything that names a run except the run index), normalised: settings a
/// method does not use are at their defaults, so points that differ only in them are one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub method: TrainingMethod,
    pub dataset: String,
    pub num_generated_tokens: usize,
    pub num_train_examples: usize,
    pub lr: f64,
    pub lora_type: String,
    pub lora_r: usize,
    pub lora_alpha: usize,
    pub ia3_type: String,
    pub num_virtual_tokens: usize,
    pub label_type: LabelType,
    pub ce_loss_weight: f64,
    pub tokl_top_k: TopK,
    pub ldr: Option<Ldr>,
}

impl Point {
    /// A stable, readable key of the point.
    pub fn key(&self) -> String {
        let adapter = match self.method.adapter {
            AdapterKind::Lora => format!(
                "lora-{}-r{}-a{}",
                self.lora_type, self.lora_r, self.lora_alpha
            ),
            AdapterKind::Ia3 => format!("ia3-{}", self.ia3_type),
            AdapterKind::Prompt | AdapterKind::Prefix => format!("nvt{}", self.num_virtual_tokens),
        };
        let mut key = format!(
            "{}/{}/T{}/N{}/lr{}/{adapter}",
            self.method,
            self.dataset,
            self.num_generated_tokens,
            self.num_train_examples,
            ia2_train::config::py_float(self.lr)
        );
        let o = self.method.objective;
        if o.uses_label_type() {
            key.push_str(&format!("/{}", self.label_type.as_str()));
        }
        if o == Objective::Tna {
            key.push_str(&format!(
                "/w{}",
                ia2_train::config::py_float(self.ce_loss_weight)
            ));
        }
        if o == Objective::Tokl {
            key.push_str(&format!("/topk{}", self.tokl_top_k));
        }
        if let Some(l) = self.ldr {
            key.push_str(&format!("/ldr{}-{}-{}", l.n, l.m, l.k));
        }
        key
    }

    /// The phase-1 point an a2t / t2a point continues.
    pub fn phase_one(&self) -> Option<Point> {
        let m = self.method.phase_one()?;
        let mut p = self.clone();
        p.method = m;
        Some(p.normalized())
    }

    /// Unused settings at their defaults.
    pub fn normalized(mut self) -> Point {
        let d = SweepConfig::default();
        let o = self.method.objective;
        if self.method.adapter != AdapterKind::Lora {
            self.lora_type = d.lora_types[0].clone();
            self.lora_r = d.lora_rs[0];
            self.lora_alpha = d.lora_alphas[0];
        }
        if self.method.adapter != AdapterKind::Ia3 {
            self.ia3_type = d.ia3_types[0].clone();
        }
        if !matches!(
            self.method.adapter,
            AdapterKind::Prompt | AdapterKind::Prefix
        ) {
            self.num_virtual_tokens = d.num_virtual_tokens_list[0];
        }
        if !o.uses_label_type() {
            self.label_type = LabelType::IclOutputs;
        }
        if o != Objective::Tna {
            self.ce_loss_weight = d.ce_loss_weights[0];
        }
        if o != Objective::Tokl {
            self.tokl_top_k = TopK::All;
        }
        self
    }

    /// Whether training needs the teacher targets (everything but CE on the dataset's answers).
    pub fn needs_teacher(&self) -> bool {
        let o = self.method.objective;
        !(matches!(o, Objective::Tok | Objective::A2t) && self.label_type == LabelType::GroundTruth)
    }

    /// The teacher variant: tokl needs the ICL distributions (a cache entry of its own).
    pub fn teacher_distributions(&self) -> Option<TopK> {
        (self.method.objective == Objective::Tokl).then_some(self.tokl_top_k)
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Write a toy task's `main.json` (entry of `data.toy`).
    ToyData { name: String },
    /// `ia2 data prepare` (entry of `data.prepare`).
    Prepare { dataset: String },
    /// `ia2 data train-sets` for these N.
    TrainSets { dataset: String, ns: Vec<usize> },
    /// `ia2 data ldr`.
    LdrSets { dataset: String },
    /// Teacher targets of one training file.
    Teacher {
        dataset: String,
        num_generated_tokens: usize,
        num_train_examples: usize,
        ldr: Option<Ldr>,
        distributions: Option<TopK>,
        run: usize,
    },
    /// One training run.
    Train { point: Point, run: usize },
    /// Evaluation of one trained run.
    EvalRun { point: Point, run: usize },
    /// Evaluation of the base model (with and without ICL) for one N and every run.
    EvalBase { num_train_examples: usize },
    /// The report over every result.
    Report,
}

/// One node of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Stable identity of the job across invocations (the ledger's key).
    pub id: String,
    pub stage: Stage,
    pub kind: JobKind,
    /// Ids of the jobs it needs.
    pub deps: Vec<String>,
    /// Whether it runs the base model (workers keep a loaded model for such jobs).
    pub uses_model: bool,
    /// Added because another job needs it, not asked for (a2t's act when act is not in the grid).
    #[serde(default)]
    pub implicit: bool,
}

/// The DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: SweepConfig,
    pub jobs: Vec<Job>,
    /// Grid combinations left out, with the reason.
    pub notes: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// Whether the report component can be called (the `ia2-report` hook).
pub fn report_available() -> bool {
    crate::jobs::REPORT_AVAILABLE
}

impl Plan {
    /// Expands the grid. The configuration must be validated (and absolute) already; every training and
    /// evaluation job's arguments are built and checked here, so nothing impossible is started.
    pub fn build(config: &SweepConfig) -> Result<Plan> {
        config.validate()?;
        let mut b = Builder::default();
        let c = config;
        let methods = c.methods()?;
        let label_types = c.label_type_values()?;
        let top_ks = c.top_k_values()?;

        // data
        let mut data_job: BTreeMap<String, String> = BTreeMap::new();
        for t in &c.data.toy {
            let id = format!("data/{}", t.name);
            b.push(Job {
                id: id.clone(),
                stage: Stage::Data,
                kind: JobKind::ToyData {
                    name: t.name.clone(),
                },
                deps: vec![],
                uses_model: false,
                implicit: false,
            });
            data_job.insert(t.name.clone(), id);
        }
        for p in &c.data.prepare {
            let id = format!("data/{}", p.dataset);
            b.push(Job {
                id: id.clone(),
                stage: Stage::Data,
                kind: JobKind::Prepare {
                    dataset: p.dataset.clone(),
                },
                deps: vec![],
                uses_model: false,
                implicit: false,
            });
            data_job.insert(p.dataset.clone(), id);
        }

        // training sets: every dataset that training or evaluation reads, every N
        let ldr_points: Vec<Ldr> = if c.ldr_mode {
            let mut v = Vec::new();
            for &n in &c.num_labelled_samples {
                for &m in &c.num_unlabelled_samples {
                    for &k in &c.max_permutations {
                        v.push(Ldr { n, m, k });
                    }
                }
            }
            v
        } else {
            Vec::new()
        };
        let mut ns: Vec<usize> = if c.ldr_mode {
            c.num_labelled_samples.clone()
        } else {
            c.num_train_examples.clone()
        };
        ns.sort_unstable();
        ns.dedup();
        let mut set_datasets: Vec<String> = c.datasets.clone();
        if c.eval.enabled {
            set_datasets.extend(c.eval.eval_datasets.iter().cloned());
            set_datasets.extend(c.eval.icl_source_datasets.iter().cloned());
        }
        dedup(&mut set_datasets);
        let mut sets_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if c.data.train_sets {
            for d in &set_datasets {
                let deps: Vec<String> = data_job.get(d).cloned().into_iter().collect();
                let id = format!("train-sets/{d}");
                b.push(Job {
                    id: id.clone(),
                    stage: Stage::TrainSets,
                    kind: JobKind::TrainSets {
                        dataset: d.clone(),
                        ns: ns.clone(),
                    },
                    deps: deps.clone(),
                    uses_model: false,
                    implicit: false,
                });
                let mut all = vec![id];
                if c.ldr_mode && c.datasets.contains(d) {
                    let lid = format!("ldr-sets/{d}");
                    b.push(Job {
                        id: lid.clone(),
                        stage: Stage::TrainSets,
                        kind: JobKind::LdrSets { dataset: d.clone() },
                        deps,
                        uses_model: false,
                        implicit: false,
                    });
                    all.push(lid);
                }
                sets_job.insert(d.clone(), all);
            }
        } else {
            for d in &set_datasets {
                sets_job.insert(d.clone(), data_job.get(d).cloned().into_iter().collect());
            }
        }

        // training points
        let mut points: Vec<Point> = Vec::new();
        let defaults = SweepConfig::default();
        for &method in &methods {
            let o = method.objective;
            let lora: Vec<(String, usize, usize)> = if method.adapter == AdapterKind::Lora {
                let mut v = Vec::new();
                for t in &c.lora_types {
                    for &r in &c.lora_rs {
                        for &a in &c.lora_alphas {
                            v.push((t.clone(), r, a));
                        }
                    }
                }
                v
            } else {
                vec![(
                    defaults.lora_types[0].clone(),
                    defaults.lora_rs[0],
                    defaults.lora_alphas[0],
                )]
            };
            let ia3: Vec<String> = if method.adapter == AdapterKind::Ia3 {
                c.ia3_types.clone()
            } else {
                vec![defaults.ia3_types[0].clone()]
            };
            let nvts: Vec<usize> =
                if matches!(method.adapter, AdapterKind::Prompt | AdapterKind::Prefix) {
                    c.num_virtual_tokens_list.clone()
                } else {
                    vec![defaults.num_virtual_tokens_list[0]]
                };
            let labels: Vec<LabelType> = if o.uses_label_type() {
                label_types.clone()
            } else {
                vec![LabelType::IclOutputs]
            };
            let ws: Vec<f64> = if o == Objective::Tna {
                c.ce_loss_weights.clone()
            } else {
                vec![defaults.ce_loss_weights[0]]
            };
            let ks: Vec<TopK> = if o == Objective::Tokl {
                top_ks.clone()
            } else {
                vec![TopK::All]
            };
            let sizes: Vec<(usize, Option<Ldr>)> = if c.ldr_mode {
                ldr_points.iter().map(|l| (l.n, Some(*l))).collect()
            } else {
                c.num_train_examples.iter().map(|&n| (n, None)).collect()
            };
            for dataset in &c.datasets {
                for &t in &c.num_generated_tokens {
                    for &(n, ldr) in &sizes {
                        for &lr in &c.lrs {
                            for (lt, r, a) in &lora {
                                for it in &ia3 {
                                    for &nvt in &nvts {
                                        for &label in &labels {
                                            if o == Objective::Tokl
                                                && label != LabelType::IclOutputs
                                            {
                                                b.notes.push(format!(
                                                    "{method} with label type {}: left out (tokl trains on the ICL distributions)",
                                                    label.as_str()
                                                ));
                                                continue;
                                            }
                                            for &w in &ws {
                                                for &k in &ks {
                                                    points.push(
                                                        Point {
                                                            method,
                                                            dataset: dataset.clone(),
                                                            num_generated_tokens: t,
                                                            num_train_examples: n,
                                                            lr,
                                                            lora_type: lt.clone(),
                                                            lora_r: *r,
                                                            lora_alpha: *a,
                                                            ia3_type: it.clone(),
                                                            num_virtual_tokens: nvt,
                                                            label_type: label,
                                                            ce_loss_weight: w,
                                                            tokl_top_k: k,
                                                            ldr,
                                                        }
                                                        .normalized(),
                                                    );
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        b.notes.sort();
        b.notes.dedup();
        // Phase-1 points that phase-2 points continue, added when the grid lacks them.
        let requested: Vec<String> = points.iter().map(Point::key).collect();
        let mut implicit = Vec::new();
        for p in &points {
            if let Some(p1) = p.phase_one()
                && !requested.contains(&p1.key())
                && !implicit.iter().any(|q: &Point| q.key() == p1.key())
            {
                implicit.push(p1);
            }
        }

        // teacher, training and evaluation jobs, per run
        let mut train_jobs: Vec<(Point, usize, bool)> = Vec::new();
        for p in implicit.iter() {
            for run in 0..c.num_runs {
                train_jobs.push((p.clone(), run, true));
            }
        }
        for p in &points {
            for run in 0..c.num_runs {
                train_jobs.push((p.clone(), run, false));
            }
        }
        // Teachers first (stage order), then phase 1, then phase 2.
        for (p, run, _) in &train_jobs {
            if !p.needs_teacher() {
                continue;
            }
            let (id, kind) = teacher_job(p, *run);
            if b.has(&id) {
                continue;
            }
            b.push(Job {
                id,
                stage: Stage::Teacher,
                kind,
                deps: sets_job.get(&p.dataset).cloned().unwrap_or_default(),
                uses_model: true,
                implicit: false,
            });
        }
        for phase in [Stage::Train1, Stage::Train2] {
            for (p, run, imp) in &train_jobs {
                let o = p.method.objective;
                let stage = if matches!(o, Objective::A2t | Objective::T2a | Objective::Tna) {
                    Stage::Train2
                } else {
                    Stage::Train1
                };
                if stage != phase {
                    continue;
                }
                let mut deps = sets_job.get(&p.dataset).cloned().unwrap_or_default();
                if p.needs_teacher() {
                    deps.push(teacher_job(p, *run).0);
                }
                if let Some(p1) = p.phase_one() {
                    deps.push(train_id(&p1, *run));
                }
                let job = Job {
                    id: train_id(p, *run),
                    stage,
                    kind: JobKind::Train {
                        point: p.clone(),
                        run: *run,
                    },
                    deps,
                    uses_model: true,
                    implicit: *imp,
                };
                crate::jobs::train_args(c, p, *run)
                    .and_then(|a| a.validate().map(|_| a))
                    .with_context(|| format!("job {}", job.id))?;
                b.push(job);
            }
        }
        let mut eval_ids = Vec::new();
        if c.eval.enabled {
            if c.eval.base {
                let mut deps: Vec<String> = Vec::new();
                for d in &set_datasets {
                    deps.extend(sets_job.get(d).cloned().unwrap_or_default());
                }
                for &n in &ns {
                    let id = format!("eval-base/N{n}");
                    let kind = JobKind::EvalBase {
                        num_train_examples: n,
                    };
                    crate::jobs::eval_base_args(c, n)
                        .and_then(|a| a.validate().map(|_| a))
                        .with_context(|| format!("job {id}"))?;
                    b.push(Job {
                        id: id.clone(),
                        stage: Stage::Eval,
                        kind,
                        deps: deps.clone(),
                        uses_model: true,
                        implicit: false,
                    });
                    eval_ids.push(id);
                }
            }
            for (p, run, imp) in &train_jobs {
                if *imp {
                    continue;
                }
                let id = format!("eval/{}/run{run}", p.key());
                let mut deps = vec![train_id(p, *run)];
                for d in c
                    .eval
                    .eval_datasets
                    .iter()
                    .chain(&c.eval.icl_source_datasets)
                {
                    deps.extend(sets_job.get(d).cloned().unwrap_or_default());
                }
                dedup(&mut deps);
                b.push(Job {
                    id: id.clone(),
                    stage: Stage::Eval,
                    kind: JobKind::EvalRun {
                        point: p.clone(),
                        run: *run,
                    },
                    deps,
                    uses_model: true,
                    implicit: false,
                });
                eval_ids.push(id);
            }
        }
        if c.report.enabled && report_available() && !eval_ids.is_empty() {
            b.push(Job {
                id: "report".into(),
                stage: Stage::Report,
                kind: JobKind::Report,
                deps: eval_ids,
                uses_model: false,
                implicit: false,
            });
        } else if c.report.enabled && !report_available() {
            b.notes.push(
                "report: left out (the ia2-report component is not available in this build)".into(),
            );
        }
        let mut plan = Plan {
            config: c.clone(),
            jobs: b.jobs,
            notes: b.notes,
            index: HashMap::new(),
        };
        plan.reindex()?;
        Ok(plan)
    }

    /// Rebuilds the id index and checks that every dependency exists and comes earlier.
    pub fn reindex(&mut self) -> Result<()> {
        self.index = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.id.clone(), i))
            .collect();
        for (i, j) in self.jobs.iter().enumerate() {
            for d in &j.deps {
                match self.index.get(d) {
                    Some(&k) if k < i => {}
                    Some(_) => bail!("plan: {} depends on the later job {d}", j.id),
                    None => bail!("plan: {} depends on the unknown job {d}", j.id),
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.index.get(id).map(|&i| &self.jobs[i])
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Reads `DIR/plan.json`.
    pub fn read(dir: &std::path::Path) -> Result<Plan> {
        let path = dir.join(PLAN_FILE);
        let mut plan: Plan = ia2_data::io::read_json(&path).with_context(|| {
            format!(
                "{} is not a sweep directory (no readable {PLAN_FILE})",
                dir.display()
            )
        })?;
        plan.reindex()?;
        Ok(plan)
    }

    /// Writes `DIR/plan.json` (atomically).
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        ia2_data::io::write_json_atomic(&dir.join(PLAN_FILE), self)
    }

    /// Jobs per stage.
    pub fn counts(&self) -> BTreeMap<Stage, usize> {
        let mut m = BTreeMap::new();
        for j in &self.jobs {
            *m.entry(j.stage).or_insert(0) += 1;
        }
        m
    }
}

pub const PLAN_FILE: &str = "plan.json";

fn train_id(p: &Point, run: usize) -> String {
    format!("train/{}/run{run}", p.key())
}

fn teacher_job(p: &Point, run: usize) -> (String, JobKind) {
    let dist = p.teacher_distributions();
    let mut id = format!(
        "teacher/{}/T{}/N{}",
        p.dataset, p.num_generated_tokens, p.num_train_examples
    );
    if let Some(l) = p.ldr {
        // a2t with ground-truth labels reads the regular file (and needs no teacher).
        id.push_str(&format!("/ldr{}-{}-{}", l.n, l.m, l.k));
    }
    if let Some(k) = dist {
        id.push_str(&format!("/dist-{k}"));
    }
    id.push_str(&format!("/run{run}"));
    (
        id,
        JobKind::Teacher {
            dataset: p.dataset.clone(),
            num_generated_tokens: p.num_generated_tokens,
            num_train_examples: p.num_train_examples,
            ldr: p.ldr,
            distributions: dist,
            run,
        },
    )
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

#[derive(Default)]
struct Builder {
    jobs: Vec<Job>,
    ids: std::collections::HashSet<String>,
    notes: Vec<String>,
}

impl Builder {
    fn has(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Adds a job unless one with the same id exists (equal points of different grid values).
    fn push(&mut self, job: Job) {
        if self.ids.insert(job.id.clone()) {
            self.jobs.push(job);
        }
    }
}
