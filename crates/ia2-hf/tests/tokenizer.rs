mod common;

use ia2_hf::{GenerationConfig, ModelConfig, TokenIds, Tokenizer, Weights};

fn fixture_texts(name: &str) -> Option<Vec<String>> {
    let p = common::shared()?
        .join("fixtures")
        .join(name)
        .join("FIXTURE.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    Some(
        v["texts"]
            .as_array()?
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
    )
}

fn check_fixture_cases(name: &str) {
    let Some(dir) = common::fixture_model(name) else {
        return;
    };
    let texts = fixture_texts(name).expect("FIXTURE.json texts");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let cases = Weights::open_file(dir.parent().unwrap().join("cases.safetensors")).unwrap();
    assert_eq!(texts.len(), 3);
    for (i, text) in texts.iter().enumerate() {
        let (expected, _) = cases.get_i64(&format!("case{i}.input_ids")).unwrap();
        let ids = tok.encode(text, true).unwrap();
        let ids64: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        assert_eq!(ids64, expected, "{name} case{i}");
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            *text,
            "{name} case{i} decode"
        );
    }
}

#[test]
fn qwen3_tiny_matches_fixture_input_ids() {
    check_fixture_cases("qwen3-tiny");
}

#[test]
fn llama_tiny_matches_fixture_input_ids_with_bos() {
    check_fixture_cases("llama-tiny");
    let Some(dir) = common::fixture_model("llama-tiny") else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let with = tok.encode("Label:", true).unwrap();
    let without = tok.encode("Label:", false).unwrap();
    assert_eq!(with[0], 0);
    assert_eq!(&with[1..], &without[..]);
    assert_eq!(tok.token_to_id("<|begin_of_text|>"), Some(0));
    assert_eq!(tok.id_to_token(1).as_deref(), Some("<|end_of_text|>"));
    let s = tok.special_tokens();
    assert_eq!(s.bos, Some(("<|begin_of_text|>".to_string(), 0)));
    assert_eq!(s.eos, Some(("<|end_of_text|>".to_string(), 1)));
    assert_eq!(s.pad, None);
    assert!(tok.adds_bos_token());
    // decode keeps special tokens unless asked to skip them
    assert!(
        tok.decode(&with, false)
            .unwrap()
            .starts_with("<|begin_of_text|>")
    );
}

#[test]
fn qwen3_tiny_special_tokens_no_bos() {
    let Some(dir) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(
        tok.encode("Label:", true).unwrap(),
        tok.encode("Label:", false).unwrap()
    );
    let s = tok.special_tokens();
    assert_eq!(s.bos, None);
    assert!(!tok.adds_bos_token());
    assert_eq!(s.eos.as_ref().map(|e| e.0.as_str()), Some("<|endoftext|>"));
    assert!(tok.vocab_size() <= 1024);
}

#[test]
fn real_qwen3_tokenizer() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = shared.join("tokenizers/qwen3");
    if !dir.join("tokenizer.json").is_file() {
        eprintln!("NOTICE: {} absent; skipping", dir.display());
        return;
    }
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(151643));
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(151644));
    let text = "Text:a gripping, funny and moving film\nLabel: 1";
    let ids = tok.encode(text, true).unwrap();
    assert_eq!(ids, tok.encode(text, false).unwrap(), "Qwen adds no BOS");
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    // special tokens in text are recognised as single ids
    let ids = tok.encode("<|im_start|>user", true).unwrap();
    assert_eq!(ids[0], 151644);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user");
    // this copy is the instruct tokenizer: eos <|im_end|>, pad <|endoftext|>
    assert_eq!(tok.special_tokens().eos.as_ref().map(|e| e.1), Some(151645));
    assert_eq!(tok.special_tokens().pad.as_ref().map(|e| e.1), Some(151643));
    assert_eq!(tok.special_tokens().bos, None);
}

#[test]
fn tokenizer_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("not found"),
        "{e}"
    );
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let e = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("cannot load"),
        "{e}"
    );
    // tokenizer_config naming a token the vocabulary lacks
    let Some(fixture) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    std::fs::copy(
        fixture.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": {"content": "<|nope|>"}}"#,
    )
    .unwrap();
    let e = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("eos_token") && e.contains("<|nope|>") && e.contains("tokenizer_config.json"),
        "{e}"
    );
    // AddedToken dict form resolves
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": {"content": "<|endoftext|>", "special": true}, "pad_token": "<|endoftext|>", "bos_token": null}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    let s = tok.special_tokens();
    assert_eq!(s.eos, s.pad);
    assert!(s.eos.is_some() && s.bos.is_none());
}

