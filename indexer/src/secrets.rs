//! Secret detection and redaction, run on each file before it is chunked,
//! embedded or stored, so no secret value ever reaches the index.
//!
//! A [`Scanner`] holds gitleaks-class rules ([`RULE_IDS`]): private keys,
//! cloud and SaaS tokens with a recognisable shape, JWTs, passwords embedded
//! in URLs, and high-entropy values assigned to names like `password` or
//! `api_key`. Nothing is verified over the network. Each rule is its own
//! [`Regex`]: every pattern has a literal the regex engine finds with a
//! SIMD prefilter, so a file without candidates is skipped at memchr speed.
//! (A `RegexSet` first pass over all rules was measured at ~32 MB/s on the
//! eval corpus, as a set gets no literal prefilter; all rules one by one
//! scan it at ~100 MiB/s, most shaped rules alone at GB/s:
//! `cargo bench -p cairn-benches --bench secrets`.)
//!
//! [`Scanner::redact`] replaces each secret *value* (never its key or the
//! surrounding code) with `[REDACTED:<rule-id>]`. Line breaks inside a value
//! are kept (each line of a PEM body becomes one marker), so the redacted
//! text has exactly as many lines as the original and chunk line numbers stay
//! true. A [`Finding`] carries the rule, line and byte span, never the value,
//! so findings are safe to log.

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;

use crate::error::{IndexError, Result};

/// Redactions per rule id.
pub type SecretCounts = BTreeMap<String, usize>;

/// One secret found in a text. Holds no part of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Id of the rule that matched (one of [`RULE_IDS`]).
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

