//! Configurations: PEFT's file text, target resolution (lists, regex, all-linear, layers, patterns).

mod common;

use common::*;
use ia2_adapters::{
    Ia3Config, LayerSelector, LoraConfig, ModuleSelector, PeftConfig, PrefixTuningConfig,
    PromptTuningConfig, init_adapter, load_peft, peft_tensor_names, save_peft,
};
use ia2_model::adapter::slot;
use ia2_model::{Adapter, ModelConfig, Proj};
use std::collections::BTreeMap;

fn model_config(name: &str) -> Option<ModelConfig> {
    let dir = fixture(name)?;
    Some(ModelConfig::from_dir(dir.join("model")).unwrap())
}

fn fixture_text(model: &str, kind: &str) -> Option<String> {
    let dir = fixture(model)?;
    Some(
        std::fs::read_to_string(dir.join("adapters").join(kind).join("adapter_config.json"))
            .unwrap(),
    )
}

#[test]
fn new_configs_write_exactly_what_peft_writes() {
    for name in MODELS {
        let Some(mc) = model_config(name) else { return };
        // PEFT writes module lists from a Python set, so their order is arbitrary: take it from the file.
        let list = |kind: &str, field: &str| -> Vec<String> {
            let v: serde_json::Value =
                serde_json::from_str(&fixture_text(name, kind).unwrap()).unwrap();
            v[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()
        };
        let t = |kind: &str| list(kind, "target_modules");
        let ff = |kind: &str| list(kind, "feedforward_modules");
        let cases: Vec<(&str, PeftConfig)> = vec![
            (
                "lora",
                PeftConfig::Lora(LoraConfig::new(4, 8.0, &t("lora"))),
            ),
            (
                "lora_qkv_mlp",
                PeftConfig::Lora(LoraConfig::new(8, 16.0, &t("lora_qkv_mlp"))),
            ),
            (
                "ia3",
                PeftConfig::Ia3(Ia3Config::new(&t("ia3"), &ff("ia3"))),
            ),
            (
                "ia3_kv_ff",
                PeftConfig::Ia3(Ia3Config::new(&t("ia3_kv_ff"), &ff("ia3_kv_ff"))),
            ),
            (
                "prompt",
                PeftConfig::PromptTuning(PromptTuningConfig::new(4, &mc)),
            ),
            (
                "prefix",
                PeftConfig::PrefixTuning(PrefixTuningConfig::new(4, &mc)),
            ),
        ];
        for (kind, config) in cases {
            let text = config.to_json_string().unwrap();
            assert_eq!(text, fixture_text(name, kind).unwrap(), "{name} {kind}");
            let parsed = PeftConfig::from_json_str(&text, "x".as_ref()).unwrap();
            assert_eq!(parsed, config, "{name} {kind}: parse(write(c)) == c");
            // serde works directly too (the lead may embed configs in other JSON).
            let v = serde_json::to_value(&config).unwrap();
            assert_eq!(v["peft_type"], config.peft_type());
            assert_eq!(serde_json::from_value::<PeftConfig>(v).unwrap(), config);
        }
    }
}

fn sites(adapter: &Adapter) -> Vec<(usize, Proj, usize)> {
    match adapter {
        Adapter::Lora { pairs, .. } => pairs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i / 7, Proj::ALL[i % 7], p.a.dims()[0])))
            .collect(),
        Adapter::Ia3 { vectors } => vectors
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref()
                    .map(|v| (i / 7, Proj::ALL[i % 7], usize::from(v.on_input)))
            })
            .collect(),
        _ => vec![],
    }
}

fn scaling(a: &Adapter) -> f64 {
    match a {
        Adapter::Lora { scaling, .. } => *scaling,
        _ => panic!("not lora"),
    }
}

