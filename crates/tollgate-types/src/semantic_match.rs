//! The second check of a semantic-cache match, after the embedding similarity: whether two
//! prompts can be the same question at all, judged from their words.
//!
//! Sentence embeddings of short texts barely move when one word that changes the question
//! changes: "convert km to miles" / "convert miles to km", "is it safe" / "is it unsafe", "15% of
//! 80" / "15% of 90", "the capital of Austria" / "... of Australia" all score as high as true
//! paraphrases. [`SimilarityThreshold::accepts`](crate::cache_rule::SimilarityThreshold::accepts)
//! therefore runs [`compatible`] once the similarity has cleared its bar, on the request path.
//!
//! The rules are general signals of "same frame, different question", never topic word lists:
//! numbers, negation, a short list of generic antonyms, swapped roles, rare tokens (proper
//! nouns, acronyms, identifiers) and a changed slot in an otherwise identical sentence. Each
//! rule errs towards "compatible" where a paraphrase could trip it, except where the two
//! prompts are otherwise word for word the same: there a changed word is the whole question.
//! A false "compatible" serves a wrong answer; a false "incompatible" only costs a cache miss,
//! so the rules may reject some paraphrases (e.g. "explain X" / "describe X" with nothing
//! else changed).
//!
//! Known gaps (measured in `tollgate-embed`'s `tests/quality.rs`): a look-alike passes when it
//! changes only symbols ("x + 3 = 7" / "x - 3 = 7"), asks another question about the same
//! subject in other words ("how do I trim my parrot's nails" / "how often should they be
//! trimmed"), or swaps a lowercase noun inside a reworded sentence; the default bar, not these
//! rules, keeps most of those out. A paraphrase is rejected when it swaps a synonym into an
//! otherwise identical sentence ("per week" / "each week") or uses another name for one thing
//! ("UK" / "British").
//!
//! Cost: about 10-20 µs for a pair of chat-sized prompts (release build), far below the
//! embedding; O(n log n) in the number of words, with a handful of allocations per prompt (one
//! buffer of stems, the token list, two sorted indexes).

use std::ops::Range;

/// Why two prompts cannot be the same question (the first rule that fired, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conflict {
    /// Both mention numbers, and not the same ones ("15% of 80" / "15% of 90").
    Number,
    /// One is negated and the other is not ("do" / "do not", "safe" / "unsafe").
    Negation,
    /// Each uses one side of a generic antonym pair the other lacks (ascending / descending).
    Antonym,
    /// The same words in swapped roles ("Celsius to Fahrenheit" / "Fahrenheit to Celsius").
    Direction,
    /// Each names something (a proper noun, acronym, identifier) absent from the other.
    Entity,
    /// Word for word the same sentence with one short slot changed or added
    /// ("a soft yolk" / "a hard yolk", "in simple terms" / "in simple terms, in Spanish").
    Slot,
}

impl Conflict {
    /// A stable label (for logs and metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Negation => "negation",
            Self::Antonym => "antonym",
            Self::Direction => "direction",
            Self::Entity => "entity",
            Self::Slot => "slot",
        }
    }
}

/// Whether prompts `a` and `b`, already close by embedding, may be answered by one answer.
pub fn compatible(a: &str, b: &str) -> bool {
    conflict(a, b).is_none()
}

/// The reason prompts `a` and `b` cannot be the same question, if their words show one.
pub fn conflict(a: &str, b: &str) -> Option<Conflict> {
    let (a, b) = (Prompt::parse(a), Prompt::parse(b));
    if !numbers_agree(&a, &b) {
        return Some(Conflict::Number);
    }
    if a.negated() != b.negated() || prefix_antonym(&a, &b) || prefix_antonym(&b, &a) {
        return Some(Conflict::Negation);
    }
    if listed_antonym(&a, &b) {
        return Some(Conflict::Antonym);
    }
    let aligned = Alignment::of(&a, &b);
    if aligned.swapped(&a, &b) || connective_swap(&a, &b) || role_changed(&a, &b) || role_changed(&b, &a) {
        return Some(Conflict::Direction);
    }
    if unmatched_rare(&a, &b) && unmatched_rare(&b, &a) {
        return Some(Conflict::Entity);
    }
    if aligned.slot_changed(&a, &b) {
        return Some(Conflict::Slot);
    }
    None
}

// === word lists ===
//
// Function words and grammar only: none of these name a topic.

/// Dropped when parsing: they never change the question ("a list" / "the list", "please").
const DROPPED: &[&str] =
    &["a", "an", "hello", "hey", "hi", "kindly", "please", "pls", "thank", "thanks", "the", "thx"];

/// Function words: not "content" when deciding whether a changed slot changes the question.
const STOPWORDS: &[&str] = &[
    "about", "also", "am", "and", "any", "are", "as", "at", "be", "been", "being", "but", "by", "can",
    "could", "did", "do", "does", "doing", "done", "for", "from", "had", "has", "have", "having", "he",
    "her", "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "may", "me",
    "might", "mine", "must", "my", "myself", "of", "on", "onto", "or", "our", "really", "s", "shall", "she",
    "should", "so", "some", "than", "that", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "us", "very", "was", "we", "were", "what", "when", "where", "which", "who", "whom",
    "whose", "why", "will", "with", "would", "you", "your", "yours",
];

/// Words skipped between a connective and the word it introduces ("to my account").
const DETERMINERS: &[&str] =
    &["any", "her", "his", "its", "my", "our", "some", "that", "their", "these", "this", "those", "your"];

/// Markers that negate their clause. "without" is not here: it is the antonym of "with", and
/// its absence does not mean "with" ("on an empty stomach" / "without food"). "non" is the
/// hyphenated prefix, split off as a word ("non-root", "non-blocking").
const NEGATIONS: &[&str] =
    &["cannot", "neither", "never", "no", "nobody", "non", "none", "nor", "not", "nothing", "nowhere"];

