//! Retrieval signals from a pasted bug report or question.
//!
//! People paste stack traces, exception messages, file paths and fragments of
//! code into a search box. [`extract`] pulls the parts of such a text that are
//! worth searching for on their own:
//!
//! * **identifiers** — `CamelCase`, `snake_case`, dotted paths such as
//!   `django.db.migrations` and `Class::method` paths;
//! * **paths** — file paths with a known source or documentation extension,
//!   wherever they are named (prose, traces, GitHub links);
//! * **frames** — stack-trace frames of Python, Java (and other JVM
//!   languages), Go, Rust, JavaScript (V8 / Node.js) and C# (.NET and Mono);
//! * **exception** — the first exception, panic or error line.
//!
//! [`looks_like_report`] tells a bug report from a short question,
//! [`model_text`] shortens a long report to the part an embedding model should
//! see, and [`path_matches`] compares a path named in a report with an indexed
//! file path.
//!
//! Everything here is total and bounded: any UTF-8 input is accepted, only the
//! first 64 KiB of it are examined, every regex runs in time linear in its
//! input (the `regex` crate guarantees it), lines longer than 4 KiB are not
//! parsed as frames, and each kind of extracted item is capped (64
//! identifiers, 32 paths, 64 frames).
//!
//! The trace formats are tested against real traces under
//! `services/tests/traces/` (see the `README.md` there for how each was made).

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

/// Only this many bytes of the input are examined (cut on a char boundary).
const MAX_INPUT_BYTES: usize = 64 * 1024;
/// At most this many identifiers are returned.
const MAX_IDENTIFIERS: usize = 64;
/// At most this many paths are returned.
const MAX_PATHS: usize = 32;
/// At most this many frames are returned (after removing exact repeats).
const MAX_FRAMES: usize = 64;
/// At most this many frames are collected before repeats are removed.
const MAX_RAW_FRAMES: usize = 4 * MAX_FRAMES;
/// Lines longer than this are not parsed as frames; exception lines are
/// looked for in their first `MAX_LINE_BYTES` bytes only.
const MAX_LINE_BYTES: usize = 4096;
/// Identifiers longer than this are ignored.
const MAX_IDENTIFIER_BYTES: usize = 200;
/// Paths longer than this are ignored.
const MAX_PATH_BYTES: usize = 512;
/// The exception line is cut to this many characters.
const MAX_EXCEPTION_CHARS: usize = 500;

/// The language (runtime) whose stack-trace format a [`Frame`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceLanguage {
    /// `File "x.py", line 12, in func`.
    Python,
    /// `at com.example.Foo.bar(Foo.java:42)`; also Kotlin, Scala and other JVM languages.
    Java,
    /// `main.divide(...)` followed by `\t/x/main.go:12 +0x1d`.
    Go,
    /// `thread 'main' panicked at src/main.rs:5:13:` and backtrace lines.
    Rust,
    /// V8 / Node.js `at func (file.js:10:15)`.
    JavaScript,
    /// .NET `at Ns.Class.Method() in x.cs:line 12` and Mono `at Ns.Class.Method () [0x0] in x.cs:5`.
    CSharp,
}

/// One stack-trace frame.
///
/// What `function` holds, by language (always as printed, minus noise):
///
/// * Python: the function name (`parse_port`, `<module>`).
/// * Java: the fully qualified method, `com.example.Foo.bar`, without the
///   module or class-loader prefix (`java.base/`, `app//`); `path` is the bare
///   file name the JVM prints (`Foo.java`), or `None` for `(Unknown Source)`
///   and `(Native Method)`.
/// * C#: the fully qualified method without its parameter list,
///   `Namespace.Class.Method`.
/// * Go: the function as printed, `main.(*Calc).Div`, `net/http.(*conn).serve`;
///   `created by F` lines give a frame for `F` at the `go` statement.
/// * Rust: the demangled path, `inventory::stock::reserve`, without
///   `::h0123…` hashes or `[0123…]` crate disambiguators; `None` for the
///   `panicked at` frame.
/// * JavaScript: the name V8 prints, `Client.fetch`, `Object.<anonymous>`,
///   without `async `/`new ` prefixes and ` [as alias]` suffixes; `None` for
///   anonymous frames (`at /x/y.js:3:1`).
///
/// [`Frame::short_function`] gives the last segment (`bar`, `Method`, `Div`,
/// `reserve`, `fetch`) of any of these.
///
/// `path` is normalised like [`Signals::paths`] (forward slashes, no leading
/// `./`, no `file://`), and is `None` where the runtime printed a placeholder
/// (`<stdin>`, `<anonymous>`, a Mono assembly id) instead of a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The source file, as printed in the trace (normalised).
    pub path: Option<String>,
    /// The 1-based line number in `path`.
    pub line: Option<u32>,
    /// The function or method (see the type's documentation for what each language stores).
    pub function: Option<String>,
    /// Which trace format the frame was read from.
    pub language: TraceLanguage,
}

impl Frame {
    /// The last segment of [`Frame::function`]: the part after the last `.`
    /// or `::` (`com.example.Foo.bar` → `bar`, `main.(*Calc).Div` → `Div`,
    /// `inventory::stock::reserve` → `reserve`). The whole name when it has
    /// no separator or ends with one.
    #[must_use]
    pub fn short_function(&self) -> Option<&str> {
        let function = self.function.as_deref()?;
        let dot = function.rfind('.').map(|i| i + 1);
        let colons = function.rfind("::").map(|i| i + 2);
        let start = dot.max(colons).unwrap_or(0);
        match function.get(start..) {
            Some(last) if !last.is_empty() => Some(last),
            _ => Some(function),
        }
    }
}

/// The retrieval signals found in a text by [`extract`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// `CamelCase`, `snake_case`, dotted (`django.db.migrations`) and
    /// `Class::method` identifiers, deduplicated, in order of first
    /// appearance. Plain words (`error`, `Django`, `JSON`), tokens shorter
    /// than 3 characters, tokens inside paths and URLs, file names
    /// (`query.py`), domain names, a few product names (`JavaScript`,
    /// `GitHub`, …) and a leading `self.`/`this.`/`cls.` are left out.
    pub identifiers: Vec<String>,
    /// File paths named anywhere in the text that end in a known source or
    /// documentation extension (or are a `Makefile`, `Dockerfile`, …),
    /// normalised to forward slashes, without a leading `./`, `file://` or
    /// `#L12`/`:12:5` suffix; GitHub/GitLab `blob` links give the path in the
    /// repository. Deduplicated, in order of first appearance.
    pub paths: Vec<String>,
    /// Stack-trace frames in the order they appear; an exact repeat of an
    /// earlier frame (Mono prints its trace twice) is dropped.
    pub frames: Vec<Frame>,
    /// The first exception, panic or error line, e.g. `ValueError: invalid
    /// literal …`, `java.lang.NullPointerException: …`, `panic: runtime
    /// error: …`, `TypeError: x is not a function`. Prefixes such as
    /// `Exception in thread "main" ` or `Caused by: ` are dropped. For a Rust
    /// panic it is the `thread 'main' panicked at …` line (without the
    /// run-specific thread id) followed by the panic message when that is on
    /// the next line.
    pub exception: Option<String>,
}

/// Extracts identifiers, paths, stack-trace frames and the exception line
/// from `text`. Never panics; only the first 64 KiB of `text` are examined.
#[must_use]
pub fn extract(text: &str) -> Signals {
    let text = cap_bytes(text, MAX_INPUT_BYTES);
    let (frames, exception) = parse_lines(text);
    let (paths, skip) = extract_paths(text);
    let identifiers = extract_identifiers(text, &skip);
    Signals {
        identifiers,
        paths,
        frames,
        exception,
    }
}

/// True when the text reads like a bug report rather than a short question.
///
/// The rule, first match wins (on the first 64 KiB of `text`):
/// 1. it contains a fenced code block (a line starting with ```` ``` ```` or `~~~`);
/// 2. it is long: more than 400 characters (ignoring surrounding whitespace)
///    on at least 2 non-blank lines;
/// 3. [`extract`] finds a stack-trace frame or an exception line in it.
#[must_use]
pub fn looks_like_report(text: &str) -> bool {
    let capped = cap_bytes(text, MAX_INPUT_BYTES);
    reads_as_report(capped) || {
        let (frames, exception) = parse_lines(capped);
        !frames.is_empty() || exception.is_some()
    }
}

/// [`looks_like_report`] for a caller that already holds `text`'s [`Signals`].
#[must_use]
pub fn looks_like_report_with(text: &str, signals: &Signals) -> bool {
    reads_as_report(cap_bytes(text, MAX_INPUT_BYTES)) || !signals.frames.is_empty() || signals.exception.is_some()
}

/// Rules 1 and 2 of [`looks_like_report`]: a fenced code block, or long text.
fn reads_as_report(text: &str) -> bool {
    if text.lines().any(is_fence) {
        return true;
    }
    let long = text.trim().chars().nth(400).is_some();
    long && text.lines().filter(|l| !l.trim().is_empty()).nth(1).is_some()
}

