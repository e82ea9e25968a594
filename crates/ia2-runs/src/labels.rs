//! `--label-type` and `--tokl-top-k` values, as recorded in `training_config.json`.

use std::fmt;
use std::str::FromStr;

/// Labels the token objectives train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelType {
    /// The base model's greedy response with ICL demos (the paper's setting).
    IclOutputs,
    /// The dataset's answer.
    GroundTruth,
}

impl LabelType {
    pub const ALL: [LabelType; 2] = [LabelType::IclOutputs, LabelType::GroundTruth];

    pub fn as_str(self) -> &'static str {
        match self {
            LabelType::IclOutputs => "icl_outputs",
            LabelType::GroundTruth => "ground_truth",
        }
    }
}

impl fmt::Display for LabelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LabelType {
    type Err = String;
    /// `icl_outputs` / `ground_truth`, also spelled with dashes.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "icl_outputs" => Ok(LabelType::IclOutputs),
            "ground_truth" => Ok(LabelType::GroundTruth),
            _ => Err(format!(
                "unknown label type {s:?}: expected icl_outputs or ground_truth"
            )),
        }
    }
}

/// `tokl` targets: the full ICL distribution or its top-k with the remaining mass spread uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TopK {
    All,
    K(usize),
}

impl FromStr for TopK {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(TopK::All);
        }
        match s.parse::<usize>() {
            Ok(k) if k > 0 => Ok(TopK::K(k)),
            _ => Err(format!("expected `all` or a positive integer, got {s:?}")),
        }
    }
}

impl fmt::Display for TopK {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopK::All => write!(f, "all"),
            TopK::K(k) => write!(f, "{k}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_types_and_top_k_round_trip() {
        for l in LabelType::ALL {
            assert_eq!(l.to_string().parse::<LabelType>().unwrap(), l);
        }
        assert_eq!(
            "ground-truth".parse::<LabelType>().unwrap(),
            LabelType::GroundTruth
        );
        assert!("gold".parse::<LabelType>().is_err());
        assert_eq!("all".parse::<TopK>().unwrap(), TopK::All);
        assert_eq!("7".parse::<TopK>().unwrap(), TopK::K(7));
        assert!("0".parse::<TopK>().is_err());
        assert_eq!(TopK::K(7).to_string(), "7");
    }
}