/// Prefixes that turn a word into its opposite ("safe" / "unsafe", "valid" / "invalid").
const NEGATING_PREFIXES: &[&str] = &["un", "in", "im", "il", "ir", "non", "dis"];

/// Generic opposites of comparison, order and operation: which end, which way, which of two
/// inverse operations. Kept short on purpose: every pair is domain-free, and a pair only
/// fires when each prompt has one side and lacks the other.
const ANTONYMS: &[(&str, &str)] = &[
    ("min", "max"),
    ("minimum", "maximum"),
    ("smallest", "largest"),
    ("lowest", "highest"),
    ("least", "most"),
    ("less", "more"),
    ("first", "last"),
    ("increase", "decrease"),
    ("ascending", "descending"),
    ("add", "remove"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("before", "after"),
    ("with", "without"),
    ("encode", "decode"),
    ("encrypt", "decrypt"),
    ("import", "export"),
    ("enable", "disable"),
    ("true", "false"),
    ("input", "output"),
    ("left", "right"),
    ("buy", "sell"),
    ("upload", "download"),
    ("push", "pull"),
    ("send", "receive"),
    ("start", "stop"),
    ("open", "close"),
    ("show", "hide"),
    ("read", "write"),
    ("compress", "decompress"),
    ("serialize", "deserialize"),
    ("inner", "outer"),
    ("above", "below"),
];

/// Words that put the next noun in a role (target, source, comparison, order): to/into share
/// one role. "vs" / "and" are left out: "X vs Y" asks the same as "Y vs X".
const CONNECTIVES: &[(&str, u8)] =
    &[("to", 0), ("into", 0), ("from", 1), ("than", 2), ("before", 3), ("after", 4), ("over", 5)];
const CONNECTIVE_ROLES: usize = 6;

/// Between two swapped groups, these make the relation symmetric: "X and Y" asks what "Y and X"
/// asks.
const SYMMETRIC: &[&str] = &["and", "between", "nor", "or", "versus", "vs"];

/// Cardinals spelled out ("fifteen percent" / "15%"). Not ordinals: "first" is also an antonym
/// and "second" a unit of time. Sorted by word.
const NUMBER_WORDS: &[(&str, &str)] = &[
    ("billion", "1000000000"),
    ("eight", "8"),
    ("eighteen", "18"),
    ("eighty", "80"),
    ("eleven", "11"),
    ("fifteen", "15"),
    ("fifty", "50"),
    ("five", "5"),
    ("forty", "40"),
    ("four", "4"),
    ("fourteen", "14"),
    ("hundred", "100"),
    ("million", "1000000"),
    ("nine", "9"),
    ("nineteen", "19"),
    ("ninety", "90"),
    ("one", "1"),
    ("seven", "7"),
    ("seventeen", "17"),
    ("seventy", "70"),
    ("six", "6"),
    ("sixteen", "16"),
    ("sixty", "60"),
    ("ten", "10"),
    ("thirteen", "13"),
    ("thirty", "30"),
    ("thousand", "1000"),
    ("three", "3"),
    ("twelve", "12"),
    ("twenty", "20"),
    ("two", "2"),
    ("zero", "0"),
];

/// Membership in one of the sorted word lists above (a unit test keeps them sorted).
fn listed(list: &[&str], word: &str) -> bool {
    list.binary_search(&word).is_ok()
}

/// The longest slot (in words, each side) whose change counts as "the same sentence with one
/// thing changed"; longer differences are rewordings, which the embedding judges.
const MAX_SLOT: usize = 3;
/// The longest changed qualifier (in words, each side) after a shared frame
/// ([`Alignment::tail_changed`]).
const MAX_QUALIFIER: usize = 8;
/// Swapped groups are looked for only in differing spans up to this long (the search is cubic).
const MAX_SWAP_SPAN: usize = 16;
/// Acronym expansions tried per prompt ("ETF" / "exchange-traded fund"); past it, an acronym
/// counts as matched (lenient, and bounded on pathological prompts).
const MAX_ACRONYM_SCANS: usize = 16;

// === impl Prompt ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A word, stemmed.
    Word,
    /// A number, normalised ("15", "1000", "3.5"): number words become digits.
    Number,
    /// A code identifier, file extension or version-like token, lower-cased, not stemmed.
    Ident,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    /// A function word.
    stop: bool,
    negation: bool,
    /// Skipped between a connective and its noun.
    determiner: bool,
    /// "and", "or": a relation that reads the same both ways.
    symmetric: bool,
    /// The role a connective gives the next noun.
    role: Option<u8>,
}

