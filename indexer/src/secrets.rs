//! Secret detection and redaction, run on each file before it is chunked,
//! embedded or stored, so no secret value ever reaches the index.
//!
//! A [`Scanner`] holds gitleaks-class rules ([`RULE_IDS`]): private keys,
//! cloud, SaaS and AI-provider tokens with a recognisable shape (prefix,
//! length, alphabet, as each provider documents them), JWTs, bearer tokens
//! in `Authorization` headers, passwords embedded in URLs, the `data:` and
//! `stringData:` values of Kubernetes Secret manifests, and literals
//! assigned to secret-named keys: `generic-secret` takes random-looking
//! values of keys that *contain* a secret word (`password`, `api_key`, ...),
//! `secret-assignment` any literal, whatever its entropy, of a key that
//! *ends* in one (`DB_PASSWORD`, `apiKey`, `client-secret`, `SMTP_PASS`,
//! `ROOTPW`, `BASIC_AUTH`), plain, typed (`const API_KEY: &str = "..."`,
//! `private static final String DB_PASSWORD = "..."`, Go `const apiKey
//! string = "..."`) or JSON-escaped (`\"...\"` in notebook sources). Nothing
//! is verified over the network. Each rule is its own [`Regex`]: every
//! pattern has a literal the regex engine finds with a SIMD prefilter, so a
//! file without candidates is skipped at memchr speed. (A `RegexSet` first
//! pass over all rules was measured at ~32 MB/s on the eval corpus, as a set
//! gets no literal prefilter; all rules one by one scan it at ~100 MiB/s,
//! most shaped rules alone at GB/s: `cargo bench -p cairn-benches --bench
//! secrets`.)
//!
//! Extra rules come from a file in gitleaks' TOML format
//! ([`Scanner::with_rules_file`]); they add to the built-in rules, and its
//! global allowlist applies to every rule. The `regex` crate has no
//! look-around and no backreferences (nor has Go's RE2, which gitleaks
//! uses): a rule that uses them is refused with an error naming the file and
//! the rule.
//!
//! [`Scanner::redact`] replaces each secret *value* (never its key or the
//! surrounding code) with `[REDACTED:<rule-id>]`. Line breaks inside a value
//! are kept (each line of a PEM body becomes one marker), so the redacted
//! text has exactly as many lines as the original and chunk line numbers stay
//! true. A [`Finding`] carries the rule, line and byte span, never the value,
//! so findings are safe to log.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;
use serde::Deserialize;

use crate::error::{IndexError, Result};

/// Redactions per rule id.
pub type SecretCounts = BTreeMap<String, usize>;

/// One secret found in a text. Holds no part of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Id of the rule that matched (one of [`RULE_IDS`], or of a rules file).
    pub rule: &'static str,
    /// 1-based line of the first byte of the value.
    pub line: usize,
    /// Byte span of the value in the scanned text.
    pub start: usize,
    pub end: usize,
}

/// A redacted text and what was redacted in it.
#[derive(Debug)]
pub struct Redaction<'a> {
    /// The text with every secret value replaced; borrowed when nothing was found.
    pub text: Cow<'a, str>,
    pub findings: Vec<Finding>,
}

/// Extra checks on a captured value; `false` drops the match.
type Check = fn(&Candidate<'_>) -> bool;

/// A regex match before the checks: the value and what surrounds it.
struct Candidate<'a> {
    value: &'a str,
    /// Whether the value was written between quotes.
    quoted: bool,
    /// The key it is assigned to, for assignment rules.
    key: &'a str,
    /// Whether the file is source code (see [`is_source_code`]), where a
    /// literal secret is always quoted and unquoted values are expressions.
    code: bool,
}

/// Shannon entropy of `s` in bits per byte.
pub fn shannon_entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that stand in for a secret rather than being one: template and
/// environment references, angle-bracket slots, masks and stock words.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "changeme",
        "change_me",
        "change-me",
        "changeit",
        "placeholder",
        "example",
        "your_",
        "your-",
        "yourpass",
        "yoursecret",
        "yourtoken",
        "xxxx",
        "****",
        "....",
        "<",
        ">",
        "${",
        "{{",
        "$(",
        "%s",
        "%(",
        "os.environ",
        "os.getenv",
        "process.env",
        "getenv",
        "env(",
        "env:",
        "env.",
        "redacted",
        "dummy",
        "sample",
        "insert",
        "replace",
        "secret_here",
        "token_here",
        "password_here",
    ];
    if MARKERS.iter().any(|m| v.contains(m)) {
        return true;
    }
    // A value written as a shell/Makefile variable: `$DB_PASSWORD`.
    if let Some(rest) = v.strip_prefix('$')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return true;
    }
    // One character repeated, like `aaaaaaaa` or `00000000`.
    let mut bytes = v.bytes();
    if let Some(first) = bytes.next()
        && bytes.all(|b| b == first)
    {
        return true;
    }
    false
}

/// Shaped tokens (prefix + random body): reject placeholders and bodies
/// with too little randomness to be a real token.
fn shaped(c: &Candidate<'_>) -> bool {
    !is_placeholder(c.value) && shannon_entropy(c.value) >= 3.0
}

/// AWS access key ids: AWS's own documentation example ends in `EXAMPLE`.
fn aws_key_id(c: &Candidate<'_>) -> bool {
    !c.value.ends_with("EXAMPLE") && shaped(c)
}

/// Hugging Face tokens: a shaped body of mixed-case letters, which
/// identifiers of the same length (`hf_` + a word) are not.
fn huggingface(c: &Candidate<'_>) -> bool {
    let body = c.value.rsplit('_').next().unwrap_or("");
    body.bytes().any(|b| b.is_ascii_uppercase()) && body.bytes().any(|b| b.is_ascii_lowercase()) && shaped(c)
}

/// Google OAuth access tokens may end in `.` padding, which is no mask.
fn google_oauth(c: &Candidate<'_>) -> bool {
    let v = c.value.trim_end_matches('.');
    !is_placeholder(v) && shannon_entropy(v) >= 3.0
}

/// An opaque bearer token in an `Authorization` header: random-looking,
/// with a digit, not a word, a name or a placeholder.
fn bearer(c: &Candidate<'_>) -> bool {
    let v = c.value;
    v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && !is_identifier_like(v)
        && shaped(c)
}

/// A PEM body is lines of base64 (plain, or quoted and `\n`-escaped in
/// source code), not code that happens to sit between two armour strings.
fn pem_body(c: &Candidate<'_>) -> bool {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=';
    let (mut b64, mut other) = (0usize, 0usize);
    for line in c.value.split('\n').flat_map(|l| l.split("\\n")) {
        let t = line
            .trim()
            .trim_matches(|ch| matches!(ch, '"' | '\'' | '`' | '+' | ',' | ';' | '\\'))
            .trim();
        if t.is_empty()
            || t.starts_with("-----")
            || t.starts_with("Proc-Type:")
            || t.starts_with("DEK-Info:")
            || t.starts_with("Comment:")
        {
            continue;
        }
        if t.len() >= 16 && t.bytes().all(is_b64) {
            b64 += 1;
        } else {
            other += 1;
        }
    }
    // No placeholder-word test here: a 1.7 kB random body contains `xxxx`
    // about once in 650 keys. Elided doc examples (`MIIE...`) fail the
    // base64-line test instead.
    b64 > 0 && other * 4 <= b64
}

/// Password part of a URL: skip stock words (`user:pass@`, `foo:bar@`,
/// `rms:secret123@` in documentation), templated values and URL-parser
/// test strings.
fn url_password(c: &Candidate<'_>) -> bool {
    let v = c.value;
    v.len() >= 6
        && !is_stock_word(v)
        && !mostly_percent_escapes(v)
        && !v.bytes().all(|b| b.is_ascii_lowercase())
        && !v.contains(['{', '}', '$', '(', ')', '[', ']'])
        && !is_placeholder(v)
        && shannon_entropy(v) >= 2.5
}

/// Stock words of documentation and jokes (`pass`, `hunter2`, `letmein`),
/// optionally followed by digits.
fn is_stock_word(v: &str) -> bool {
    const STOCK: &[&str] = &[
        "pass",
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "user",
        "username",
        "foo",
        "bar",
        "baz",
        "test",
        "admin",
        "root",
        "guest",
        "demo",
        "hunter",
        "opensesame",
        "letmein",
        "qwerty",
    ];
    let stem = v.trim_end_matches(|ch: char| ch.is_ascii_digit()).to_ascii_lowercase();
    STOCK.contains(&stem.as_str())
}

/// `snake_case`/`CONSTANT_CASE` names: underscore-separated segments that
/// are each one word (lower, upper or Capitalised), digits only at the end.
fn is_identifier_like(v: &str) -> bool {
    v.contains('_')
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && v.split('_').all(|seg| {
            let word = seg.trim_end_matches(|ch: char| ch.is_ascii_digit());
            let rest = word.get(1..).unwrap_or("");
            word.bytes().all(|b| b.is_ascii_alphabetic())
                && (word.bytes().all(|b| b.is_ascii_uppercase()) || rest.bytes().all(|b| b.is_ascii_lowercase()))
        })
}

/// Source files by extension: there, assignment rules only take quoted
/// values. Everything else (`.env`, YAML, TOML, INI, properties, shell,
/// JSON, text) also takes unquoted ones. Jupyter notebooks count as code:
/// their cells are source lines inside JSON strings, where a literal is
/// written `\"...\"`.
pub fn is_source_code(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    const CODE: &[&str] = &[
        "rs", "py", "pyi", "go", "java", "kt", "kts", "scala", "groovy", "js", "jsx", "mjs", "cjs", "ts", "tsx", "mts",
        "cts", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "cs", "swift", "m", "mm", "rb", "php", "lua", "dart",
        "zig", "ex", "exs", "erl", "hs", "ml", "clj", "r", "jl", "vue", "svelte", "ipynb",
    ];
    CODE.contains(&ext.to_ascii_lowercase().as_str())
}

/// Minimum Shannon entropy (bits per byte) of a generic assigned value.
pub const GENERIC_MIN_ENTROPY: f64 = 3.0;
/// Minimum length of a generic assigned value.
pub const GENERIC_MIN_LEN: usize = 8;

/// Generic `password = "..."` style assignments: long enough, random
/// enough, not a placeholder, and not code (a path, a URL, an identifier).
fn generic_assignment(c: &Candidate<'_>) -> bool {
    let v = c.value;
    if v.len() < GENERIC_MIN_LEN || v.len() > 512 || is_placeholder(v) {
        return false;
    }
    // Keys that name something about a secret rather than hold one.
    let key = c.key.to_ascii_lowercase();
    const NOT_VALUES: &[&str] = &[
        "file", "path", "dir", "url", "uri", "name", "type", "len", "length", "size", "count", "id", "ids", "prefix",
        "suffix", "header", "field", "param", "env", "var", "policy", "mode", "format", "regex", "pattern", "kind",
        "class", "hash", "endpoint", "provider", "label", "store", "manager", "method", "source", "limit", "max",
        "min", "timeout", "ttl", "expiry", "expires", "index", "position", "pos", "offset",
    ];
    let last = key.rsplit(['_', '-', '.']).next().unwrap_or(&key);
    if NOT_VALUES.contains(&last) {
        return false;
    }
    // The word before the secret word makes it no secret: `next_page_token`,
    // `eos_token`, `public_api_key`... (the key includes the whole name).
    let words = key_words(c.key);
    if let Some(i) = words.iter().position(|w| SECRET_WORDS.iter().any(|s| w.contains(s)))
        && i > 0
        && NOT_SECRET_KEYS.contains(&words[i - 1].as_str())
    {
        return false;
    }
    if v.starts_with(['/', '.', '~', '-', '=', '@', '&', '*', '!', '#', '$', '%', ':', '\\']) || v.contains("://") {
        return false;
    }
    // Paths in code: `super::Foundation::HANDLE`, `std::env::var`.
    if v.contains("::") {
        return false;
    }
    // Unquoted identifiers with an underscore are names, not values: the
    // type in `pub const ERROR_PASSWORD_EXPIRED: WIN32_ERROR = 1330;`.
    if !c.quoted && v.contains('_') && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return false;
    }
    let (mut lower, mut upper, mut digit, mut other) = (0, 0, 0, 0);
    for b in v.bytes() {
        match b {
            b'a'..=b'z' => lower += 1,
            b'A'..=b'Z' => upper += 1,
            b'0'..=b'9' => digit += 1,
            _ => other += 1,
        }
    }
    let letters = lower + upper;
    // Numbers, versions and dates are not secrets.
    if letters == 0 {
        return false;
    }
    // Words, identifiers and dotted paths (`settings.SECRET_KEY`,
    // `refresh_token`, `Bearer`) carry no digit; random secrets of this
    // length almost always do, or mix case with symbols.
    if digit == 0 && (other == 0 || v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b))) {
        return false;
    }
    // In source code a literal secret is quoted; unquoted values are
    // expressions and types: `token: CancellationToken`, `x = f()`.
    if c.code && !c.quoted {
        return false;
    }
    // Names, quoted or not: `"CLIENT_TRAFFIC_SECRET_0"`, `refresh_token_v2`.
    if is_identifier_like(v) {
        return false;
    }
    // Unquoted values in code are expressions: `token = self.token_2`.
    if !c.quoted && v.contains('.') && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return false;
    }
    shannon_entropy(v) >= GENERIC_MIN_ENTROPY
}

/// What a secret-named key holds: a password (short and weak values are
/// still passwords) or a key, token or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Password,
    Token,
}

/// Name endings of secret keys, longest first, and whether the ending must
/// start a word (`db_pass`, `apiKey`, not `bypass`, `monkey`).
const KEY_ENDINGS: &[(&str, KeyFamily, bool)] = &[
    ("passphrase", KeyFamily::Password, false),
    ("password", KeyFamily::Password, false),
    ("passwd", KeyFamily::Password, false),
    ("secret", KeyFamily::Token, false),
    ("token", KeyFamily::Token, false),
    ("oauth", KeyFamily::Token, false),
    ("auth", KeyFamily::Token, false),
    ("pass", KeyFamily::Password, true),
    ("pwd", KeyFamily::Password, false),
    ("key", KeyFamily::Token, true),
    ("pw", KeyFamily::Password, false),
];

