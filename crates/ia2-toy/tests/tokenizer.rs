//! The word-level tokenizer: loaded by ia2's tokenizer (the `tokenizers` crate) from the written files, it
//! encodes prompts to exactly the ids training uses and decodes them back to the same text.

use ia2_rng::Generator;
use ia2_toy::task::{self, LABELS, NUM_WORDS, Split, Task};
use ia2_toy::tokenizer::{self, EOS, EOS_ID, UNK_ID, VOCAB_SIZE, encode_pairs};

fn load() -> (tempfile::TempDir, ia2_hf::Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    tokenizer::write_tokenizer(dir.path(), 192).unwrap();
    let tok = ia2_hf::Tokenizer::from_dir(dir.path()).unwrap();
    (dir, tok)
}

#[test]
fn prompts_round_trip_and_match_the_training_ids() {
    let (_dir, tok) = load();
    assert_eq!(tok.vocab_size(), VOCAB_SIZE);
    assert_eq!(tokenizer::vocab().len(), VOCAB_SIZE);
    let special = tok.special_tokens();
    assert_eq!(special.eos, Some((EOS.to_string(), EOS_ID)));
    assert_eq!(special.pad, Some((EOS.to_string(), EOS_ID)));
    assert!(!tok.adds_bos_token());

    let mut rng = Generator::new(3);
    for k in 0..=8 {
        let t = Task::sample(&mut rng, Split::Train);
        let mut pairs = t.sample_pairs(&mut rng, k + 1, &[]);
        let query = pairs.pop().unwrap();
        let text = task::prompt(&pairs, query);
        pairs.push(query);
        let ids = tok.encode(&text, true).unwrap();
        assert_eq!(ids, encode_pairs(&pairs, false), "{text:?}");
        assert_eq!(ids.len(), 3 * (k + 1) - 1);
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        // With the answer: the label is the one token after the prompt.
        let full = format!("{text}{}", LABELS[query.label]);
        assert_eq!(tok.encode(&full, true).unwrap(), encode_pairs(&pairs, true));
    }
    // Every word and label is one token, alone too.
    for w in 0..NUM_WORDS {
        assert_eq!(
            tok.encode(task::word(w), false).unwrap(),
            vec![tokenizer::word_token(w)]
        );
    }
    for (l, name) in LABELS.iter().enumerate() {
        assert_eq!(
            tok.encode(name, false).unwrap(),
            vec![tokenizer::label_token(l)]
        );
    }
}

#[test]
fn other_text_tokenizes_without_errors() {
    let (_dir, tok) = load();
    for text in [
        "Text: cat\nLabel:\n",
        "Label:alpha",
        "Text:cat\n\nText:",
        "Text",
    ] {
        let ids = tok.encode(text, true).unwrap();
        assert!(!ids.contains(&UNK_ID), "{text:?} -> {ids:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    let ids = tok.encode("Text:zebu, 42!", true).unwrap();
    assert!(
        ids.contains(&UNK_ID),
        "unknown pieces map to <unk>: {ids:?}"
    );
    assert_eq!(tok.encode("", true).unwrap(), Vec::<u32>::new());
}
