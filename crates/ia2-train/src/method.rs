//! Training methods: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}`, defined with the on-disk contract
//! in [`ia2_runs::method`] and re-exported here.

pub use ia2_runs::method::*;