/// Words run together with a word-start ending in an all-lower or all-upper
/// key: `APIKEY`, `secretkey`, `DBPASS`, `rootpass`.
const KEY_COMPOUNDS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "signing",
    "encryption",
    "master",
    "license",
    "licence",
    "auth",
    "app",
    "client",
    "session",
    "crypt",
    "enc",
    "hmac",
    "jwt",
    "sign",
    "root",
    "admin",
    "db",
    "user",
    "mail",
    "smtp",
    "proxy",
];

/// Last words before the ending that make the key name a non-secret: a
/// database or map key, a pagination or tokenizer token, a public key.
const NOT_SECRET_KEYS: &[&str] = &[
    "public",
    "pub",
    "primary",
    "foreign",
    "sort",
    "partition",
    "cache",
    "hot",
    "lookup",
    "map",
    "dict",
    "hash",
    "idempotency",
    "row",
    "range",
    "shard",
    "routing",
    "group",
    "object",
    "bucket",
    "index",
    "composite",
    "unique",
    "natural",
    "surrogate",
    "translation",
    "i18n",
    "label",
    "storage",
    "query",
    "search",
    "parent",
    "child",
    "next",
    "prev",
    "previous",
    "page",
    "continuation",
    "cancel",
    "cancellation",
    "sync",
    "resume",
    "pagination",
    "start",
    "end",
    "stop",
    "last",
    "first",
    "max",
    "min",
    "num",
    "total",
    "count",
    "eos",
    "bos",
    "pad",
    "unk",
    "sep",
    "cls",
    "mask",
    "special",
    "dedup",
    "dedupe",
    "lock",
    "message",
    "msg",
    "error",
    "err",
    "column",
    "field",
    "attr",
    "property",
    "prop",
    "env",
    "var",
    "param",
    "header",
    "metric",
    "state",
    "event",
    "type",
    "kind",
    "name",
    "meta",
    "metadata",
    "desc",
    "description",
    "resource",
    "progress",
];

/// Words that make a key secret-named, for [`generic_assignment`].
const SECRET_WORDS: &[&str] = &["pass", "pwd", "secret", "token", "key", "credential", "auth"];