impl Flags {
    /// From the lower-cased word before stemming ("those" and "before" stem oddly).
    fn of(lower: &str) -> Self {
        Self {
            stop: listed(STOPWORDS, lower),
            negation: listed(NEGATIONS, lower),
            determiner: listed(DETERMINERS, lower),
            symmetric: listed(SYMMETRIC, lower),
            role: CONNECTIVES.iter().find(|(w, _)| *w == lower).map(|&(_, role)| role),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Token {
    /// The stem, in `Prompt::buf`.
    stem: (usize, usize),
    kind: Kind,
    /// A proper noun, acronym or identifier: something the question is about by name.
    rare: bool,
    /// All upper-case letters (an acronym candidate, "ETF").
    acronym: bool,
    flags: Flags,
}

/// A prompt as the rules see it: normalised tokens, plus sorted indexes for lookups.
struct Prompt {
    buf: String,
    tokens: Vec<Token>,
    /// (token, first position of its stem), sorted by stem, one entry per stem: membership and
    /// "where first" in O(log n).
    index: Vec<(usize, usize)>,
    /// (role, follower position) for each connective followed by a content word, sorted.
    followers: Vec<(u8, usize)>,
    /// Last position of each connective role, if used.
    last_connective: [Option<usize>; CONNECTIVE_ROLES],
}

impl Prompt {
    fn parse(text: &str) -> Self {
        let mut p = Self {
            buf: String::with_capacity(text.len() + 16),
            tokens: Vec::with_capacity(text.len() / 4 + 1),
            index: Vec::new(),
            followers: Vec::new(),
            last_connective: [None; CONNECTIVE_ROLES],
        };
        // A prompt in capitals ("HOW DO I ...") says nothing about proper nouns.
        let (upper, lower) = text.chars().fold((0_usize, 0_usize), |(u, l), c| {
            (u + usize::from(c.is_uppercase()), l + usize::from(c.is_lowercase()))
        });
        let shouting = upper > lower;
        for line in text.lines() {
            let mut initial = true;
            for chunk in line.split_whitespace() {
                let before = p.tokens.len();
                let ends_sentence = p.push_chunk(chunk, initial, shouting);
                // "Please Explain ...", "- Item": a sentence starts at its first kept word.
                initial = ends_sentence || (initial && p.tokens.len() == before);
            }
        }
        p.build_indexes();
        p
    }

    fn stem(&self, i: usize) -> &str {
        self.tokens.get(i).map_or("", |t| self.buf.get(t.stem.0..t.stem.1).unwrap_or(""))
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn content(&self, i: usize) -> bool {
        self.tokens.get(i).is_some_and(|t| !t.flags.stop)
    }

    /// The numbers, sorted (a multiset).
    fn numbers(&self) -> Vec<&str> {
        let mut v: Vec<&str> = (0..self.len())
            .filter(|&i| self.tokens.get(i).is_some_and(|t| t.kind == Kind::Number))
            .map(|i| self.stem(i))
            .collect();
        v.sort_unstable();
        v
    }

    fn negated(&self) -> bool {
        self.tokens.iter().any(|t| t.flags.negation)
    }

    /// First position of a token with this stem.
    fn find(&self, stem: &str) -> Option<usize> {
        self.index
            .binary_search_by(|&(i, _)| self.stem(i).cmp(stem))
            .ok()
            .and_then(|k| self.index.get(k))
            .map(|&(_, first)| first)
    }

    fn has(&self, stem: &str) -> bool {
        self.find(stem).is_some()
    }

    /// Whether this prompt has a word whose stem is the stem of `word`.
    fn has_word(&self, word: &str) -> bool {
        let (base, suffix) = stem(word);
        self.index
            .binary_search_by(|&(i, _)| {
                let s = self.stem(i).as_bytes();
                let (head, tail) = s.split_at(s.len().min(base.len()));
                head.cmp(base.as_bytes()).then_with(|| tail.cmp(suffix.as_bytes()))
            })
            .is_ok()
    }

    /// Tokenises one whitespace-separated chunk; returns whether the next chunk starts a
    /// sentence (so its capital is grammar, not a name).
    fn push_chunk(&mut self, chunk: &str, initial: bool, shouting: bool) -> bool {
        let ends_sentence = chunk
            .trim_end_matches(['"', '\'', ')', ']', '’', '”', '*', '`'])
            .ends_with(['.', '?', '!', ':', ';']);
        let core = chunk
            .trim_start_matches(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '$' | '_')))
            .trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '%'));
        // A file extension (".csv") is a name; other leading dots ("...and") are punctuation.
        if let Some(ext) = core.strip_prefix('.')
            && (1..=5).contains(&ext.len())
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
            && ext.chars().any(|c| c.is_ascii_alphabetic())
        {
            self.push_lower(core, Kind::Ident, true);
            return ends_sentence;
        }
        let core = core.trim_start_matches('.');
        let percent = core.contains('%');
        let dollar = core.contains('$');
        let core = core.trim_matches(['%', '$']);
        if is_identifier(core) {
            self.push_lower(core, Kind::Ident, true);
        } else if let Some(number) = decimal(core) {
            self.push_number(&number);
        } else {
            let mut first = initial;
            for part in core.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')) {
                let part = part.trim_matches(['\'', '’']);
                if !part.is_empty() {
                    self.push_part(part, first, shouting);
                    first = false;
                }
            }
        }
        if percent {
            self.push_lower("percent", Kind::Word, false);
        }
        if dollar {
            self.push_lower("dollar", Kind::Word, false);
        }
        ends_sentence
    }

    /// One word-like part: "Python's", "isn't", "9am", "utf8", "Fahrenheit".
    fn push_part(&mut self, part: &str, initial: bool, shouting: bool) {
        let (base, negated) = match part.split_once(['\'', '’']) {
            Some((base, "t" | "T")) if base.len() > 1 && base.ends_with(['n', 'N']) => {
                (base.get(..base.len() - 1).unwrap_or(base), true)
            }
            // "Python's", "what's", "I'm": the possessive or clitic adds nothing.
            Some((base, _)) => (base, false),
            None => (part, false),
        };
        if base.starts_with(|c: char| c.is_ascii_digit()) {
            // "9am", "2nd", "100mg": the number, then its unit (ordinal endings dropped).
            let split = base.find(|c: char| !c.is_ascii_digit()).unwrap_or(base.len());
            let (digits, unit) = base.split_at(split);
            self.push_number(digits);
            let ordinal = ["st", "nd", "rd", "th"].iter().any(|o| unit.eq_ignore_ascii_case(o));
            if !unit.is_empty() && !ordinal && unit.chars().all(|c| c.is_alphabetic()) {
                self.push_word(unit, false, shouting);
            } else if !unit.is_empty() && !unit.chars().all(|c| c.is_alphabetic()) {
                self.push_lower(base, Kind::Ident, true);
            }
        } else if base.chars().any(|c| c.is_ascii_digit()) {
            // "utf8", "x86", "v2": names of things.
            self.push_lower(base, Kind::Ident, true);
        } else if !base.is_empty() {
            self.push_word(base, initial, shouting);
        }
        if negated {
            self.push_lower("not", Kind::Word, false);
        }
    }

    fn push_word(&mut self, word: &str, initial: bool, shouting: bool) {
        let uppers = word.chars().filter(|c| c.is_uppercase()).count();
        let capitalised = word.starts_with(char::is_uppercase);
        let acronym =
            !shouting && uppers >= 2 && uppers == word.chars().filter(|c| c.is_alphabetic()).count();
        // A capital mid-sentence marks a name; "I" is grammar; two capitals ("ETF", "JavaScript")
        // mark a name anywhere.
        let rare = !shouting && ((capitalised && !initial && word != "I") || uppers >= 2);
        let start = self.buf.len();
        self.buf.extend(word.chars().flat_map(char::to_lowercase));
        // "can't" arrives as "ca", "won't" as "wo".
        let expanded = match self.buf.get(start..) {
            Some("ca") => Some("can"),
            Some("wo") => Some("will"),
            Some("sha") => Some("shall"),
            _ => None,
        };
        if let Some(full) = expanded {
            self.buf.truncate(start);
            self.buf.push_str(full);
        }
        let lower = self.buf.get(start..).unwrap_or("");
        if listed(DROPPED, lower) {
            self.buf.truncate(start);
            return;
        }
        if let Some(&(_, digits)) =
            NUMBER_WORDS.binary_search_by(|(w, _)| w.cmp(&lower)).ok().and_then(|k| NUMBER_WORDS.get(k))
        {
            self.buf.truncate(start);
            self.push_number(digits);
            return;
        }
        let flags = Flags::of(lower);
        let (base, suffix) = stem(lower);
        let base_len = base.len();
        self.buf.truncate(start + base_len);
        self.buf.push_str(suffix);
        let end = self.buf.len();
        self.tokens.push(Token { stem: (start, end), kind: Kind::Word, rare, acronym, flags });
    }

    fn push_lower(&mut self, text: &str, kind: Kind, rare: bool) {
        let start = self.buf.len();
        self.buf.extend(text.chars().flat_map(char::to_lowercase));
        let flags = Flags::of(self.buf.get(start..).unwrap_or(""));
        let end = self.buf.len();
        self.tokens.push(Token { stem: (start, end), kind, rare, acronym: false, flags });
    }

    fn push_number(&mut self, digits: &str) {
        let start = self.buf.len();
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int = int.trim_start_matches('0');
        self.buf.push_str(if int.is_empty() { "0" } else { int });
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            self.buf.push('.');
            self.buf.push_str(frac);
        }
        let end = self.buf.len();
        self.tokens.push(Token {
            stem: (start, end),
            kind: Kind::Number,
            rare: false,
            acronym: false,
            flags: Flags::default(),
        });
    }

    fn build_indexes(&mut self) {
        let mut index: Vec<(usize, usize)> = (0..self.len()).map(|i| (i, i)).collect();
        // Stable sort by stem keeps the first occurrence first among equals.
        index.sort_by(|&(x, _), &(y, _)| self.stem(x).cmp(self.stem(y)));
        index.dedup_by(|later, earlier| self.stem(later.0) == self.stem(earlier.0));
        self.index = index;

        let mut followers = Vec::new();
        for i in 0..self.len() {
            let Some(role) = self.tokens.get(i).and_then(|t| t.flags.role) else { continue };
            if let Some(slot) = self.last_connective.get_mut(usize::from(role)) {
                *slot = Some(i);
            }
            let next = (i + 1..self.len()).find(|&j| self.tokens.get(j).is_some_and(|t| !t.flags.determiner));
            if let Some(j) = next
                && self.content(j)
            {
                followers.push((role, j));
            }
        }
        followers.sort_by(|&(r1, j1), &(r2, j2)| r1.cmp(&r2).then_with(|| self.stem(j1).cmp(self.stem(j2))));
        self.followers = followers;
    }

    /// Whether `stem` follows a connective of `role` somewhere.
    fn follows(&self, role: u8, stem: &str) -> bool {
        self.followers.binary_search_by(|&(r, j)| r.cmp(&role).then_with(|| self.stem(j).cmp(stem))).is_ok()
    }

    fn uses(&self, role: u8) -> bool {
        self.followers.iter().any(|&(r, _)| r == role)
    }
}