/// The part of a long report an embedding model should see, at most
/// `max_chars` characters (cut on a char boundary).
///
/// Text of at most `max_chars` characters is returned unchanged. Otherwise
/// these parts are joined with newlines, skipping empty ones:
/// 1. the title: the first non-blank line outside a fenced code block
///    (without leading `#`s), at most a quarter of `max_chars`;
/// 2. the first paragraph: the lines after the title up to the next blank
///    line, fence or stack-trace line (or, when the title stands alone, the
///    next such block), joined with spaces, at most half of `max_chars`;
///    stack-trace and exception lines are left to the parts below;
/// 3. the exception line, unless the parts above already contain it;
/// 4. the function names of the frames, deduplicated, separated by spaces;
/// 5. the identifiers not already in the parts above, separated by spaces.
///
/// The result is then cut to `max_chars` characters. When all parts are
/// empty the trimmed text itself is cut instead.
#[must_use]
pub fn model_text(text: &str, max_chars: usize) -> String {
    if text.chars().nth(max_chars).is_none() {
        return text.to_string();
    }
    model_text_with(text, &extract(text), max_chars)
}

/// [`model_text`] for a caller that already holds `text`'s [`Signals`].
#[must_use]
pub fn model_text_with(text: &str, signals: &Signals, max_chars: usize) -> String {
    if text.chars().nth(max_chars).is_none() {
        return text.to_string();
    }
    let capped = cap_bytes(text, MAX_INPUT_BYTES);
    let (title, paragraph) = title_and_paragraph(capped);
    let mut parts: Vec<String> = Vec::new();
    let title = truncate_chars(&title, max_chars / 4);
    if !title.is_empty() {
        parts.push(title);
    }
    let paragraph = truncate_chars(&paragraph, max_chars / 2);
    if !paragraph.is_empty() {
        parts.push(paragraph);
    }
    if let Some(exception) = &signals.exception
        && !parts.iter().any(|p| p.contains(exception.as_str()))
    {
        parts.push(exception.clone());
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let functions: Vec<&str> = signals
        .frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .filter(|f| seen.insert(f))
        .collect();
    if !functions.is_empty() {
        parts.push(functions.join(" "));
    }
    let identifiers: Vec<&str> = signals
        .identifiers
        .iter()
        .map(String::as_str)
        .filter(|i| seen.insert(i) && !parts.iter().any(|p| p.contains(i)))
        .collect();
    if !identifiers.is_empty() {
        parts.push(identifiers.join(" "));
    }
    let joined = parts.join("\n");
    if joined.trim().is_empty() {
        truncate_chars(text.trim(), max_chars)
    } else {
        truncate_chars(&joined, max_chars)
    }
}

/// Whether a path named in a report (`named`, from [`Signals::paths`] or
/// [`Frame::path`]) refers to the indexed file `indexed` (a repository-relative
/// path): true when one ends with the other at a `/` boundary.
///
/// * `models/query.py` or `query.py` matches indexed `django/db/models/query.py`;
/// * `/home/u/proj/src/foo.py` (an absolute path from a trace) matches indexed
///   `src/foo.py`, and `C:\src\Shop\Program.cs` matches `Shop/Program.cs`;
/// * `b.rs` does not match `src/lib.rs`.
///
/// Both sides are normalised first (backslashes to `/`, no leading `./` or
/// `file://`); the comparison is case-sensitive. Empty paths match nothing.
#[must_use]
pub fn path_matches(named: &str, indexed: &str) -> bool {
    let (Some(named), Some(indexed)) = (normalize_path(named), normalize_path(indexed)) else {
        return false;
    };
    let named = named.trim_start_matches('/');
    let indexed = indexed.trim_start_matches('/');
    if named.is_empty() || indexed.is_empty() {
        return false;
    }
    ends_at_boundary(indexed, named) || ends_at_boundary(named, indexed)
}

/// `long` equals `suffix`, or ends with `/` + `suffix`.
fn ends_at_boundary(long: &str, suffix: &str) -> bool {
    if long == suffix {
        return true;
    }
    long.len() > suffix.len()
        && long.ends_with(suffix)
        && long.as_bytes().get(long.len() - suffix.len() - 1) == Some(&b'/')
}

// ---------------------------------------------------------------------------
// Regexes.

fn re(pattern: &str) -> Regex {
    // The patterns are constants covered by the tests; they always compile.
    Regex::new(pattern).expect("report.rs: static regex must compile")
}

/// Python: `  File "/x/y/z.py", line 12, in func_name`.
static PY_FRAME: LazyLock<Regex> = LazyLock::new(|| re(r#"^\s*File "([^"]+)", line (\d+)(?:, in (\S.*))?$"#));
/// Rust panic location, new (`panicked at src/main.rs:5:13:`) and old
/// (`panicked at 'msg', src/main.rs:5:13`) formats, with or without a thread id.
static RUST_PANIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*thread '[^']*'(?: \(\d+\))? panicked at (?:'.*', )?(\S.*?):(\d+):(\d+):?$"));
/// Rust backtrace entry, short (`  3: krate::f`) and full (`  3:  0x55d… - krate::f::h…`).
static RUST_FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\d{1,5}:\s+(0x[0-9a-fA-F]+ - )?(\S.*?)$"));
/// Rust backtrace location line: `             at ./src/main.rs:12:5`.
static RUST_AT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+at (\S.*?):(\d+)(?::\d+)?$"));
/// Legacy-mangling hash suffix: `::h0123456789abcdef`.
static RUST_HASH: LazyLock<Regex> = LazyLock::new(|| re(r"::h[0-9a-f]{16}$"));
/// v0-mangling crate disambiguator: `std[e28293b1aa0f68bd]`.
static RUST_DISAMBIGUATOR: LazyLock<Regex> = LazyLock::new(|| re(r"\[[0-9a-f]{4,16}\]"));
/// Go function line: `main.(*Calc).Div(...)`, `main.worker(0x1?, 0x2)`.
static GO_FUNC: LazyLock<Regex> = LazyLock::new(|| re(r"^([^\s(]\S*)\(([^()]*)\)$"));
/// Go goroutine origin: `created by main.main` (`in goroutine 1` since Go 1.21).
static GO_CREATED: LazyLock<Regex> = LazyLock::new(|| re(r"^created by (\S+?)(?: in goroutine \d+)?$"));
/// Go location line: `\t/home/u/x/main.go:12 +0x1d`.
static GO_LOC: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+(\S.*?\.(?:go|s)|<autogenerated>):(\d+)(?:\s.*)?$"));
/// Mono: `  at Ns.Class.Method (args) [0x0003d] in /tmp/x.cs:17`.
static MONO_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^\s*at (?:\(wrapper [^)]*\) )?(\S+) \([^()]*\) ",
        r"(?:\[0x[0-9a-fA-F]+\]|<0x[0-9a-fA-F]+(?: \+ 0x[0-9a-fA-F]+)?>)",
        r"(?: in (.+):(\d+))?\s*$"
    ))
});
/// .NET with a location: `   at Ns.Class.Method(String arg) in /src/Program.cs:line 12`.
static DOTNET_FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at (\S+)\(([^()]*)\) in (.+):line (\d+)\s*$"));
/// Java (or .NET without a location): `at com.example.Foo.bar(Foo.java:42)`,
/// optionally followed by logback's `~[app.jar:1.0]`.
static PAREN_FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at (\S+)\(([^()]*)\)(?:\s+~?\[[^\]]*\])?\s*$"));
/// What a JVM prints between the parentheses for a source location.
static JAVA_LOC: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([\w$.-]+\.(?:java|kt|kts|scala|groovy|clj|cljc|cljs))(?::(\d+))?$"));
/// V8 named frame: `    at Client.fetch (/x/y.js:6:17)`, `at async Store.load (file:///x.mjs:5:17)`.
static JS_PAREN: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at (?:async )?(\S.*?) \((.+)\)$"));
/// V8 anonymous frame: `    at /x/y.js:13:12`, `at async file:///x.mjs:17:1`.
static JS_BARE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at (?:async )?(\S+):(\d+):(\d+)$"));
/// A V8 location: `path:line:column`.
static JS_LOC: LazyLock<Regex> = LazyLock::new(|| re(r"^(\S+):(\d+):(\d+)$"));

/// `thread 'main' panicked at …`.
static EXC_RUST: LazyLock<Regex> = LazyLock::new(|| re(r"^thread '[^']*'(?: \(\d+\))? panicked at"));
/// The thread id Rust 1.8x+ prints after the thread name.
static RUST_TID: LazyLock<Regex> = LazyLock::new(|| re(r"^(thread '[^']*') \(\d+\)"));
/// `panic: …` and `fatal error: …` (Go), `error[E0308]: …` (rustc).
static EXC_PLAIN: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:panic|fatal error|error\[E\d{4}\]): \S"));
/// An exception after a known prefix; group 1 is the exception.
static EXC_PREFIXED: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"^(?:Exception in thread "[^"]*"|Caused by:|Unhandled [Ee]xception[.:]?|"#,
        r#"\[ERROR\] FATAL UNHANDLED EXCEPTION:|Uncaught(?: \(in promise\))?)\s+"#,
        r"([A-Za-z_$][\w$.]*(?: \[[A-Z0-9_]+\])?(?::.*)?)$"
    ))
});
/// `Name: message` or a bare `Name`; group 1 is the (possibly dotted) name, group 2 the message.
static EXC_NAMED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^((?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*)(?: \[[A-Z0-9_]+\])?(?:(:)(?:\s+(.*))?)?$"));

/// A candidate path: a URL, a Windows drive path, or a run of path characters.
static PATH_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"(?i:https?|file|webpack|webpack-internal)://[^\s"'<>()\[\]{}`|\\^]+"#,
        r#"|\b[A-Za-z]:[\\/][^\s"'<>()\[\]{}`|,;:*?=!]+"#,
        r#"|[^\s"'<>()\[\]{}`|,;:*?=!]+"#
    ))
});
/// A candidate identifier: words joined by `.` or `::`.
static IDENT: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.)[A-Za-z_][A-Za-z0-9_]*)*"));