struct Rule {
    id: &'static str,
    regex: Regex,
    check: Check,
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
    v.len() >= 6
        && !STOCK.contains(&stem.as_str())
        && !v.bytes().all(|b| b.is_ascii_lowercase())
        && !v.contains(['{', '}', '$', '(', ')', '[', ']'])
        && !is_placeholder(v)
        && shannon_entropy(v) >= 2.5
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
/// JSON, text) also takes unquoted ones.
pub fn is_source_code(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    const CODE: &[&str] = &[
        "rs", "py", "pyi", "go", "java", "kt", "kts", "scala", "groovy", "js", "jsx", "mjs", "cjs", "ts", "tsx", "mts",
        "cts", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "cs", "swift", "m", "mm", "rb", "php", "lua", "dart",
        "zig", "ex", "exs", "erl", "hs", "ml", "clj", "r", "jl", "vue", "svelte",
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

/// The rules, most specific first: where two matches overlap, the earlier
/// rule wins. Each pattern names the secret value `s`; assignment rules
/// also name `key` and `q` (the opening quote).
const RULES: &[(&str, &str, Check)] = &[
    (
        "gcp-service-account",
        r#""private_key"\s*:\s*"(?P<s>-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----[^"]{32,})""#,
        pem_body,
    ),
    (
        "private-key",
        r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----(?P<s>[\s\S]{32,}?)-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        pem_body,
    ),
    (
        "aws-access-key-id",
        r"(?:^|[^A-Za-z0-9])(?P<s>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?:[^A-Za-z0-9]|$)",
        aws_key_id,
    ),
    (
        "aws-secret-access-key",
        r#"(?i)(?P<key>aws[A-Za-z0-9_.-]{0,20}secret[A-Za-z0-9_.-]{0,20})["']?\s*(?::=|=>|=|:)\s*(?P<q>["']?)(?P<s>(?-i:[A-Za-z0-9/+]{40}))(?:[^A-Za-z0-9/+=]|$)"#,
        shaped,
    ),
    (
        "gcp-api-key",
        r"(?:^|[^A-Za-z0-9_-])(?P<s>AIza[0-9A-Za-z_-]{35})(?:[^A-Za-z0-9_-]|$)",
        shaped,
    ),
    (
        "azure-storage-key",
        r"(?:AccountKey|SharedAccessKey)\s*=\s*(?P<s>[A-Za-z0-9+/]{40,86}={0,2})",
        shaped,
    ),
    (
        "github-token",
        r"(?:^|[^A-Za-z0-9_])(?P<s>gh[pousr]_[A-Za-z0-9]{36,255})(?:[^A-Za-z0-9_]|$)",
        shaped,
    ),
    (
        "github-fine-grained-pat",
        r"(?:^|[^A-Za-z0-9_])(?P<s>github_pat_[A-Za-z0-9_]{82})(?:[^A-Za-z0-9_]|$)",
        shaped,
    ),
    (
        "gitlab-token",
        r"(?:^|[^A-Za-z0-9_-])(?P<s>gl(?:pat|dt|rt|ptt|soat|cbt)-[A-Za-z0-9_-]{20,})(?:[^A-Za-z0-9_-]|$)",
        shaped,
    ),
    (
        "slack-token",
        r"(?:^|[^A-Za-z0-9_-])(?P<s>xox[abprs]-(?:[0-9]+-)+[A-Za-z0-9-]{8,})(?:[^A-Za-z0-9_-]|$)",
        shaped,
    ),
    (
        "slack-webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]{20,})",
        shaped,
    ),
    (
        "stripe-key",
        r"(?:^|[^A-Za-z0-9_])(?P<s>(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{16,247})(?:[^A-Za-z0-9_]|$)",
        shaped,
    ),
    (
        "twilio-api-key",
        r"(?:^|[^A-Za-z0-9_])(?P<s>SK[0-9a-f]{32})(?:[^A-Za-z0-9_]|$)",
        shaped,
    ),
    (
        "sendgrid-api-key",
        r"(?:^|[^A-Za-z0-9_])(?P<s>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        shaped,
    ),
    (
        "npm-token",
        r"(?:^|[^A-Za-z0-9_])(?P<s>npm_[A-Za-z0-9]{36})(?:[^A-Za-z0-9_]|$)",
        shaped,
    ),
    (
        "npmrc-auth-token",
        r#"(?m)(?:^|:)(?P<key>_authToken|_auth|_password)\s*=\s*(?P<q>["']?)(?P<s>[A-Za-z0-9+/=_.-]{8,})(?:[\s"';,]|$)"#,
        generic_assignment,
    ),
    (
        "jwt",
        r"(?:^|[^A-Za-z0-9_-])(?P<s>eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})(?:[^A-Za-z0-9_-]|$)",
        shaped,
    ),
    (
        "url-credentials",
        r#"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@"'`<>]{1,64}:(?P<s>[^\s:/@"'`<>]{1,128})@[A-Za-z0-9\[][^\s/"'`<>]*"#,
        url_password,
    ),
    (
        "generic-secret",
        r#"(?i)(?P<key>(?:password|passwd|passphrase|pwd|secret|token|api_?key|apikey|access_?key|auth_?key|private_?key|client_?secret|credentials?)[A-Za-z0-9_-]{0,24})["']?\s*(?::=|=>|=|:)\s*(?P<q>["'`]?)(?P<s>[^\s"'`;,()\[\]{}<>\\]{8,})(?:[\s"'`;,)\]}]|$)"#,
        generic_assignment,
    ),
];

/// Ids of all rules, in priority order.
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
    "npmrc-auth-token",
    "jwt",
    "url-credentials",
    "generic-secret",
];

/// The compiled rules. Build once per run and share; scanning needs `&self` only.
pub struct Scanner {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("rules", &RULE_IDS).finish()
    }
}

impl Scanner {
    /// Compiles the rules.
    pub fn new() -> Result<Self> {
        let compile_error = |id: &str, e: regex::Error| IndexError::InvalidArgument(format!("secret rule {id}: {e}"));
        let rules = RULES
            .iter()
            .map(|&(id, pattern, check)| {
                Ok(Rule {
                    id,
                    regex: Regex::new(pattern).map_err(|e| compile_error(id, e))?,
                    check,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { rules })
    }

    /// Every secret in `text`, read as a config file (unquoted assigned
    /// values count), in text order; overlaps go to the more specific rule.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.scan_as(text, false)
    }

    /// [`Scanner::scan`] for the file at `path`: in source code
    /// ([`is_source_code`]) assignment rules only take quoted values.
    pub fn scan_file(&self, path: &str, text: &str) -> Vec<Finding> {
        self.scan_as(text, is_source_code(path))
    }

    fn scan_as(&self, text: &str, code: bool) -> Vec<Finding> {
        // Sorted by start and never overlapping, so lookups can bisect.
        let mut found: Vec<Finding> = Vec::new();
        for rule in &self.rules {
            let mut fresh = Vec::new();
            for caps in rule.regex.captures_iter(text) {
                let Some(s) = caps.name("s") else { continue };
                let candidate = Candidate {
                    value: s.as_str(),
                    quoted: caps.name("q").is_some_and(|q| !q.is_empty()),
                    key: caps.name("key").map_or("", |k| k.as_str()),
                    code,
                };
                if s.is_empty() || !(rule.check)(&candidate) {
                    continue;
                }
                // Rules run in priority order: keep a match only where no
                // earlier rule already claimed the bytes.
                let next = found.partition_point(|f| f.end <= s.start());
                if found.get(next).is_some_and(|f| f.start < s.end()) {
                    continue;
                }
                fresh.push(Finding {
                    rule: rule.id,
                    line: 0,
                    start: s.start(),
                    end: s.end(),
                });
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
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn source_code_takes_only_quoted_values() {
        let s = scanner();
        let unquoted = "let total_tokens = AtomicU32Counter2;\nlet t = |token: CancellationTok3n| {};\n";
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
}