#[test]
fn generation_config_merge_priority() {
    let gen_ = TokenIds {
        bos: None,
        eos: Some(vec![7, 8]),
        pad: None,
    };
    let cfg = TokenIds {
        bos: Some(1),
        eos: Some(vec![2]),
        pad: None,
    };
    let tok = TokenIds {
        bos: Some(9),
        eos: Some(vec![3]),
        pad: Some(4),
    };
    let g = GenerationConfig::merge(&gen_, &cfg, &tok);
    assert_eq!(
        g,
        GenerationConfig {
            eos_token_ids: vec![7, 8],
            pad_token_id: Some(4),
            bos_token_id: Some(1)
        }
    );
    // pad falls back to the first eos
    let g = GenerationConfig::merge(&gen_, &cfg, &TokenIds::default());
    assert_eq!(g.pad_token_id, Some(7));
    // empty eos lists fall through to the next source
    let g = GenerationConfig::merge(
        &TokenIds {
            eos: Some(vec![]),
            ..Default::default()
        },
        &TokenIds::default(),
        &tok,
    );
    assert_eq!(g.eos_token_ids, vec![3]);
    let g = GenerationConfig::merge(
        &TokenIds::default(),
        &TokenIds::default(),
        &TokenIds::default(),
    );
    assert_eq!(g, GenerationConfig::default());
}

#[test]
fn generation_config_from_fixtures() {
    for (name, eos, bos) in [("qwen3-tiny", 0u32, None), ("llama-tiny", 1, Some(0u32))] {
        let Some(dir) = common::fixture_model(name) else {
            return;
        };
        let config = ModelConfig::from_dir(&dir).unwrap();
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let g = GenerationConfig::load(&dir, &config, Some(&tok)).unwrap();
        assert_eq!(g.eos_token_ids, vec![eos], "{name}");
        assert_eq!(g.pad_token_id, Some(eos), "{name}: pad falls back to eos");
        assert_eq!(g.bos_token_id, bos, "{name}");
        let m = ia2_hf::HfModelDir::open(&dir).unwrap();
        assert_eq!(m.generation, g);
        assert_eq!(m.config, config);
    }
    // generation_config.json wins over config.json
    let Some(fixture) = common::fixture_model("llama-tiny") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [1, 5], "pad_token_id": 3, "bos_token_id": null}"#,
    )
    .unwrap();
    let config = ModelConfig::from_dir(&fixture).unwrap();
    let g = GenerationConfig::load(dir.path(), &config, None).unwrap();
    assert_eq!(
        g,
        GenerationConfig {
            eos_token_ids: vec![1, 5],
            pad_token_id: Some(3),
            bos_token_id: Some(0)
        }
    );
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": "x"}"#,
    )
    .unwrap();
    let e = GenerationConfig::load(dir.path(), &config, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("eos_token_id"),
        "{e}"
    );
}

/// A truncated or garbled tokenizer.json is an error naming the file, never a panic inside the tokenizers
/// crate (which used to exit with 101).
#[test]
fn truncated_tokenizer_is_an_error_not_a_panic() {
    let Some(fixture) = common::fixture_model("qwen3-tiny") else {
        return;
    };
    let full = std::fs::read(fixture.join("tokenizer.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    for cut in [1, 10, full.len() / 3, full.len() / 2, full.len() - 2] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let got = std::panic::catch_unwind(|| Tokenizer::from_dir(dir.path()));
        let e = got
            .unwrap_or_else(|_| panic!("cut at {cut}: panicked"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("not valid JSON"),
            "cut at {cut}: {e}"
        );
    }
    // Valid JSON, wrong structure.
    std::fs::write(&path, r#"{"model": {"type": "BPE", "vocab": 3}}"#).unwrap();
    let e = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

/// The incremental stop-string check stops at the same token as decoding the whole continuation every
/// step, on byte-level BPE text with multi-byte characters, spaces and newlines.
#[test]
fn incremental_stop_strings_agree_with_full_decoding() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = shared.join("tokenizers/qwen3");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let texts = [
        "Label: positive\n\nText: next",
        "naïve café — ünïcödé 東京タワー\n\nQ:",
        "x\n \n\n",
        "The answer is 42.\n\nQuestion: 7?",
        "no stop here at all, only words and 😀 emoji",
        "Label:<|endoftext|> after\n\n",
    ];
    let stops = vec!["\n\n".to_string(), "Q:".to_string(), "😀".to_string()];
    for text in texts {
        let ids = tok.encode(text, false).unwrap();
        let mut inc = ia2_hf::StopStrings::new(&stops, 2);
        let mut want = None;
        let mut got = None;
        for n in 1..=ids.len() {
            let full = tok.decode(&ids[..n], true).unwrap();
            if want.is_none() && stops.iter().any(|s| full.contains(s.as_str())) {
                want = Some(n);
            }
            // Row 1, so that rows are independent.
            if got.is_none() && inc.reached(&tok, 1, &ids[..n]).unwrap() {
                got = Some(n);
            }
        }
        assert_eq!(got, want, "{text:?}");
    }
    assert!(ia2_hf::StopStrings::new(&[String::new()], 1).is_empty());
}