// ---------------------------------------------------------------------------
// Frames and the exception line.

/// What one line of a trace is.
enum LineKind {
    /// A complete frame.
    Frame(Frame),
    /// A Rust backtrace entry whose `at` line may follow.
    RustEntry(Frame),
    /// A Go function line whose location line should follow.
    GoFunction(String),
    /// Anything else.
    Other,
}

/// Reads frames and the first exception line, one line at a time.
fn parse_lines(text: &str) -> (Vec<Frame>, Option<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut frames: Vec<Frame> = Vec::new();
    let mut exception: Option<String> = None;
    let mut pending_go: Option<String> = None;
    let mut open_rust: Option<usize> = None;
    for (i, raw) in lines.iter().enumerate() {
        if exception.is_none() {
            exception = exception_at(&lines, i);
        }
        if frames.len() >= MAX_RAW_FRAMES {
            if exception.is_some() {
                break;
            }
            continue;
        }
        let go = pending_go.take();
        let rust = open_rust.take();
        let line = raw.trim_end();
        if line.len() > MAX_LINE_BYTES {
            continue;
        }
        if let Some(index) = rust
            && let Some(c) = RUST_AT.captures(line)
        {
            if let Some(frame) = frames.get_mut(index) {
                frame.path = c.get(1).and_then(|m| frame_path(m.as_str()));
                frame.line = c.get(2).and_then(|m| m.as_str().parse().ok());
            }
            continue;
        }
        if let Some(function) = go
            && let Some(c) = GO_LOC.captures(line)
        {
            frames.push(Frame {
                path: c.get(1).and_then(|m| frame_path(m.as_str())),
                line: c.get(2).and_then(|m| m.as_str().parse().ok()),
                function: Some(function),
                language: TraceLanguage::Go,
            });
            continue;
        }
        match classify_line(line) {
            LineKind::Frame(frame) => frames.push(frame),
            LineKind::RustEntry(frame) => {
                open_rust = Some(frames.len());
                frames.push(frame);
            }
            LineKind::GoFunction(function) => pending_go = Some(function),
            LineKind::Other => {}
        }
    }
    let mut unique: Vec<Frame> = Vec::new();
    for frame in frames {
        if unique.len() >= MAX_FRAMES {
            break;
        }
        if !unique.contains(&frame) {
            unique.push(frame);
        }
    }
    (unique, exception)
}

/// Recognises a single trace line (lines that pair with the next one are
/// reported as pending and completed by [`parse_lines`]).
fn classify_line(line: &str) -> LineKind {
    if let Some(c) = PY_FRAME.captures(line) {
        return LineKind::Frame(Frame {
            path: c.get(1).and_then(|m| frame_path(m.as_str())),
            line: c.get(2).and_then(|m| m.as_str().parse().ok()),
            function: c.get(3).map(|m| m.as_str().to_string()),
            language: TraceLanguage::Python,
        });
    }
    if let Some(c) = RUST_PANIC.captures(line) {
        return LineKind::Frame(Frame {
            path: c.get(1).and_then(|m| frame_path(m.as_str())),
            line: c.get(2).and_then(|m| m.as_str().parse().ok()),
            function: None,
            language: TraceLanguage::Rust,
        });
    }
    if let Some(c) = RUST_FRAME.captures(line)
        && let Some(function) = c.get(2).and_then(|m| rust_function(m.as_str(), c.get(1).is_some()))
    {
        return LineKind::RustEntry(Frame {
            path: None,
            line: None,
            function: Some(function),
            language: TraceLanguage::Rust,
        });
    }
    if let Some(c) = GO_CREATED.captures(line)
        && let Some(function) = c.get(1)
    {
        return LineKind::GoFunction(function.as_str().to_string());
    }
    if let Some(c) = GO_FUNC.captures(line)
        && let Some(function) = c.get(1).map(|m| m.as_str())
        && function.contains('.')
        && !function.contains('"')
    {
        return LineKind::GoFunction(function.to_string());
    }
    if line.trim_start().starts_with("at ")
        && let Some(frame) = at_frame(line)
    {
        return LineKind::Frame(frame);
    }
    LineKind::Other
}

/// An `at …` line: Mono, .NET, Java or JavaScript.
fn at_frame(line: &str) -> Option<Frame> {
    if let Some(c) = MONO_FRAME.captures(line) {
        let path = c.get(2).and_then(|m| frame_path(m.as_str()));
        let line = if path.is_some() {
            c.get(3).and_then(|m| m.as_str().parse().ok())
        } else {
            None
        };
        return Some(Frame {
            path,
            line,
            function: c.get(1).map(|m| m.as_str().to_string()),
            language: TraceLanguage::CSharp,
        });
    }
    if let Some(c) = DOTNET_FRAME.captures(line) {
        return Some(Frame {
            path: c.get(3).and_then(|m| frame_path(m.as_str())),
            line: c.get(4).and_then(|m| m.as_str().parse().ok()),
            function: c.get(1).map(|m| m.as_str().to_string()),
            language: TraceLanguage::CSharp,
        });
    }
    if let Some(c) = PAREN_FRAME.captures(line) {
        let function = c.get(1).map_or("", |m| m.as_str());
        let inside = c.get(2).map_or("", |m| m.as_str()).trim();
        if let Some(loc) = JAVA_LOC.captures(inside) {
            return Some(java_frame(function, loc.get(1).map(|m| m.as_str()), loc.get(2)));
        }
        if matches!(inside, "Unknown Source" | "Native Method") {
            return Some(java_frame(function, None, None));
        }
        // .NET without a location: parameters (or nothing) between the parentheses.
        if function.contains('.') && !inside.contains(':') {
            return Some(Frame {
                path: None,
                line: None,
                function: Some(function.to_string()),
                language: TraceLanguage::CSharp,
            });
        }
        return None;
    }
    if let Some(c) = JS_PAREN.captures(line) {
        let function = js_function(c.get(1).map_or("", |m| m.as_str()))?;
        let location = c.get(2).map_or("", |m| m.as_str());
        let (path, line) = match JS_LOC.captures(location) {
            Some(loc) => (
                loc.get(1).and_then(|m| frame_path(m.as_str())),
                loc.get(2).and_then(|m| m.as_str().parse().ok()),
            ),
            None if is_js_placeholder(location) => (None, None),
            None => return None,
        };
        return Some(Frame {
            path,
            line,
            function: Some(function),
            language: TraceLanguage::JavaScript,
        });
    }
    if let Some(c) = JS_BARE.captures(line) {
        return Some(Frame {
            path: c.get(1).and_then(|m| frame_path(m.as_str())),
            line: c.get(2).and_then(|m| m.as_str().parse().ok()),
            function: None,
            language: TraceLanguage::JavaScript,
        });
    }
    None
}

fn java_frame(function: &str, file: Option<&str>, line: Option<regex::Match<'_>>) -> Frame {
    // `java.base/java.lang.Object.clone`, `app//com.example.Foo.bar`: drop the module / loader.
    let function = function.rsplit('/').next().unwrap_or(function);
    Frame {
        path: file.and_then(frame_path),
        line: line.and_then(|m| m.as_str().parse().ok()),
        function: Some(function.to_string()),
        language: TraceLanguage::Java,
    }
}

/// The function of a V8 frame, without `new `, `async ` and ` [as alias]`;
/// `None` when what is left is not a single token (prose such as
/// "at the moment (sometimes)").
fn js_function(raw: &str) -> Option<String> {
    let mut function = raw.trim();
    for prefix in ["async ", "new "] {
        if let Some(rest) = function.strip_prefix(prefix) {
            function = rest.trim_start();
        }
    }
    if let Some(i) = function.find(" [as ")
        && function.ends_with(']')
    {
        function = function.get(..i).unwrap_or(function);
    }
    if function.is_empty() || function.contains(char::is_whitespace) {
        return None;
    }
    Some(function.to_string())
}

fn is_js_placeholder(location: &str) -> bool {
    location == "<anonymous>"
        || location == "native"
        || location == "unknown location"
        || location.starts_with("index ")
        || location.starts_with("eval at ")
}

/// The function of a Rust backtrace entry, or `None` when the entry does not
/// look like a Rust symbol (a numbered list in prose).
fn rust_function(raw: &str, full_format: bool) -> Option<String> {
    let raw = raw.trim();
    if raw == "<unknown>" || !raw.chars().any(char::is_alphanumeric) {
        return None;
    }
    let symbol_like = raw.contains("::") || raw.starts_with('<');
    if !(symbol_like || full_format && !raw.contains(char::is_whitespace)) {
        return None;
    }
    // Spaces only inside generics: `<T as Trait>::f`, `f::<A, B>`.
    if raw.contains(char::is_whitespace) && !raw.contains('<') {
        return None;
    }
    let cleaned = RUST_DISAMBIGUATOR.replace_all(raw, "");
    let cleaned = RUST_HASH.replace(&cleaned, "");
    Some(cleaned.into_owned())
}

