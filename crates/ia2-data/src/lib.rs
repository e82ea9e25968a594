//! Datasets: the typed registry, raw-source readers, `main.json` preparation, training sets with ICL demos,
//! evaluation demo sets.

pub mod cli;
pub mod schema;