/// The words of an identifier, lowercased: split at `_`, `-`, `.` and at
/// camel-case steps (`nextPageToken`: next, page, token).
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for ch in key.chars() {
        if matches!(ch, '_' | '-' | '.') {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        word.push(ch.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The family of a secret-named key, or `None` when its name does not end
/// in a secret word at a word boundary (see [`KEY_ENDINGS`]).
fn key_family(key: &str) -> Option<KeyFamily> {
    let lower = key.to_ascii_lowercase();
    let &(ending, family, word_start) = KEY_ENDINGS.iter().find(|(e, _, _)| lower.ends_with(e))?;
    let cut = key.len() - ending.len();
    let prefix = &key[..cut];
    let lower_prefix = &lower[..cut];
    let camel = key.as_bytes()[cut].is_ascii_uppercase()
        && prefix
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let separated = prefix.is_empty() || prefix.ends_with(['_', '-', '.']);
    if word_start && !separated && !camel && !KEY_COMPOUNDS.iter().any(|w| lower_prefix.ends_with(w)) {
        return None;
    }
    // The last word before the ending, however the name is cased.
    let trimmed = prefix.trim_end_matches(['_', '-', '.']);
    let mut word_start_at = 0;
    for (i, ch) in trimmed.char_indices() {
        if matches!(ch, '_' | '-' | '.') {
            word_start_at = i + 1;
        } else if ch.is_ascii_uppercase() && i > 0 && trimmed.as_bytes()[i - 1].is_ascii_lowercase() {
            word_start_at = i;
        }
    }
    let last_word = trimmed[word_start_at..].to_ascii_lowercase();
    if NOT_SECRET_KEYS.contains(&last_word.as_str()) {
        return None;
    }
    Some(family)
}

/// Names rather than secrets: words joined by `-`, `_`, `.`, `:` or `/`
/// (and a trailing `=`), each lower, UPPER, Capitalised or camelCase (humps
/// of three letters or more on average) with digits only at its end, or
/// digits alone: `todos-v2`, `app.session`, `CAIRN_TOKEN`, `X-Api-Key`,
/// `HS256`, `io.modelcontextprotocol/serverInfo`, `resource_metadata=`.
fn is_name_like(v: &str) -> bool {
    v.trim_end_matches('=').split(['-', '_', '.', ':', '/']).all(|seg| {
        let word = seg.trim_end_matches(|ch: char| ch.is_ascii_digit());
        let rest = word.get(1..).unwrap_or("");
        let humps = 1 + rest.bytes().filter(|b| b.is_ascii_uppercase()).count();
        word.bytes().all(|b| b.is_ascii_alphabetic())
            && (word.bytes().all(|b| b.is_ascii_uppercase())
                || rest.bytes().all(|b| b.is_ascii_lowercase())
                || word.len() >= 3 * humps)
    })
}

/// Percent-escapes make up half the value or more: URL-parser test data
/// (`%c3%89t%C3%A9`), not a typed password.
fn mostly_percent_escapes(v: &str) -> bool {
    let escapes = v
        .as_bytes()
        .windows(3)
        .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        .count();
    escapes > 0 && escapes * 3 * 2 >= v.len()
}

/// One byte makes up three quarters of the value or more: test vectors and
/// masks (`0100…0000`), not a key.
fn mostly_one_byte(v: &str) -> bool {
    let mut counts = [0usize; 256];
    for b in v.bytes() {
        counts[b as usize] += 1;
    }
    counts.iter().max().is_some_and(|&m| m * 4 >= v.len() * 3)
}

/// Values so common in configuration that they are no secret.
const STOCK_VALUES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "true",
    "false",
    "null",
    "none",
    "nil",
    "undefined",
    "required",
    "optional",
    "disabled",
    "enabled",
    "default",
];

/// `secret-assignment`: a literal assigned to a key whose name ends in a
/// secret word ([`key_family`]) is a secret whatever its entropy, unless it
/// is a placeholder, code (an expression, a path, a URL) or a name. In
/// source code only quoted values count.
fn named_assignment(c: &Candidate<'_>) -> bool {
    let Some(family) = key_family(c.key) else {
        return false;
    };
    if c.code && !c.quoted {
        return false;
    }
    let v = c.value;
    let min_len = match family {
        KeyFamily::Password => 6,
        KeyFamily::Token => 8,
    };
    if v.len() < min_len || v.len() > 256 || is_placeholder(v) {
        return false;
    }
    if is_stock_word(v)
        || STOCK_VALUES.contains(&v.to_ascii_lowercase().as_str())
        || mostly_percent_escapes(v)
        || mostly_one_byte(v)
    {
        return false;
    }
    if v.starts_with([
        '/', '.', '~', '-', '=', '@', '&', '*', '!', '#', '$', '%', ':', '\\', '|', '>',
    ]) || v.contains("://")
        || v.contains("::")
        || v.contains(['{', '}', '(', ')', '$'])
    {
        return false;
    }
    let (mut lower, mut upper, mut digit, mut other) = (0, 0, 0, 0);
    for b in v.bytes() {
        match b {
            b'a'..=b'z' => lower += 1,
            b'A'..=b'Z' => upper += 1,
            b'0'..=b'9' => digit += 1,
            _ => other += 1,
        }
    }
    let letters = lower + upper;
    if letters == 0 {
        // A PIN-like password; numbers, versions and dates otherwise.
        return family == KeyFamily::Password && other == 0 && digit >= 6;
    }
    if digit == 0 && other == 0 {
        // Letters only: words and type names (`String`, `Passwort`), unless
        // long, mixed-case and random (no run of camel-case words).
        let words = 1 + v.bytes().skip(1).filter(|b| b.is_ascii_uppercase()).count();
        return v.len() >= 16 && lower > 0 && upper > 0 && v.len() / words < 4 && shannon_entropy(v) >= 3.5;
    }
    if is_name_like(v) {
        // A password may be a word and a number (`hunter22`, `Summer-2024`);
        // a key or token that reads like a name is one (`todos-v2`, `HS256`).
        let has_number_part = v
            .split(['-', '_', '.', ':', '/'])
            .any(|seg| seg.bytes().last().is_some_and(|b| b.is_ascii_digit()));
        return family == KeyFamily::Password && has_number_part && !v.contains('/');
    }
    true
}

/// How a built-in rule finds its candidates.
enum Spec {
    /// A regex whose groups name the value (`s`, or `sq…` quoted and `su`
    /// unquoted alternatives), the key (`key`) and the opening quote (`q`),
    /// and a check on each match. An empty group `nl` marks a line break
    /// between key and value, allowed before a quoted value only (`let
    /// token =⏎    "…";` as rustfmt wraps it, not `# secrets:⏎NEXT=1`).
    Regex(&'static str, Check),
    /// Several such regexes (one rule's shapes with different literal
    /// prefixes: an alternation of them would lose the literal prefilter).
    AnyOf(&'static [&'static str], Check),
    /// Values under `data:`/`stringData:` of Kubernetes Secret manifests.
    K8sSecret,
}

/// A literal-prefixed token: the value `s`, not inside a longer token.
macro_rules! token {
    ($body:literal) => {
        concat!(r"(?:^|[^A-Za-z0-9_-])(?P<s>", $body, r")(?:[^A-Za-z0-9_-]|$)")
    };
}

/// The built-in rules, most specific first: where two matches overlap, the
/// earlier rule wins.
const RULES: &[(&str, Spec)] = &[
    (
        "gcp-service-account",
        Spec::Regex(
            r#""private_key"\s*:\s*"(?P<s>-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----[^"]{32,})""#,
            pem_body,
        ),
    ),
    (
        "private-key",
        Spec::Regex(
            r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----(?P<s>[\s\S]{32,}?)-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
            pem_body,
        ),
    ),
    (
        "aws-access-key-id",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9])(?P<s>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?:[^A-Za-z0-9]|$)",
            aws_key_id,
        ),
    ),
    (
        "aws-secret-access-key",
        Spec::Regex(
            r#"(?i)(?P<key>aws[A-Za-z0-9_.-]{0,20}secret[A-Za-z0-9_.-]{0,20})["']?\s*(?::=|=>|=|:)\s*(?P<q>["']?)(?P<s>(?-i:[A-Za-z0-9/+]{40}))(?:[^A-Za-z0-9/+=]|$)"#,
            shaped,
        ),
    ),
    (
        "gcp-api-key",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_-])(?P<s>AIza[0-9A-Za-z_-]{35})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    (
        "azure-storage-key",
        Spec::Regex(
            r"(?:AccountKey|SharedAccessKey)\s*=\s*(?P<s>[A-Za-z0-9+/]{40,86}={0,2})",
            shaped,
        ),
    ),
    (
        "github-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>gh[pousr]_[A-Za-z0-9]{36,255})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    (
        "github-fine-grained-pat",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>github_pat_[A-Za-z0-9_]{82})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    (
        "gitlab-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_-])(?P<s>gl(?:pat|dt|rt|ptt|soat|cbt)-[A-Za-z0-9_-]{20,})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    (
        "slack-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_-])(?P<s>xox[abprs]-(?:[0-9]+-)+[A-Za-z0-9-]{8,})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    (
        "slack-webhook",
        Spec::Regex(
            r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]{20,})",
            shaped,
        ),
    ),
    (
        "stripe-key",
        Spec::AnyOf(
            &[
                r"(?:^|[^A-Za-z0-9_])(?P<s>sk_(?:live|test|prod)_[A-Za-z0-9]{16,247})(?:[^A-Za-z0-9_]|$)",
                r"(?:^|[^A-Za-z0-9_])(?P<s>rk_(?:live|test|prod)_[A-Za-z0-9]{16,247})(?:[^A-Za-z0-9_]|$)",
            ],
            shaped,
        ),
    ),
    (
        "twilio-api-key",
        Spec::Regex(r"(?:^|[^A-Za-z0-9_])(?P<s>SK[0-9a-f]{32})(?:[^A-Za-z0-9_]|$)", shaped),
    ),
    (
        "sendgrid-api-key",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    (
        "npm-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>npm_[A-Za-z0-9]{36})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    // OpenAI: project, service-account and admin keys (`sk-proj-`,
    // `sk-svcacct-`, `sk-admin-`, and `sk-None-` user keys) with a long
    // base64url body; legacy user keys are `sk-` + 48 alphanumerics with
    // `T3BlbkFJ` (base64 of "OpenAI") in the middle.
    (
        "openai-api-key",
        Spec::Regex(
            token!(r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{32,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"),
            shaped,
        ),
    ),
    // Anthropic: `sk-ant-` + kind and version (`api03`, `admin01`, `oat01`)
    // + a base64url body (93 characters ending in `AA` for API keys).
    (
        "anthropic-api-key",
        Spec::Regex(
            token!(r"sk-ant-(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{32,}"),
            shaped,
        ),
    ),
    // Hugging Face user access tokens `hf_` and organisation tokens
    // `api_org_`, each + 34 letters.
    (
        "huggingface-token",
        Spec::AnyOf(
            &[
                r"(?:^|[^A-Za-z0-9_])(?P<s>hf_[A-Za-z0-9]{34})(?:[^A-Za-z0-9_]|$)",
                r"(?:^|[^A-Za-z0-9_])(?P<s>api_org_[A-Za-z0-9]{34})(?:[^A-Za-z0-9_]|$)",
            ],
            huggingface,
        ),
    ),
    // PyPI API tokens: `pypi-` + a base64url macaroon, which starts `AgE`
    // (version 2, then the location: `AgEIcHlwaS5vcmc` is pypi.org).
    ("pypi-token", Spec::Regex(token!(r"pypi-AgE[A-Za-z0-9_-]{50,}"), shaped)),
    // HashiCorp Vault 1.10+ tokens: `hvs.` service, `hvb.` batch, `hvr.`
    // recovery, + a base64url body.
    (
        "vault-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_.-])(?P<s>hv[sbr]\.[A-Za-z0-9_-]{24,})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    // Shopify: admin API access tokens `shpat_`, custom-app `shpca_`,
    // private-app `shppa_`, shared secrets `shpss_`, each + 32 hex digits.
    (
        "shopify-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>shp(?:at|ca|pa|ss)_[0-9a-fA-F]{32})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    // Google OAuth 2.0 access tokens: `ya29.` + base64url (service-account
    // tokens carry dots and may end in `.` padding).
    (
        "google-oauth-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_.-])(?P<s>ya29\.[A-Za-z0-9_-][A-Za-z0-9_.-]{19,})(?:[^A-Za-z0-9_.-]|$)",
            google_oauth,
        ),
    ),
    // DigitalOcean: personal access `dop_v1_`, OAuth `doo_v1_`, refresh
    // `dor_v1_`, each + 64 hex digits.
    (
        "digitalocean-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>do[opr]_v1_[0-9a-f]{64})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    // Databricks personal access tokens: `dapi` + 32 hex digits, sometimes
    // with a `-<n>` suffix.
    (
        "databricks-token",
        Spec::Regex(token!(r"dapi[0-9a-f]{32}(?:-[0-9]{1,2})?"), shaped),
    ),
    // cairn's own API tokens (`cairn token create`): `cairn_` + 64 hex digits.
    (
        "cairn-token",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_])(?P<s>cairn_[0-9a-f]{64})(?:[^A-Za-z0-9_]|$)",
            shaped,
        ),
    ),
    (
        "npmrc-auth-token",
        Spec::Regex(
            r#"(?m)(?:^|:)(?P<key>_authToken|_auth|_password)\s*=\s*(?P<q>["']?)(?P<s>[A-Za-z0-9+/=_.-]{8,})(?:[\s"';,]|$)"#,
            generic_assignment,
        ),
    ),
    (
        "jwt",
        Spec::Regex(
            r"(?:^|[^A-Za-z0-9_-])(?P<s>eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})(?:[^A-Za-z0-9_-]|$)",
            shaped,
        ),
    ),
    // An opaque token in an `Authorization: Bearer ...` / `token ...`
    // header (curl `-H`, HTTP files, code), when no shaped rule knew it.
    (
        "bearer-token",
        Spec::Regex(
            r#"(?i)authorization\\?["']?\s*[:=]\s*\\?["']?(?:bearer|token)[ \t]+(?P<s>[A-Za-z0-9_.~+/-]{16,}=*)(?:[^A-Za-z0-9_.~+/=-]|$)"#,
            bearer,
        ),
    ),
    ("k8s-secret-data", Spec::K8sSecret),
    (
        "url-credentials",
        Spec::Regex(
            r#"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@"'`<>]{0,64}:(?P<s>[^\s:/@"'`<>]{1,128})@[A-Za-z0-9\[][^\s/"'`<>]*"#,
            url_password,
        ),
    ),
    (
        "generic-secret",
        Spec::Regex(
            r#"(?i)(?P<key>(?:password|passwd|passphrase|pwd|secret|token|api_?key|apikey|access_?key|auth_?key|private_?key|client_?secret|credentials?)[A-Za-z0-9_-]{0,24})\\?["']?[ \t]*(?::=|=>|=|:)[ \t]*(?:\r?\n[ \t]*(?P<nl>))?(?P<q>\\["'`]|["'`]|)(?P<s>[^\s"'`;,()\[\]{}<>\\]{8,})(?:[\s"'`;,)\]}]|\\["'`]|$)"#,
            generic_assignment,
        ),
    ),
    // Key, optional closing quote of a quoted key, a separator (plain, or
    // after a type: `: &str =`, `: string =`, Go's ` string =`), then a
    // value: double-, single- or JSON-escaped-quoted without spaces,
    // or unquoted up to a delimiter.
    (
        "secret-assignment",
        Spec::Regex(
            r#"(?P<key>[A-Za-z0-9_-]*(?i:passphrase|password|passwd|secret|token|oauth|auth|pass|pwd|key|pw))(?:\\?["'])?(?:[ \t]*:[ \t]*&?(?:'[a-z]+[ \t]+)?[A-Za-z_][A-Za-z0-9_]*\??[ \t]*=|[ \t]+string[ \t]*=|[ \t]*(?::=|=>|=|:))[ \t]*(?:\r?\n[ \t]*(?P<nl>))?(?:\\"(?P<sq1>[^"\\\s]+)\\"|"(?P<sq2>[^"\\\s]+)"|'(?P<sq3>[^'\\\s]+)'|(?P<su>[^\s"'`;,()\[\]{}<>\\=~|&*!#-][^\s"'`;,()\[\]{}<>\\]*)(?:[\s"'`;,)\]}#]|\\["'`]|$))"#,
            named_assignment,
        ),
    ),
];

/// Ids of all built-in rules, in priority order.
pub const RULE_IDS: &[&str] = &[
    "gcp-service-account",
    "private-key",
    "aws-access-key-id",
    "aws-secret-access-key",
    "gcp-api-key",
    "azure-storage-key",
    "github-token",
    "github-fine-grained-pat",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "stripe-key",
    "twilio-api-key",
    "sendgrid-api-key",
    "npm-token",
    "openai-api-key",
    "anthropic-api-key",
    "huggingface-token",
    "pypi-token",
    "vault-token",
    "shopify-token",
    "google-oauth-token",
    "digitalocean-token",
    "databricks-token",
    "cairn-token",
    "npmrc-auth-token",
    "jwt",
    "bearer-token",
    "k8s-secret-data",
    "url-credentials",
    "generic-secret",
    "secret-assignment",
];

/// The first line of a Kubernetes Secret manifest's `kind`.
const K8S_KIND: &str = r#"(?m)^[ \t]*(?:-[ \t]+)?["']?kind["']?[ \t]*:[ \t]*["']?Secret["']?[ \t]*(?:#.*)?\r?$"#;

/// One YAML line: where it starts, its text (no line break), its leading
/// spaces, whether it starts a list item (`- `) and the column of its
/// content after the spaces and the dash.
struct YamlLine<'a> {
    start: usize,
    text: &'a str,
    lead: usize,
    item: bool,
    col: usize,
}

impl<'a> YamlLine<'a> {
    fn new(start: usize, text: &'a str) -> Self {
        let text = text.strip_suffix('\r').unwrap_or(text);
        let lead = text.len() - text.trim_start_matches(' ').len();
        let rest = &text[lead..];
        let item = rest == "-" || rest.starts_with("- ");
        let col = if item {
            lead + 1 + (rest[1..].len() - rest[1..].trim_start_matches(' ').len())
        } else {
            lead
        };
        Self {
            start,
            text,
            lead,
            item,
            col,
        }
    }

    fn blank(&self) -> bool {
        let t = self.text.trim();
        t.is_empty() || t.starts_with('#')
    }

    fn doc_marker(&self) -> bool {
        self.text.starts_with("---") || self.text.starts_with("...")
    }

    /// `key: rest` at the content column: the key (unquoted) and the byte
    /// offset, in the line, of what follows the colon.
    fn key_value(&self) -> Option<(&'a str, usize)> {
        let content = &self.text[self.col..];
        let (key, after) = match content.as_bytes().first()? {
            q @ (b'"' | b'\'') => {
                let close = content[1..].find(*q as char)? + 1;
                let rest = &content[close + 1..];
                let rest_trim = rest.trim_start_matches(' ');
                rest_trim.strip_prefix(':')?;
                (&content[1..close], close + 1 + (rest.len() - rest_trim.len()) + 1)
            }
            _ => {
                let colon = content
                    .match_indices(':')
                    .map(|(i, _)| i)
                    .find(|&i| content[i + 1..].is_empty() || content[i + 1..].starts_with([' ', '\t']))?;
                (content[..colon].trim_end(), colon + 1)
            }
        };
        Some((key, self.col + after))
    }
}

/// Values of `data:` and `stringData:` in Kubernetes Secret manifests
/// (YAML, one or more documents, or items of a `List`): the span of each
/// value (a block scalar from its first to its last content line). `data:`
/// values must be base64; template and variable references are skipped.
fn k8s_secret_values(text: &str, kind: &Regex) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if !text.contains("Secret") || !kind.is_match(text) {
        return out;
    }
    let mut lines = Vec::new();
    let mut pos = 0;
    for l in text.split('\n') {
        lines.push(YamlLine::new(pos, l));
        pos += l.len() + 1;
    }
    for m in kind.find_iter(text) {
        let li = lines.partition_point(|l| l.start <= m.start()) - 1;
        let k = lines[li].col;
        // The mapping that holds `kind`: siblings and children around it.
        let mut first = li;
        if !lines[li].item {
            for j in (0..li).rev() {
                let l = &lines[j];
                if l.blank() {
                    continue;
                }
                if l.doc_marker() {
                    break;
                }
                if l.item && l.col == k {
                    first = j;
                    break;
                }
                if l.lead < k {
                    break;
                }
                first = j;
            }
        }
        let mut last = li;
        for (j, l) in lines.iter().enumerate().skip(li + 1) {
            if l.blank() {
                continue;
            }
            if l.doc_marker() || l.lead < k {
                break;
            }
            last = j;
        }
        for d in first..=last {
            let l = &lines[d];
            if l.col != k || (l.item && d != first) || (!l.item && l.lead != k) {
                continue;
            }
            let Some((key, _)) = l.key_value() else { continue };
            let string_data = match key {
                "data" => false,
                "stringData" => true,
                _ => continue,
            };
            secret_entries(&lines[d + 1..=last], k, string_data, &mut out);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The entries of one `data:`/`stringData:` mapping (the lines after it,
/// indented deeper than `parent_col`).
fn secret_entries(lines: &[YamlLine<'_>], parent_col: usize, string_data: bool, out: &mut Vec<(usize, usize)>) {
    let mut entry_col = None;
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        i += 1;
        if l.blank() {
            continue;
        }
        if l.lead <= parent_col {
            break;
        }
        let col = *entry_col.get_or_insert(l.lead);
        if l.lead != col || l.item {
            continue;
        }
        let Some((_, after)) = l.key_value() else { continue };
        let raw = &l.text[after..];
        let value = raw.trim_start_matches([' ', '\t']);
        let vstart = after + (raw.len() - value.len());
        if value.starts_with('|') || value.starts_with('>') {
            // Block scalar: the deeper lines that follow.
            let (mut from, mut to) = (None, 0);
            let mut body = String::new();
            while i < lines.len() {
                let b = &lines[i];
                if !b.text.trim().is_empty() && b.lead <= col {
                    break;
                }
                if !b.text.trim().is_empty() {
                    from.get_or_insert(b.start + b.lead);
                    to = b.start + b.text.len();
                    body.push_str(b.text.trim());
                }
                i += 1;
            }
            if let Some(from) = from
                && secret_value(&body, string_data)
            {
                out.push((from, to));
            }
            continue;
        }
        let (s, e) = match value.as_bytes().first() {
            None | Some(b'#') => continue,
            Some(q @ (b'"' | b'\'')) => match value[1..].find(*q as char) {
                Some(close) => (vstart + 1, vstart + 1 + close),
                None => continue,
            },
            Some(_) => {
                let v = value.split(" #").next().unwrap_or(value).trim_end();
                (vstart, vstart + v.len())
            }
        };
        if s < e && secret_value(&l.text[s..e], string_data) {
            out.push((l.start + s, l.start + e));
        }
    }
}

/// A Secret value worth redacting: not a template or variable reference;
/// under `data:`, base64.
fn secret_value(v: &str, string_data: bool) -> bool {
    if v.is_empty() || v.contains("{{") || v.contains("${") || v.contains("[REDACTED:") {
        return false;
    }
    if string_data {
        return !is_placeholder(v);
    }
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

/// A compiled built-in regex rule: the pattern, its check and where its
/// groups are.
struct RegexRule {
    regex: Regex,
    check: Check,
    /// Value groups, each with whether it is quoted (`None`: see `q`).
    values: Vec<(usize, Option<bool>)>,
    quote: Option<usize>,
    key: Option<usize>,
    newline: Option<usize>,
}

impl RegexRule {
    fn new(id: &str, pattern: &str, check: Check) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|e| IndexError::InvalidArgument(format!("secret rule {id}: {e}")))?;
        let (mut values, mut quote, mut key, mut newline) = (Vec::new(), None, None, None);
        for (i, name) in regex.capture_names().enumerate() {
            match name {
                Some("s") => values.push((i, None)),
                Some("su") => values.push((i, Some(false))),
                Some(n) if n.starts_with("sq") => values.push((i, Some(true))),
                Some("q") => quote = Some(i),
                Some("key") => key = Some(i),
                Some("nl") => newline = Some(i),
                _ => {}
            }
        }
        Ok(Self {
            regex,
            check,
            values,
            quote,
            key,
            newline,
        })
    }

    fn spans(&self, text: &str, code: bool, out: &mut Vec<Span>) {
        let mut at = 0;
        while let Some(caps) = (at <= text.len()).then(|| self.regex.captures_at(text, at)).flatten() {
            let whole = caps.get(0).expect("group 0 always matches");
            // A rejected match may hide a real one that starts inside it
            // (`key=<not a secret>password: <secret>`): search again from
            // its next character. An accepted one is skipped whole.
            at = next_char(text, whole.start());
            let Some((s, quoted)) = self
                .values
                .iter()
                .find_map(|&(i, quoted)| caps.get(i).map(|m| (m, quoted)))
            else {
                continue;
            };
            let quoted = quoted.unwrap_or_else(|| self.quote.and_then(|i| caps.get(i)).is_some_and(|q| !q.is_empty()));
            if !quoted && self.newline.is_some_and(|i| caps.get(i).is_some()) {
                continue;
            }
            // The whole name the key is part of (`next_page_token`, not `token`).
            let key = self.key.and_then(|i| caps.get(i)).map_or("", |k| {
                let before = &text.as_bytes()[..k.start()];
                let from = before
                    .iter()
                    .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
                    .map_or(0, |i| i + 1);
                &text[from..k.end()]
            });
            let candidate = Candidate {
                value: s.as_str(),
                quoted,
                key,
                code,
            };
            if s.is_empty() || !(self.check)(&candidate) {
                continue;
            }
            out.push(Span {
                start: s.start(),
                end: s.end(),
                match_start: whole.start(),
                match_end: whole.end(),
            });
            at = at.max(whole.end());
        }
    }
}

/// A candidate secret: the value's span and the whole match's span.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    match_start: usize,
    match_end: usize,
}

enum RuleKind {
    /// One regex, or several whose matches are merged.
    Regex(Vec<RegexRule>),
    K8sSecret(Regex),
    Extra(Box<ExtraRule>),
}

struct Rule {
    id: &'static str,
    kind: RuleKind,
}

/// A rule from a gitleaks-format rules file.
struct ExtraRule {
    regex: Regex,
    /// The capture group holding the secret (0: the whole match).
    secret_group: usize,
    /// Minimum Shannon entropy of the secret.
    entropy: Option<f64>,
    /// The rule applies only to text matching this (its keywords).
    keywords: Option<Regex>,
    /// The rule applies only to files whose path matches this.
    path: Option<Regex>,
    allowlists: Vec<Allowlist>,
}

impl ExtraRule {
    fn spans(&self, text: &str, path: Option<&str>, out: &mut Vec<Span>) {
        if let Some(p) = &self.path
            && !path.is_some_and(|path| p.is_match(path))
        {
            return;
        }
        if let Some(k) = &self.keywords
            && !k.is_match(text)
        {
            return;
        }
        let mut at = 0;
        while let Some(caps) = (at <= text.len()).then(|| self.regex.captures_at(text, at)).flatten() {
            let whole = caps.get(0).expect("group 0 always matches");
            // as for the built-in rules: a rejected match is searched again
            // from its next character, an accepted one skipped whole
            at = next_char(text, whole.start());
            let Some(s) = caps.get(self.secret_group) else { continue };
            if s.is_empty() || self.entropy.is_some_and(|min| shannon_entropy(s.as_str()) < min) {
                continue;
            }
            let span = Span {
                start: s.start(),
                end: s.end(),
                match_start: whole.start(),
                match_end: whole.end(),
            };
            if self.allowlists.iter().any(|a| a.allows(text, span, path)) {
                continue;
            }
            out.push(span);
            at = at.max(whole.end());
        }
    }
}

/// The byte offset of the character after the one at `i` (`text.len() + 1`
/// at the end, which ends a search loop).
fn next_char(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(text.len() + 1, |c| i + c.len_utf8())
}

/// What an allowlist's regexes are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegexTarget {
    Secret,
    Match,
    Line,
}

/// A gitleaks allowlist: a finding it matches is not a secret.
struct Allowlist {
    /// All given criteria must match (`condition = "AND"`), else any.
    all: bool,
    regexes: Vec<Regex>,
    target: RegexTarget,
    /// Lowercase words; the secret must contain one.
    stopwords: Vec<String>,
    paths: Vec<Regex>,
    /// For global allowlists: the rules it applies to (empty: all).
    target_rules: Vec<String>,
}

impl Allowlist {
    fn allows(&self, text: &str, span: Span, path: Option<&str>) -> bool {
        let mut results = Vec::with_capacity(3);
        if !self.regexes.is_empty() {
            let target = match self.target {
                RegexTarget::Secret => &text[span.start..span.end],
                RegexTarget::Match => &text[span.match_start..span.match_end],
                RegexTarget::Line => {
                    let from = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                    let to = text[span.end..].find('\n').map_or(text.len(), |i| span.end + i);
                    &text[from..to]
                }
            };
            results.push(self.regexes.iter().any(|r| r.is_match(target)));
        }
        if !self.stopwords.is_empty() {
            let secret = text[span.start..span.end].to_lowercase();
            results.push(self.stopwords.iter().any(|w| secret.contains(w.as_str())));
        }
        if !self.paths.is_empty() {
            results.push(path.is_some_and(|p| self.paths.iter().any(|r| r.is_match(p))));
        }
        match self.all {
            true => !results.is_empty() && results.iter().all(|&r| r),
            false => results.iter().any(|&r| r),
        }
    }
}

/// Rule ids from rules files, leaked once each so [`Finding::rule`] stays a
/// `&'static str`.
fn intern(id: &str) -> &'static str {
    if let Some(builtin) = RULE_IDS.iter().find(|&&b| b == id) {
        return builtin;
    }
    static IDS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = ids.get(id) {
        return known;
    }
    let leaked: &'static str = Box::leak(id.to_string().into_boxed_str());
    ids.insert(leaked);
    leaked
}

