//! Training methods: `[ia3-|prompt-|prefix-]{tok,tokl,act,tna,a2t,t2a}`, parsed once and printed back the same
//! way. Nothing else in the project matches method strings.

use anyhow::{Result, bail};
use std::fmt;
use std::str::FromStr;

/// The adapter a method trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    Lora,
    Ia3,
    Prompt,
    Prefix,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 4] = [
        AdapterKind::Lora,
        AdapterKind::Ia3,
        AdapterKind::Prompt,
        AdapterKind::Prefix,
    ];

    /// Prefix of the method name (`""` for LoRA, whose methods carry no prefix).
    fn prefix(self) -> &'static str {
        match self {
            AdapterKind::Lora => "",
            AdapterKind::Ia3 => "ia3-",
            AdapterKind::Prompt => "prompt-",
            AdapterKind::Prefix => "prefix-",
        }
    }
}

/// The loss a method optimises (see training.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Cross-entropy on the target tokens (ground truth or the base model's ICL response).
    Tok,
    /// KL(ICL next-token distribution ‖ student) per response step.
    Tokl,
    /// IA2: `num_layers · MSE` between the student's and the ICL attention outputs.
    Act,
    /// `(1 − w) · MSE + w · CE` in one forward pass.
    Tna,
    /// Continue the `act` adapter with the `tok` loss.
    A2t,
    /// Continue the `tok` adapter with the `act` loss.
    T2a,
}

impl Objective {
    pub const ALL: [Objective; 6] = [
        Objective::Tok,
        Objective::Tokl,
        Objective::Act,
        Objective::Tna,
        Objective::A2t,
        Objective::T2a,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Objective::Tok => "tok",
            Objective::Tokl => "tokl",
            Objective::Act => "act",
            Objective::Tna => "tna",
            Objective::A2t => "a2t",
            Objective::T2a => "t2a",
        }
    }

    /// The loss actually computed (a2t trains with tok's, t2a with act's).
    pub fn loss(self) -> Loss {
        match self {
            Objective::Tok | Objective::A2t => Loss::Ce,
            Objective::Tokl => Loss::Kl,
            Objective::Act | Objective::T2a => Loss::Mse,
            Objective::Tna => Loss::Mixed,
        }
    }

    /// The phase-1 objective whose adapter this one continues.
    pub fn continues(self) -> Option<Objective> {
        match self {
            Objective::A2t => Some(Objective::Act),
            Objective::T2a => Some(Objective::Tok),
            _ => None,
        }
    }

    /// Whether the run's name and results depend on `--label-type`.
    pub fn uses_label_type(self) -> bool {
        matches!(
            self,
            Objective::Tok | Objective::A2t | Objective::T2a | Objective::Tokl | Objective::Tna
        )
    }
}

/// What is computed for one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Ce,
    Kl,
    Mse,
    Mixed,
}

impl Loss {
    pub fn needs_activations(self) -> bool {
        matches!(self, Loss::Mse | Loss::Mixed)
    }
}

/// An adapter and an objective, e.g. `ia3-act` or `tok` (LoRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrainingMethod {
    pub adapter: AdapterKind,
    pub objective: Objective,
}

impl TrainingMethod {
    /// All 24 methods.
    pub fn all() -> Vec<TrainingMethod> {
        AdapterKind::ALL
            .iter()
            .flat_map(|&adapter| {
                Objective::ALL
                    .iter()
                    .map(move |&objective| TrainingMethod { adapter, objective })
            })
            .collect()
    }

    /// The phase-1 method a2t / t2a continue (same adapter).
    pub fn phase_one(self) -> Option<TrainingMethod> {
        self.objective.continues().map(|objective| TrainingMethod {
            adapter: self.adapter,
            objective,
        })
    }
}

impl fmt::Display for TrainingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.adapter.prefix(), self.objective.name())
    }
}

impl FromStr for TrainingMethod {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match TrainingMethod::all()
            .into_iter()
            .find(|m| m.to_string() == s)
        {
            Some(m) => Ok(m),
            None => bail!(
                "unknown training method {s:?}: expected [ia3-|prompt-|prefix-]{{tok,tokl,act,tna,a2t,t2a}}"
            ),
        }
    }
}

impl serde::Serialize for TrainingMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for TrainingMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_and_unknown_names_fail() {
        let all = TrainingMethod::all();
        assert_eq!(all.len(), 24);
        for m in &all {
            assert_eq!(m.to_string().parse::<TrainingMethod>().unwrap(), *m);
        }
        assert_eq!(
            "ia3-a2t".parse::<TrainingMethod>().unwrap().phase_one(),
            Some("ia3-act".parse().unwrap())
        );
        assert_eq!(
            "tok".parse::<TrainingMethod>().unwrap().adapter,
            AdapterKind::Lora
        );
        assert!("lora-tok".parse::<TrainingMethod>().is_err());
        assert!("ia3".parse::<TrainingMethod>().is_err());
    }
}
