//! The inputs of one evaluation: the evaluation dataset's `val_examples`, each with its ICL demos drawn
//! from the demo source's held-out pool (`data/<eval>/val/<source>/{N}_{run}_d{D}.json`, built on the fly
//! when missing, exactly as `ia2 data eval-demos` builds it), and the two prompts of every example:
//! without ICL the bare question, with ICL `"\n\n".join(demos) + "\n\n" + question` (training.md).

use crate::fingerprint::sha256_file;
use crate::parse::DatasetInfo;
use anyhow::{Context, Result, bail, ensure};
use ia2_data::eval_demos::{build_eval_demos, eval_demos_path};
use ia2_data::schema::{Example, MainFile};
use ia2_data::splits::schema::{EvalDemosConfig, EvalDemosFile, TrainFile};
use ia2_data::train_sets::train_file_path;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A data file an evaluation read, with its checksum (recorded in the result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataFile {
    /// `eval_main`, `icl_source_main`, `icl_source_train`, `eval_demos`.
    pub role: String,
    pub path: String,
    pub sha256: String,
}

/// A loaded `main.json`.
#[derive(Debug)]
pub struct Dataset {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub main: MainFile,
    pub info: DatasetInfo,
}

/// The held-out pool of one training file.
#[derive(Debug, Clone)]
struct Pool {
    path: PathBuf,
    sha256: String,
    remaining: Vec<usize>,
}

/// Where the demos of an evaluation come from (resolved before anything runs).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPlan {
    pub eval_dataset: String,
    pub icl_source: String,
    pub n: usize,
    pub run: u32,
    /// The demo count asked for.
    pub requested: usize,
    /// `min(requested, N - 1, |pool|)`.
    pub demos: usize,
    pub path: PathBuf,
    /// The source's training file, when it exists (needed only to build a missing demo file).
    pub train_file: Option<PathBuf>,
    /// The input files known when planning, with their checksums: `eval_main`, `icl_source_main` (when
    /// the source differs), `icl_source_train` (when it exists). The demo file is added once loaded.
    pub inputs: Vec<DataFile>,
}

/// Loads and caches datasets and training-file pools under one data directory.
pub struct DataStore {
    data_dir: PathBuf,
    datasets: HashMap<String, Arc<Dataset>>,
    pools: HashMap<(String, usize, u32), Arc<Pool>>,
}

