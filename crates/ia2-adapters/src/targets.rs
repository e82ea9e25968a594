//! Which projections an adapter touches, resolved the way PEFT resolves `target_modules`,
//! `exclude_modules`, `layers_to_transform`, `feedforward_modules` and `rank_pattern`/`alpha_pattern`.
//!
//! Module names are those of the base causal LM, e.g. `model.layers.3.self_attn.q_proj`.

use crate::config::{Ia3Config, LayerSelector, LoraConfig, ModuleSelector};
use anyhow::{Context, Result, bail, ensure};
use ia2_model::Proj;
use regex::Regex;

/// Modules of a causal LM that an adapter could name but ia2 cannot adapt.
const OTHER_MODULES: [&str; 2] = ["lm_head", "model.embed_tokens"];

/// One adapted projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    pub layer: usize,
    pub proj: Proj,
}

impl Site {
    /// Full module name, e.g. `model.layers.0.self_attn.q_proj`.
    pub fn key(self) -> String {
        self.proj.path(self.layer)
    }
}

fn full_regex(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .with_context(|| format!("{what}: invalid regular expression `{pattern}`"))
}

/// PEFT's `check_target_module_exists` for one selector: exact name, `.`-suffix, or regex full match.
struct Matcher {
    names: Vec<String>,
    regex: Option<Regex>,
    all: bool,
}

impl Matcher {
    fn new(sel: &ModuleSelector, what: &str) -> Result<Matcher> {
        Ok(match sel {
            ModuleSelector::Names(names) => Matcher {
                names: names.clone(),
                regex: None,
                all: false,
            },
            ModuleSelector::Regex(s) if s.eq_ignore_ascii_case("all-linear") => Matcher {
                names: Vec::new(),
                regex: None,
                all: true,
            },
            ModuleSelector::Regex(s) => Matcher {
                names: Vec::new(),
                regex: Some(full_regex(s, what)?),
                all: false,
            },
        })
    }

    fn name_matches(name: &str, key: &str) -> bool {
        key == name || key.ends_with(&format!(".{name}"))
    }

    fn matches(&self, key: &str) -> bool {
        if self.all {
            return !OTHER_MODULES.contains(&key);
        }
        match &self.regex {
            Some(re) => re.is_match(key),
            None => self.names.iter().any(|n| Self::name_matches(n, key)),
        }
    }

    /// Refuses selectors that name modules ia2 cannot adapt or nothing at all.
    fn check_targets(&self, num_layers: usize, what: &str) -> Result<()> {
        let keys: Vec<String> = all_sites(num_layers).map(Site::key).collect();
        for other in OTHER_MODULES {
            ensure!(
                !self.matches(other) || self.all,
                "{what} selects `{other}`; only the decoder layers' projections \
                 (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) can be adapted"
            );
        }
        for name in &self.names {
            ensure!(
                keys.iter().any(|k| Self::name_matches(name, k)),
                "{what}: `{name}` matches no module of the model; only q_proj, k_proj, v_proj, \
                 o_proj, gate_proj, up_proj and down_proj can be adapted"
            );
        }
        Ok(())
    }
}

fn all_sites(num_layers: usize) -> impl Iterator<Item = Site> {
    (0..num_layers).flat_map(|layer| Proj::ALL.into_iter().map(move |proj| Site { layer, proj }))
}