/// `os.path`, `customer_id`, `Node.js`, `1.2.3`: one name, not several words.
fn is_identifier(core: &str) -> bool {
    let bytes = core.as_bytes();
    let inner_dot = bytes
        .windows(3)
        .any(|w| matches!(w, [x, b'.', y] if x.is_ascii_alphanumeric() && y.is_ascii_alphanumeric()));
    let letters = core.chars().any(char::is_alphabetic);
    let dots = core.matches('.').count();
    (core.contains('_') && core.chars().any(char::is_alphanumeric))
        || core.contains("::")
        || (inner_dot && (letters || dots > 1))
}

/// "3.5", "1,000", "07" as a number string; `None` for anything else.
fn decimal(core: &str) -> Option<String> {
    let starts_digit = core.starts_with(|c: char| c.is_ascii_digit());
    let ok = starts_digit
        && core.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        && core.matches('.').count() <= 1;
    ok.then(|| core.chars().filter(|&c| c != ',').collect())
}

/// A light suffix stripper, enough that "lists" / "list", "calculated" / "calculating" /
/// "calculate", "uses" / "using" / "use" and "cities" / "city" meet: returns a prefix of `word`
/// and a replacement ending. Non-ASCII words are left whole.
fn stem(word: &str) -> (&str, &'static str) {
    if !word.is_ascii() {
        return (word, "");
    }
    let has_vowel = |w: &str| w.bytes().any(|b| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y'));
    let mut w = word;
    // Plurals and third persons; "class", "status", "analysis", "bus" keep their "s".
    if w.len() > 4 && w.ends_with("ies") {
        return (&w[..w.len() - 3], "i");
    } else if w.len() > 3
        && w.ends_with("es")
        && (w[..w.len() - 2].ends_with(['s', 'x', 'z'])
            || w[..w.len() - 2].ends_with("ch")
            || w[..w.len() - 2].ends_with("sh"))
    {
        w = &w[..w.len() - 2];
    } else if w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        w = &w[..w.len() - 1];
    }
    // "-ing" / "-ed", when a syllable is left ("string", "bring", "red" stay).
    let before = w.len();
    if let Some(rest) = w.strip_suffix("ing").or_else(|| w.strip_suffix("ed").filter(|_| !w.ends_with("eed")))
        && rest.len() >= 2
        && has_vowel(rest)
    {
        w = rest;
    }
    // "running" -> "runn" -> "run"; "called" keeps its "ll".
    if w.len() < before
        && let [.., x, y] = w.as_bytes()
        && x == y
        && !matches!(x, b'l' | b's' | b'z' | b'a' | b'e' | b'i' | b'o' | b'u')
    {
        w = &w[..w.len() - 1];
    }
    if w.len() >= 3 && w.ends_with('e') {
        (&w[..w.len() - 1], "")
    } else if w.len() > 3 && w.ends_with('y') {
        (&w[..w.len() - 1], "i")
    } else {
        (w, "")
    }
}