impl DataStore {
    pub fn new(data_dir: &Path) -> DataStore {
        DataStore {
            data_dir: data_dir.to_path_buf(),
            datasets: HashMap::new(),
            pools: HashMap::new(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `<data-dir>/<name>/main.json`, loaded once.
    pub fn dataset(&mut self, name: &str) -> Result<Arc<Dataset>> {
        if let Some(d) = self.datasets.get(name) {
            return Ok(d.clone());
        }
        let path = self.data_dir.join(name).join("main.json");
        if !path.is_file() {
            bail!(
                "dataset {name:?}: {} not found (run `ia2 data prepare --dataset {name}` first, or check --data-dir)",
                path.display()
            );
        }
        let main: MainFile = ia2_data::io::read_json(&path)?;
        let info = DatasetInfo::new(name, &main.metadata)?;
        let d = Arc::new(Dataset {
            name: name.to_string(),
            sha256: sha256_file(&path)?,
            path,
            main,
            info,
        });
        self.datasets.insert(name.to_string(), d.clone());
        Ok(d)
    }

    fn pool(&mut self, source: &str, n: usize, run: u32) -> Result<Option<Arc<Pool>>> {
        let key = (source.to_string(), n, run);
        if let Some(p) = self.pools.get(&key) {
            return Ok(Some(p.clone()));
        }
        let path = train_file_path(&self.data_dir, source, n, run, false, None);
        if !path.is_file() {
            return Ok(None);
        }
        let file: TrainFile = ia2_data::io::read_json(&path)?;
        let pool = Arc::new(Pool {
            sha256: sha256_file(&path)?,
            path,
            remaining: file.remaining_indices,
        });
        self.pools.insert(key, pool.clone());
        Ok(Some(pool))
    }

    /// Resolves the demo count and file of one evaluation without writing anything; a clear error when
    /// neither the demo file nor what builds it exists.
    pub fn plan_demos(
        &mut self,
        eval: &str,
        source: &str,
        n: usize,
        run: u32,
        requested: usize,
    ) -> Result<DemoPlan> {
        self.dataset(eval)?;
        let cap = requested.min(n.saturating_sub(1));
        let pool = self.pool(source, n, run)?;
        let demos = match &pool {
            Some(p) => cap.min(p.remaining.len()),
            None => cap,
        };
        let path = eval_demos_path(&self.data_dir, eval, source, n, run, demos);
        if pool.is_none() && !path.is_file() {
            let train = train_file_path(&self.data_dir, source, n, run, false, None);
            bail!(
                "missing demo source for evaluating {eval} with demos from {source} (N = {n}, run {run}): neither the demo file {} nor the training file {} exists (run `ia2 data train-sets --dataset {source} --num-train-examples {n} --num-runs {}` first)",
                path.display(),
                train.display(),
                run + 1
            );
        }
        let eval_ds = self.dataset(eval)?;
        let mut inputs = vec![DataFile {
            role: "eval_main".into(),
            path: eval_ds.path.display().to_string(),
            sha256: eval_ds.sha256.clone(),
        }];
        if source != eval {
            // Building the demo file needs the source's training examples.
            match self.dataset(source) {
                Ok(src) => inputs.push(DataFile {
                    role: "icl_source_main".into(),
                    path: src.path.display().to_string(),
                    sha256: src.sha256.clone(),
                }),
                Err(e) if pool.is_some() => {
                    return Err(e.context(format!(
                        "loading the ICL demo source {source:?} (needed to build {})",
                        path.display()
                    )));
                }
                // An existing demo file is enough.
                Err(_) => {}
            }
        }
        if let Some(p) = &pool {
            inputs.push(DataFile {
                role: "icl_source_train".into(),
                path: p.path.display().to_string(),
                sha256: p.sha256.clone(),
            });
        }
        Ok(DemoPlan {
            eval_dataset: eval.to_string(),
            icl_source: source.to_string(),
            n,
            run,
            requested,
            demos,
            path,
            train_file: pool.map(|p| p.path.clone()),
            inputs,
        })
    }

    /// Loads (or builds and writes) the demo file of `plan` and returns the evaluation's examples with
    /// their demos.
    pub fn eval_set(&mut self, plan: &DemoPlan, limit: Option<usize>) -> Result<EvalSet> {
        let eval = self.dataset(&plan.eval_dataset)?;
        let mut files = plan.inputs.clone();
        let mut built = false;
        // A demo file built from an older main.json (of the evaluated or the demo-source dataset) is rebuilt.
        let mains = [
            self.data_dir.join(&plan.eval_dataset).join("main.json"),
            self.data_dir.join(&plan.icl_source).join("main.json"),
        ];
        let main_refs: Vec<&Path> = mains.iter().map(PathBuf::as_path).collect();
        let stale = plan.path.is_file()
            && match ia2_runs::provenance::check_sources(&plan.path, &main_refs)? {
                ia2_runs::provenance::SourceCheck::Changed(changed) => {
                    tracing::warn!(
                        "{} was built from an older {}: rebuilding it",
                        plan.path.display(),
                        changed.join(", ")
                    );
                    true
                }
                _ => false,
            };
        let file: EvalDemosFile = if plan.path.is_file() && !stale {
            ia2_data::io::read_json(&plan.path)?
        } else {
            let source = self.dataset(&plan.icl_source)?;
            let pool = self
                .pool(&plan.icl_source, plan.n, plan.run)?
                .context("the training file disappeared after planning")?;
            let demos: Vec<Example> = pool
                .remaining
                .iter()
                .map(|&i| {
                    source.main.train_examples.get(i).cloned().with_context(|| {
                        format!(
                            "{}: remaining index {i} is outside {}'s {} train_examples",
                            pool.path.display(),
                            plan.icl_source,
                            source.main.train_examples.len()
                        )
                    })
                })
                .collect::<Result<_>>()?;
            let config = EvalDemosConfig {
                eval_dataset: plan.eval_dataset.clone(),
                icl_source: plan.icl_source.clone(),
                icl_max_demos: plan.demos,
                seed: plan.run,
                num_train_examples: Some(plan.n),
                pool_size: Some(demos.len()),
            };
            let file = build_eval_demos(
                &eval.main.val_examples,
                &demos,
                plan.demos,
                plan.run,
                config,
            );
            ia2_data::io::write_json_atomic(&plan.path, &file)?;
            ia2_runs::provenance::record_sources(&plan.path, &main_refs)?;
            tracing::info!(path = %plan.path.display(), demos = plan.demos, "built evaluation demo set");
            built = true;
            file
        };
        check_demo_file(&plan.path, &file, &eval.main.val_examples, plan.demos)?;
        files.push(DataFile {
            role: "eval_demos".into(),
            path: plan.path.display().to_string(),
            sha256: sha256_file(&plan.path)?,
        });
        let count = limit.map_or(file.examples.len(), |k| k.min(file.examples.len()));
        let examples: Vec<Example> = file.examples.into_iter().take(count).collect();
        let icl_prompts = examples
            .iter()
            .zip(&file.icl_demos)
            .map(|(e, d)| icl_prompt(d, &e.question))
            .collect();
        Ok(EvalSet {
            dataset: eval,
            examples,
            icl_prompts,
            demo_file_built: built,
            files,
        })
    }
}

/// A demo file must describe the current evaluation dataset (same questions, one demo list of `D` demos
/// per example); a stale one is an error, never silently used.
fn check_demo_file(path: &Path, file: &EvalDemosFile, val: &[Example], demos: usize) -> Result<()> {
    let stale = |why: String| {
        anyhow::anyhow!(
            "{}: {why}; the file is stale (delete it, or rebuild with `ia2 data eval-demos --force`)",
            path.display()
        )
    };
    if file.examples.len() != val.len() || file.icl_demos.len() != val.len() {
        return Err(stale(format!(
            "{} examples / {} demo lists, the evaluation dataset has {} val_examples",
            file.examples.len(),
            file.icl_demos.len(),
            val.len()
        )));
    }
    if let Some(i) = (0..val.len()).find(|&i| {
        file.examples[i].question != val[i].question || file.examples[i].answer != val[i].answer
    }) {
        return Err(stale(format!(
            "example {i} differs from the dataset's val_examples[{i}]"
        )));
    }
    if let Some(i) = file.icl_demos.iter().position(|d| d.len() != demos) {
        return Err(stale(format!(
            "example {i} has {} demos, expected {demos}",
            file.icl_demos[i].len()
        )));
    }
    ensure!(
        file.config.icl_max_demos == demos,
        "{}: config.icl_max_demos is {}, expected {demos}",
        path.display(),
        file.config.icl_max_demos
    );
    Ok(())
}

/// The ICL prompt of rendered demos (`question + answer` strings) and a question:
/// `"\n\n".join(demos) + "\n\n" + question`, or the bare question without demos.
pub fn icl_prompt(demos: &[String], question: &str) -> String {
    if demos.is_empty() {
        return question.to_string();
    }
    let mut s = demos.join("\n\n");
    s.push_str("\n\n");
    s.push_str(question);
    s
}

/// The examples of one evaluation with their ICL prompts.
#[derive(Debug)]
pub struct EvalSet {
    pub dataset: Arc<Dataset>,
    pub examples: Vec<Example>,
    /// One per example.
    pub icl_prompts: Vec<String>,
    pub demo_file_built: bool,
    pub files: Vec<DataFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icl_prompt_matches_the_data_crate() {
        let ex = |q: &str, a: &str| Example {
            idx: 0,
            question: q.into(),
            answer: a.into(),
        };
        let demos = [ex("Text:a\nLabel:", "1"), ex("Text:b\nLabel:", "0")];
        let query = ex("Text:c\nLabel:", "1");
        let rendered: Vec<String> = demos.iter().map(|d| d.as_demo()).collect();
        let refs: Vec<&Example> = demos.iter().collect();
        assert_eq!(
            icl_prompt(&rendered, &query.question),
            ia2_data::schema::icl_prompt(&refs, &query)
        );
        assert_eq!(icl_prompt(&[], "q"), "q");
    }
}