#[test]
fn target_selection_follows_peft() {
    let Some(mc) = model_config("qwen3-tiny") else {
        return;
    };
    let dev = device();
    let init = |c: LoraConfig| init_adapter(&PeftConfig::Lora(c), &mc, 1, &dev).unwrap();

    // Regex: full match against the module name.
    let mut c = LoraConfig::new(4, 8.0, &["unused"]);
    c.target_modules = Some(ModuleSelector::Regex(r".*\.(q|v)_proj".into()));
    let a = init(c);
    assert_eq!(sites(&a).len(), 6);
    assert!(sites(&a).iter().all(|s| matches!(s.1, Proj::Q | Proj::V)));
    let mut c = LoraConfig::new(4, 8.0, &["unused"]);
    c.target_modules = Some(ModuleSelector::Regex(
        r"model\.layers\.1\.self_attn\.q_proj".into(),
    ));
    assert_eq!(sites(&init(c)), vec![(1, Proj::Q, 4)]);

    // all-linear: every projection.
    let mut c = LoraConfig::new(2, 2.0, &["unused"]);
    c.target_modules = Some(ModuleSelector::Regex("all-linear".into()));
    assert_eq!(sites(&init(c)).len(), 3 * 7);

    // Suffix names with a parent, layers_to_transform, exclude_modules.
    let mut c = LoraConfig::new(4, 8.0, &["self_attn.q_proj", "down_proj"]);
    c.layers_to_transform = Some(LayerSelector::Many(vec![0, 2]));
    c.exclude_modules = Some(ModuleSelector::names(&["model.layers.2.mlp.down_proj"]));
    assert_eq!(
        sites(&init(c)),
        vec![(0, Proj::Q, 4), (0, Proj::Down, 4), (2, Proj::Q, 4)]
    );
    let mut c = LoraConfig::new(4, 8.0, &["v_proj"]);
    c.layers_to_transform = Some(LayerSelector::One(1));
    assert_eq!(sites(&init(c)), vec![(1, Proj::V, 4)]);

    // rank_pattern/alpha_pattern keeping one scaling; rslora scaling.
    let mut c = LoraConfig::new(8, 16.0, &["q_proj", "v_proj"]);
    c.rank_pattern = BTreeMap::from([("q_proj".to_string(), 16)]);
    c.alpha_pattern = BTreeMap::from([("model.layers.0.self_attn.q_proj".to_string(), 32.0)]);
    c.rank_pattern
        .insert("layers.1.self_attn.q_proj".to_string(), 16);
    let mut c2 = c.clone();
    c2.alpha_pattern.insert("q_proj".into(), 32.0);
    let a = init(c2.clone());
    assert_eq!(scaling(&a), 2.0);
    let ranks: Vec<usize> = sites(&a).iter().map(|s| s.2).collect();
    assert_eq!(ranks, vec![16, 8, 16, 8, 16, 8]);
    // Without the q_proj alpha, layers 1 and 2 would get scaling 1: refused.
    let err = init_adapter(&PeftConfig::Lora(c), &mc, 1, &dev).unwrap_err();
    assert!(
        format!("{err:#}").contains("one scaling per adapter"),
        "{err:#}"
    );
    let mut c = LoraConfig::new(16, 8.0, &["q_proj"]);
    c.use_rslora = true;
    assert_eq!(scaling(&init(c)), 2.0);

    // Save/load keeps patterned ranks.
    let tmp = tempfile::tempdir().unwrap();
    let config = PeftConfig::Lora(c2);
    let a = init_adapter(&config, &mc, 3, &dev).unwrap();
    save_peft(tmp.path().join("a"), &a, &config).unwrap();
    let (b, config_b) = load_peft(tmp.path().join("a"), &mc, &dev).unwrap();
    assert_eq!(config_b, config);
    assert_eq!(sites(&a), sites(&b));

    // IA3 feed-forward by suffix (PEFT's plain endswith) and by regex.
    let a = init_adapter(
        &PeftConfig::Ia3(Ia3Config::new(&["k_proj", "down_proj"], &["down_proj"])),
        &mc,
        1,
        &dev,
    )
    .unwrap();
    assert_eq!(sites(&a)[..2], [(0, Proj::K, 0), (0, Proj::Down, 1)]);
    let mut c = Ia3Config::new(&["k_proj", "down_proj"], &["x"]);
    c.feedforward_modules = Some(ModuleSelector::Regex(r".*\.k_proj".into()));
    let a = init_adapter(&PeftConfig::Ia3(c), &mc, 1, &dev).unwrap();
    assert_eq!(sites(&a)[..2], [(0, Proj::K, 1), (0, Proj::Down, 0)]);
}