/// Whether two stems are one word with a typo: one adjacent transposition, insertion or
/// deletion (words of 4+ letters), or one substitution (6+ letters). Substitutions in short
/// words are usually other words ("hard" / "card", "Iran" / "Iraq").
fn typo_close(x: &str, y: &str) -> bool {
    let (x, y) = (x.as_bytes(), y.as_bytes());
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    if short.len() < 4 || long.len() - short.len() > 1 || x == y {
        return false;
    }
    let head = short.iter().zip(long).take_while(|(a, b)| a == b).count();
    if short.len() == long.len() {
        let (xs, ys) = (&short[head..], &long[head..]);
        let transposed = xs.len() >= 2 && xs[0] == ys[1] && xs[1] == ys[0] && xs[2..] == ys[2..];
        let substituted = short.len() >= 6 && xs[1..] == ys[1..];
        transposed || substituted
    } else {
        short[head..] == long[head + 1..]
    }
}

fn same(a: &Prompt, i: usize, b: &Prompt, j: usize) -> bool {
    let (Some(x), Some(y)) = (a.tokens.get(i), b.tokens.get(j)) else { return false };
    let (sx, sy) = (a.stem(i), b.stem(j));
    x.kind == y.kind && (sx == sy || (x.kind == Kind::Word && typo_close(sx, sy)))
}

// === rules ===

/// Numbers must agree as multisets when both prompts have some. A number on one side only
/// is often a paraphrase ("a week" / "7 days", "a cup" / "one cup") and is left to the
/// embedding and to the slot rule.
fn numbers_agree(a: &Prompt, b: &Prompt) -> bool {
    let (x, y) = (a.numbers(), b.numbers());
    x.is_empty() || y.is_empty() || x == y
}

/// A word of `a` that is a negating prefix plus a word of `b` ("unsafe" / "safe"), when `a`
/// lacks the plain word and `b` the prefixed one.
fn prefix_antonym(a: &Prompt, b: &Prompt) -> bool {
    (0..a.len()).any(|i| {
        let word = a.stem(i);
        a.tokens.get(i).is_some_and(|t| t.kind == Kind::Word && !t.flags.stop)
            && NEGATING_PREFIXES.iter().any(|prefix| {
                word.strip_prefix(prefix)
                    .is_some_and(|rest| rest.len() >= 3 && b.has(rest) && !a.has(rest) && !b.has(word))
            })
    })
}

fn listed_antonym(a: &Prompt, b: &Prompt) -> bool {
    ANTONYMS.iter().any(|&(x, y)| {
        let (ax, ay, bx, by) = (a.has_word(x), a.has_word(y), b.has_word(x), b.has_word(y));
        (ax && !ay && by && !bx) || (ay && !ax && bx && !by)
    })
}

/// Roles swapped around a connective, both ways: the word `b` puts after "to" stands before
/// "to" in `a`, and the word `a` puts after "to" stands before "to" in `b` ("string to int" /
/// "int to string"). Requiring both keeps "how to convert X to Y" / "convert X to Y" (an
/// infinitive "to") compatible.
fn connective_swap(a: &Prompt, b: &Prompt) -> bool {
    let moved = |x: &Prompt, y: &Prompt, role: u8| {
        x.followers.iter().filter(|&&(r, _)| r == role).any(|&(_, j)| {
            let w = x.stem(j);
            !y.follows(role, w)
                && y.find(w)
                    .zip(y.last_connective.get(usize::from(role)).copied().flatten())
                    .is_some_and(|(first, last)| first < last)
        })
    };
    (0..CONNECTIVE_ROLES as u8)
        .filter(|&role| a.uses(role) && b.uses(role))
        .any(|role| moved(a, b, role) && moved(b, a, role))
}