/// A frame's path: `None` for placeholders (`<stdin>`, `<anonymous>`, a Mono
/// assembly id), otherwise the normalised path.
fn frame_path(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.starts_with('<') {
        return None;
    }
    normalize_path(raw)
}

/// The exception line starting at `lines[i]`, if it is one.
fn exception_at(lines: &[&str], i: usize) -> Option<String> {
    let line = cap_bytes(lines.get(i)?, MAX_LINE_BYTES).trim();
    if line.is_empty() {
        return None;
    }
    if EXC_RUST.is_match(line) {
        let mut text = RUST_TID.replace(line, "$1").into_owned();
        if text.ends_with(':')
            && let Some(next) = lines.get(i + 1)
        {
            let next = cap_bytes(next, MAX_LINE_BYTES).trim();
            if !next.is_empty() {
                text.push(' ');
                text.push_str(next);
            }
        }
        return Some(truncate_chars(&text, MAX_EXCEPTION_CHARS));
    }
    if EXC_PLAIN.is_match(line) {
        return Some(truncate_chars(line, MAX_EXCEPTION_CHARS));
    }
    if let Some(c) = EXC_PREFIXED.captures(line)
        && let Some(m) = c.get(1)
    {
        return Some(truncate_chars(m.as_str().trim(), MAX_EXCEPTION_CHARS));
    }
    let c = EXC_NAMED.captures(line)?;
    let name = c.get(1)?.as_str();
    let has_colon = c.get(2).is_some();
    let has_message = c.get(3).is_some_and(|m| !m.as_str().trim().is_empty());
    let last = name.rsplit('.').next().unwrap_or(name);
    let suffixed = [
        "Error",
        "Exception",
        "Interrupt",
        "Exit",
        "Iteration",
        "Warning",
        "Failure",
        "Fault",
    ]
    .iter()
    .any(|s| last.ends_with(s));
    let dotted = name.contains('.');
    let accepted = if has_colon {
        // `ValueError: x`, `Error: x`, `django.core.exceptions.ImproperlyConfigured: x`.
        (suffixed || dotted) && has_message
    } else {
        // A bare `KeyboardInterrupt` or `java.lang.StackOverflowError`.
        suffixed && !matches!(name, "Error" | "Exception" | "Warning" | "Failure" | "Fault")
    };
    accepted.then(|| truncate_chars(line, MAX_EXCEPTION_CHARS))
}

// ---------------------------------------------------------------------------
// Paths.

/// File extensions of source, build and documentation files.
const SOURCE_EXTENSIONS: &[&str] = &[
    "rs", "py", "pyi", "pyx", "ipynb", "js", "mjs", "cjs", "jsx", "ts", "tsx", "mts", "cts", "vue", "svelte", "java",
    "kt", "kts", "scala", "groovy", "gradle", "clj", "cljs", "cljc", "go", "c", "h", "cc", "cpp", "cxx", "hpp", "hh",
    "hxx", "cs", "fs", "fsx", "vb", "rb", "erb", "php", "swift", "mm", "lua", "pl", "pm", "ex", "exs", "erl", "hrl",
    "hs", "ml", "mli", "dart", "zig", "nim", "jl", "sh", "bash", "zsh", "fish", "ps1", "bat", "sql", "proto",
    "graphql", "gql", "html", "htm", "css", "scss", "sass", "less", "md", "markdown", "rst", "txt", "adoc", "toml",
    "yaml", "yml", "json", "jsonc", "xml", "ini", "cfg", "conf", "lock", "cmake", "mk", "tf", "hcl", "nix", "cshtml",
    "razor", "csproj", "sln", "xaml",
];

/// File names without an extension that are still worth naming.
const SPECIAL_FILE_NAMES: &[&str] = &[
    "Makefile",
    "Dockerfile",
    "Jenkinsfile",
    "Gemfile",
    "Rakefile",
    "Procfile",
    "Vagrantfile",
    "CMakeLists.txt",
];

/// Product names that look like file names (`node.js`), not paths.
const NOT_PATHS: &[&str] = &[
    "node.js",
    "vue.js",
    "next.js",
    "nuxt.js",
    "react.js",
    "express.js",
    "three.js",
    "d3.js",
    "chart.js",
    "ember.js",
    "backbone.js",
    "angular.js",
    "alpine.js",
    "solid.js",
    "deno.js",
    "p5.js",
];

/// Top-level domains: a dotted token ending in one is a host name, not an identifier.
const DOMAIN_SUFFIXES: &[&str] = &["com", "org", "net", "edu", "gov"];

/// Finds paths; also returns the byte ranges of accepted paths and of every
/// URL, so that identifiers are not taken from inside them.
fn extract_paths(text: &str) -> (Vec<String>, Vec<(usize, usize)>) {
    let mut paths: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for m in PATH_CANDIDATE.find_iter(text) {
        let candidate = m.as_str();
        let is_url = candidate.contains("://");
        let path = if candidate.len() > 2 * MAX_PATH_BYTES {
            None
        } else {
            candidate_path(candidate)
        };
        if path.is_some() || is_url {
            spans.push((m.start(), m.end()));
        }
        if let Some(path) = path
            && paths.len() < MAX_PATHS
            && seen.insert(path.clone())
        {
            paths.push(path);
        }
    }
    (paths, spans)
}

/// A candidate run of path characters as a normalised path, or `None` when it
/// does not name a source file.
fn candidate_path(candidate: &str) -> Option<String> {
    let mut s = candidate;
    if let Some(i) = s.find(['#', '?']) {
        s = s.get(..i)?;
    }
    // Trailing punctuation and `:12` / `:12:5` positions.
    loop {
        let trimmed = s.trim_end_matches(['.', ',', ':', ';', '!']);
        match trimmed.rfind(':') {
            Some(i) if i + 1 < trimmed.len() && trimmed.bytes().skip(i + 1).all(|b| b.is_ascii_digit()) => {
                s = trimmed.get(..i)?;
            }
            _ => {
                s = trimmed;
                break;
            }
        }
    }
    let path = normalize_path(s)?;
    is_source_path(&path).then_some(path)
}