#[test]
fn init_is_seeded_and_follows_peft_distributions() {
    let Some(mc) = model_config("llama-tiny") else {
        return;
    };
    let dev = device();
    let config = PeftConfig::Lora(LoraConfig::new(8, 8.0, &["q_proj", "down_proj"]));
    let a = init_adapter(&config, &mc, 5, &dev).unwrap();
    let b = init_adapter(&config, &mc, 5, &dev).unwrap();
    let c = init_adapter(&config, &mc, 6, &dev).unwrap();
    let (
        Adapter::Lora { pairs: pa, .. },
        Adapter::Lora { pairs: pb, .. },
        Adapter::Lora { pairs: pc, .. },
    ) = (&a, &b, &c)
    else {
        panic!()
    };
    let q = |p: &Vec<Option<ia2_model::adapter::LoraPair>>, proj: Proj| {
        let pair = p[slot(0, proj)].as_ref().unwrap();
        (values(pair.a.clone()).0, values(pair.b.clone()).0)
    };
    assert_eq!(q(pa, Proj::Q), q(pb, Proj::Q), "same seed, same draws");
    assert_ne!(
        q(pa, Proj::Q).0,
        q(pc, Proj::Q).0,
        "other seed, other draws"
    );
    for (proj, fan_in) in [(Proj::Q, 64usize), (Proj::Down, 160)] {
        let (av, bv) = q(pa, proj);
        let bound = 1.0 / (fan_in as f32).sqrt();
        assert!(av.iter().all(|x| x.abs() <= bound));
        let max = av.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max > 0.9 * bound,
            "uniform draws reach the bound ({max} vs {bound})"
        );
        assert!(bv.iter().all(|x| *x == 0.0), "B starts at zero");
    }
    // IA3 ones; prompt/prefix N(0, 1).
    let ia3 = init_adapter(
        &PeftConfig::Ia3(Ia3Config::new(&["v_proj"], &[] as &[&str])),
        &mc,
        1,
        &dev,
    )
    .unwrap();
    let Adapter::Ia3 { vectors } = &ia3 else {
        panic!()
    };
    let v = vectors[slot(2, Proj::V)].as_ref().unwrap();
    assert!(!v.on_input);
    assert!(values(v.scale.clone()).0.iter().all(|x| *x == 1.0));
    for config in [
        PeftConfig::PromptTuning(PromptTuningConfig::new(20, &mc)),
        PeftConfig::PrefixTuning(PrefixTuningConfig::new(20, &mc)),
    ] {
        let a = init_adapter(&config, &mc, 9, &dev).unwrap();
        assert_eq!(a.num_virtual_tokens(), 20);
        let (Adapter::Prompt { embeddings } | Adapter::Prefix { embeddings }) = &a else {
            panic!()
        };
        let (v, dims) = values(embeddings.clone());
        let want = if matches!(a, Adapter::Prompt { .. }) {
            64
        } else {
            3 * 2 * 2 * 16
        };
        assert_eq!(dims, vec![20, want]);
        let n = v.len() as f64;
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.1 && (var - 1.0).abs() < 0.1,
            "N(0,1): {mean} {var}"
        );
        assert_eq!(
            peft_tensor_names(&a, &config).unwrap(),
            vec!["prompt_embeddings"]
        );
    }
}

#[test]
fn prompt_text_init_repeats_token_embeddings() {
    let Some(f) = load("llama-tiny") else { return };
    let a = ia2_adapters::prompt_from_token_ids(&f.model, &[5, 7], 5).unwrap();
    let Adapter::Prompt { embeddings } = &a else {
        panic!()
    };
    let (v, dims) = values(embeddings.clone());
    assert_eq!(dims, vec![5, 64]);
    let (emb, _) = values(f.model.embed_tokens.clone());
    let row = |i: usize| emb[i * 64..(i + 1) * 64].to_vec();
    for (k, id) in [5, 7, 5, 7, 5].into_iter().enumerate() {
        assert_eq!(v[k * 64..(k + 1) * 64].to_vec(), row(id));
    }
    assert!(ia2_adapters::prompt_from_token_ids(&f.model, &[5000], 2).is_err());
}
