//! Does all-MiniLM-L6-v2 + `SimilarityThreshold::DEFAULT` tell paraphrases from look-alikes?
//!
//! Runs the hand-labelled pairs in `tests/data/paraphrase_pairs.jsonl` (fixed; never tuned to
//! the model) through the cache's real decision, `SimilarityThreshold::accepts` (the cosine bar,
//! then the lexical check `tollgate_types::semantic_match::compatible`), and prints with
//! `--nocapture` precision / recall / F1 for cosine alone and cosine + compatible, a sweep of
//! bars, and the default's errors. For a cache, a false positive is a wrong answer served, a
//! false negative only a missed saving: hence precision of at least 0.95 is the goal and recall
//! only a floor of 0.15. Four more sets of 120 pairs follow (`_fresh`, `_unseen`, `_final`, `_check`), each
//! written by a helper who saw none of the other sets, the rules or the model's scores, each
//! first run after the design it measured was committed; see the tests at the end.
//!
//! The lexical rules were designed by reading the even lines of the file only (DEV, 0-based
//! line index); the odd lines (HELD-OUT) were not looked at until the rules and the default
//! were fixed. Figures are printed for both halves and for ALL, so in-sample optimism shows.

pub mod common;

use std::path::Path;

use common::{dot, load_model};
use serde::Deserialize;
use tollgate_types::cache_rule::SimilarityThreshold;
use tollgate_types::semantic_match::conflict;

/// What the tests assert at the default, on the first set (ALL) and on the fifth (CHECK). The
/// default puts precision first: a false positive serves a wrong answer, a false negative only
/// misses a saving; at 0.87 / 0.94 it catches about a quarter to two thirds of paraphrases,
/// depending on how freely they are reworded.
const REQUIRED_PRECISION: f64 = 0.95;
const REQUIRED_RECALL: f64 = 0.15;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    a: String,
    b: String,
    paraphrase: bool,
    kind: String,
}

struct Scored {
    line: usize,
    pair: Pair,
    sim: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Even lines: the rules were designed looking at these.
    Dev,
    /// Odd lines: not looked at while designing.
    HeldOut,
    All,
}

impl Split {
    const EACH: [Self; 3] = [Self::Dev, Self::HeldOut, Self::All];

    fn contains(self, line: usize) -> bool {
        match self {
            Self::Dev => line.is_multiple_of(2),
            Self::HeldOut => !line.is_multiple_of(2),
            Self::All => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Dev => "DEV",
            Self::HeldOut => "HELD-OUT",
            Self::All => "ALL",
        }
    }

    fn of(line: usize) -> Self {
        if line.is_multiple_of(2) { Self::Dev } else { Self::HeldOut }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn precision(self) -> f64 {
        if self.tp + self.fp == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fp) as f64 }
    }
    fn recall(self) -> f64 {
        if self.tp + self.fn_ == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fn_) as f64 }
    }
    fn f1(self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
    fn prf(self) -> String {
        format!("{:.3} {:.3} {:.3}", self.precision(), self.recall(), self.f1())
    }
}

/// How a pair is decided: by the cosine bar alone, or as the cache does (bar + `compatible`).
#[derive(Debug, Clone, Copy)]
enum Decision {
    Cosine,
    Guarded,
}

impl Decision {
    fn predicts(self, t: &SimilarityThreshold, s: &Scored) -> bool {
        match self {
            Self::Cosine => s.sim >= t.for_pair(&s.pair.a, &s.pair.b),
            Self::Guarded => t.accepts(&s.pair.a, &s.pair.b, s.sim),
        }
    }
}

fn evaluate(scored: &[Scored], split: Split, t: &SimilarityThreshold, decision: Decision) -> Counts {
    let mut c = Counts::default();
    for s in scored.iter().filter(|s| split.contains(s.line)) {
        match (decision.predicts(t, s), s.pair.paraphrase) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, true) => c.fn_ += 1,
            (false, false) => {}
        }
    }
    c
}

