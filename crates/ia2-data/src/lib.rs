//! Datasets: the typed registry, raw-source readers, `main.json` preparation, training sets with ICL demos,
//! evaluation demo sets.

pub mod eval_demos;
pub mod io;
pub mod ldr;
pub mod prepare;
pub mod readers;
pub mod registry;
pub mod schema;
pub mod show;
pub mod splits;
pub mod stats;
pub mod train_sets;
