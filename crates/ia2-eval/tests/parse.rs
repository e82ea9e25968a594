//! Answer parsers against tricky strings (negative numbers, commas, nested braces, missing answers), and
//! the per-dataset dispatch of `ia2-eval`.

use ia2_data::registry::AnswerParser;
use ia2_eval::parse::DatasetInfo;
use serde_json::json;

fn gsm(s: &str) -> Option<String> {
    AnswerParser::Gsm.parse(s)
}

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

#[test]
fn gsm_numbers_negative_commas_decimals() {
    assert_eq!(gsm("#### -5"), s("-5"));
    assert_eq!(gsm("The temperature fell to -3 degrees"), s("-3"));
    // A minus between digits is subtraction, not a sign.
    assert_eq!(gsm("so 10-3 = 7, then 7-5"), s("5"));
    assert_eq!(gsm("She earns (-12) dollars"), s("-12"));
    assert_eq!(gsm("The answer is 1,234."), s("1234"));
    assert_eq!(gsm("#### 1,234,567"), s("1234567"));
    // Commas that are not thousands groups separate numbers.
    assert_eq!(gsm("pick 1,2 or 12,34"), s("34"));
    assert_eq!(gsm("counts: 3, 4, 5"), s("5"));
    assert_eq!(gsm("it costs 5.0 then 12.50."), s("12.5"));
    assert_eq!(gsm("#### 007"), s("7"));
    assert_eq!(gsm("#### 0.5"), s("0.5"));
    assert_eq!(gsm("#### -0"), s("0"));
    assert_eq!(gsm("#### $1,200.50"), s("1200.5"));
    // Years and fractions are answers too (the seed skipped them).
    assert_eq!(gsm("He was born in 1990"), s("1990"));
}

#[test]
fn gsm_cascade_order_and_last_occurrence() {
    // \boxed{} first, then ####, then the answer phrases, then the last number.
    assert_eq!(gsm("Answer: 3. So \\boxed{42} and 7"), s("42"));
    assert_eq!(gsm("#### 5\nThe answer is 7"), s("5"));
    assert_eq!(gsm("Answer: 3\nmore text\nAnswer: 4\n9 apples"), s("4"));
    assert_eq!(gsm("the ANSWER IS 12 apples and 3 pears"), s("12"));
    assert_eq!(gsm("The best answer is: $18."), s("18"));
    // The marker may be followed by a line break.
    assert_eq!(gsm("Answer:\n42"), s("42"));
    // Phrase without a number: its text.
    assert_eq!(gsm("Answer: five."), s("five"));
    // The gold format of GSM8K, with calculator annotations.
    assert_eq!(
        gsm("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"),
        s("72")
    );
    // Nested braces in a box; its first number.
    assert_eq!(gsm("\\boxed{\\frac{3}{4}}"), s("3"));
    assert_eq!(gsm("\\boxed{1,000}"), s("1000"));
}

#[test]
fn gsm_missing_answers() {
    assert_eq!(gsm(""), None);
    assert_eq!(gsm("   \n "), None);
    assert_eq!(gsm("no numbers here"), None);
    assert_eq!(gsm("Answer:"), None);
    assert_eq!(gsm("####"), None);
    // An unclosed box is no box: the cascade goes on.
    assert_eq!(gsm("\\boxed{12"), s("12"));
}

#[test]
fn boxed_balances_braces() {
    let b = |x: &str| AnswerParser::Boxed.parse(x);
    assert_eq!(b("so \\boxed{\\frac{1}{2}} done"), s("\\frac{1}{2}"));
    // The seed's greedy match ran to the last `}` of the line.
    assert_eq!(b("\\boxed{5} and \\{x\\} or {y}"), s("5"));
    assert_eq!(b("\\boxed{a_{1} + \\sqrt{2}}"), s("a_{1}+\\sqrt{2}"));
    assert_eq!(b("\\boxed{\\dfrac{1}{3}}"), s("\\frac{1}{3}"));
    // The last box is the final answer.
    assert_eq!(b("first \\boxed{1}, finally \\boxed{2}"), s("2"));
    assert_eq!(b("\\boxed 7 is it"), s("7"));
    assert_eq!(b("\\boxed{unclosed"), None);
    assert_eq!(b("no box at all"), None);
    assert_eq!(b("\\boxed{x} then \\boxed{y"), s("x"));
}

#[test]
fn hash_tail_and_labels() {
    let h = |x: &str| AnswerParser::HashTail.parse(x);
    assert_eq!(h("support text\n#### mitochondria \n"), s("mitochondria"));
    assert_eq!(h("a #### b #### c"), s("c"));
    // No `####`: the whole stripped text (the seed's behaviour).
    assert_eq!(h("  cells "), s("cells"));
    let l = |x: &str| AnswerParser::Label.parse(x);
    assert_eq!(l(" 1\n\n"), s("1"));
    assert_eq!(l(""), s(""));
}

#[test]
fn dataset_dispatch() {
    let gsm8k = DatasetInfo::new("gsm8k", &json!({"max_choices": "free"})).unwrap();
    assert_eq!(gsm8k.parser, AnswerParser::Gsm);
    assert_eq!(gsm8k.gold("2+2=4\n#### 4"), "4");
    assert_eq!(gsm8k.parse("so it's -4"), s("-4"));
    let hmath = DatasetInfo::new("hmath_algebra", &json!({"max_choices": "free"})).unwrap();
    assert_eq!(hmath.parser, AnswerParser::Boxed);
    // A gold answer the parser cannot read is compared raw (stripped).
    assert_eq!(hmath.gold(" no box "), "no box");
    let sciqa = DatasetInfo::new("sciqa", &json!({"max_choices": "free"})).unwrap();
    assert_eq!(sciqa.parser, AnswerParser::HashTail);
    // Unknown dataset: classification parser, labels from its metadata.
    let toy = DatasetInfo::new(
        "toy_parity",
        &json!({"max_choices": 2, "remap_dict": {"0": "even", "1": "odd"}}),
    )
    .unwrap();
    assert_eq!(toy.parser, AnswerParser::Label);
    assert_eq!(
        toy.labels,
        Some(vec!["even".to_string(), "odd".to_string()])
    );
    assert_eq!(toy.label_index("odd"), Some(1));
    assert_eq!(toy.parse(" odd\n"), s("odd"));
    assert_eq!(toy.default_gen_tokens(), 1);
}
