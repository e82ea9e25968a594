//! Metrics against hand-computed values: ECE (equal-count bins, remainder in the last bin), entropy,
//! top-k and label-set renormalisation (no second softmax), label-set ties, agreement, and the metrics of
//! an evaluation computed from its records.

use ia2_eval::metrics::{
    Agreement, agreement, dist_stats, ece, entropy, label_set_correct, mean_std, renormalize,
};
use ia2_eval::results::{
    MetricsKind, ModeResults, NextTokenInfo, ProbInfo, Record, compute_metrics,
};
use std::collections::BTreeMap;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn entropy_by_hand() {
    close(entropy(&[0.25; 4]), 4f64.ln());
    close(entropy(&[1.0, 0.0]), 0.0);
    // 0.5 ln 2 + 2 · 0.25 ln 4 = 1.5 ln 2
    close(entropy(&[0.5, 0.25, 0.25]), 1.5 * 2f64.ln());
}

#[test]
fn top_k_renormalisation() {
    // Top-3 probabilities 0.4, 0.2, 0.2 (0.2 of the mass elsewhere) renormalise to 0.5, 0.25, 0.25.
    let s = dist_stats(&[0.4, 0.2, 0.2]);
    close(s.confidence, 0.5);
    close(s.uncertainty, 0.5);
    close(s.entropy, 1.5 * 2f64.ln());
    assert_eq!(renormalize(&[0.0, 0.0]), vec![0.5, 0.5]);
}

#[test]
fn label_set_probabilities_get_no_second_softmax() {
    // Label probabilities 0.02 and 0.06 of the full vocabulary: renormalised 0.25 / 0.75.
    let s = dist_stats(&[0.02, 0.06]);
    close(s.confidence, 0.75);
    close(s.uncertainty, 0.25);
    close(s.entropy, -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln()));
    // The seed's softmax of probabilities would have given ~0.51.
    let seed = (0.06f64.exp()) / (0.02f64.exp() + 0.06f64.exp());
    assert!((s.confidence - seed).abs() > 0.2);
}

#[test]
fn label_set_ties_count_as_correct() {
    assert!(label_set_correct(&[0.3, 0.3, 0.1], Some(0)));
    assert!(label_set_correct(&[0.3, 0.3, 0.1], Some(1)));
    assert!(!label_set_correct(&[0.3, 0.3, 0.1], Some(2)));
    assert!(!label_set_correct(&[0.2, 0.5], Some(0)));
    assert!(label_set_correct(&[0.2, 0.5], Some(1)));
    // The gold label is not one of the labels.
    assert!(!label_set_correct(&[0.2, 0.5], None));
    assert!(!label_set_correct(&[0.2, 0.5], Some(2)));
}

#[test]
fn ece_by_hand() {
    // Fewer examples than bins: one bin. Accuracy 0.5, mean confidence 0.5.
    close(
        ece(&[0.2, 0.4, 0.6, 0.8], &[false, false, true, true], 15),
        0.0,
    );
    close(ece(&[0.2, 0.4, 0.6, 0.8], &[true; 4], 15), 0.5);
    // 15 examples, 15 bins of one: mean |correct - confidence| = (12 · 0.1 + 3 · 0.9) / 15.
    let conf = [0.9; 15];
    let correct: Vec<bool> = (0..15).map(|i| i >= 3).collect();
    close(ece(&conf, &correct, 15), (12.0 * 0.1 + 3.0 * 0.9) / 15.0);
    // 16 examples: 14 bins of one, the last bin takes the two most confident.
    // Confidences 0.05 + i/20 (i = 0..15) given out of order; correct iff i is odd.
    let mut conf = Vec::new();
    let mut correct = Vec::new();
    for i in (0..16).rev() {
        conf.push(0.05 + i as f64 / 20.0);
        correct.push(i % 2 == 1);
    }
    let mut expected = 0.0;
    for i in 0..14 {
        let c = 0.05 + i as f64 / 20.0;
        let a = if i % 2 == 1 { 1.0 } else { 0.0 };
        expected += (a - c).abs() / 16.0;
    }
    // Last bin: i = 14 (wrong), 15 (right): accuracy 0.5, confidence (0.75 + 0.80) / 2.
    expected += 2.0 / 16.0 * (0.5f64 - (0.75 + 0.80) / 2.0).abs();
    close(ece(&conf, &correct, 15), expected);
    close(ece(&[], &[], 15), 0.0);
}

#[test]
fn mean_and_population_std() {
    let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    close(m, 2.5);
    close(s, 1.25f64.sqrt());
    assert_eq!(mean_std(&[]), None);
}