/// A gitleaks-format rules file (`[[rules]]`, `[allowlist]`,
/// `[[allowlists]]`). Keys gitleaks uses for reporting only (`title`,
/// `description`, `tags`) are read and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    #[allow(dead_code)]
    title: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    extend: Option<FileExtend>,
    #[serde(default)]
    rules: Vec<FileRule>,
    #[serde(default)]
    allowlist: Option<FileAllowlist>,
    #[serde(default)]
    allowlists: Vec<FileAllowlist>,
}

/// `[extend]`: the built-in rules are always on (`useDefault`); extending
/// another file is not supported.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileExtend {
    #[serde(default)]
    #[allow(dead_code)]
    use_default: Option<bool>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    tags: Vec<String>,
    #[serde(default)]
    allowlist: Option<FileAllowlist>,
    #[serde(default)]
    allowlists: Vec<FileAllowlist>,
    #[serde(default)]
    required: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileAllowlist {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    /// Commit allowlists do not apply: cairn scans snapshots, not history.
    #[serde(default)]
    #[allow(dead_code)]
    commits: Vec<String>,
    #[serde(default)]
    target_rules: Vec<String>,
}

/// Compiles a rule file's regex; refuses look-around and backreferences
/// with an explicit message (the `regex` crate has neither).
fn compile_file_regex(what: &str, pattern: &str) -> std::result::Result<Regex, String> {
    if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|l| pattern.contains(l)) {
        return Err(format!(
            "{what} uses look-around ((?=, (?!, (?<=, (?<!), which the regex crate does not support; \
             rewrite it without (capture the secret in a group and use secretGroup)"
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(64 << 20)
        .build()
        .map_err(|e| format!("bad {what}: {e}"))
}

impl FileAllowlist {
    fn compile(self, global: bool) -> std::result::Result<Allowlist, String> {
        let all = match self.condition.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("OR") => false,
            Some("AND") => true,
            Some(other) => return Err(format!("allowlist condition {other:?} is not OR or AND")),
        };
        let target = match self.regex_target.as_deref() {
            None | Some("secret") => RegexTarget::Secret,
            Some("match") => RegexTarget::Match,
            Some("line") => RegexTarget::Line,
            Some(other) => return Err(format!("allowlist regexTarget {other:?} is not secret, match or line")),
        };
        if !global && !self.target_rules.is_empty() {
            return Err("targetRules belongs in a global [[allowlists]], not in a rule's".into());
        }
        let regexes = self
            .regexes
            .iter()
            .map(|r| compile_file_regex("allowlist regex", r))
            .collect::<std::result::Result<_, _>>()?;
        let paths = self
            .paths
            .iter()
            .map(|r| compile_file_regex("allowlist path", r))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Allowlist {
            all,
            regexes,
            target,
            stopwords: self.stopwords.iter().map(|w| w.to_lowercase()).collect(),
            paths,
            target_rules: self.target_rules,
        })
    }
}