/// Sites selected by `target_modules` minus `exclude_modules`, restricted by `layers_to_transform`
/// (list selectors only, as in PEFT).
fn select(
    target: &ModuleSelector,
    exclude: Option<&ModuleSelector>,
    layers: Option<&LayerSelector>,
    num_layers: usize,
) -> Result<Vec<Site>> {
    let include = Matcher::new(target, "target_modules")?;
    include.check_targets(num_layers, "target_modules")?;
    let exclude = exclude
        .map(|e| Matcher::new(e, "exclude_modules"))
        .transpose()?;
    if let Some(l) = layers {
        let list: &[usize] = match l {
            LayerSelector::One(i) => std::slice::from_ref(i),
            LayerSelector::Many(v) => v,
        };
        if let Some(&bad) = list.iter().find(|&&i| i >= num_layers) {
            bail!("layers_to_transform: layer {bad} does not exist (the model has {num_layers})");
        }
    }
    let in_layers = |layer: usize| match layers {
        None => true,
        Some(_) if include.regex.is_some() || include.all => true,
        Some(LayerSelector::One(i)) => layer == *i,
        Some(LayerSelector::Many(v)) => v.is_empty() || v.contains(&layer),
    };
    let sites: Vec<Site> = all_sites(num_layers)
        .filter(|s| {
            let key = s.key();
            include.matches(&key)
                && in_layers(s.layer)
                && !exclude.as_ref().is_some_and(|e| e.matches(&key))
        })
        .collect();
    ensure!(
        !sites.is_empty(),
        "target_modules {target:?} selects no module of the model"
    );
    Ok(sites)
}

/// PEFT's `get_pattern_key`: the first pattern `p` with `re.match(rf"(^|.*\.){p}$", key)`.
fn pattern_key<'a>(
    patterns: impl Iterator<Item = &'a String>,
    key: &str,
) -> Result<Option<&'a str>> {
    for p in patterns {
        let re = Regex::new(&format!("^(^|.*\\.){p}$"))
            .with_context(|| format!("invalid rank/alpha pattern `{p}`"))?;
        if re.is_match(key) {
            return Ok(Some(p.as_str()));
        }
    }
    Ok(None)
}

/// Resolved LoRA layout: one common scaling, and per site its rank.
#[derive(Debug, Clone)]
pub(crate) struct LoraPlan {
    pub scaling: f64,
    pub sites: Vec<(Site, usize)>,
}

pub(crate) fn lora_plan(c: &LoraConfig, num_layers: usize) -> Result<LoraPlan> {
    let target = c
        .target_modules
        .as_ref()
        .context("target_modules is null")?;
    let sites = select(
        target,
        c.exclude_modules.as_ref(),
        c.layers_to_transform.as_ref(),
        num_layers,
    )?;
    let mut scaling: Option<(f64, String)> = None;
    let mut out = Vec::with_capacity(sites.len());
    for site in sites {
        let key = site.key();
        let r = match pattern_key(c.rank_pattern.keys(), &key)? {
            Some(p) => c.rank_pattern[p],
            None => c.r,
        };
        let alpha = match pattern_key(c.alpha_pattern.keys(), &key)? {
            Some(p) => c.alpha_pattern[p],
            None => c.lora_alpha,
        };
        let s = c.scaling_for(r, alpha);
        match &scaling {
            None => scaling = Some((s, key)),
            Some((s0, k0)) => ensure!(
                (s - s0).abs() <= 1e-12 * s0.abs().max(1.0),
                "rank_pattern/alpha_pattern give {k0} the LoRA scaling {s0} and {key} the scaling {s}; \
                 ia2 supports one scaling per adapter"
            ),
        }
        out.push((site, r));
    }
    Ok(LoraPlan {
        scaling: scaling.map(|(s, _)| s).unwrap_or(1.0),
        sites: out,
    })
}

/// Resolved IA3 layout: per site whether it scales the input (feed-forward) or the output.
pub(crate) fn ia3_plan(c: &Ia3Config, num_layers: usize) -> Result<Vec<(Site, bool)>> {
    let target = c
        .target_modules
        .as_ref()
        .context("target_modules is null")?;
    let sites = select(target, c.exclude_modules.as_ref(), None, num_layers)?;
    let ff = match &c.feedforward_modules {
        None => None,
        Some(ModuleSelector::Regex(s)) => Some(Err(full_regex(s, "feedforward_modules")?)),
        Some(ModuleSelector::Names(n)) => Some(Ok(n)),
    };
    Ok(sites
        .into_iter()
        .map(|site| {
            let key = site.key();
            let on_input = match &ff {
                None => false,
                Some(Err(re)) => re.is_match(&key),
                // PEFT: `any(key.endswith(target_key) for target_key in feedforward_modules)`.
                Some(Ok(names)) => names.iter().any(|n| key.ends_with(n.as_str())),
            };
            (site, on_input)
        })
        .collect())
}