#[expect(clippy::panic, reason = "a test helper: a bad data file fails the test")]
fn load_pairs(file: &str) -> Vec<Pair> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
        .collect()
}

#[expect(clippy::unwrap_used, reason = "a test helper: a model error fails the test")]
fn score(pairs: Vec<Pair>) -> Vec<Scored> {
    let model = load_model();
    pairs
        .into_iter()
        .enumerate()
        .map(|(line, pair)| {
            let v = model.embed_batch(&[pair.a.as_str(), pair.b.as_str()]).unwrap();
            Scored { line, sim: dot(&v[0], &v[1]), pair }
        })
        .collect()
}

fn with_bars(long: f32, delta: f32) -> SimilarityThreshold {
    SimilarityThreshold {
        threshold: long,
        short_threshold: (long + delta).min(1.0),
        ..SimilarityThreshold::DEFAULT
    }
}

#[test]
fn default_threshold_is_precise_on_the_paraphrase_set() {
    let scored = score(load_pairs("paraphrase_pairs.jsonl"));
    eprintln!();
    for split in Split::EACH {
        let n = scored.iter().filter(|s| split.contains(s.line)).count();
        let pos = scored.iter().filter(|s| split.contains(s.line) && s.pair.paraphrase).count();
        eprintln!("{:<9} {n:3} pairs: {pos} paraphrases, {} look-alikes", split.name(), n - pos);
    }

    let default = SimilarityThreshold::DEFAULT;
    eprintln!(
        "\nDEFAULT {{ threshold: {}, short_threshold: {}, short_max_words: {} }}  (P R F1, tp/fp/fn)",
        default.threshold, default.short_threshold, default.short_max_words
    );
    eprintln!("{:<20} | {:<26} | {:<26} | {:<26}", "", "DEV", "HELD-OUT", "ALL");
    for (label, decision) in [("cosine alone", Decision::Cosine), ("cosine + compatible", Decision::Guarded)]
    {
        let mut line = format!("{label:<20}");
        for split in Split::EACH {
            let c = evaluate(&scored, split, &default, decision);
            line.push_str(&format!(" | {} {:>2}/{:>2}/{:>2}", c.prf(), c.tp, c.fp, c.fn_));
        }
        eprintln!("{line}");
    }

    // The sweep, cosine + compatible. The DEV columns are the ones a default may be picked from.
    for delta in [0.05_f32, 0.07] {
        eprintln!(
            "\nsweep, cosine + compatible, short bar = long + {delta:.2} (short = at most {} words)",
            default.short_max_words
        );
        eprintln!(
            " long | DEV P     R     F1    | HELD-OUT P R     F1    | ALL P     R     F1    | cosine alone ALL P R"
        );
        for step in 0..=27 {
            let t = with_bars(0.70 + step as f32 * 0.01, delta);
            let [dev, held, all] = Split::EACH.map(|split| evaluate(&scored, split, &t, Decision::Guarded));
            let cos = evaluate(&scored, Split::All, &t, Decision::Cosine);
            eprintln!(
                " {:.2} | {}   | {}        | {}   | {:.3} {:.3}",
                t.threshold,
                dev.prf(),
                held.prf(),
                all.prf(),
                cos.precision(),
                cos.recall()
            );
        }
    }
    // What DEV alone would pick: highest recall with precision >= 0.95 there, and at the bar one
    // step below too (a margin against one flipped pair).
    let mut best: Option<(SimilarityThreshold, Counts)> = None;
    let mut dev_floor = 1.0_f64;
    for delta in [0.05_f32, 0.07] {
        for step in 1..=27 {
            let t = with_bars(0.70 + step as f32 * 0.01, delta);
            let below = with_bars(t.threshold - 0.01, delta);
            let c = evaluate(&scored, Split::Dev, &t, Decision::Guarded);
            dev_floor = dev_floor.min(c.precision());
            if c.precision() >= 0.95
                && evaluate(&scored, Split::Dev, &below, Decision::Guarded).precision() >= 0.95
                && best.is_none_or(|(_, b)| c.recall() > b.recall())
            {
                best = Some((t, c));
            }
        }
    }
    if let Some((t, c)) = best {
        eprintln!(
            "\nDEV's pick by that rule: long {:.2}, short {:.2}: DEV P {:.3} R {:.3}; lowest DEV precision \
             over the sweep {dev_floor:.3} (the rules were designed on DEV, so its precision is in-sample)",
            t.threshold,
            t.short_threshold,
            c.precision(),
            c.recall()
        );
    }

    eprintln!("\nlook-alikes above the bar at the default, by what stopped them:");
    let mut stopped: Vec<(Split, &str, &Scored)> = Vec::new();
    for s in scored.iter().filter(|s| !s.pair.paraphrase && s.sim >= default.for_pair(&s.pair.a, &s.pair.b)) {
        let why = conflict(&s.pair.a, &s.pair.b).map_or("NOTHING (false positive)", |c| c.as_str());
        stopped.push((Split::of(s.line), why, s));
    }
    stopped.sort_by(|x, y| x.1.cmp(y.1).then(x.2.line.cmp(&y.2.line)));
    for (split, why, s) in &stopped {
        eprintln!(
            "  {why:<24} {:<8} {:.3} [{}] {:?} / {:?}",
            split.name(),
            s.sim,
            s.pair.kind,
            s.pair.a,
            s.pair.b
        );
    }
    eprintln!("paraphrases above the bar rejected by compatible at the default:");
    for s in scored.iter().filter(|s| s.pair.paraphrase && s.sim >= default.for_pair(&s.pair.a, &s.pair.b)) {
        if let Some(c) = conflict(&s.pair.a, &s.pair.b) {
            eprintln!(
                "  {:<10} {:<8} {:.3} [{}] {:?} / {:?}",
                c.as_str(),
                Split::of(s.line).name(),
                s.sim,
                s.pair.kind,
                s.pair.a,
                s.pair.b
            );
        }
    }
    let mut kinds: Vec<&str> =
        scored.iter().filter(|s| s.pair.paraphrase).map(|s| s.pair.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    eprintln!("recall by kind at the default (cosine + compatible, ALL):");
    for kind in kinds {
        let of_kind: Vec<&Scored> =
            scored.iter().filter(|s| s.pair.paraphrase && s.pair.kind == kind).collect();
        let hit = of_kind.iter().filter(|s| default.accepts(&s.pair.a, &s.pair.b, s.sim)).count();
        eprintln!("  {kind:<16} {hit}/{}", of_kind.len());
    }

    let all = evaluate(&scored, Split::All, &default, Decision::Guarded);
    assert!(
        all.precision() >= REQUIRED_PRECISION,
        "precision {:.3} < {REQUIRED_PRECISION} on ALL at the default",
        all.precision()
    );
    assert!(
        all.recall() >= REQUIRED_RECALL,
        "recall {:.3} < {REQUIRED_RECALL} on ALL at the default",
        all.recall()
    );
}

/// The second set (`tests/data/paraphrase_pairs_fresh.jsonl`): written by someone who had not
/// seen the first set, the rules or the model's scores. Its first measurement (precision 0.900)
/// led to four general rule changes, so its figures are in-sample now; printed only.
#[test]
fn default_threshold_on_the_second_set() {
    report("FRESH", &score(load_pairs("paraphrase_pairs_fresh.jsonl")));
}

/// The third set (`tests/data/paraphrase_pairs_unseen.jsonl`), written like the second and
/// first run after the rules were committed: precision 0.857 (24 tp / 4 fp). Its false
/// positives (a changed tone or length qualifier after a shared opening) led to one more rule,
/// so it is in-sample now too; printed only.
#[test]
fn default_threshold_on_the_third_set() {
    report("UNSEEN", &score(load_pairs("paraphrase_pairs_unseen.jsonl")));
}

/// The fourth set (`tests/data/paraphrase_pairs_final.jsonl`), written like the others and first
/// run after every rule was committed: precision 0.900 (27 tp / 3 fp) at the old default 0.80 /
/// 0.87, recall 0.491. Its false positives were not lexical (same subject, another question;
/// another length) and the four sets together chose the new default bar (see
/// `SimilarityThreshold::DEFAULT`), so it is in-sample for the bar; printed only.
#[test]
fn default_threshold_on_the_fourth_set() {
    report("FINAL", &score(load_pairs("paraphrase_pairs_final.jsonl")));
}

/// The fifth set (`tests/data/paraphrase_pairs_check.jsonl`), written like the others and first
/// run after the rules and the default bar were committed: the honest estimate of the default
/// on text the design never saw. Nothing may be tuned on it. Asserts the requirement.
#[test]
fn default_threshold_on_the_check_set() {
    let scored = score(load_pairs("paraphrase_pairs_check.jsonl"));
    let c = report("CHECK", &scored);
    assert!(
        c.precision() >= REQUIRED_PRECISION,
        "precision {:.3} < {REQUIRED_PRECISION} on CHECK",
        c.precision()
    );
    assert!(c.recall() >= REQUIRED_RECALL, "recall {:.3} < {REQUIRED_RECALL} on CHECK", c.recall());
}

/// Prints a set's figures at the default, a sweep, and the errors; returns the default's counts
/// (cosine + compatible).
fn report(name: &str, scored: &[Scored]) -> Counts {
    let default = SimilarityThreshold::DEFAULT;
    let pos = scored.iter().filter(|s| s.pair.paraphrase).count();
    eprintln!("\n{name} {} pairs: {pos} paraphrases, {} look-alikes", scored.len(), scored.len() - pos);
    for (label, decision) in [("cosine alone", Decision::Cosine), ("cosine + compatible", Decision::Guarded)]
    {
        let c = evaluate(scored, Split::All, &default, decision);
        eprintln!("  {label:<20} P R F1 {}  tp/fp/fn {}/{}/{}", c.prf(), c.tp, c.fp, c.fn_);
    }
    eprintln!(" long | {name} P R F1 (cosine + compatible, short bar = long + 0.07)");
    for step in 0..=20 {
        let t = with_bars(0.75 + step as f32 * 0.01, 0.07);
        eprintln!(" {:.2} | {}", t.threshold, evaluate(scored, Split::All, &t, Decision::Guarded).prf());
    }
    eprintln!("false positives at the default:");
    for s in scored.iter().filter(|s| !s.pair.paraphrase && default.accepts(&s.pair.a, &s.pair.b, s.sim)) {
        eprintln!("  {:.3} [{}] {:?} / {:?}", s.sim, s.pair.kind, s.pair.a, s.pair.b);
    }
    eprintln!("look-alikes above the bar stopped by compatible:");
    for s in scored.iter().filter(|s| !s.pair.paraphrase && s.sim >= default.for_pair(&s.pair.a, &s.pair.b)) {
        if let Some(c) = conflict(&s.pair.a, &s.pair.b) {
            eprintln!("  {:<24} {:.3} [{}] {:?} / {:?}", c.as_str(), s.sim, s.pair.kind, s.pair.a, s.pair.b);
        }
    }
    eprintln!("paraphrases missed at the default:");
    for s in scored.iter().filter(|s| s.pair.paraphrase && !default.accepts(&s.pair.a, &s.pair.b, s.sim)) {
        let why = conflict(&s.pair.a, &s.pair.b).map_or("below the bar", |c| c.as_str());
        eprintln!("  {why:<24} {:.3} [{}] {:?} / {:?}", s.sim, s.pair.kind, s.pair.a, s.pair.b);
    }
    evaluate(scored, Split::All, &default, Decision::Guarded)
}