/// Parses a gitleaks-format rules file (`source` names it in errors).
fn parse_rules_file(source: &str, text: &str) -> Result<(Vec<Rule>, Vec<Allowlist>)> {
    let err = |msg: String| IndexError::InvalidArgument(format!("secret rules file {source}: {msg}"));
    let file: RulesFile = toml::from_str(text).map_err(|e| err(format!("invalid TOML: {e}")))?;
    if let Some(extend) = &file.extend {
        if let Some(p) = &extend.path {
            return Err(err(format!(
                "[extend] path = {p:?} is not supported: put all rules in one file"
            )));
        }
        if !extend.disabled_rules.is_empty() {
            return Err(err(
                "[extend] disabledRules is not supported: built-in rules are always on".into(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for (n, r) in file.rules.into_iter().enumerate() {
        let Some(id) = r.id.clone().filter(|id| !id.trim().is_empty()) else {
            return Err(err(format!("rule #{} has no id", n + 1)));
        };
        let rerr = |msg: String| err(format!("rule {id:?}: {msg}"));
        let valid_id = id.len() <= 64
            && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_id {
            return Err(rerr("an id is letters, digits, '-', '_' and '.' (at most 64)".into()));
        }
        if !seen.insert(id.clone()) {
            return Err(rerr("duplicate id".into()));
        }
        if r.required.is_some() {
            return Err(rerr("composite rules ([[rules.required]]) are not supported".into()));
        }
        let Some(pattern) = r.regex.as_deref() else {
            return Err(rerr("no regex (path-only rules are not supported)".into()));
        };
        let regex = compile_file_regex("regex", pattern).map_err(rerr)?;
        let groups = regex.captures_len() - 1;
        let secret_group = match r.secret_group {
            Some(g) if g > groups => {
                return Err(rerr(format!(
                    "secretGroup {g} but the regex has {groups} capture groups"
                )));
            }
            Some(g) => g,
            None => usize::from(groups > 0),
        };
        if let Some(e) = r.entropy
            && !(0.0..=8.0).contains(&e)
        {
            return Err(rerr(format!("entropy {e} is not between 0 and 8 bits")));
        }
        let keywords = r
            .keywords
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| regex::escape(k))
            .collect::<Vec<_>>();
        let keywords = match keywords.is_empty() {
            true => None,
            false => Some(compile_file_regex("keywords", &format!("(?i){}", keywords.join("|"))).map_err(rerr)?),
        };
        let path = match &r.path {
            Some(p) => Some(compile_file_regex("path", p).map_err(rerr)?),
            None => None,
        };
        let allowlists = r
            .allowlist
            .into_iter()
            .chain(r.allowlists)
            .map(|a| a.compile(false))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(rerr)?;
        rules.push(Rule {
            id: intern(&id),
            kind: RuleKind::Extra(Box::new(ExtraRule {
                regex,
                secret_group,
                entropy: r.entropy,
                keywords,
                path,
                allowlists,
            })),
        });
    }
    let global = file
        .allowlist
        .into_iter()
        .chain(file.allowlists)
        .map(|a| a.compile(true))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(format!("global allowlist: {e}")))?;
    Ok((rules, global))
}

/// The compiled rules. Build once per run and share; scanning needs `&self` only.
pub struct Scanner {
    rules: Vec<Rule>,
    /// Global allowlists of a rules file: they apply to every rule.
    allowlists: Vec<Allowlist>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rule_ids())
            .field("allowlists", &self.allowlists.len())
            .finish()
    }
}

impl Scanner {
    /// Compiles the built-in rules.
    pub fn new() -> Result<Self> {
        let rules = RULES
            .iter()
            .map(|(id, spec)| {
                Ok(Rule {
                    id,
                    kind: match spec {
                        Spec::Regex(pattern, check) => RuleKind::Regex(vec![RegexRule::new(id, pattern, *check)?]),
                        Spec::AnyOf(patterns, check) => RuleKind::Regex(
                            patterns
                                .iter()
                                .map(|p| RegexRule::new(id, p, *check))
                                .collect::<Result<_>>()?,
                        ),
                        Spec::K8sSecret => RuleKind::K8sSecret(
                            Regex::new(K8S_KIND)
                                .map_err(|e| IndexError::InvalidArgument(format!("secret rule {id}: {e}")))?,
                        ),
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            rules,
            allowlists: Vec::new(),
        })
    }

    /// The built-in rules plus those of a gitleaks-format TOML rules file:
    /// `[[rules]]` with `id`, `regex`, `secretGroup` (default: group 1 if
    /// the regex has groups, else the whole match), `entropy` (minimum
    /// Shannon entropy of the secret), `keywords` (the rule runs only on
    /// text containing one, case-insensitively), `path` (only files whose
    /// path matches) and allowlists (`[rules.allowlist]` or
    /// `[[rules.allowlists]]`: `regexes` with `regexTarget` secret, match
    /// or line, `stopwords`, `paths`, `condition` OR/AND); and a global
    /// `[allowlist]` / `[[allowlists]]` (`targetRules` to limit it), which
    /// applies to built-in rules too. Extra rules rank after the built-ins.
    /// Errors name the file, the rule and the problem; a regex with
    /// look-around or backreferences is refused (the `regex` crate has
    /// neither), as are composite (`[[rules.required]]`) and path-only
    /// rules and `[extend] path`.
    pub fn with_rules_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| IndexError::Io {
            context: format!("secret rules file {}", path.display()),
            source: e,
        })?;
        Self::with_extra_rules_from(&path.display().to_string(), &text)
    }

    /// [`Scanner::with_rules_file`] from the TOML text itself.
    pub fn with_extra_rules(toml_text: &str) -> Result<Self> {
        Self::with_extra_rules_from("(inline)", toml_text)
    }

    /// [`Scanner::new`], or [`Scanner::with_rules_file`] when a file is given.
    pub fn with_optional_rules_file(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(path) => Self::with_rules_file(path),
            None => Self::new(),
        }
    }

    fn with_extra_rules_from(source: &str, text: &str) -> Result<Self> {
        let mut scanner = Self::new()?;
        let (rules, allowlists) = parse_rules_file(source, text)?;
        scanner.rules.extend(rules);
        scanner.allowlists = allowlists;
        Ok(scanner)
    }

    /// Ids of this scanner's rules in priority order: [`RULE_IDS`], then
    /// those of its rules file.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.id).collect()
    }

    /// Every secret in `text`, read as a config file (unquoted assigned
    /// values count), in text order; overlaps go to the more specific rule.
    /// Rules-file rules and allowlists that name paths do not apply.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.scan_as(text, None, false)
    }

    /// [`Scanner::scan`] for the file at `path`: in source code
    /// ([`is_source_code`]) assignment rules only take quoted values.
    pub fn scan_file(&self, path: &str, text: &str) -> Vec<Finding> {
        self.scan_as(text, Some(path), is_source_code(path))
    }

    fn scan_as(&self, text: &str, path: Option<&str>, code: bool) -> Vec<Finding> {
        // Sorted by start and never overlapping, so lookups can bisect.
        let mut found: Vec<Finding> = Vec::new();
        let mut spans = Vec::new();
        for rule in &self.rules {
            spans.clear();
            match &rule.kind {
                RuleKind::Regex(regexes) => {
                    for r in regexes {
                        r.spans(text, code, &mut spans);
                    }
                    if regexes.len() > 1 {
                        spans.sort_by_key(|s| s.start);
                    }
                }
                RuleKind::K8sSecret(kind) => {
                    spans.extend(k8s_secret_values(text, kind).into_iter().map(|(start, end)| Span {
                        start,
                        end,
                        match_start: start,
                        match_end: end,
                    }))
                }
                RuleKind::Extra(r) => r.spans(text, path, &mut spans),
            }
            let mut fresh = Vec::new();
            for &span in &spans {
                if self.allowlists.iter().any(|a| {
                    (a.target_rules.is_empty() || a.target_rules.iter().any(|t| t == rule.id))
                        && a.allows(text, span, path)
                }) {
                    continue;
                }
                // Rules run in priority order: where an earlier rule (or an
                // earlier match of this one) already claimed some of the
                // bytes, this match keeps the rest, so no part of a value
                // stays in clear because another secret sits inside it.
                let mut cur = fresh.last().map_or(span.start, |f: &Finding| f.end.max(span.start));
                let mut i = found.partition_point(|f| f.end <= cur);
                while cur < span.end {
                    let (piece_end, skip_to) = match found.get(i) {
                        Some(f) if f.start < span.end => (f.start.max(cur), f.end),
                        _ => (span.end, span.end),
                    };
                    if piece_end > cur && !text[cur..piece_end].trim().is_empty() {
                        fresh.push(Finding {
                            rule: rule.id,
                            line: 0,
                            start: cur,
                            end: piece_end,
                        });
                    }
                    cur = cur.max(skip_to);
                    i += 1;
                }
            }
            if !fresh.is_empty() {
                found.extend(fresh);
                found.sort_by_key(|f| f.start);
            }
        }
        // Line numbers in one pass over the text.
        let mut line = 1;
        let mut pos = 0;
        for f in &mut found {
            line += text.as_bytes()[pos..f.start].iter().filter(|&&b| b == b'\n').count();
            pos = f.start;
            f.line = line;
        }
        found
    }

    /// `text` with every secret value replaced by `[REDACTED:<rule-id>]`,
    /// one marker per line of the value, so the line count never changes.
    pub fn redact<'a>(&self, text: &'a str) -> Redaction<'a> {
        self.redact_findings(text, self.scan(text))
    }

    /// [`Scanner::redact`] for the file at `path` (see [`Scanner::scan_file`]).
    pub fn redact_file<'a>(&self, path: &str, text: &'a str) -> Redaction<'a> {
        self.redact_findings(text, self.scan_file(path, text))
    }

    fn redact_findings<'a>(&self, text: &'a str, findings: Vec<Finding>) -> Redaction<'a> {
        if findings.is_empty() {
            return Redaction {
                text: Cow::Borrowed(text),
                findings,
            };
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for f in &findings {
            out.push_str(&text[pos..f.start]);
            let marker = format!("[REDACTED:{}]", f.rule);
            for (i, segment) in text[f.start..f.end].split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let body = segment.trim_end_matches('\r');
                let trimmed = body.trim_start();
                if trimmed.trim_end().is_empty() {
                    out.push_str(segment);
                } else {
                    out.push_str(&body[..body.len() - trimmed.len()]);
                    out.push_str(&marker);
                    out.push_str(&segment[body.len()..]);
                }
            }
            pos = f.end;
        }
        out.push_str(&text[pos..]);
        Redaction {
            text: Cow::Owned(out),
            findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new().unwrap()
    }

    fn rules(text: &str) -> Vec<&'static str> {
        scanner().scan(text).into_iter().map(|f| f.rule).collect()
    }

    /// Redacts `text`, checks the line count is kept and `secret` is gone,
    /// and returns the rule ids found.
    fn redacts(text: &str, secret: &str) -> Vec<&'static str> {
        let r = scanner().redact(text);
        assert_eq!(
            r.text.lines().count(),
            text.lines().count(),
            "line count changed:\n{}",
            r.text
        );
        assert_eq!(r.text.matches('\n').count(), text.matches('\n').count());
        assert!(!r.text.contains(secret), "secret left in:\n{}", r.text);
        r.findings.into_iter().map(|f| f.rule).collect()
    }

    fn assert_clean(text: &str) {
        let found = scanner().scan(text);
        assert!(found.is_empty(), "false positive {found:?} in:\n{text}");
    }

    #[test]
    fn rule_ids_match_rules() {
        let ids: Vec<&str> = RULES.iter().map(|r| r.0).collect();
        assert_eq!(ids, RULE_IDS);
        assert_eq!(scanner().rules.len(), RULE_IDS.len());
    }

    const PEM_BODY: [&str; 3] = [
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
        "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
        "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo",
    ];

    #[test]
    fn private_key_body_lines_each_become_one_marker() {
        let text = format!(
            "key = '''\n-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n'''\nnext = 1\n",
            PEM_BODY.join("\n")
        );
        assert_eq!(redacts(&text, PEM_BODY[1]), ["private-key"]);
        let r = scanner().redact(&text);
        let lines: Vec<&str> = r.text.lines().collect();
        assert_eq!(lines[1], "-----BEGIN RSA PRIVATE KEY-----");
        assert_eq!(&lines[2..5], ["[REDACTED:private-key]"; 3]);
        assert_eq!(lines[5], "-----END RSA PRIVATE KEY-----");
        assert_eq!(lines[7], "next = 1");
        assert_eq!(r.findings[0].line, 2);
        for line in PEM_BODY {
            assert!(!r.text.contains(line));
        }
        // CRLF and indented bodies keep their shape.
        let crlf = text.replace('\n', "\r\n").replace("\r\nMIIE", "\r\n    MIIE");
        let r = scanner().redact(&crlf);
        assert!(r.text.contains("\r\n    [REDACTED:private-key]\r\n"), "{:?}", r.text);
        assert_eq!(r.text.matches('\n').count(), crlf.matches('\n').count());
        for kind in ["", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "] {
            let t = format!(
                "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----\n",
                PEM_BODY[0]
            );
            assert_eq!(redacts(&t, PEM_BODY[0]), ["private-key"], "{kind}");
        }
    }

    #[test]
    fn private_key_negatives() {
        // Parsers that mention the armour, public keys, certificates.
        assert_clean("const HEADER: &str = \"-----BEGIN RSA PRIVATE KEY-----\";\nfn parse() {}\n");
        assert_clean(
            "if line == \"-----BEGIN PRIVATE KEY-----\" { start = i }\nif line == \"-----END PRIVATE KEY-----\" {}\n",
        );
        assert_clean(&format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            PEM_BODY[0]
        ));
        assert_clean("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n");
    }

    #[test]
    fn gcp_service_account_json() {
        let body = PEM_BODY.join("\\n");
        let text = format!(
            "{{\n  \"type\": \"service_account\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"a@b.iam.gserviceaccount.com\"\n}}\n"
        );
        assert_eq!(redacts(&text, PEM_BODY[2]), ["gcp-service-account"]);
        let r = scanner().redact(&text);
        assert!(
            r.text.contains("\"private_key\": \"[REDACTED:gcp-service-account]\","),
            "{}",
            r.text
        );
    }

    #[test]
    fn aws_keys() {
        let id = "AKIAZ7QWERTY2345ABCD";
        let key = "q9Xw2Lr8Vb3Nk7Jd5Hf1Gs6Ta4Yc0Ue+Po/ZmWiE";
        assert_eq!(key.len(), 40);
        let text = format!("aws_access_key_id = {id}\naws_secret_access_key = {key}\n");
        assert_eq!(redacts(&text, id), ["aws-access-key-id", "aws-secret-access-key"]);
        assert!(!scanner().redact(&text).text.contains(key));
        let text = format!("AWS_SECRET_ACCESS_KEY: \"{key}\"\n");
        assert_eq!(redacts(&text, key), ["aws-secret-access-key"]);
        // AWS's documentation example and lookalikes.
        assert_clean("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n");
        assert_clean("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n");
        assert_clean("let s = \"XAKIAZ7QWERTY2345ABCDX\";\n");
    }

    #[test]
    fn gcp_api_key() {
        let k = "AIzaSyB7x9Qm2Lk4Rt6Yp8Wv0Zs3Nc5Hd1Jf-gE";
        assert_eq!(k.len(), 39);
        assert_eq!(redacts(&format!("const key = \"{k}\";\n"), k), ["gcp-api-key"]);
        assert_clean("const key = \"AIzaXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\";\n");
    }

    #[test]
    fn azure_storage_key() {
        let k = "b3Zc9Qk2Lm4Np6Rs8Tu0Vw1Xy3Za5Bc7De9Fg2Hi4Jk6Lm8No0Pq2Rs4Tu6Vw8Xy0Za2Bc4De6Fg8Hi0Jk2Lm4==";
        assert_eq!(k.len(), 88);
        let text = format!(
            "conn = \"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={k};EndpointSuffix=core.windows.net\"\n"
        );
        assert_eq!(redacts(&text, k), ["azure-storage-key"]);
        let r = scanner().redact(&text);
        assert!(
            r.text
                .contains("AccountName=acme;AccountKey=[REDACTED:azure-storage-key];EndpointSuffix")
        );
        assert_clean("AccountKey=<your-storage-account-key>\n");
    }

    #[test]
    fn github_gitlab_tokens() {
        for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let t = format!("{prefix}Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6Dh1Fj0Gk8Nq3");
            assert_eq!(redacts(&format!("token: {t}\n"), &t), ["github-token"], "{prefix}");
        }
        let fine = format!(
            "github_pat_{}",
            "11ABCDEFG0a1B2c3D4e5F6_g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6a7B8c9D0e1F2g3H4i5J"
        );
        assert_eq!(fine.len(), 93);
        assert_eq!(redacts(&format!("GH={fine}\n"), &fine), ["github-fine-grained-pat"]);
        let gl = "glpat-Xk3Zq9Wm2Rt7Yp4Lv8Bn";
        assert_eq!(redacts(&format!("GITLAB_TOKEN=\"{gl}\"\n"), gl), ["gitlab-token"]);
        assert_clean("token: ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
        assert_clean("prefix = \"ghp_\"\n");
        assert_clean("GITLAB_TOKEN=glpat-XXXXXXXXXXXXXXXXXXXX\n");
    }

    #[test]
    fn slack_stripe_twilio_sendgrid_npm() {
        let cases = [
            ("slack-token", "xoxb-2048561937-7730184526193-Qz8Wk3Lm9Np2Rt5Yv7Bx4Cd1"),
            ("slack-webhook", "T02QK7N3L/B05RV8M2P4X/Kq9Zw3Lm8Np2Rt5Yv7Bx4Cd1"),
            ("stripe-key", "sk_live_51Hq8Zk3Wm9Lp2Rt5Yv7Bx4Cd1Ef6Gh"),
            ("stripe-key", "rk_live_51Hq8Zk3Wm9Lp2Rt5Yv7Bx4Cd1Ef6Gh"),
            ("twilio-api-key", "SK3f9a1c7e2b8d4f6a0c5e9b1d7f3a2c8e"),
            (
                "sendgrid-api-key",
                "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",
            ),
            ("npm-token", "npm_Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6Dh1Fj0Gk8Nq3"),
        ];
        for (rule, value) in cases {
            let text = if rule == "slack-webhook" {
                format!("url = \"https://hooks.slack.com/services/{value}\"\n")
            } else {
                format!("value = \"{value}\"\n")
            };
            assert_eq!(redacts(&text, value), [rule], "{value}");
        }
        assert_clean("SLACK_WEBHOOK=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n");
        assert_clean("token = 'xoxb-your-token-here'\n");
        assert_clean("stripe.api_key = \"sk_test_xxxxxxxxxxxxxxxxxxxxxxxx\"\n");
        assert_clean("//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n");
        let npmrc = "//registry.npmjs.org/:_authToken=Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6";
        assert_eq!(redacts(npmrc, "Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6"), ["npmrc-auth-token"]);
    }

    #[test]
    fn jwt() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYWlybi10ZXN0In0.Qz8Wk3Lm9Np2Rt5Yv7Bx4Cd1Ef6Gh0Jk";
        assert_eq!(redacts(&format!("Authorization: Bearer {jwt}\n"), jwt), ["jwt"]);
        // Assigned to a token variable: the specific rule wins over generic.
        assert_eq!(redacts(&format!("token = \"{jwt}\"\n"), jwt), ["jwt"]);
        assert_clean("if s.starts_with(\"eyJ\") { decode(s) }\n");
    }

    #[test]
    fn url_credentials() {
        let text = "DATABASE_URL=postgres://app:Pq7xK2mZ9w@db.internal:5432/app\n";
        assert_eq!(redacts(text, "Pq7xK2mZ9w"), ["url-credentials"]);
        let r = scanner().redact(text);
        assert_eq!(
            r.text,
            "DATABASE_URL=postgres://app:[REDACTED:url-credentials]@db.internal:5432/app\n"
        );
        assert_clean("url = \"postgres://user:password@localhost/db\"\n");
        assert_clean("url = f\"postgres://{user}:{password}@{host}/db\"\n");
        assert_clean("url = \"redis://:${REDIS_PASSWORD}@redis:6379\"\n");
        assert_clean("see https://example.com:8080/path and git@github.com:org/repo.git\n");
        assert_clean("url = \"http://user:<password>@host\"\n");
        // Documentation and URL-parser test strings.
        for doc in [
            "https://Aladdin:opensesame@localhost:8887",
            "ftp://rms:secret123@example.com",
            "moz://foo:bar@servo/baz",
            "http://&a:foo(b]c@d:2/",
            "http://%60%7B%7D:%60%7B%7D@h/",
        ] {
            assert_clean(&format!("let u = \"{doc}\";\n"));
        }
    }

    #[test]
    fn generic_assignments() {
        let cases = [
            ("db_password = \"Tr0ub4dor&3x\"\n", "Tr0ub4dor&3x"),
            ("PASSWORD=k8Vq2Lz9Wm4R\n", "k8Vq2Lz9Wm4R"),
            ("  api_key: 9f3a7c1e5b2d8f4a\n", "9f3a7c1e5b2d8f4a"),
            ("\"client_secret\": \"Hx7Kq2Vn9Lm4Zp8R\",\n", "Hx7Kq2Vn9Lm4Zp8R"),
            ("secret := \"Wq9Ze3Rt7Yu1Io5P\"\n", "Wq9Ze3Rt7Yu1Io5P"),
            ("'passwd' => 'Mn4Bv8Cx2Zl6Kj0H',\n", "Mn4Bv8Cx2Zl6Kj0H"),
            ("connect(host, password=\"Qw3Er7Ty1Ui5\")\n", "Qw3Er7Ty1Ui5"),
            ("export AUTH_TOKEN=Lk9Jh5Gf1Ds7Az3X\n", "Lk9Jh5Gf1Ds7Az3X"),
        ];
        for (text, secret) in cases {
            assert_eq!(redacts(text, secret), ["generic-secret"], "{text}");
        }
        // rustfmt's wrapping of a long literal.
        let wrapped = "    let token =\n        \"Qz8Wk3Lm9Np2Rt5Yv7Bx4Cd1Ef6Gh0Jk\";\n";
        assert_eq!(redacts(wrapped, "Qz8Wk3Lm9Np2Rt5Yv7Bx4Cd1Ef6Gh0Jk"), ["generic-secret"]);
        let wrapped = "const API_KEY: &str =\n    \"FAKEsign1111\";\n";
        assert_eq!(
            scanner()
                .scan_file("a.rs", wrapped)
                .iter()
                .map(|f| f.rule)
                .collect::<Vec<_>>(),
            ["secret-assignment"]
        );
        let r = scanner().redact("db_password = \"Tr0ub4dor&3x\" # prod\n");
        assert_eq!(r.text, "db_password = \"[REDACTED:generic-secret]\" # prod\n");
    }

    #[test]
    fn generic_placeholders_and_code_are_not_secrets() {
        for text in [
            "password = \"changeme\"\n",
            "password = \"changeme123\"\n",
            "password = \"${DB_PASSWORD}\"\n",
            "password: ${DB_PASSWORD}\n",
            "password = os.environ[\"DB_PASSWORD\"]\n",
            "password = os.environ.get(\"DB_PASSWORD\")\n",
            "token = os.getenv('TOKEN')\n",
            "api_key = process.env.API_KEY\n",
            "password = \"<your password>\"\n",
            "password = \"xxxxxxxxxx\"\n",
            "PASSWORD=xxx\n",
            "password = \"********\"\n",
            "secret: {{ .Values.secret }}\n",
            "password = $DB_PASSWORD\n",
            "token = self.next_token()\n",
            "token = request.headers.get(\"Authorization\")\n",
            "secret = settings.SECRET_KEY\n",
            "grant_type = \"refresh_token\"\n",
            "token_type: \"bearer\"\n",
            "max_tokens = 4096\n",
            "tokens_per_second: 12345678\n",
            "password: String,\n",
            "api_key: Option<String>,\n",
            "password_file = \"/etc/app/password.txt\"\n",
            "token_url = \"https://auth.example.com/token\"\n",
            "secret_name = \"prod-db-credentials-v2\"\n",
            "let token = tokenizer.next_token2;\n",
            "password = \"password\"\n",
            "password = \"hunter2\"\n",
            "if token == \"abc123def456\" {}\n",
            "password = \"[REDACTED:generic-secret]\"\n",
            "<password>secret</password>\n",
            "tokens = [tok for tok in words]\n",
            "token = Token::new(kind, 3)\n",
            "pub const ERROR_PASSWORD_EXPIRED: WIN32_ERROR = WIN32_ERROR(1330u32);\n",
            "fn NtFilterToken(existingtokenhandle : super::super::Foundation:: HANDLE) {}\n",
            "pub const DOT11_WPS_PASSWORD_ID_REKEY: DOT11_WPS_DEVICE_PASSWORD_ID = X;\n",
            "let client_auth = emit_certificate_tls13(&mut flight, &self.config)?;\n",
            "ClientApplicationTrafficSecret => \"CLIENT_TRAFFIC_SECRET_0\",\n",
            "token = \"refresh_token_v2\"\n",
            // A comment ending in a key word is no assignment to the next line.
            "# Not secrets:\nMAX_KEY=5\n",
            "password:\n  file: /run/secrets/db\n",
            "token =\n    next_token(2);\n",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn source_code_takes_only_quoted_values() {
        let s = scanner();
        let unquoted = "let auth_token = AtomicU32Counter2;\nlet t = |token: CancellationTok3n| {};\n";
        assert_eq!(s.scan(unquoted).len(), 2, "read as config, these look like values");
        assert!(s.scan_file("src/lib.rs", unquoted).is_empty());
        let quoted = "let password = \"Tr0ub4dor&3x\";\n";
        assert_eq!(s.scan_file("src/lib.rs", quoted).len(), 1);
        assert_eq!(s.scan_file(".env", "PASSWORD=k8Vq2Lz9Wm4R\n").len(), 1);
        assert!(is_source_code("a/b/main.go") && is_source_code("x.TSX"));
        assert!(!is_source_code(".env") && !is_source_code("values.yaml") && !is_source_code("Makefile"));
        // Shaped tokens are caught anywhere.
        let t = "let t = ghp_Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6Dh1Fj0Gk8Nq3;\n";
        assert_eq!(s.redact_file("src/lib.rs", t).findings.len(), 1);
    }

    #[test]
    fn redaction_is_idempotent_and_keeps_other_text() {
        let text = "a = 1\ntoken: ghp_Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6Dh1Fj0Gk8Nq3\nb = 2\n";
        let once = scanner().redact(text).text.into_owned();
        assert_eq!(once, "a = 1\ntoken: [REDACTED:github-token]\nb = 2\n");
        assert!(scanner().scan(&once).is_empty());
        assert!(matches!(scanner().redact("nothing here\n").text, Cow::Borrowed(_)));
        let f = &scanner().scan(text)[0];
        assert_eq!((f.line, &text[f.start..f.end].len()), (2, &40));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let s = scanner();
        let long_line = "password=".to_string() + &"Ab1".repeat(400_000);
        let _ = s.redact(&long_line);
        let odd = "é\u{0}\u{7f}🙂 password = \"ü1ßÆ∂ƒ©˙∆˚\" -----BEGIN PRIVATE KEY-----\u{0}\n\r\n\r";
        let r = s.redact(odd);
        assert_eq!(r.text.matches('\n').count(), odd.matches('\n').count());
        let _ = s.redact("");
        let _ = s.redact("\n\n\n");
        let unterminated = format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n", PEM_BODY.join("\n"));
        let _ = s.redact(&unterminated);
        // Many small candidates back to back.
        let many = "token=Ab1Cd2Ef3\n".repeat(50_000);
        let r = s.redact(&many);
        assert_eq!(r.findings.len(), 50_000);
        assert_eq!(r.text.lines().count(), 50_000);
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcdefgh") - 3.0).abs() < 1e-9);
    }

    #[test]
    fn findings_carry_lines() {
        let text = "x\ny\nsk = \"sk_live_51Hq8Zk3Wm9Lp2Rt5Yv7Bx4Cd1Ef6Gh\"\nz\npw: https://u:Zx8Cv4Bn2M@h\n";
        let found = scanner().scan(text);
        let got: Vec<(&str, usize)> = found.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(got, [("stripe-key", 3), ("url-credentials", 5)]);
        let _ = rules(text);
    }

    /// Realistic fake values of each new shaped family, as documented by
    /// their providers (prefix, length, alphabet).
    const SHAPED: &[(&str, &str)] = &[
        (
            "openai-api-key",
            "sk-proj-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_2O76UMFxFkM_R5Kjp1vRt-1fjORS_6ilI8ihN5KXSc7Tvo_hBKqFYY_kv5ZJr3J1TWDtkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8",
        ),
        (
            "openai-api-key",
            "sk-svcacct-po-799NksnRH9ucAUsdMlHUvTCQCyEZDz_TddJ8HyS5SUkCnD8zRA9a9SkpX",
        ),
        ("openai-api-key", "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"),
        (
            "anthropic-api-key",
            "sk-ant-api03-tqcbnr3yBdGBLEPH1qhT61qtc4xatws8phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptUsGr7CmY-uCu3ZR1zTOlUcRAA",
        ),
        ("huggingface-token", "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"),
        ("huggingface-token", "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"),
        (
            "pypi-token",
            "pypi-AgEIcHlwaS5vcmcouHgxzNNAL5wIScGebcy8F5n3_YNBDRzrZSgqbjG3uhkWKFLf6xuI5aHUQPFeNBTxaQWk8JzFalHlsZfYcMMDktXP_tKsf2rcDkdfrUnW5gcF-Ha6ili8GjH",
        ),
        (
            "vault-token",
            "hvs.EAD6_Wj9KfzjsQGMrb9h-ImB-LK777pzNk8cL6j5IXAAjlsHUqJoUD_-Ydua-5ZMs1SWOpQaPRYpzbLGViYXjU2JgJng",
        ),
        ("shopify-token", "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"),
        (
            "google-oauth-token",
            "ya29.a09YpvujA_C5Q52ryFlwRlOEVHzc0X0AWIRh_JUqBlIFXZ53Ncqe28-ajY75FnCttn6kfaqDeMqG3omjMyXHCabM6JOF8EFd0Nhcy_1kGD2VD_eR1UYzaLiA_z",
        ),
        (
            "digitalocean-token",
            "dop_v1_967e7893f57fd14c1604d115cea325a65e19cbae530282bd36cb9d21f6be6abf",
        ),
        ("databricks-token", "dapi0d7c1c1e21862ab8a18a8902073fec8d"),
        (
            "cairn-token",
            "cairn_f4f50947aaeb26c57d21fa5d328263dfe574de739988b886e7577496a2c8773e",
        ),
    ];

    #[test]
    fn new_shaped_families_bare_and_in_curl_headers() {
        for &(rule, value) in SHAPED {
            // Bare, in a config file, in code and in a notebook cell.
            assert_eq!(redacts(&format!("{value}\n"), value), [rule], "bare {value}");
            assert_eq!(redacts(&format!("X={value}\n"), value), [rule], "env {value}");
            let code = format!("client = Client(\"{value}\")\n");
            assert_eq!(
                scanner()
                    .scan_file("app.py", &code)
                    .iter()
                    .map(|f| f.rule)
                    .collect::<Vec<_>>(),
                [rule]
            );
            let cell = format!("  \"source\": [\"client = Client(\\\"{value}\\\")\\n\"]\n");
            let found = scanner().scan_file("nb.ipynb", &cell);
            assert_eq!(found.iter().map(|f| f.rule).collect::<Vec<_>>(), [rule], "{cell}");
            assert_eq!(&cell[found[0].start..found[0].end], value);
            // In curl headers, double- and single-quoted, and line-continued.
            for header in [
                format!("curl -H \"Authorization: Bearer {value}\" https://api.example.test/v1\n"),
                format!("curl -sS https://h/v1 \\\n  -H 'Authorization: Bearer {value}' \\\n  -d @body.json\n"),
                format!("curl -H \"x-api-key: {value}\" https://h\n"),
            ] {
                assert_eq!(redacts(&header, value), [rule], "{header}");
            }
        }
        let r = scanner().redact("curl -H \"Authorization: Bearer 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\" https://h\n");
        assert_eq!(
            r.text,
            "curl -H \"Authorization: Bearer [REDACTED:huggingface-token]\" https://h\n"
        );
    }

    #[test]
    fn new_shaped_families_near_misses() {
        for text in [
            // Wrong length, alphabet or prefix.
            "sk-proj-short\n",
            "let v = \"sk-ant-api03-tooShort\";\n",
            "hf_JDCTbyvHNsGehYogfqrcXlrWiBRqzjIG\n",             // 33 letters
            "hf_hub_download(repo_id, filename, token=token)\n", // an identifier
            "hf_abcdefghijklmnopqrstuvwxyzabcdefgh\n",           // one case only
            "pypi-AgEIcHlwaS5vcmc\n",
            "shpat_9478da6bd0c621de49f145fda9988c7\n",  // 31 hex
            "shpat_9478da6bd0c621de49f145fda9988c7g\n", // not hex
            "token = \"ya29.xxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n",
            "Authorization: Bearer ya29.a0...\n",
            "dop_v1_967e7893f57fd14c1604d115cea325a65e19cbae530282bd36cb9d21f6be6ab\n",
            "dapi0d7c1c1e21862ab8a18a8902073fec8\n",
            "let v = \"dapi0d7c1c1e21862ab8a18a8902073fec8dX\";\n",
            "cairn_0000\n",
            "cairn_f4f50947aaeb26c57d21fa5d328263dfe574de739988b886e7577496a2c8773\n",
            "cairn_0000000000000000000000000000000000000000000000000000000000000000\n",
            "hvs.\n",
            "VAULT_ADDR=https://vault.internal:8200\n",
            "sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
            // Headers with references and placeholders, not values.
            "curl -H \"Authorization: Bearer $OPENAI_API_KEY\" https://h\n",
            "curl -H \"Authorization: Bearer ${HF_TOKEN}\" https://h\n",
            "curl -H 'Authorization: Bearer <your-token>' https://h\n",
            "headers = {\"Authorization\": f\"Bearer {token}\"}\n",
            "headers = {\"Authorization\": \"Bearer \" + token}\n",
            "Authorization: Bearer YOUR_ACCESS_TOKEN_HERE\n",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn opaque_bearer_tokens() {
        let t = "cgaE40o1C6xc4sohdmM0Lm7exG3lCMqXXQ8agOMT";
        for text in [
            format!("curl -H \"Authorization: Bearer {t}\" https://h\n"),
            format!("Authorization: token {t}\n"),
            format!("headers = {{\"Authorization\": \"Bearer {t}\"}}\n"),
        ] {
            assert_eq!(redacts(&text, t), ["bearer-token"], "{text}");
        }
    }

    #[test]
    fn typed_declarations_per_language() {
        let v = "Wq9Ze3Rt7Yu1Io5P";
        let weak = "Summer2024!";
        for (path, text) in [
            ("src/keys.rs", format!("const API_KEY: &str = \"{v}\";\n")),
            (
                "src/keys.rs",
                format!("pub static DB_PASSWORD: &'static str = \"{weak}\";\n"),
            ),
            (
                "src/Config.java",
                format!("    private static final String DB_PASSWORD = \"{weak}\";\n"),
            ),
            (
                "src/Config.java",
                format!("    public static final String API_KEY = \"{v}\";\n"),
            ),
            ("main.go", format!("const apiKey string = \"{v}\"\n")),
            ("main.go", format!("var dbPassword string = \"{weak}\"\n")),
            ("main.go", format!("\tdbPassword := \"{weak}\"\n")),
            ("web/api.ts", format!("const apiKey: string = \"{v}\";\n")),
            ("web/api.ts", format!("export const dbPassword: string = '{weak}';\n")),
            (
                "src/Settings.cs",
                format!("    private const string ApiKey = \"{v}\";\n"),
            ),
            ("src/Settings.cs", format!("    string DbPassword = \"{weak}\";\n")),
            ("app.kt", format!("val apiKey: String = \"{v}\"\n")),
            ("app.swift", format!("let dbPassword: String = \"{weak}\"\n")),
            ("settings.py", format!("API_KEY: str = \"{v}\"\n")),
        ] {
            let secret = if text.contains(v) { v } else { weak };
            let r = scanner().redact_file(path, &text);
            assert_eq!(r.findings.len(), 1, "{path}: {text}");
            assert!(!r.text.contains(secret), "{path}: {}", r.text);
            assert!(
                ["generic-secret", "secret-assignment"].contains(&r.findings[0].rule),
                "{path}: {text}"
            );
        }
        let r = scanner().redact_file("src/keys.rs", "const API_KEY: &str = \"Summer2024!\";\n");
        assert_eq!(r.text, "const API_KEY: &str = \"[REDACTED:secret-assignment]\";\n");
    }

    #[test]
    fn key_names_count_whatever_the_entropy() {
        // Low-entropy values of secret-named keys in config files.
        for (text, secret) in [
            ("DB_PASSWORD=Summer2024!\n", "Summer2024!"),
            ("SMTP_PASS=mailer42\n", "mailer42"),
            ("MYSQL_ROOTPW=abc123abc\n", "abc123abc"),
            ("MYSQLPW=Passw0rd!\n", "Passw0rd!"),
            ("PROXY_AUTH=ab12ab12ab\n", "ab12ab12ab"),
            ("BASICAUTH=aa11aa11aa\n", "aa11aa11aa"),
            ("STRIPE_KEY=k1k1k1k1k1\n", "k1k1k1k1k1"),
            ("SIGNING_KEY=11aa22bb\n", "11aa22bb"),
            ("APIKEY=aa11bb22\n", "aa11bb22"),
            ("db-pass: Winter-2023\n", "Winter-2023"),
            ("clientSecret: s3cr3t-v4lue\n", "s3cr3t-v4lue"),
            ("  client-secret: \"aa-1x-bb-2y\"\n", "aa-1x-bb-2y"),
            ("\"apiKey\": \"abcd1234abcd\",\n", "abcd1234abcd"),
            ("ADMIN_PWD=123456\n", "123456"),
            (
                "export VAULT_TOKEN=s.aa11bb22cc33dd44ee55ff66\n",
                "s.aa11bb22cc33dd44ee55ff66",
            ),
            ("spring.datasource.password=Spring2024x\n", "Spring2024x"),
            ("api_token: ZxZxZxZx99\n", "ZxZxZxZx99"),
            ("# Secrets:\nDB_PASSWORD=Fk9sR3dis2024x\n", "Fk9sR3dis2024x"),
        ] {
            let rules = redacts(text, secret);
            assert!(
                rules == ["secret-assignment"] || rules == ["generic-secret"],
                "{text}: {rules:?}"
            );
        }
        assert!(shannon_entropy("Summer2024!") > 3.0 && shannon_entropy("11aa22bb") < 3.0);
        assert_eq!(rules("SIGNING_KEY=11aa22bb\n"), ["secret-assignment"]);
        // Source code takes quoted literals only.
        let s = scanner();
        assert_eq!(s.scan_file("a.py", "DB_PASSWORD = \"Summer2024!\"\n").len(), 1);
        assert!(s.scan_file("a.py", "DB_PASSWORD = Summer2024\n").is_empty());
    }

    #[test]
    fn key_names_false_positives_in_real_code() {
        let s = scanner();
        for (path, text) in [
            ("a.rs", "const MAX_KEY: usize = 5;\n"),
            ("a.rs", "const MAX_KEY = 5\n"),
            ("a.ts", "const MAX_KEY = 5;\n"),
            (".env", "MAX_KEY=5\n"),
            ("a.rs", "let token = next_token();\n"),
            ("a.py", "token = next_token()\n"),
            ("a.yaml", "token: next_token()\n"),
            ("a.rs", "    password: String,\n"),
            ("README.md", "    password: String,\n"),
            ("README.md", "    api_key: Option<String>,\n"),
            ("a.rs", "pub const KEY_LEN: usize = 32;\n"),
            (".env", "KEY_LEN=32\n"),
            ("a.rs", "let key = self.key.clone();\n"),
            ("a.py", "api_key = get_api_key(config)\n"),
            ("a.ts", "const apiKey = process.env.API_KEY;\n"),
            ("a.ts", "const token = await getToken();\n"),
            ("a.go", "func sync(token string) error {\n"),
            ("a.go", "\tPassword string `json:\"password\"`\n"),
            ("a.java", "String password = args[0];\n"),
            ("a.java", "private final String apiKey;\n"),
            ("a.cs", "public string ApiKey { get; set; }\n"),
            ("a.py", "if password == \"Summer2024!\":\n"),
            ("a.py", "assert token != \"abc123def456\"\n"),
            ("a.rs", "const MISSING_TOKEN: &str = \"missing token\";\n"),
            ("a.ts", "const STORAGE_KEY = \"todos-v2\";\n"),
            ("a.ts", "const CACHE_KEY = \"user:42:profile\";\n"),
            ("a.ts", "const SORT_KEY = \"created_at\";\n"),
            ("a.rs", "const TOKEN_ENV: &str = \"CAIRN_TOKEN\";\n"),
            ("a.rs", "const TOKEN: &str = \"CAIRN_TOKEN\";\n"),
            ("a.py", "JWT_KEY = \"HS256\"\n"),
            ("a.py", "SIGNING_KEY_ALG = \"RS256\"\n"),
            ("a.py", "eos_token = \"</s>\"\n"),
            ("a.py", "pad_token = \"[PAD]\"\n"),
            ("a.py", "next_page_token = \"abc123def456\"\n"),
            ("a.ts", "const publicKey = \"ab12cd34ef56gh78\";\n"),
            ("a.py", "monkey = \"banana123\"\n"),
            ("a.py", "bypass = \"yes12345\"\n"),
            ("a.py", "hotkey = \"ctrl+shift+k1\"\n"),
            ("de.json", "  \"password\": \"Passwort\",\n"),
            ("de.json", "  \"resetPassword\": \"Passwort zurücksetzen\",\n"),
            ("i18n.yaml", "invalid_token: Invalid token, try again\n"),
            ("k8s.yaml", "      secretKeyRef: {name: db, key: password}\n"),
            ("k8s.yaml", "  - key: node-role.kubernetes.io/control-plane\n"),
            (
                "ci.yaml",
                "          key: ${{ runner.os }}-cargo-${{ hashFiles('**/Cargo.lock') }}\n",
            ),
            ("ci.yaml", "    key: v1-deps-2024\n"),
            ("compose.yaml", "      POSTGRES_PASSWORD: postgres\n"),
            (
                "compose.yaml",
                "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-changeme}\n",
            ),
            (".env", "ADMIN_PASSWORD=changeme\n"),
            (".env", "REDIS_PASSWORD=${REDIS_PASSWORD}\n"),
            (".env", "DB_PASSWORD=\n"),
            (".env", "API_KEY=xxx\n"),
            (".env", "API_KEY=<your-key>\n"),
            ("a.py", "API_KEY = os.environ[\"API_KEY\"]\n"),
            ("a.py", "API_KEY = os.environ.get(\"API_KEY\", \"\")\n"),
            ("settings.toml", "auth = true\n"),
            ("settings.toml", "auth_token_file = \"/run/secrets/token\"\n"),
            ("settings.toml", "tls_key = \"/etc/cairn/tls/server.key\"\n"),
            ("settings.toml", "key = \"server.key\"\n"),
            ("settings.toml", "token_url = \"https://auth.example.com/token\"\n"),
            ("Makefile", "KEY ?= $(shell cat key.txt)\n"),
            ("a.sh", "read -rs DB_PASSWORD\n"),
            ("a.sh", "export PGPASSWORD=$(cat /run/secrets/pg)\n"),
            ("a.py", "API_KEY: str = \"\"\n"),
            ("a.rs", "const API_KEY_HEADER: &str = \"x-api-key\";\n"),
            ("a.py", "SESSION_KEY = \"session\"\n"),
            ("a.py", "KEY = \"v1.2.3\"\n"),
            // Seen in crates' sources (cargo registry measurement).
            (
                "model.rs",
                "const SERVER_INFO_META_KEY: &str = \"io.modelcontextprotocol/serverInfo\";\n",
            ),
            ("auth.rs", "let desc_key = \"error_description=\";\n"),
            ("a.json", "{\"_meta\":{\"progressToken\":\"pr0gr3ss-t0k3n-1\"}}\n"),
            (
                "NOTES",
                "- tests: add tests for signed host key: `ssh-ed25519-cert-v01@openssh.com` (#2513)\n",
            ),
            (
                "vectors.txt",
                "Key = 0100000000000000000000000000000004000000000000000000000000000000\n",
            ),
            ("urltestdata.json", "    \"password\": \"pass%5B%7F\",\n"),
        ] {
            let found = s.scan_file(path, text);
            assert!(found.is_empty(), "false positive {found:?} in {path}:\n{text}");
        }
    }

    #[test]
    fn key_family_boundaries() {
        for key in [
            "DB_PASSWORD",
            "apiKey",
            "client-secret",
            "SMTP_PASS",
            "MYSQL_ROOTPW",
            "BASIC_AUTH",
            "BASICAUTH",
            "APIKEY",
            "secretkey",
            "dbpassword",
            "x-api-key",
            "accessToken",
            "GITHUB_OAUTH",
            "PWD",
            "key",
            "token",
            "pw",
        ] {
            assert!(key_family(key).is_some(), "{key}");
        }
        for key in [
            "monkey",
            "hotkey",
            "bypass",
            "compass",
            "KEY_LEN",
            "MAX_KEYS",
            "tokens",
            "publicKey",
            "PRIMARY_KEY",
            "nextPageToken",
            "eos_token",
            "sort_key",
            "tokenizer",
            "passwordHint",
        ] {
            assert!(key_family(key).is_none(), "{key}");
        }
    }

    #[test]
    fn notebook_json_escaped_strings() {
        let nb = r#"{
 "cells": [
  {
   "cell_type": "code",
   "execution_count": 1,
   "metadata": {},
   "outputs": [],
   "source": [
    "import os\n",
    "API_KEY = \"Lk9Jh5Gf1Ds7Az3X\"\n",
    "DB_PASSWORD = \"Fake2024Fake!\"\n",
    "HF_TOKEN = os.environ[\"HF_TOKEN\"]\n",
    "token = get_token()\n",
    "client = OpenAI(api_key=\"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\")\n"
   ]
  }
 ],
 "metadata": {"kernelspec": {"name": "python3"}},
 "nbformat": 4,
 "nbformat_minor": 5
}
"#;
        let s = scanner();
        let r = s.redact_file("notebooks/analysis.ipynb", nb);
        let rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            ["generic-secret", "secret-assignment", "openai-api-key"],
            "{}",
            r.text
        );
        assert!(
            r.text.contains("\"API_KEY = \\\"[REDACTED:generic-secret]\\\"\\n\","),
            "{}",
            r.text
        );
        assert!(
            r.text
                .contains("\"DB_PASSWORD = \\\"[REDACTED:secret-assignment]\\\"\\n\",")
        );
        assert_eq!(r.text.lines().count(), nb.lines().count());
        // Still valid JSON.
        let _: serde_json::Value = serde_json::from_str(&r.text).unwrap();
    }

    const K8S_SECRET: &str = "\
# A Secret with both maps.
apiVersion: v1
kind: Secret
metadata:
  name: billing-db
  namespace: billing
type: Opaque
data:
  username: YmlsbGluZw==
  password: UzNjcjN0LVBhc3N3MHJkIQ==
  tls.key: |
    LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UUlCQURBTkJna3Foa2lHOXcw
    QkFRRUZBQVNDQktjd2dnU2pBZ0VBQW9JQkFRQzd
  empty: \"\"
  templated: {{ .Values.password | b64enc }}
stringData:
  DATABASE_HOST: db.internal   # not secret, but in a Secret
  \"api-token\": \"opaque-Token-42\"
  config.yaml: |
    user: billing
    level: admin
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  greeting: bm90LWEtc2VjcmV0\n";

    #[test]
    fn k8s_secret_manifests() {
        let r = scanner().redact_file("deploy/secret.yaml", K8S_SECRET);
        let got: Vec<(&str, usize)> = r.findings.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(
            got,
            [
                ("k8s-secret-data", 9),
                ("k8s-secret-data", 10),
                ("k8s-secret-data", 12),
                ("k8s-secret-data", 17),
                ("k8s-secret-data", 18),
                ("k8s-secret-data", 20),
            ],
            "{}",
            r.text
        );
        assert_eq!(r.text.lines().count(), K8S_SECRET.lines().count());
        for gone in [
            "YmlsbGluZw==",
            "UzNjcjN0LVBhc3N3MHJkIQ==",
            "LS0tLS1CRUdJTi",
            "QkFRRUZB",
            "opaque-Token-42",
            "level: admin",
        ] {
            assert!(!r.text.contains(gone), "{gone} in\n{}", r.text);
        }
        let lines: Vec<&str> = r.text.lines().collect();
        assert_eq!(lines[9], "  password: [REDACTED:k8s-secret-data]");
        assert_eq!(&lines[11..13], ["    [REDACTED:k8s-secret-data]"; 2]);
        assert_eq!(
            lines[16],
            "  DATABASE_HOST: [REDACTED:k8s-secret-data]   # not secret, but in a Secret"
        );
        assert_eq!(lines[17], "  \"api-token\": \"[REDACTED:k8s-secret-data]\"");
        // Templates, empty values and other kinds stay.
        assert!(r.text.contains("templated: {{ .Values.password | b64enc }}"));
        assert!(r.text.contains("  greeting: bm90LWEtc2VjcmV0"));

        // kubectl's sorted output (data before kind), a List, JSON-ish keys.
        let sorted = "apiVersion: v1\ndata:\n  token: c2VjcmV0LXRva2VuLTEyMw==\nkind: Secret\nmetadata:\n  name: x\n";
        assert_eq!(redacts(sorted, "c2VjcmV0LXRva2VuLTEyMw=="), ["k8s-secret-data"]);
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  data:\n    a: c2VjcmV0LXRva2VuLTEyMw==\n- apiVersion: v1\n  kind: ConfigMap\n  data:\n    b: bm90LWEtc2VjcmV0\n";
        let r = scanner().redact(list);
        assert_eq!(r.findings.len(), 1, "{}", r.text);
        assert!(r.text.contains("bm90LWEtc2VjcmV0") && !r.text.contains("c2VjcmV0LXRva2VuLTEyMw=="));
        // Mentions of the word are no manifests.
        assert_clean("kind: SecretProviderClass\ndata:\n  a: c2VjcmV0LXRva2VuLTEyMw==\n");
        assert_clean("# kind: Secret\ndata:\n  a: b\n");
        let _ = scanner().redact("kind: Secret\ndata:\n  a: |\n");
        let _ = scanner().redact("kind: Secret\ndata:\n  \"a\n");
        let _ = scanner().redact("- kind: Secret\n");
    }

    #[test]
    fn url_credentials_password_only() {
        let text = "REDIS_URL=redis://:Fk9sR3dis2024@cache:6379/0\n";
        assert_eq!(redacts(text, "Fk9sR3dis2024"), ["url-credentials"]);
        assert_eq!(
            scanner().redact(text).text,
            "REDIS_URL=redis://:[REDACTED:url-credentials]@cache:6379/0\n"
        );
        assert_clean("url = \"redis://:${REDIS_PASSWORD}@redis:6379\"\n");
        assert_clean("url = \"redis://:foobared@localhost:6379\"\n");
        assert_clean("\"href\": \"http://:%c3%89t%C3%A9@example.net/\",\n");
        assert_clean("\"href\": \"https://user:pass%5B%7F@foo/bar\",\n");
    }

    const RULES_TOML: &str = r#"
title = "acme extra rules"

[[rules]]
id = "acme-internal-token"
description = "Acme internal API tokens"
regex = '''acme_(?:live|test)_([a-z0-9]{24})'''
keywords = ["acme_"]
entropy = 3.0
tags = ["acme"]

[rules.allowlist]
regexes = ['''^0{24}$''']
stopwords = ["notreal"]

[[rules]]
id = "acme-db-url"
regex = '''acmedb-password\s+(?P<pw>\S+)'''
secretGroup = 1
path = '''\.(?:conf|ini)$'''

[[rules.allowlists]]
condition = "AND"
regexes = ['''localdev''']
regexTarget = "line"
paths = ['''^test/''']

[allowlist]
description = "global"
paths = ['''(?:^|/)testdata/''']
stopwords = ["fixture"]
"#;

    #[test]
    fn gitleaks_format_rules_file() {
        let s = Scanner::with_extra_rules(RULES_TOML).unwrap();
        assert_eq!(s.rule_ids().len(), RULE_IDS.len() + 2);
        assert_eq!(&s.rule_ids()[RULE_IDS.len()..], ["acme-internal-token", "acme-db-url"]);
        let tok = "k3j9x2m8q7w1z5n4b6v0c8l2";
        let text = format!("ACME = \"acme_live_{tok}\"\n");
        let r = s.redact_file("src/app.py", &text);
        assert_eq!(
            r.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
            ["acme-internal-token"]
        );
        assert_eq!(r.text, "ACME = \"acme_live_[REDACTED:acme-internal-token]\"\n");
        // Keywords, entropy and the rule's allowlist.
        assert!(s.scan("acme_live_000000000000000000000000\n").is_empty());
        assert!(s.scan("acme_live_aaaaaaaaaaaaaaaaaaaaaaaa\n").is_empty(), "low entropy");
        assert!(s.scan("acme_live_notreal1x2y3z4w5v6u7t8s9\n").is_empty(), "stopword");
        assert!(Scanner::new().unwrap().scan(&text).is_empty(), "not a built-in");
        // Path-limited rule with an AND allowlist.
        let db = "acmedb-password Pw-9x8y7z\n";
        assert_eq!(s.scan_file("etc/app.conf", db).len(), 1);
        assert!(s.scan_file("etc/app.yaml", db).is_empty(), "path filter");
        assert!(s.scan(db).is_empty(), "path rules need a path");
        let local = "acmedb-password Pw-9x8y7z # localdev\n";
        assert!(s.scan_file("test/app.conf", local).is_empty(), "both criteria");
        assert_eq!(s.scan_file("prod/app.conf", local).len(), 1, "only one criterion");
        // The global allowlist covers built-in rules too.
        let gh = "token: ghp_Zq8Wn3Kv7Lp2Xr5Ty9Bm4Cs6Dh1Fj0Gk8Nq3\n";
        assert_eq!(s.scan_file("src/a.yaml", gh).len(), 1);
        assert!(s.scan_file("pkg/testdata/a.yaml", gh).is_empty());
        assert!(s.scan(&text.replace(tok, "fixturek3j9x2m8q7w1z5n4b")).is_empty());
        // From a file, with the file named in errors.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, RULES_TOML).unwrap();
        assert_eq!(
            Scanner::with_rules_file(&path).unwrap().rule_ids().len(),
            RULE_IDS.len() + 2
        );
        std::fs::write(&path, "[[rules]]\nid = \"bad\"\nregex = '''(?<=key=)[a-z]+'''\n").unwrap();
        let e = Scanner::with_rules_file(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("\"bad\"") && e.contains("look-around"),
            "{e}"
        );
        let missing = Scanner::with_rules_file(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
        assert_eq!(Scanner::with_optional_rules_file(None).unwrap().rule_ids(), RULE_IDS);
    }

    #[test]
    fn rules_file_errors_name_the_rule_and_problem() {
        for (toml, want) in [
            ("[[rules]]\nregex = 'x'\n", "rule #1 has no id"),
            ("[[rules]]\nid = \"r1\"\n", "rule \"r1\": no regex"),
            (
                "[[rules]]\nid = \"r1\"\nregex = '(unclosed'\n",
                "rule \"r1\": bad regex",
            ),
            ("[[rules]]\nid = \"r1\"\nregex = 'a(?=b)'\n", "look-around"),
            ("[[rules]]\nid = \"r1\"\nregex = '(a)\\1'\n", "rule \"r1\": bad regex"),
            (
                "[[rules]]\nid = \"r1\"\nregex = 'a(b)'\nsecretGroup = 2\n",
                "secretGroup 2",
            ),
            (
                "[[rules]]\nid = \"r1\"\nregex = 'a'\n[[rules]]\nid = \"r1\"\nregex = 'b'\n",
                "duplicate id",
            ),
            ("[[rules]]\nid = \"has space\"\nregex = 'a'\n", "an id is"),
            ("[[rules]]\nid = \"r1\"\nregex = 'a'\nentropy = 9\n", "entropy"),
            (
                "[[rules]]\nid = \"r1\"\nregex = 'a'\n[rules.allowlist]\nregexes = ['(']\n",
                "rule \"r1\": bad allowlist regex",
            ),
            (
                "[[rules]]\nid = \"r1\"\nregex = 'a'\n[rules.allowlist]\ncondition = \"XOR\"\n",
                "condition",
            ),
            (
                "[[rules]]\nid = \"r1\"\nregex = 'a'\n[[rules.required]]\nid = \"r2\"\n",
                "composite",
            ),
            ("[[rules]]\nid = \"r1\"\nregex = 'a'\nfoo = 1\n", "unknown field `foo`"),
            ("[extend]\npath = \"base.toml\"\n", "[extend] path"),
            ("[allowlist]\nregexes = ['(?!x)']\n", "global allowlist"),
            ("not toml [", "invalid TOML"),
        ] {
            let e = Scanner::with_extra_rules(toml).unwrap_err().to_string();
            assert!(e.starts_with("secret rules file (inline): "), "{e}");
            assert!(e.contains(want), "{toml:?}: {e}");
        }
        // gitleaks' reporting keys and `[extend] useDefault` are accepted.
        let ok = "title = \"t\"\n[extend]\nuseDefault = true\n[[rules]]\nid = \"r\"\ndescription = \"d\"\nregex = 'zz[0-9]{8}'\ntags = [\"a\"]\n";
        let s = Scanner::with_extra_rules(ok).unwrap();
        assert_eq!(s.scan("v = zz12345678\n")[0].rule, "r");
    }
}

/// False-positive measurement on real code: scans the directories in
/// `CAIRN_SECRETS_SCAN_DIRS` (`:`-separated; default the eval corpus and
/// this repository's indexer and services sources), skipping `fixtures/`,
/// `target/` and `.git/`, the way the indexer reads files (UTF-8 text up to
/// 1 MiB, dotfiles included), and prints every finding as
/// `rule path:line key=<masked value>` and the counts per rule. Values are
/// never printed: only their first two bytes and length.
///
/// `cargo test --release -p cairn-indexer --lib measure_real_code -- --ignored --nocapture`
#[cfg(test)]
mod measure {
    use super::*;
    use std::path::{Path, PathBuf};

    fn walk(root: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(root) else { return };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            if ft.is_dir() {
                if !matches!(name.to_str(), Some("fixtures" | "target" | ".git")) {
                    walk(&p, out);
                }
            } else if ft.is_file() && e.metadata().is_ok_and(|m| m.len() <= 1 << 20) {
                out.push(p);
            }
        }
    }

    /// `ab…(16)`: the first two characters and the length of a value.
    fn masked(v: &str) -> String {
        let head: String = v.trim_start().chars().take(2).collect();
        format!("{head}…({})", v.len())
    }

    /// Seconds each rule takes over the files under `CAIRN_SECRETS_SCAN_DIRS`.
    #[test]
    #[ignore = "measurement on local directories: run with --ignored --nocapture"]
    fn measure_rule_times() {
        let dirs = std::env::var("CAIRN_SECRETS_SCAN_DIRS").unwrap_or_else(|_| "/work/shared/eval/dev/corpus".into());
        let scanner = Scanner::new().unwrap();
        let mut texts = Vec::new();
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            let mut files = Vec::new();
            walk(Path::new(dir), &mut files);
            texts.extend(
                files
                    .iter()
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .filter(|t| !t.contains('\0')),
            );
        }
        let bytes: usize = texts.iter().map(String::len).sum();
        for rule in &scanner.rules {
            let t = std::time::Instant::now();
            let mut spans = Vec::new();
            for text in &texts {
                match &rule.kind {
                    RuleKind::Regex(regexes) => regexes.iter().for_each(|r| r.spans(text, false, &mut spans)),
                    RuleKind::K8sSecret(kind) => {
                        spans.extend(k8s_secret_values(text, kind).into_iter().map(|(start, end)| Span {
                            start,
                            end,
                            match_start: start,
                            match_end: end,
                        }))
                    }
                    RuleKind::Extra(r) => r.spans(text, None, &mut spans),
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!("{:24} {secs:.3}s {:.0} MB/s", rule.id, bytes as f64 / 1e6 / secs);
        }
    }

    #[test]
    #[ignore = "measurement on local directories: run with --ignored --nocapture"]
    fn measure_real_code() {
        let dirs = std::env::var("CAIRN_SECRETS_SCAN_DIRS")
            .unwrap_or_else(|_| "/work/shared/eval/dev/corpus:/work/main/indexer:/work/main/services".to_string());
        let scanner = Scanner::new().unwrap();
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            let root = Path::new(dir);
            let mut files = Vec::new();
            walk(root, &mut files);
            let (mut scanned, mut bytes) = (0usize, 0usize);
            let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
            let mut took = std::time::Duration::ZERO;
            for p in &files {
                let Ok(text) = std::fs::read_to_string(p) else { continue };
                if text.contains('\0') {
                    continue;
                }
                scanned += 1;
                bytes += text.len();
                let rel = p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned();
                let t = std::time::Instant::now();
                let found = scanner.scan_file(&rel, &text);
                took += t.elapsed();
                for f in found {
                    *per_rule.entry(f.rule).or_default() += 1;
                    let line_start = text[..f.start].rfind('\n').map_or(0, |i| i + 1);
                    let before = &text[line_start..f.start];
                    let ctx: String = before
                        .trim_start()
                        .chars()
                        .rev()
                        .take(48)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    println!(
                        "{} {dir}/{rel}:{}: {ctx}{}",
                        f.rule,
                        f.line,
                        masked(&text[f.start..f.end])
                    );
                }
            }
            println!(
                "== {dir}: {scanned} files, {:.1} MB, {} findings {per_rule:?}; scanned in {:.2}s = {:.0} MB/s",
                bytes as f64 / 1e6,
                per_rule.values().sum::<usize>(),
                took.as_secs_f64(),
                bytes as f64 / 1e6 / took.as_secs_f64()
            );
        }
    }
}