#[test]
fn agreement_by_hand() {
    let with = [
        (Some("1"), true),
        (Some("0"), false),
        (None, false),
        (Some("1"), true),
    ];
    let without = [
        (Some("1"), true),
        (Some("1"), true),
        (None, false),
        (Some("0"), false),
    ];
    let a = agreement(&with, &without);
    assert_eq!(
        a,
        Agreement {
            comparable_examples: 4,
            agreements: 2,
            both_correct: 1,
            both_incorrect: 1,
            only_icl_correct: 1,
            only_without_icl_correct: 1,
        }
    );
    close(a.agreement_rate(), 50.0);
}

fn record(gold: &str, top: &[(&str, f64)], labels: &[(&str, f64)]) -> Record {
    let probs: Vec<f64> = top.iter().map(|t| t.1).collect();
    let label_probs: Vec<f64> = labels.iter().map(|l| l.1).collect();
    let gold_index = labels.iter().position(|l| l.0 == gold);
    let answer = top[0].0.trim().to_string();
    let correct = answer == gold;
    Record {
        idx: 0,
        query: "Text:x\nLabel:".into(),
        full_answer_text: gold.into(),
        parsed_answer: gold.into(),
        full_generated_text: top[0].0.into(),
        generated_answer: Some(answer),
        correct,
        prompt_tokens: 3,
        stop_reason: None,
        prob_info: Some(ProbInfo::NextToken(NextTokenInfo {
            top_k_tokens: top.iter().map(|t| t.0.to_string()).collect(),
            top_k_ids: (0..top.len() as u32).collect(),
            top_k_probs: probs.clone(),
            label_probs: labels
                .iter()
                .map(|(l, p)| (l.to_string(), *p))
                .collect::<BTreeMap<_, _>>(),
            top1: dist_stats(&probs),
            label: Some(dist_stats(&label_probs)),
            correct_top1: correct,
            correct_label_set: Some(label_set_correct(&label_probs, gold_index)),
        })),
    }
}

#[test]
fn uncertainty_metrics_of_records() {
    // With ICL: both right; without: one right (a label-set tie), one wrong.
    let with_icl = vec![
        record("1", &[("1", 0.6), ("0", 0.2)], &[("0", 0.2), ("1", 0.6)]),
        record("0", &[("0", 0.5), ("1", 0.5)], &[("0", 0.5), ("1", 0.5)]),
    ];
    let without_icl = vec![
        record("1", &[(" 0", 0.4), ("1", 0.4)], &[("0", 0.4), ("1", 0.4)]),
        record("0", &[("1", 0.9), ("0", 0.1)], &[("0", 0.1), ("1", 0.9)]),
    ];
    let m = compute_metrics(
        &ModeResults {
            with_icl,
            without_icl,
        },
        MetricsKind::NextToken { has_labels: true },
    );
    let f = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k} missing"));
    close(f("with_icl_accuracy_top1"), 100.0);
    close(f("without_icl_accuracy_top1"), 0.0);
    close(f("accuracy_delta_top1"), 100.0);
    close(f("with_icl_accuracy_label_set"), 100.0);
    // Example 1: tie between the labels counts as correct; example 2: wrong.
    close(f("without_icl_accuracy_label_set"), 50.0);
    close(f("accuracy_delta_label_set"), 50.0);
    // Top-1 confidences with ICL: 0.75 and 0.5 (renormalised top-2); one bin: |1 - 0.625|.
    close(f("with_icl_ece_top1"), 0.375);
    // Without: 0.5 (wrong) and 0.9 (wrong): |0 - 0.7|.
    close(f("without_icl_ece_top1"), 0.7);
    close(f("ece_delta_top1"), 0.375 - 0.7);
    // Label confidences without ICL: 0.5 (right: tie), 0.9 (wrong): |0.5 - 0.7|.
    close(f("without_icl_ece_label"), 0.2);
    let h = |p: &[f64]| entropy(&renormalize(p));
    close(
        f("without_icl_entropy_top1_mean"),
        (h(&[0.4, 0.4]) + h(&[0.9, 0.1])) / 2.0,
    );
    close(
        f("entropy_delta_top1"),
        (h(&[0.6, 0.2]) + h(&[0.5, 0.5])) / 2.0 - (h(&[0.4, 0.4]) + h(&[0.9, 0.1])) / 2.0,
    );
    close(f("without_icl_uncertainty_label_mean"), (0.5 + 0.1) / 2.0);
    // Agreement on the stripped top-1 answers: ("1","0") vs ("0","1").
    close(f("agreement_rate"), 0.0);
    assert_eq!(m["only_icl_correct"], 2);
    assert_eq!(m["with_icl_total_examples"], 2);
}
