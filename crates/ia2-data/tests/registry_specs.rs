//! The registry: names, lookup, remap tables, templates and answer parsers.

use ia2_data::registry::{
    AnswerParser, DatasetId, HmathSubset, Labels, REMAP_VOCAB, Template, remap_tokens,
};

#[test]
fn every_name_round_trips_and_is_unique() {
    let all = DatasetId::all();
    assert_eq!(all.len(), 11 + HmathSubset::ALL.len());
    let mut names: Vec<String> = all.iter().map(|d| d.name()).collect();
    for (d, n) in all.iter().zip(&names) {
        assert_eq!(DatasetId::parse(n).unwrap(), *d);
        assert_eq!(d.spec().id, *d);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len());
    assert_eq!(
        DatasetId::parse("hmath_algebra").unwrap(),
        DatasetId::Hmath(HmathSubset::Algebra)
    );
    assert!(DatasetId::parse("hmath").is_err());
}

#[test]
fn remap_tables_match_the_seed() {
    // data.md: 2 labels {0: apple, 1: Friday}; 4 add {2: banana, 3: Saturday}; 8 add Thursday, Sunday,
    // Wednesday, Monday.
    let t = |n| remap_tokens(n, &mut ia2_rng::RandomState::new(42));
    assert_eq!(t(2), ["apple", "Friday"]);
    assert_eq!(t(4), ["apple", "Friday", "banana", "Saturday"]);
    assert_eq!(
        t(8),
        [
            "apple",
            "Friday",
            "banana",
            "Saturday",
            "Thursday",
            "Sunday",
            "Wednesday",
            "Monday"
        ]
    );
    assert_eq!(REMAP_VOCAB.len(), 9);
    assert_eq!(DatasetId::SciqRemap.spec().remap_table().unwrap(), t(4));
    assert_eq!(DatasetId::QascRemap.spec().remap_table().unwrap(), t(8));
    assert!(DatasetId::Sst2.spec().remap_table().is_none());
}

#[test]
fn templates_labels_and_parsers() {
    let sst = DatasetId::Sst2.spec();
    assert_eq!(sst.template.render_text("hi"), "Text:hi\nLabel:");
    assert_eq!(sst.labels.count(), Some(2));
    assert_eq!(sst.max_choices_json(), serde_json::json!(2));
    let g = DatasetId::Gsm8k.spec();
    assert_eq!(g.template.render_text("q"), "Question:q\nAnswer:");
    assert_eq!(g.labels, Labels::Free);
    assert_eq!(g.max_choices_json(), serde_json::json!("free"));
    assert_eq!(DatasetId::Agnews.spec().labels.count(), Some(4));
    assert_eq!(DatasetId::Bbcnews.spec().labels.count(), Some(4));
    assert_eq!(DatasetId::QascRemap.spec().labels.count(), Some(8));
    assert_eq!(
        Template::render_choices("q", &["apple", "Friday"], &["x".into(), "y".into()]),
        "Question:q\nChoices:\n[apple]x\n[Friday]y\n\nAnswer:"
    );

    assert_eq!(AnswerParser::Label.parse(" 1 \n").unwrap(), "1");
    assert_eq!(
        AnswerParser::HashTail
            .parse("because\n#### 42 apples ")
            .unwrap(),
        "42 apples"
    );
    assert_eq!(
        AnswerParser::Boxed
            .parse("so \\boxed{\\dfrac{1}{2} } done")
            .unwrap(),
        "\\frac{1}{2}"
    );
    assert_eq!(AnswerParser::Boxed.parse("no box"), None);
    assert_eq!(AnswerParser::Gsm.parse("x\n#### 1,234").unwrap(), "1234");
    assert_eq!(AnswerParser::Gsm.parse("#### -3").unwrap(), "-3");
    assert_eq!(
        AnswerParser::Gsm.parse("it costs 5.0 then 12.50.").unwrap(),
        "12.5"
    );
    assert_eq!(
        DatasetId::parse("hmath_geometry").unwrap().spec().parser,
        AnswerParser::Boxed
    );
    assert_eq!(DatasetId::Sciqa.spec().parser, AnswerParser::HashTail);
}