/// Whether a normalised path names a source file worth boosting.
fn is_source_path(path: &str) -> bool {
    if path.len() > MAX_PATH_BYTES || path.ends_with('/') {
        return false;
    }
    // `Module._extensions..js` is a function name, not a file.
    if !path.split('/').all(|seg| seg == ".." || !seg.contains("..")) {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if SPECIAL_FILE_NAMES.contains(&name) {
        return true;
    }
    if !path.contains('/') && NOT_PATHS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return false;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    stem.chars().any(char::is_alphanumeric) && is_source_extension(ext)
}

fn is_source_extension(ext: &str) -> bool {
    ext.len() <= 10 && SOURCE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
}

/// Normalises a path: URL schemes (`file://`, `webpack:///`, and `http(s)://host`,
/// with GitHub/GitLab `/blob/<ref>/` stripped) removed, backslashes turned into
/// `/`, repeated slashes collapsed, `/C:/` turned into `C:/`, leading `./`
/// removed. `None` when nothing is left.
fn normalize_path(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    let lower_prefix = |s: &str, p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let mut from_web = false;
    if lower_prefix(s, "file://") {
        s = s.get("file://".len()..)?;
    } else if lower_prefix(s, "webpack-internal://") || lower_prefix(s, "webpack://") {
        // `webpack:///./src/x.js`, `webpack://my-app/./src/x.js` → `src/x.js`.
        let rest = s.split_once("://")?.1.trim_start_matches('/');
        s = rest.split_once("/./").map_or(rest, |(_, path)| path);
    } else if lower_prefix(s, "http://") || lower_prefix(s, "https://") {
        let rest = s.split_once("://")?.1;
        let (_host, path) = rest.split_once('/')?;
        s = path;
        from_web = true;
    }
    if from_web {
        for marker in ["/-/blob/", "/blob/", "/-/raw/", "/raw/", "/-/tree/", "/tree/"] {
            if let Some(i) = s.find(marker) {
                let after = s.get(i + marker.len()..)?;
                // Skip the ref (branch, tag or commit).
                s = after.split_once('/').map_or("", |(_, p)| p);
                break;
            }
        }
        if let Some(i) = s.find(['?', '#']) {
            s = s.get(..i)?;
        }
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c == '\\' { '/' } else { c };
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    // `file:///C:/x` → `/C:/x` → `C:/x`.
    let bytes = out.as_bytes();
    if bytes.len() >= 4 && bytes[0] == b'/' && bytes[1].is_ascii_alphabetic() && bytes[2] == b':' && bytes[3] == b'/' {
        out.remove(0);
    }
    let mut trimmed = out.as_str();
    while let Some(rest) = trimmed.strip_prefix("./") {
        trimmed = rest;
    }
    if trimmed.is_empty() || trimmed == "." {
        return None;
    }
    Some(trimmed.to_string())
}

// ---------------------------------------------------------------------------
// Identifiers.

/// Product and platform names written in CamelCase, and other tokens that are
/// never worth searching for (compared case-insensitively).
const STOP_IDENTIFIERS: &[&str] = &[
    "javascript",
    "typescript",
    "coffeescript",
    "github",
    "gitlab",
    "bitbucket",
    "postgresql",
    "mysql",
    "mongodb",
    "macos",
    "ios",
    "ipados",
    "iphone",
    "ipad",
    "youtube",
    "linkedin",
    "pypi",
    "numpy",
    "pytorch",
    "tensorflow",
    "openai",
    "chatgpt",
    "vscode",
    "intellij",
    "pycharm",
    "webstorm",
    "powershell",
    "devops",
    "stackoverflow",
    "dotnet",
    "nodejs",
    "graphql",
    "oauth",
    "wifi",
    "e.g",
    "i.e",
    "rust_backtrace",
];

/// Identifiers outside the `skip` byte ranges (sorted, non-overlapping).
fn extract_identifiers(text: &str, skip: &[(usize, usize)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut k = 0;
    for m in IDENT.find_iter(text) {
        while k < skip.len() && skip[k].1 <= m.start() {
            k += 1;
        }
        if k < skip.len() && skip[k].0 < m.end() {
            continue;
        }
        if let Some(id) = clean_identifier(m.as_str())
            && seen.insert(id)
        {
            out.push(id.to_string());
            if out.len() >= MAX_IDENTIFIERS {
                break;
            }
        }
    }
    out
}

/// The token as an identifier, or `None` when it is a plain word, too short
/// or long, a file or domain name, or a stop word.
fn clean_identifier(token: &str) -> Option<&str> {
    let mut token = token;
    for prefix in ["self.", "this.", "cls."] {
        if let Some(rest) = token.strip_prefix(prefix) {
            token = rest;
        }
    }
    if token.len() < 3 || token.len() > MAX_IDENTIFIER_BYTES {
        return None;
    }
    if STOP_IDENTIFIERS.iter().any(|s| s.eq_ignore_ascii_case(token)) {
        return None;
    }
    if token.contains("::") {
        // `krate::f::h0123456789abcdef` (a legacy-mangled Rust symbol) → `krate::f`.
        return match RUST_HASH.find(token) {
            Some(m) => token.get(..m.start()),
            None => Some(token),
        };
    }
    if token.contains('.') {
        let last = token.rsplit('.').next().unwrap_or(token);
        if is_source_extension(last) || DOMAIN_SUFFIXES.iter().any(|d| d.eq_ignore_ascii_case(last)) {
            return None;
        }
        if token.split('.').all(|seg| seg.len() <= 1) {
            return None;
        }
        return Some(token);
    }
    let has_letter = token.bytes().any(|b| b.is_ascii_alphabetic());
    if token.contains('_') && has_letter {
        return Some(token);
    }
    is_camel_case(token).then_some(token)
}

/// `camelCase`, `PascalCase` with two humps, `HTTPServer`, `IOError`; not
/// `Django`, `JSON` or `utf8`.
fn is_camel_case(token: &str) -> bool {
    let b = token.as_bytes();
    (1..b.len()).any(|i| {
        b[i].is_ascii_uppercase()
            && (b[i - 1].is_ascii_lowercase()
                || b[i - 1].is_ascii_digit()
                || (b[i - 1].is_ascii_uppercase() && b.get(i + 1).is_some_and(u8::is_ascii_lowercase)))
    })
}

// ---------------------------------------------------------------------------
// Text helpers.

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn cap_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The first `max_chars` characters of `s`.
fn truncate_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => s.get(..end).unwrap_or("").to_string(),
        None => s.to_string(),
    }
}

fn is_fence(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("```") || line.starts_with("~~~")
}

/// A frame, a frame's location line or an exception line.
fn is_trace_line(line: &str) -> bool {
    let line = line.trim_end();
    if line.len() > MAX_LINE_BYTES {
        return false;
    }
    !matches!(classify_line(line), LineKind::Other)
        || RUST_AT.is_match(line)
        || GO_LOC.is_match(line)
        || exception_at(&[line], 0).is_some()
}

/// The title (first non-blank line outside a code fence, without leading
/// `#`s) and the first paragraph after it (joined with spaces, without trace
/// lines).
fn title_and_paragraph(text: &str) -> (String, String) {
    let mut in_fence = false;
    let mut title: Option<String> = None;
    let mut paragraph: Vec<&str> = Vec::new();
    for line in text.lines() {
        if is_fence(line) {
            in_fence = !in_fence;
            if !paragraph.is_empty() {
                break;
            }
            continue;
        }
        if in_fence {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if !paragraph.is_empty() {
                break;
            }
            continue;
        }
        if title.is_none() {
            title = Some(trimmed.trim_start_matches('#').trim().to_string());
        } else if is_trace_line(line) {
            // Frames and exception lines get their own parts in `model_text`.
            if !paragraph.is_empty() {
                break;
            }
        } else {
            paragraph.push(trimmed);
        }
    }
    (title.unwrap_or_default(), paragraph.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TraceLanguage::{CSharp, Go, Java, JavaScript, Python, Rust};

    const PYTHON: &str = include_str!("../tests/traces/python.txt");
    const JAVA: &str = include_str!("../tests/traces/java.txt");
    const GO: &str = include_str!("../tests/traces/go.txt");
    const GO_GOROUTINE: &str = include_str!("../tests/traces/go_goroutine.txt");
    const RUST_PANIC_ONLY: &str = include_str!("../tests/traces/rust.txt");
    const RUST_BACKTRACE: &str = include_str!("../tests/traces/rust_backtrace.txt");
    const RUST_FULL: &str = include_str!("../tests/traces/rust_full.txt");
    const NODE: &str = include_str!("../tests/traces/node.txt");
    const NODE_ESM: &str = include_str!("../tests/traces/node_esm.txt");
    const CSHARP_MONO: &str = include_str!("../tests/traces/csharp.txt");
    const CSHARP_MONO_NODEBUG: &str = include_str!("../tests/traces/csharp_nodebug.txt");
    const CSHARP_DOTNET: &str = include_str!("../tests/traces/csharp_dotnet.txt");

    const ALL_FIXTURES: &[&str] = &[
        PYTHON,
        JAVA,
        GO,
        GO_GOROUTINE,
        RUST_PANIC_ONLY,
        RUST_BACKTRACE,
        RUST_FULL,
        NODE,
        NODE_ESM,
        CSHARP_MONO,
        CSHARP_MONO_NODEBUG,
        CSHARP_DOTNET,
    ];

    fn f(path: Option<&str>, line: Option<u32>, function: Option<&str>, language: TraceLanguage) -> Frame {
        Frame {
            path: path.map(str::to_string),
            line,
            function: function.map(str::to_string),
            language,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn static_regexes_compile() {
        for regex in [
            &PY_FRAME,
            &RUST_PANIC,
            &RUST_FRAME,
            &RUST_AT,
            &RUST_HASH,
            &RUST_DISAMBIGUATOR,
            &GO_FUNC,
            &GO_CREATED,
            &GO_LOC,
            &MONO_FRAME,
            &DOTNET_FRAME,
            &PAREN_FRAME,
            &JAVA_LOC,
            &JS_PAREN,
            &JS_BARE,
            &JS_LOC,
            &EXC_RUST,
            &RUST_TID,
            &EXC_PLAIN,
            &EXC_PREFIXED,
            &EXC_NAMED,
            &PATH_CANDIDATE,
            &IDENT,
        ] {
            LazyLock::force(regex);
        }
    }

    // --- Real traces (see tests/traces/README.md) -------------------------

    #[test]
    fn python_trace() {
        let s = extract(PYTHON);
        let main = "/home/u/proj/python_src/main.py";
        assert_eq!(
            s.frames,
            vec![
                f(Some(main), Some(10), Some("load_config"), Python),
                f(
                    Some("/home/u/proj/python_src/app/parser.py"),
                    Some(3),
                    Some("parse_port"),
                    Python
                ),
                f(Some(main), Some(20), Some("<module>"), Python),
                f(Some(main), Some(16), Some("main"), Python),
                f(Some(main), Some(12), Some("load_config"), Python),
            ]
        );
        assert_eq!(
            s.exception.as_deref(),
            Some("ValueError: invalid literal for int() with base 10: 'eighty'")
        );
        assert_eq!(s.paths, strings(&[main, "/home/u/proj/python_src/app/parser.py"]));
        assert_eq!(
            s.identifiers,
            strings(&[
                "load_config",
                "parser.parse_port",
                "parse_port",
                "ValueError",
                "KeyError"
            ])
        );
    }

    #[test]
    fn java_trace() {
        let s = extract(JAVA);
        assert_eq!(
            s.frames,
            vec![
                f(Some("Main.java"), Some(14), Some("com.example.Main.main"), Java),
                f(None, None, Some("com.example.Repo.find"), Java),
                f(Some("Main.java"), Some(21), Some("com.example.Service.handle"), Java),
                f(
                    None,
                    None,
                    Some("jdk.internal.reflect.NativeMethodAccessorImpl.invoke0"),
                    Java
                ),
                f(
                    Some("NativeMethodAccessorImpl.java"),
                    Some(77),
                    Some("jdk.internal.reflect.NativeMethodAccessorImpl.invoke"),
                    Java
                ),
                f(
                    Some("DelegatingMethodAccessorImpl.java"),
                    Some(43),
                    Some("jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke"),
                    Java
                ),
                f(
                    Some("Method.java"),
                    Some(569),
                    Some("java.lang.reflect.Method.invoke"),
                    Java
                ),
                f(Some("Main.java"), Some(12), Some("com.example.Main.main"), Java),
            ]
        );
        assert_eq!(s.frames[2].short_function(), Some("handle"));
        assert_eq!(
            s.exception.as_deref(),
            Some("java.lang.IllegalStateException: request failed for alice")
        );
        assert_eq!(s.paths[0], "Main.java");
        assert!(s.identifiers.contains(&"java.lang.NullPointerException".to_string()));
        assert!(s.identifiers.contains(&"com.example.Repo.find".to_string()));
        // A JVM names only the file; it still matches the indexed source.
        assert!(path_matches(
            "Main.java",
            "services/tests/traces/java_src/com/example/Main.java"
        ));
    }

    #[test]
    fn go_trace() {
        let s = extract(GO);
        let main = "/home/u/proj/go_src/main.go";
        assert_eq!(
            s.frames,
            vec![
                f(Some(main), Some(12), Some("main.(*Calc).Div"), Go),
                f(Some(main), Some(17), Some("main.divide"), Go),
                f(Some(main), Some(21), Some("main.main"), Go),
            ]
        );
        assert_eq!(s.frames[0].short_function(), Some("Div"));
        assert_eq!(
            s.exception.as_deref(),
            Some("panic: runtime error: integer divide by zero")
        );
        assert_eq!(s.paths, strings(&[main]));
    }

    #[test]
    fn go_goroutine_trace() {
        let s = extract(GO_GOROUTINE);
        let src = "/home/u/proj/go_src/goroutine.go";
        assert_eq!(
            s.frames,
            vec![
                f(Some(src), Some(10), Some("main.worker"), Go),
                f(Some(src), Some(16), Some("main.main"), Go)
            ]
        );
        assert_eq!(
            s.exception.as_deref(),
            Some("panic: runtime error: invalid memory address or nil pointer dereference")
        );
    }

    #[test]
    fn rust_panic_trace() {
        let s = extract(RUST_PANIC_ONLY);
        assert_eq!(s.frames, vec![f(Some("src/main.rs"), Some(5), None, Rust)]);
        assert_eq!(
            s.exception.as_deref(),
            Some("thread 'main' panicked at src/main.rs:5:9: attempt to subtract with overflow")
        );
        assert_eq!(s.paths, strings(&["src/main.rs"]));
        // `RUST_BACKTRACE` in the note line is not an identifier worth searching for.
        assert!(s.identifiers.is_empty(), "{:?}", s.identifiers);
    }

    #[test]
    fn rust_backtrace_trace() {
        let s = extract(RUST_BACKTRACE);
        let lib = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        let std_panicking = format!("{lib}/std/src/panicking.rs");
        let core_panicking = format!("{lib}/core/src/panicking.rs");
        let function_rs = format!("{lib}/core/src/ops/function.rs");
        assert_eq!(
            s.frames,
            vec![
                f(Some("src/main.rs"), Some(4), None, Rust),
                f(
                    Some(&std_panicking),
                    Some(689),
                    Some("__rustc::rust_begin_unwind"),
                    Rust
                ),
                f(
                    Some(&core_panicking),
                    Some(80),
                    Some("core::panicking::panic_fmt"),
                    Rust
                ),
                f(
                    Some(&core_panicking),
                    Some(271),
                    Some("core::panicking::panic_bounds_check"),
                    Rust
                ),
                f(Some("src/main.rs"), Some(4), Some("inventory::stock::reserve"), Rust),
                f(Some("src/main.rs"), Some(12), Some("inventory::main"), Rust),
                f(
                    Some(&function_rs),
                    Some(250),
                    Some("core::ops::function::FnOnce::call_once"),
                    Rust
                ),
            ]
        );
        assert_eq!(s.frames[4].short_function(), Some("reserve"));
        assert_eq!(
            s.exception.as_deref(),
            Some("thread 'main' panicked at src/main.rs:4:25: index out of bounds: the len is 3 but the index is 9")
        );
        assert!(s.identifiers.contains(&"inventory::stock::reserve".to_string()));
    }

    #[test]
    fn rust_full_backtrace_trace() {
        let s = extract(RUST_FULL);
        // The panic location, then one frame per numbered entry (0..=35; 36 is `<unknown>`).
        assert_eq!(s.frames.len(), 37, "{:#?}", s.frames);
        assert!(s.frames.iter().all(|fr| fr.language == Rust));
        assert_eq!(s.frames[0], f(Some("src/main.rs"), Some(5), None, Rust));
        let lib = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        let libunwind = format!("{lib}/std/src/../../backtrace/src/backtrace/libunwind.rs");
        assert_eq!(
            s.frames[1],
            f(
                Some(&libunwind),
                Some(117),
                Some("std::backtrace_rs::backtrace::libunwind::trace"),
                Rust
            )
        );
        // Entry 5 has no `at` line.
        assert_eq!(s.frames[6], f(None, None, Some("core::fmt::write"), Rust));
        // Generic arguments with spaces, crate disambiguators removed.
        let sys_backtrace = format!("{lib}/std/src/sys/backtrace.rs");
        assert_eq!(
            s.frames[14],
            f(
                Some(&sys_backtrace),
                Some(182),
                Some(
                    "std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>"
                ),
                Rust
            )
        );
        // Legacy `::h…` hashes removed; absolute paths kept.
        let src = "/home/u/proj/inventory/src/main.rs";
        assert_eq!(
            s.frames[18],
            f(Some(src), Some(5), Some("inventory::stock::reserve"), Rust)
        );
        assert_eq!(s.frames[19], f(Some(src), Some(12), Some("inventory::main"), Rust));
        assert_eq!(s.frames[33], f(None, None, Some("main"), Rust));
        assert_eq!(s.frames[36], f(None, None, Some("_start"), Rust));
        assert!(path_matches(src, "src/main.rs"));
        assert!(s.identifiers.contains(&"inventory::stock::reserve".to_string()));
        assert!(!s.identifiers.iter().any(|i| i.contains("::h")), "{:?}", s.identifiers);
    }

    #[test]
    fn node_trace() {
        let s = extract(NODE);
        let src = "/home/u/proj/node_src.js";
        let loader = "node:internal/modules/cjs/loader";
        assert_eq!(
            s.frames,
            vec![
                f(Some(src), Some(6), Some("Client.fetch"), JavaScript),
                f(Some(src), Some(13), None, JavaScript),
                f(None, None, Some("Array.forEach"), JavaScript),
                f(Some(src), Some(12), Some("start"), JavaScript),
                f(Some(src), Some(17), Some("Object.<anonymous>"), JavaScript),
                f(Some(loader), Some(1521), Some("Module._compile"), JavaScript),
                f(Some(loader), Some(1623), Some("Module._extensions..js"), JavaScript),
                f(Some(loader), Some(1266), Some("Module.load"), JavaScript),
                f(Some(loader), Some(1091), Some("Module._load"), JavaScript),
                f(
                    Some("node:internal/modules/run_main"),
                    Some(164),
                    Some("Function.executeUserEntryPoint"),
                    JavaScript
                ),
            ]
        );
        assert_eq!(
            s.exception.as_deref(),
            Some("TypeError: this.handler is not a function")
        );
        // `Module._extensions..js` is not a file.
        assert_eq!(s.paths, strings(&[src]));
    }

    #[test]
    fn node_esm_trace() {
        let s = extract(NODE_ESM);
        let src = "/home/u/proj/node_esm_src.mjs";
        assert_eq!(
            s.frames,
            vec![
                f(Some(src), Some(9), Some("Store.parse"), JavaScript),
                f(Some(src), Some(5), Some("Store.load"), JavaScript),
                f(Some(src), Some(14), Some("main"), JavaScript),
                f(Some(src), Some(17), None, JavaScript),
            ]
        );
        assert_eq!(s.exception.as_deref(), Some("RangeError: unknown key: colour"));
        assert_eq!(s.paths, strings(&[src]));
    }

    #[test]
    fn csharp_mono_trace() {
        let s = extract(CSHARP_MONO);
        let src = "/home/u/proj/csharp_src.cs";
        // Mono prints the trace twice; repeats are dropped.
        assert_eq!(
            s.frames,
            vec![
                f(Some(src), Some(17), Some("Shop.Orders.OrderQueue.Next"), CSharp),
                f(Some(src), Some(24), Some("Shop.Orders.Program.Drain"), CSharp),
                f(Some(src), Some(29), Some("Shop.Orders.Program.Main"), CSharp),
            ]
        );
        assert_eq!(s.frames[0].short_function(), Some("Next"));
        assert_eq!(
            s.exception.as_deref(),
            Some("System.InvalidOperationException: queue is empty (attempt 1)")
        );
        assert_eq!(s.paths, strings(&[src]));
    }

    #[test]
    fn csharp_mono_trace_without_debug_info() {
        let s = extract(CSHARP_MONO_NODEBUG);
        assert_eq!(
            s.frames,
            vec![
                f(None, None, Some("Shop.Orders.OrderQueue.Next"), CSharp),
                f(None, None, Some("Shop.Orders.Program.Drain"), CSharp),
                f(None, None, Some("Shop.Orders.Program.Main"), CSharp),
            ]
        );
        assert!(s.paths.is_empty());
    }

    #[test]
    fn csharp_dotnet_trace_hand_written_crlf() {
        let s = extract(CSHARP_DOTNET);
        assert_eq!(
            s.frames,
            vec![
                f(
                    Some("C:/src/Shop/Orders/OrderQueue.cs"),
                    Some(15),
                    Some("Shop.Orders.OrderQueue.Next"),
                    CSharp
                ),
                f(
                    Some("C:/src/Shop/Program.cs"),
                    Some(24),
                    Some("Shop.Orders.Program.DrainAsync"),
                    CSharp
                ),
                f(
                    Some("C:/src/Shop/Program.cs"),
                    Some(29),
                    Some("Shop.Orders.Program.Main"),
                    CSharp
                ),
                f(None, None, Some("Shop.Orders.Program.<Main>"), CSharp),
            ]
        );
        assert_eq!(
            s.exception.as_deref(),
            Some("System.InvalidOperationException: queue is empty (attempt 1)")
        );
        assert_eq!(
            s.paths,
            strings(&["C:/src/Shop/Orders/OrderQueue.cs", "C:/src/Shop/Program.cs"])
        );
        assert!(path_matches(&s.paths[1], "Shop/Program.cs"));
    }

    #[test]
    fn every_fixture_reads_as_a_report() {
        for text in ALL_FIXTURES {
            assert!(looks_like_report(text), "{text}");
            let s = extract(text);
            assert!(!s.frames.is_empty() && s.exception.is_some(), "{text}");
        }
    }

    // --- Hand-written frames in the documented formats ---------------------

    #[test]
    fn hand_written_frames() {
        let cases: &[(&str, Frame)] = &[
            (
                r#"  File "<stdin>", line 1, in <module>"#,
                f(None, Some(1), Some("<module>"), Python),
            ),
            (
                r#"  File "C:\proj\app\views.py", line 7, in index"#,
                f(Some("C:/proj/app/views.py"), Some(7), Some("index"), Python),
            ),
            (
                "\tat java.base/java.lang.Object.clone(Native Method)",
                f(None, None, Some("java.lang.Object.clone"), Java),
            ),
            (
                "\tat app//com.example.Foo.bar(Foo.kt:9) ~[app.jar:1.0]",
                f(Some("Foo.kt"), Some(9), Some("com.example.Foo.bar"), Java),
            ),
            (
                "\tat com.example.Foo.lambda$run$0(Foo.java)",
                f(Some("Foo.java"), None, Some("com.example.Foo.lambda$run$0"), Java),
            ),
            (
                "thread 'main' panicked at 'called `Option::unwrap()` on a `None` value', src/lib.rs:4:37",
                f(Some("src/lib.rs"), Some(4), None, Rust),
            ),
            (
                "    at new Widget (webpack:///./src/widget.ts:3:9)",
                f(Some("src/widget.ts"), Some(3), Some("Widget"), JavaScript),
            ),
            (
                "    at HTMLButtonElement.onclick (https://example.com/static/app.js:10:5)",
                f(
                    Some("static/app.js"),
                    Some(10),
                    Some("HTMLButtonElement.onclick"),
                    JavaScript,
                ),
            ),
            (
                "    at eval (eval at run (/x/y.js:1:2), <anonymous>:1:1)",
                f(None, None, Some("eval"), JavaScript),
            ),
            (
                "    at async Promise.all (index 0)",
                f(None, None, Some("Promise.all"), JavaScript),
            ),
            (
                "   at Ns.Cls.Method(String arg) in /src/Program.cs:line 12",
                f(Some("/src/Program.cs"), Some(12), Some("Ns.Cls.Method"), CSharp),
            ),
            (
                "  at Ns.Cls.Method () [0x00001] in /tmp/x.cs:5",
                f(Some("/tmp/x.cs"), Some(5), Some("Ns.Cls.Method"), CSharp),
            ),
            (
                "  at (wrapper managed-to-native) System.Object.Wait (object) <0x00058>",
                f(None, None, Some("System.Object.Wait"), CSharp),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(extract(line).frames, vec![expected.clone()], "{line}");
        }
    }

    #[test]
    fn go_created_by_in_goroutine_and_file_urls() {
        let text = "goroutine 7 [running]:\nmain.run({0x0, 0x0})\n\t/src/app/run.go:9 +0x25\n\
                    created by main.main in goroutine 1\n\t/src/app/main.go:4 +0x1e\n";
        assert_eq!(
            extract(text).frames,
            vec![
                f(Some("/src/app/run.go"), Some(9), Some("main.run"), Go),
                f(Some("/src/app/main.go"), Some(4), Some("main.main"), Go),
            ]
        );
        let text = "    at async file:///C:/proj/app.mjs:2:3";
        assert_eq!(
            extract(text).frames,
            vec![f(Some("C:/proj/app.mjs"), Some(2), None, JavaScript)]
        );
    }

    #[test]
    fn prose_is_not_frames() {
        for text in [
            "It fails at the moment (sometimes) when I click twice.",
            "at least(one) of them",
            "Steps:\n1: open the app\n2: click save",
            "call main() and then\n\tnothing happens here",
            "The loop runs foo.bar(baz)\nwithout a location",
            "  File \"",
            "thread 'main",
            "   0: ::\n      at :1:1",
        ] {
            assert_eq!(extract(text).frames, Vec::<Frame>::new(), "{text}");
        }
    }

    #[test]
    fn frame_caps() {
        let mut text = String::new();
        for i in 0..500 {
            text.push_str(&format!("  File \"/app/m{i}.py\", line {i}, in f{i}\n"));
        }
        let s = extract(&text);
        assert_eq!(s.frames.len(), MAX_FRAMES);
        assert_eq!(s.frames[0], f(Some("/app/m0.py"), Some(0), Some("f0"), Python));
        assert_eq!(s.paths.len(), MAX_PATHS);
    }

    // --- Identifiers ---------------------------------------------------------

    #[test]
    fn identifiers_kinds_and_order() {
        let text = "After upgrading Django the QuerySet in django.db.migrations breaks: \
                    `MigrationExecutor::apply_migration` calls self.parse_port and get_user_model() \
                    twice, e.g. with HTTPServer and IOError. JSON, utf8, x_y, ab, Django and JavaScript \
                    are not identifiers; see github.com/django and query.py. QuerySet again.";
        assert_eq!(
            extract(text).identifiers,
            strings(&[
                "QuerySet",
                "django.db.migrations",
                "MigrationExecutor::apply_migration",
                "parse_port",
                "get_user_model",
                "HTTPServer",
                "IOError",
                "x_y",
            ])
        );
    }

    #[test]
    fn identifiers_skip_paths_and_urls_and_are_capped() {
        let text = "see https://github.com/org/my_repo/blob/main/src/some_module.rs#L3 and \
                    src/other_module/lib.rs, not_a_path_though";
        let s = extract(text);
        assert_eq!(s.identifiers, strings(&["not_a_path_though"]));
        assert_eq!(s.paths, strings(&["src/some_module.rs", "src/other_module/lib.rs"]));

        let many: String = (0..200).map(|i| format!("name_{i} ")).collect();
        let ids = extract(&many).identifiers;
        assert_eq!(ids.len(), MAX_IDENTIFIERS);
        assert_eq!(ids[0], "name_0");
        let long = "a_".repeat(200);
        assert!(extract(&long).identifiers.is_empty());
    }

    // --- Paths -----------------------------------------------------------------

    #[test]
    fn paths_are_found_and_normalised() {
        let text = "It breaks in django/db/models/query.py (and src/main.rs:12:5). Also ./lib/foo.js, \
                    C:\\src\\Foo.cs and src\\win\\bar.ts; the README.md, the Makefile and src/lib.rs. \
                    Built with node.js; see `Module._extensions..js`, /usr/bin/env, v1.2.3 and e.g. this. \
                    Again: django/db/models/query.py. Link: file:///home/u/x.mjs:3:1 and \
                    https://gitlab.com/g/p/-/blob/v1.0/pkg/a.go#L10 and https://example.com/docs/";
        assert_eq!(
            extract(text).paths,
            strings(&[
                "django/db/models/query.py",
                "src/main.rs",
                "lib/foo.js",
                "C:/src/Foo.cs",
                "src/win/bar.ts",
                "README.md",
                "Makefile",
                "src/lib.rs",
                "/home/u/x.mjs",
                "pkg/a.go",
            ])
        );
    }

    #[test]
    fn path_matching() {
        assert!(path_matches("django/db/models/query.py", "django/db/models/query.py"));
        assert!(path_matches("models/query.py", "django/db/models/query.py"));
        assert!(path_matches("query.py", "django/db/models/query.py"));
        assert!(path_matches("/home/u/proj/src/foo.py", "src/foo.py"));
        assert!(path_matches("./src/foo.py", "src/foo.py"));
        assert!(path_matches("C:\\src\\Shop\\Program.cs", "Shop/Program.cs"));
        assert!(path_matches("/src/Program.cs", "src/Program.cs"));
        assert!(!path_matches("b.rs", "src/lib.rs"));
        assert!(!path_matches("src/foo.py", "src/foo.pyc"));
        assert!(!path_matches("other/foo.py", "src/foo.py"));
        assert!(!path_matches("Src/foo.py", "src/foo.py"));
        assert!(!path_matches("", "src/foo.py"));
        assert!(!path_matches("src/foo.py", ""));
        assert!(!path_matches("/", "/"));
    }

    // --- Exception lines -------------------------------------------------------

    #[test]
    fn exception_lines() {
        let cases: &[(&str, Option<&str>)] = &[
            ("ValueError: invalid literal", Some("ValueError: invalid literal")),
            ("  KeyError: 'port'", Some("KeyError: 'port'")),
            ("KeyboardInterrupt", Some("KeyboardInterrupt")),
            (
                "django.core.exceptions.ImproperlyConfigured: Requested setting DEBUG",
                Some("django.core.exceptions.ImproperlyConfigured: Requested setting DEBUG"),
            ),
            (
                "Exception in thread \"main\" java.lang.StackOverflowError",
                Some("java.lang.StackOverflowError"),
            ),
            (
                "Caused by: java.lang.NullPointerException: boom",
                Some("java.lang.NullPointerException: boom"),
            ),
            ("TypeError: x is not a function", Some("TypeError: x is not a function")),
            ("Uncaught (in promise) TypeError: x", Some("TypeError: x")),
            (
                "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'x'",
                Some("Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'x'"),
            ),
            ("Error: ENOENT: no such file", Some("Error: ENOENT: no such file")),
            (
                "panic: runtime error: index out of range",
                Some("panic: runtime error: index out of range"),
            ),
            (
                "fatal error: all goroutines are asleep - deadlock!",
                Some("fatal error: all goroutines are asleep - deadlock!"),
            ),
            ("error[E0308]: mismatched types", Some("error[E0308]: mismatched types")),
            (
                "thread 'main' panicked at 'explicit panic', src/main.rs:2:5",
                Some("thread 'main' panicked at 'explicit panic', src/main.rs:2:5"),
            ),
            (
                "Unhandled exception. System.InvalidOperationException: Sequence contains no elements",
                Some("System.InvalidOperationException: Sequence contains no elements"),
            ),
            ("Unhandled Exception:", None),
            ("Note: this is prose", None),
            ("Error handling is hard", None),
            ("Error", None),
            ("I get a ValueError: sometimes", None),
            ("Warning:", None),
        ];
        for (text, expected) in cases {
            assert_eq!(extract(text).exception.as_deref(), *expected, "{text}");
        }
        let long = format!("ValueError: {}", "é".repeat(2000));
        let exception = extract(&long).exception.unwrap_or_default();
        assert_eq!(exception.chars().count(), MAX_EXCEPTION_CHARS);
    }

    // --- looks_like_report -----------------------------------------------------

    #[test]
    fn report_detection() {
        assert!(!looks_like_report("how do I configure the retry policy?"));
        assert!(!looks_like_report(
            "where is QuerySet.filter implemented in django/db/models/query.py"
        ));
        assert!(!looks_like_report(""));
        assert!(looks_like_report("why does this fail?\n```\nlet x = 1;\n```"));
        assert!(looks_like_report("TypeError: x is not a function"));
        let long_prose = format!("Title line\n\n{}", "the sync job stops after a while. ".repeat(15));
        assert!(looks_like_report(&long_prose));
        let long_one_line = "the sync job stops after a while. ".repeat(15);
        assert!(!looks_like_report(&long_one_line));
        assert!(looks_like_report("see this:\n    at Client.fetch (/x/y.js:6:17)"));
    }

    // --- model_text ------------------------------------------------------------

    #[test]
    fn model_text_short_text_is_unchanged() {
        let text = "  why does QuerySet.filter ignore `None`?  \n";
        assert_eq!(model_text(text, 100), text);
        assert_eq!(model_text(text, text.chars().count()), text);
        assert_eq!(model_text("", 0), "");
    }

    #[test]
    fn model_text_of_a_long_report() {
        let text = format!(
            "# Crash when loading config\n\nLoading a config with a textual port crashes the loader.\n\
             It used to work.\n\n```\n{PYTHON}```\n\n{}",
            "More details follow. ".repeat(40)
        );
        let out = model_text(&text, 400);
        assert_eq!(
            out,
            "Crash when loading config\n\
             Loading a config with a textual port crashes the loader. It used to work.\n\
             ValueError: invalid literal for int() with base 10: 'eighty'\n\
             load_config parse_port <module> main\n\
             parser.parse_port KeyError"
        );
        assert!(out.chars().count() <= 400);
    }

    #[test]
    fn model_text_skips_an_unfenced_trace() {
        let text = format!(
            "app crashes on start\n{NODE_ESM}\nIt happens on every start.\n{}",
            "x ".repeat(300)
        );
        assert_eq!(
            model_text(&text, 300),
            "app crashes on start\n\
             file:///home/u/proj/node_esm_src.mjs:9 throw new RangeError(`unknown key: ${key}`); ^\n\
             RangeError: unknown key: colour\n\
             Store.parse Store.load main"
        );
    }

    #[test]
    fn model_text_cuts_on_char_boundaries() {
        let text = "é".repeat(50) + "\n" + &"日本語のテキスト🙂".repeat(40);
        for max in [0, 1, 7, 33, 100, 101] {
            let out = model_text(&text, max);
            assert!(out.chars().count() <= max, "{max}: {out}");
            assert!(
                text.contains(out.trim_end_matches('\n')) || out.contains('\n'),
                "{max}: {out}"
            );
        }
        // All on one line: the title is capped at a quarter, so the cut lands mid-text.
        let one_line = "🙂".repeat(1000);
        assert_eq!(model_text(&one_line, 40), "🙂".repeat(10));
        // Whitespace only: fall back to the (trimmed) text itself.
        assert_eq!(model_text(&" ".repeat(50), 10), "");
    }

    // --- Robustness ------------------------------------------------------------

    /// A small deterministic generator (no extra crates).
    fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    fn exercise(text: &str) {
        let s = extract(text);
        assert!(s.frames.len() <= MAX_FRAMES);
        assert!(s.paths.len() <= MAX_PATHS);
        assert!(s.identifiers.len() <= MAX_IDENTIFIERS);
        let _ = looks_like_report(text);
        for max in [0, 300] {
            assert!(model_text(text, max).chars().count() <= max);
        }
        for p in s.paths.iter().chain(s.frames.iter().filter_map(|f| f.path.as_ref())) {
            let _ = path_matches(p, "src/main.rs");
            let _ = path_matches("src/main.rs", p);
        }
    }

    #[test]
    fn never_panics_on_adversarial_input() {
        let mut inputs: Vec<String> = vec![
            "at (".repeat(64 * 1024 / 4),
            "\tat (".repeat(20_000),
            "File \"".to_string(),
            "  File \"".repeat(30_000),
            "  File \"x.py\", line 99999999999999999999, in f".to_string(),
            "thread '".to_string(),
            "thread 'main' panicked at :0:0:".to_string(),
            "   0: ::\n      at :1:1\n".repeat(5_000),
            "main.f(\n\t:1 +0x\n".repeat(5_000),
            "a.b(...)\n\tx.go:\n".repeat(5_000),
            "    at  ( )\n    at x (:1:1)\n    at async \n".repeat(3_000),
            ":\\".repeat(30_000),
            "https://".repeat(10_000),
            "file:///".repeat(10_000),
            "/".repeat(70_000),
            ".".repeat(70_000),
            "a.".repeat(40_000),
            "a::".repeat(30_000),
            "x".repeat(200_000),
            "\r\n\r\r\n".repeat(20_000),
            "```".repeat(30_000),
            "é".repeat(40_000),
            "🙂/".repeat(20_000),
            String::new(),
            "\u{0}\u{FEFF}\u{202E}".repeat(1_000),
        ];
        for seed in 1..=4 {
            let bytes = pseudo_random_bytes(seed, 64 * 1024);
            inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        // Random text from trace-ish pieces.
        let pieces = [
            "at ",
            "(",
            ")",
            ":",
            "File \"",
            "\", line ",
            ", in ",
            "\n",
            "\t",
            " ",
            "0",
            "42",
            ".py",
            ".java",
            "::",
            ".",
            "/",
            "\\",
            "panicked at ",
            "thread 'm' ",
            "+0x1",
            "[0x0]",
            " in ",
            ":line ",
            "Error",
            ": ",
            "é",
        ];
        for seed in 1..=4 {
            let picks = pseudo_random_bytes(seed * 7919, 20_000);
            let text: String = picks.iter().map(|b| pieces[usize::from(*b) % pieces.len()]).collect();
            inputs.push(text);
        }
        for text in &inputs {
            exercise(text);
        }
        // Every fixture cut at every char boundary.
        for fixture in ALL_FIXTURES {
            for (i, _) in fixture.char_indices().step_by(97) {
                exercise(&fixture[..i]);
            }
        }
    }

    #[test]
    fn input_beyond_the_cap_is_ignored() {
        let mut text = "a".repeat(MAX_INPUT_BYTES - 1);
        text.push('é'); // straddles the cap
        text.push_str("\nValueError: after the cap\n");
        let s = extract(&text);
        assert_eq!(s.exception, None);
        assert!(s.identifiers.is_empty());
    }
}