/// A word `a` puts after "to" / "into" that `b` puts after "from" instead, and never after
/// "to" / "into": the same place as destination in one and as origin in the other ("upload a
/// file to the server" / "download a file from the server", "flights to Lima" / "flights from
/// Lima").
fn role_changed(a: &Prompt, b: &Prompt) -> bool {
    const TO: u8 = 0;
    const FROM: u8 = 1;
    a.followers.iter().filter(|&&(r, _)| r == TO).any(|&(_, j)| {
        let w = a.stem(j);
        b.follows(FROM, w) && !b.follows(TO, w) && !a.follows(FROM, w)
    })
}

/// Whether `a` names something (proper noun, acronym, identifier) that `b` does not: not as a
/// word in any case, not with a typo, not spelled out as an acronym's words.
fn unmatched_rare(a: &Prompt, b: &Prompt) -> bool {
    let mut scans = 0;
    (0..a.len()).any(|i| {
        let Some(t) = a.tokens.get(i) else { return false };
        if !t.rare {
            return false;
        }
        let word = a.stem(i);
        if b.has(word) || (0..b.len()).any(|j| b.tokens.get(j).is_some_and(|u| u.rare) && same(a, i, b, j)) {
            return false;
        }
        if t.acronym && scans < MAX_ACRONYM_SCANS {
            scans += 1;
            return !spells_out(word, b);
        } else if t.acronym {
            return false;
        }
        true
    })
}

/// Whether consecutive words of `p` start with the letters of `acronym` ("etf" in "exchange
/// traded fund").
fn spells_out(acronym: &str, p: &Prompt) -> bool {
    let letters = acronym.as_bytes();
    (0..p.len()).any(|start| {
        letters.iter().enumerate().all(|(k, &l)| p.stem(start + k).as_bytes().first() == Some(&l))
    })
}

// === impl Alignment ===

/// The longest common prefix and suffix of two token sequences: what is left in the middle is
/// what changed.
struct Alignment {
    prefix: usize,
    suffix: usize,
}

impl Alignment {
    fn of(a: &Prompt, b: &Prompt) -> Self {
        let (na, nb) = (a.len(), b.len());
        let prefix = (0..na.min(nb)).take_while(|&k| same(a, k, b, k)).count();
        let suffix =
            (0..(na - prefix).min(nb - prefix)).take_while(|&k| same(a, na - 1 - k, b, nb - 1 - k)).count();
        Self { prefix, suffix }
    }

    fn middles(&self, a: &Prompt, b: &Prompt) -> (Range<usize>, Range<usize>) {
        (self.prefix..a.len() - self.suffix, self.prefix..b.len() - self.suffix)
    }

    /// The changed spans are two groups traded places around something that is not a
    /// symmetric "and" / "or": "Tokyo when it is 9am in New York" / "New York when ... Tokyo".
    /// A group moved to the other end ("In Python, how..." / "How ... in Python") is not a swap.
    fn swapped(&self, a: &Prompt, b: &Prompt) -> bool {
        let (ma, mb) = self.middles(a, b);
        let n = ma.len();
        if n != mb.len() || !(3..=MAX_SWAP_SPAN).contains(&n) {
            return false;
        }
        let (sa, sb) = (ma.start, mb.start);
        let has_content = |r: Range<usize>| r.into_iter().any(|k| a.content(k));
        (1..n).any(|i| {
            (i + 1..n).any(|j| {
                // a: X = [0, i), M = [i, j), Y = [j, n); b must read Y M X. The groups are
                // short (names, quantities): longer ones are clauses put in another order
                // ("To do X, which Y?" / "Which Y to do X?"), the same question.
                let (x, m, y) = (i, j - i, n - j);
                if x > MAX_SLOT || y > MAX_SLOT {
                    return false;
                }
                let matches = (0..y).all(|k| same(a, sa + j + k, b, sb + k))
                    && (0..m).all(|k| same(a, sa + i + k, b, sb + y + k))
                    && (0..x).all(|k| same(a, sa + k, b, sb + y + m + k));
                matches
                    && has_content(sa..sa + i)
                    && has_content(sa + j..sa + n)
                    && !(sa + i..sa + j).all(|k| a.tokens.get(k).is_some_and(|t| t.flags.symmetric))
            })
        })
    }

    /// The same sentence, word for word, but for one short changed or added slot holding a
    /// content word: "boil an egg for a soft yolk" / "... a hard yolk". A slot that changes
    /// length by more than a word ("wrote" / "is the author of") is a rewording, and a change
    /// of function words only ("what is" / "calculate") keeps the question.
    fn slot_changed(&self, a: &Prompt, b: &Prompt) -> bool {
        let (ma, mb) = self.middles(a, b);
        let shared = self.prefix + self.suffix;
        if ma.is_empty() && mb.is_empty() {
            return false;
        }
        let content = |p: &Prompt, r: &Range<usize>| r.clone().filter(|&k| p.content(k)).count();
        let (ca, cb) = (content(a, &ma), content(b, &mb));
        let slot = 1..=MAX_SLOT;
        if ma.is_empty() || mb.is_empty() {
            // An added qualifier: "in simple terms" / "in simple terms, in Spanish", "explain
            // X" / "explain X in one sentence". The shorter prompt is whole in the longer one,
            // so even two shared words frame it.
            return shared >= 2
                && ((slot.contains(&ma.len()) && ca > 0) || (slot.contains(&mb.len()) && cb > 0));
        }
        if self.tail_changed(a, b, &ma, &mb) {
            return true;
        }
        if shared < 3 || 2 * shared < a.len().max(b.len()) {
            return false;
        }
        slot.contains(&ma.len())
            && slot.contains(&mb.len())
            && ma.len().abs_diff(mb.len()) <= 1
            && ca > 0
            && cb > 0
            && !same_words(a, &ma, b, &mb)
    }
}

