//! Run directories, defined with the on-disk contract in [`ia2_runs`] and re-exported here: a run is written
//! into a temporary directory `.ia2-tmp-{pid}-{nonce}-{name}` under the run's lock and put in place at the
//! very end (atomically replacing an older run with `--force`), so a directory called `{name}` is always
//! complete; leftovers of killed runs are removed by the next start.

pub use ia2_runs::layout::{CONFIG_FILE, METRICS_FILE, STATS_FILE};
pub use ia2_runs::rundir::{ExistingRun, RunDir, RunSlot, existing_run, is_complete};
pub use ia2_runs::stats::{FinalStats, MetricsRecord, TrainLoss};