impl Alignment {
    /// The same request with its qualifier changed: a shared opening holding at least two
    /// content words ("write an email to my landlord about the heater"), then differing parts
    /// of up to [`MAX_QUALIFIER`] words that each bring a content word the other prompt lacks
    /// ("keep it formal" / "make it sarcastic and funny", "in one sentence" / "in detail,
    /// covering the light reactions"). An opening of function words only ("how do I ...",
    /// "who") frames nothing: there the differing words are a rewording ("who composed X" /
    /// "who is the composer of X"), judged by the embedding.
    fn tail_changed(&self, a: &Prompt, b: &Prompt, ma: &Range<usize>, mb: &Range<usize>) -> bool {
        if !(1..=MAX_QUALIFIER).contains(&ma.len()) || !(1..=MAX_QUALIFIER).contains(&mb.len()) {
            return false;
        }
        let frame = (0..self.prefix).filter(|&k| a.content(k)).count();
        let brings = |x: &Prompt, rx: &Range<usize>, y: &Prompt| {
            rx.clone().any(|i| x.content(i) && !(0..y.len()).any(|j| same(x, i, y, j)))
        };
        frame >= 2 && brings(a, ma, b) && brings(b, mb, a)
    }
}

/// The same content words in both spans, in any order (a reordering, not a new slot value).
fn same_words(a: &Prompt, ra: &Range<usize>, b: &Prompt, rb: &Range<usize>) -> bool {
    let covered = |x: &Prompt, rx: &Range<usize>, y: &Prompt, ry: &Range<usize>| {
        rx.clone().filter(|&i| x.content(i)).all(|i| ry.clone().any(|j| same(x, i, y, j)))
    };
    covered(a, ra, b, rb) && covered(b, rb, a, ra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stemmed(word: &str) -> String {
        let (base, tail) = stem(word);
        format!("{base}{tail}")
    }

    #[track_caller]
    fn rejects(a: &str, b: &str, why: Conflict) {
        assert_eq!(conflict(a, b), Some(why), "{a:?} / {b:?}");
        assert_eq!(conflict(b, a), Some(why), "{b:?} / {a:?} (reversed)");
    }

    #[track_caller]
    fn accepts(a: &str, b: &str) {
        assert_eq!(conflict(a, b), None, "{a:?} / {b:?}");
        assert_eq!(conflict(b, a), None, "{b:?} / {a:?} (reversed)");
    }

    #[test]
    fn word_lists_are_sorted_for_binary_search() {
        for list in [DROPPED, STOPWORDS, DETERMINERS, NEGATIONS, SYMMETRIC] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
        assert!(NUMBER_WORDS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn stems_meet_across_inflections() {
        for (x, y) in [
            ("lists", "list"),
            ("calculated", "calculating"),
            ("calculate", "calculated"),
            ("cities", "city"),
            ("boxes", "box"),
            ("running", "run"),
            ("matches", "match"),
            ("files", "file"),
            ("copied", "copy"),
        ] {
            assert_eq!(stemmed(x), stemmed(y), "{x} / {y}");
        }
        for (x, y) in [("uses", "use"), ("using", "used"), ("take", "taking")] {
            assert_eq!(stemmed(x), stemmed(y), "{x} / {y}");
        }
        for kept in ["class", "status", "analysis", "bus", "string", "bring", "red", "speed"] {
            assert_eq!(stemmed(kept), kept, "{kept}");
        }
    }

    #[test]
    fn typos_are_one_edit_in_a_long_enough_word() {
        assert!(typo_close("lnog", "long"));
        assert!(typo_close("comit", "commit"));
        assert!(typo_close("recieve", "receive"));
        assert!(typo_close("grammer", "grammar"));
        assert!(!typo_close("iran", "iraq"));
        assert!(!typo_close("hard", "card"));
        assert!(!typo_close("austria", "australia"));
        assert!(!typo_close("cat", "cut"));
    }

    #[test]
    fn numbers_must_agree_when_both_have_them() {
        rejects("What is 12% of 300?", "What is 12% of 250?", Conflict::Number);
        rejects("Is 51 divisible by 3?", "Is 57 divisible by 3?", Conflict::Number);
        rejects("Explain HTTP 502 errors", "Explain HTTP 504 errors", Conflict::Number);
        rejects("Plan a 3-day trip to the coast", "Plan a 5-day trip to the coast", Conflict::Number);
        rejects("Set an alarm for 6am", "Set an alarm for 7am", Conflict::Number);
        // Written-out numbers, percent signs, thousands separators.
        accepts("What is twelve percent of 300?", "Calculate 12% of 300.");
        accepts("Split 1,000 dollars three ways", "how do I split $1000 into 3 equal parts");
        // A number on one side only is left to the embedding.
        accepts("How many grams are in one cup of sugar?", "Grams in a cup of sugar?");
    }

    #[test]
    fn negation_must_agree() {
        rejects("Which birds can fly?", "Which birds cannot fly?", Conflict::Negation);
        rejects("Why does my script run?", "Why doesn't my script run?", Conflict::Negation);
        rejects("Foods that are not acidic", "Foods that are acidic", Conflict::Negation);
        rejects("Is this regex valid?", "Is this regex invalid?", Conflict::Negation);
        rejects(
            "Is the bridge passable in winter?",
            "Is the bridge impassable in winter?",
            Conflict::Negation,
        );
        accepts("My order hasn't shipped, what now?", "What should I do if my order has not shipped yet?");
        rejects("Run the container as root", "Run the container as a non-root user", Conflict::Negation);
        // "without" is the antonym of "with", not a negation: its absence says nothing.
        accepts("Can I run this job without root?", "How to run this job as a normal user instead of root?");
    }

    #[test]
    fn listed_antonyms_must_not_trade_places() {
        rejects("Sort the rows in ascending order", "Order the rows descending", Conflict::Antonym);
        rejects("Find the maximum of an array", "Array minimum?", Conflict::Antonym);
        rejects("Make this paragraph more concise", "Make this paragraph less concise", Conflict::Antonym);
        rejects("Can I take vitamin D with coffee?", "Taking vitamin D without coffee", Conflict::Antonym);
        rejects("git push a branch", "git pull a branch", Conflict::Antonym);
        // Both sides of a pair on both sides: the same question.
        accepts("Difference between encode and decode?", "How do decode and encode differ?");
    }

    #[test]
    fn swapped_roles_are_a_different_question() {
        rejects("Convert 5 miles to kilometers", "Convert 5 kilometers to miles", Conflict::Direction);
        rejects(
            "How do I cast a float to a long in C?",
            "How do I cast a long to a float in C?",
            Conflict::Direction,
        );
        rejects(
            "Is a cheetah faster than a horse?",
            "Is a horse faster than a cheetah?",
            Conflict::Direction,
        );
        rejects(
            "Flight time from Lisbon to Oslo when leaving at noon",
            "Flight time from Oslo to Lisbon when leaving at noon",
            Conflict::Direction,
        );
        rejects("I want to turn a list into a tuple", "turn a tuple into a list", Conflict::Direction);
        rejects("Cheapest flights to Lima in May", "Cheapest flights from Lima in May", Conflict::Direction);
        // Clauses in another order are not swapped roles.
        accepts(
            "To split a string on commas in Rust, which method do I call?",
            "Which method do I call in Rust to split a string on commas?",
        );
        // A symmetric relation, a moved phrase, an infinitive "to".
        accepts("Compare cats and dogs as pets", "Compare dogs and cats as pets");
        accepts("In Go, how do I read a file line by line?", "How do I read a file line by line in Go?");
        accepts("How to convert a list to a set", "convert list to set");
    }

    #[test]
    fn a_different_name_is_a_different_question() {
        rejects("What is the population of Peru?", "What is the population of Chile?", Conflict::Entity);
        rejects("Who painted the Mona Lisa?", "Who painted The Night Watch?", Conflict::Entity);
        rejects("Parse a TOML file", "Parse an INI file", Conflict::Entity);
        rejects("Read settings.toml at startup", "Read config.ini at startup", Conflict::Entity);
        // Case, possessives, a typo in a name, an acronym spelled out, a name added on one side.
        accepts("postgres vacuum explained", "Can you explain what VACUUM does in Postgres?");
        accepts("Explain Kotlin's coroutines", "What are coroutines in Kotlin?");
        accepts("Install Pyhton on Windows", "How do I install Python on Windows?");
        accepts("What does an API gateway do?", "What does an application programming interface gateway do?");
        accepts(
            "Best way to get from the station to Harbour Bridge",
            "How do I get from the station to the bridge?",
        );
        // Capitals from grammar or shouting are not names.
        accepts("HOW DO I CENTER A DIV", "how do i center a div?");
        accepts("Hi! Quick question. How do I center a div?", "how to center a div");
    }

    #[test]
    fn a_changed_slot_in_the_same_sentence_is_a_different_question() {
        rejects("Write a cheerful poem about the sea", "Write a gloomy poem about the sea", Conflict::Slot);
        rejects(
            "How long can cooked rice stay in the fridge?",
            "How long can cooked pasta stay in the fridge?",
            Conflict::Slot,
        );
        rejects(
            "Describe the plot of the novel briefly",
            "Describe the plot of the novel in depth",
            Conflict::Slot,
        );
        rejects(
            "List the planets of the solar system",
            "List the planets of the solar system by size",
            Conflict::Slot,
        );
        rejects("Explain recursion", "Explain recursion in one sentence", Conflict::Slot);
        rejects(
            "Write a cover letter for a nursing job. Keep it formal.",
            "Write a cover letter for a nursing job. Make it playful and quirky.",
            Conflict::Slot,
        );
        // A frame of function words only is a rewording.
        accepts("How do I reverse a list in Python?", "How do I flip the order of a Python list?");
        // Function words only, typos, plural / singular, a rewording of the frame.
        accepts("What is the boiling point of water?", "what's the boiling point of water");
        accepts("how to roast vegtables", "How to roast vegetables?");
        accepts("Who composed the Four Seasons?", "Who is the composer of the Four Seasons?");
        accepts("What is 2 plus 2?", "Calculate 2 plus 2");
    }

    #[test]
    fn paraphrases_stay_compatible() {
        // Reordered words.
        accepts("Is 89 a prime number?", "Is the number 89 prime?");
        accepts("Where do I download last year's tax form?", "Where can I get my tax form from last year?");
        // Polite vs terse.
        accepts("Could you please tell me how to undo a commit? Thanks!", "undo commit");
        accepts("go slice append", "Hello! How would I append to a slice in Go? Thank you.");
        // Typos.
        accepts("how do i make pancaeks", "How do I make pancakes?");
        // Plural / singular.
        accepts("How do I merge two dictionaries?", "merging 2 dictionary objects");
        accepts("What are the symptoms of the flu?", "What is a symptom of flu?");
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "",
            " ",
            "'",
            "n't",
            "...",
            "$%",
            "1.2.3.4",
            "__",
            "ǅungla Ünïcödé",
            "\0\0",
            "a\nb\n\nc",
            "9",
            ".csv",
        ] {
            let _ = conflict(s, "what is this?");
            let _ = conflict("what is this?", s);
            let _ = conflict(s, s);
        }
        let long = "word ".repeat(20_000);
        assert!(compatible(&long, &long));
    }
}
