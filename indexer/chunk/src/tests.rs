use super::*;

fn chunker() -> Chunker {
    Chunker::new(ChunkerConfig::default())
}

fn small(max_chars: usize, merge_chars: usize) -> Chunker {
    Chunker::new(ChunkerConfig {
        max_chars,
        merge_chars,
        ..ChunkerConfig::default()
    })
}

/// Chunks and checks the invariants every output must satisfy.
fn chunk_checked(chunker: &Chunker, path: &str, text: &str) -> Vec<Chunk> {
    let chunks = chunker.chunk(path, text);
    check(chunker, path, text, &chunks);
    chunks
}

fn check(chunker: &Chunker, path: &str, text: &str, chunks: &[Chunk]) {
    let cfg = chunker.config();
    let lines: Vec<&str> = text.split('\n').collect();
    let n_lines = if text.ends_with('\n') {
        lines.len() - 1
    } else {
        lines.len()
    };
    let language = Language::detect(path, text);
    let windows = !language.has_grammar() || chunks.iter().all(|c| c.kind == "section");
    let mut covered = vec![false; n_lines];
    let mut prev_end = 0u32;
    let mut prev_was_cut = false;
    for c in chunks {
        assert_eq!(c.language, language);
        assert!(c.start_line >= 1 && c.start_line <= c.end_line, "{c:?}");
        assert!(c.end_line as usize <= n_lines, "{c:?}");
        assert!(!c.content.trim().is_empty(), "blank chunk {c:?}");
        assert!(
            c.content.chars().count() <= cfg.max_chars,
            "chunk longer than max_chars: {} > {}: {c:?}",
            c.content.chars().count(),
            cfg.max_chars
        );
        let (s, e) = (c.start_line as usize - 1, c.end_line as usize - 1);
        let exact = lines[s..=e].join("\n");
        let exact = match exact.strip_suffix('\r') {
            Some(stripped) if e + 1 < lines.len() => stripped,
            _ => &exact,
        };
        let is_cut = s == e && c.content != exact;
        if is_cut {
            assert!(exact.contains(&c.content), "cut piece not in its line: {c:?}");
        } else {
            assert_eq!(c.content, exact, "content is not the exact lines");
        }
        // file order, no overlap (except pieces of one line, and window overlap)
        if c.start_line <= prev_end {
            let same_line_piece = is_cut && prev_was_cut && c.start_line == prev_end;
            assert!(
                same_line_piece || windows,
                "overlap at {}-{} (previous ended at {prev_end})",
                c.start_line,
                c.end_line
            );
        }
        assert!(c.start_line >= prev_end.saturating_sub(cfg.window_overlap as u32));
        prev_end = prev_end.max(c.end_line);
        prev_was_cut = is_cut;
        for flag in &mut covered[s..=e] {
            *flag = true;
        }
        let head = format!("{path}\n");
        assert!(c.embed_text.starts_with(&head), "{:?}", c.embed_text);
        assert!(c.embed_text.ends_with(&c.content));
        if c.kind == "items" {
            assert!(c.symbol.is_none());
        }
    }
    for (i, line) in lines.iter().take(n_lines).enumerate() {
        assert!(
            covered[i] || line.trim().is_empty(),
            "line {} not covered: {line:?}",
            i + 1
        );
    }
}

fn find<'c>(chunks: &'c [Chunk], symbol: &str) -> &'c Chunk {
    chunks
        .iter()
        .find(|c| c.symbol.as_deref() == Some(symbol))
        .unwrap_or_else(|| {
            let all: Vec<_> = chunks
                .iter()
                .map(|c| (c.kind.as_str(), c.symbol.as_deref(), c.start_line, c.end_line))
                .collect();
            panic!("no chunk with symbol {symbol}: {all:?}")
        })
}

fn symbols(chunks: &[Chunk]) -> Vec<&str> {
    chunks.iter().filter_map(|c| c.symbol.as_deref()).collect()
}

/// A body of `n` distinct statements, each about 40 chars.
fn statements(n: usize, indent: &str, f: impl Fn(usize) -> String) -> String {
    (0..n).map(|i| format!("{indent}{}\n", f(i))).collect()
}

// ----- languages -------------------------------------------------------------

#[test]
fn language_names_round_trip() {
    for lang in language::ALL {
        assert_eq!(Language::parse_name(lang.as_str()), Some(lang));
        assert_eq!(Language::parse_name(&lang.as_str().to_uppercase()), Some(lang));
        let json = format!("\"{}\"", lang.as_str());
        assert_eq!(serde_json::to_string(&lang).unwrap(), json);
        assert_eq!(serde_json::from_str::<Language>(&json).unwrap(), lang);
    }
    assert_eq!(Language::parse_name("cobol"), None);
}

#[test]
fn language_from_path() {
    let cases = [
        ("src/lib.rs", Language::Rust),
        ("a/b.py", Language::Python),
        ("stubs/x.pyi", Language::Python),
        ("cmd/main.go", Language::Go),
        ("src/main/java/Foo.java", Language::Java),
        ("web/app.js", Language::JavaScript),
        ("web/app.mjs", Language::JavaScript),
        ("web/app.cjs", Language::JavaScript),
        ("web/App.jsx", Language::JavaScript),
        ("web/app.ts", Language::TypeScript),
        ("web/app.mts", Language::TypeScript),
        ("web/app.cts", Language::TypeScript),
        ("web/App.tsx", Language::Tsx),
        ("src/ring.c", Language::C),
        ("include/ring.h", Language::C),
        ("src/x.cc", Language::Cpp),
        ("src/x.cpp", Language::Cpp),
        ("src/x.cxx", Language::Cpp),
        ("include/x.hpp", Language::Cpp),
        ("include/x.hh", Language::Cpp),
        ("include/x.hxx", Language::Cpp),
        ("README.md", Language::Markdown),
        ("docs/guide.MD", Language::Markdown),
        ("deploy/config.yaml", Language::Yaml),
        (".github/workflows/ci.yml", Language::Yaml),
        ("Cargo.toml", Language::Toml),
        ("Cargo.lock", Language::Toml),
        ("package.json", Language::Json),
        ("scripts/build.sh", Language::Shell),
        ("Makefile", Language::Text),
        ("LICENSE", Language::Text),
        (".gitignore", Language::Text),
        ("notes.txt", Language::Text),
        ("weird.unknownext", Language::Text),
    ];
    for (path, lang) in cases {
        assert_eq!(Language::from_path(path), lang, "{path}");
    }
    assert!(Language::Rust.has_grammar());
    assert!(Language::Tsx.has_grammar());
    assert!(Language::Cpp.has_grammar());
    assert!(!Language::Markdown.has_grammar());
    assert!(!Language::Text.has_grammar());
}

#[test]
fn shebang_scripts_are_detected() {
    assert_eq!(
        Language::detect("bin/tool", "#!/usr/bin/env python3\nprint(1)\n"),
        Language::Python
    );
    assert_eq!(Language::detect("bin/run", "#!/bin/bash\necho hi\n"), Language::Shell);
    assert_eq!(
        Language::detect("bin/cli", "#!/usr/bin/env node\nconsole.log(1)\n"),
        Language::JavaScript
    );
    // an extension wins over the shebang
    assert_eq!(Language::detect("x.rs", "#!/usr/bin/env python3\n"), Language::Rust);
    let chunks = chunk_checked(
        &chunker(),
        "bin/tool",
        "#!/usr/bin/env python3\ndef main():\n    print(1)\n",
    );
    assert_eq!(chunks[0].language, Language::Python);
    assert_eq!(chunks[0].symbol.as_deref(), Some("main"));
}

#[test]
fn chunker_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Chunker>();
    let chunker = chunker();
    let src = "fn a() {}\n\nfn b() {}\n";
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert_eq!(chunker.chunk("x.rs", src).len(), 2);
                }
            });
        }
    });
}

// ----- attached comments, attributes, decorators ---------------------------------

#[test]
fn rust_doc_comments_and_attributes_belong_to_the_item() {
    let body = statements(40, "    ", |i| format!("let value_{i} = compute_something({i});"));
    let src = format!(
        "//! Crate docs.\n\nuse std::fmt;\n\n/// Does the thing.\n///\n/// More docs.\n#[inline]\n#[must_use]\npub fn thing() -> u32 {{\n{body}    0\n}}\n"
    );
    let chunks = chunk_checked(&chunker(), "src/lib.rs", &src);
    let thing = find(&chunks, "thing");
    assert_eq!(thing.kind, "function");
    assert_eq!(thing.start_line, 5, "doc comment and attributes included");
    assert!(thing.content.starts_with("/// Does the thing."));
    // the inner doc comment goes with the header run
    assert_eq!(chunks[0].start_line, 1);
    assert!(chunks[0].content.contains("use std::fmt;"));
}

#[test]
fn comments_separated_by_a_blank_line_are_not_attached() {
    let body = statements(40, "    ", |i| format!("let value_{i} = compute_something({i});"));
    let src = format!("// A detached note.\n\n// Attached.\nfn big() {{\n{body}}}\n");
    let chunks = chunk_checked(&chunker(), "a.rs", &src);
    let big = find(&chunks, "big");
    assert_eq!(big.start_line, 3);
    assert_eq!(chunks[0].start_line, 1);
    assert_eq!(chunks[0].end_line, 1);
}

#[test]
fn python_decorators_and_comments_belong_to_the_function() {
    let body = statements(40, "        ", |i| format!("value_{i} = compute_something({i})"));
    let src = format!(
        "import os\n\n\nclass Service(Base):\n    \"\"\"Docs.\"\"\"\n\n    # Handles requests.\n    @retry(times=3)\n    @log\n    def handle(self, request):\n{body}        return request\n\n    def close(self):\n{body}        pass\n"
    );
    let chunks = chunk_checked(&chunker(), "svc.py", &src);
    let handle = find(&chunks, "Service.handle");
    assert_eq!(handle.kind, "method");
    assert_eq!(handle.start_line, 7, "comment and decorators included");
    let close = find(&chunks, "Service.close");
    assert_eq!(close.kind, "method");
    // the class header + docstring is a run of its own, named after the class
    let header = &chunks[1];
    assert_eq!(header.start_line, 4);
    assert_eq!(header.kind, "class");
    assert_eq!(header.symbol.as_deref(), Some("Service"));
    // a method chunk carries the class signature as scope
    assert_eq!(
        close.embed_text.lines().take(2).collect::<Vec<_>>(),
        ["svc.py", "class Service(Base)"]
    );
}

#[test]
fn java_javadoc_and_annotations_belong_to_the_method() {
    let body = statements(60, "        ", |i| format!("int value{i} = compute({i});"));
    let src = format!(
        "package a;\n\n/** A class. */\npublic class Foo {{\n    private int count;\n\n    /**\n     * Runs.\n     */\n    @Override\n    public void run() {{\n{body}    }}\n\n    void other() {{\n{body}    }}\n}}\n"
    );
    let chunks = chunk_checked(&chunker(), "Foo.java", &src);
    let run = find(&chunks, "Foo.run");
    assert_eq!(run.start_line, 7);
    assert_eq!(run.kind, "method");
    find(&chunks, "Foo.other");
}

#[test]
fn go_comment_block_belongs_to_the_function() {
    let body = statements(60, "\t", |i| format!("value{i} := compute({i})"));
    let src = format!(
        "package p\n\n// Start starts the server.\n// It blocks.\nfunc (s *Server) Start(ctx context.Context) error {{\n{body}\treturn nil\n}}\n"
    );
    let chunks = chunk_checked(&chunker(), "server.go", &src);
    let start = find(&chunks, "Server.Start");
    assert_eq!(start.start_line, 3);
    assert_eq!(start.kind, "method");
}

#[test]
fn jsdoc_belongs_to_the_function() {
    let body = statements(60, "  ", |i| format!("const value{i} = compute({i});"));
    let src = format!("import x from 'x';\n\n/**\n * Adds.\n */\nexport function add(a, b) {{\n{body}}}\n");
    let chunks = chunk_checked(&chunker(), "add.js", &src);
    let add = find(&chunks, "add");
    assert_eq!(add.start_line, 3);
    assert_eq!(add.kind, "function");
}

// ----- qualified symbols ----------------------------------------------------------

#[test]
fn rust_symbols_are_qualified() {
    let src = "\
mod outer {
    pub struct Point<T> { x: T }

    impl<T: Copy> Point<T> {
        pub fn x(&self) -> T { self.x }
    }

    impl<T> std::fmt::Debug for Point<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) }
    }

    pub fn free() {}
}

trait Shape {
    fn area(&self) -> f64;
    fn name(&self) -> &str { \"shape\" }
}
";
    // tiny limits: every item becomes its own chunk
    let chunks = chunk_checked(&small(60, 1), "geo.rs", src);
    let syms = symbols(&chunks);
    for want in [
        "outer::Point",
        "outer::Point::x",
        "outer::Point::fmt",
        "outer::free",
        "Shape::area",
        "Shape::name",
    ] {
        assert!(syms.contains(&want), "{want} missing from {syms:?}");
    }
    assert_eq!(find(&chunks, "outer::Point::x").kind, "method");
    assert_eq!(find(&chunks, "outer::free").kind, "function");
    assert_eq!(find(&chunks, "Shape::name").kind, "method");
}

#[test]
fn python_nested_class_symbols() {
    let src = "\
class Outer:
    class Inner:
        def method(self):
            return 1

        def other(self):
            return 2

    def top(self):
        return 3


def free():
    pass
";
    let chunks = chunk_checked(&small(40, 1), "n.py", src);
    let syms = symbols(&chunks);
    for want in ["Outer.Inner.method", "Outer.Inner.other", "Outer.top", "free"] {
        assert!(syms.contains(&want), "{want} missing from {syms:?}");
    }
    let method = find(&chunks, "Outer.Inner.method");
    assert_eq!(
        method.embed_text.lines().take(3).collect::<Vec<_>>(),
        ["n.py", "class Outer", "class Inner"]
    );
}

#[test]
fn go_java_js_ts_symbols() {
    let go =
        "package p\n\nfunc (l *List[T]) Push(v T) {\n\tl.items = append(l.items, v)\n}\n\nfunc Free() {\n\treturn\n}\n";
    let chunks = chunk_checked(&small(30, 1), "l.go", go);
    assert!(symbols(&chunks).contains(&"List.Push"), "{chunks:?}");
    assert!(symbols(&chunks).contains(&"Free"));

    let java = "class A {\n    int f() {\n        return 1;\n    }\n\n    static class B {\n        void g() {\n            return;\n        }\n    }\n}\n";
    let chunks = chunk_checked(&small(30, 1), "A.java", java);
    let syms = symbols(&chunks);
    assert!(syms.contains(&"A.f"), "{syms:?}");
    assert!(syms.contains(&"A.B.g"), "{syms:?}");

    let js = "class Cart {\n  add(item) {\n    this.items.push(item);\n  }\n\n  total() {\n    return this.items.length;\n  }\n}\n\nconst helper = (x) => {\n  return x * 2;\n};\n";
    let chunks = chunk_checked(&small(40, 1), "cart.js", js);
    let syms = symbols(&chunks);
    assert!(syms.contains(&"Cart.add"), "{syms:?}");
    assert!(syms.contains(&"Cart.total"), "{syms:?}");
    assert!(syms.contains(&"helper"), "{syms:?}");

    let ts = "export interface Shape {\n  area(): number;\n  name: string;\n}\n\nexport class Circle implements Shape {\n  constructor(private r: number) {}\n\n  area(): number {\n    return Math.PI * this.r * this.r;\n  }\n}\n\nnamespace util {\n  export function clamp(v: number): number {\n    return Math.max(0, v);\n  }\n}\n";
    let chunks = chunk_checked(&small(50, 1), "shape.ts", ts);
    let syms = symbols(&chunks);
    assert!(syms.contains(&"Circle.area"), "{syms:?}");
    assert!(syms.contains(&"util.clamp"), "{syms:?}");
    let tsx = "export function App() {\n  return <div className=\"app\">hello</div>;\n}\n";
    let chunks = chunk_checked(&chunker(), "App.tsx", tsx);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].symbol.as_deref(), Some("App"));
    assert_eq!(chunks[0].kind, "function");
    assert_eq!(chunks[0].language, Language::Tsx);
}

#[test]
fn c_and_cpp_symbols() {
    let c = "#include <stdio.h>\n\nstatic int *find(int *xs, int n) {\n    return xs + n;\n}\n\nint main(void) {\n    return 0;\n}\n";
    let chunks = chunk_checked(&small(40, 1), "m.c", c);
    let syms = symbols(&chunks);
    assert!(syms.contains(&"find"), "{syms:?}");
    assert!(syms.contains(&"main"), "{syms:?}");

    let cpp = "\
namespace ns {
class Widget {
public:
    void draw() {
        paint();
    }
    int size() const;
};

int Widget::size() const {
    return 4;
}

template <typename T>
T Box<T>::get() const {
    return value_;
}
}  // namespace ns

Widget::~Widget() {
    release();
}
";
    let chunks = chunk_checked(&small(60, 1), "w.cpp", cpp);
    let syms = symbols(&chunks);
    for want in [
        "ns::Widget::draw",
        "ns::Widget::size",
        "ns::Box::get",
        "Widget::~Widget",
    ] {
        assert!(syms.contains(&want), "{want} missing from {syms:?}");
    }
    assert_eq!(find(&chunks, "ns::Widget::size").kind, "method");
    let draw = find(&chunks, "ns::Widget::draw");
    assert_eq!(
        draw.embed_text.lines().take(3).collect::<Vec<_>>(),
        ["w.cpp", "namespace ns", "class Widget"]
    );
}

// ----- splitting and merging ------------------------------------------------------

#[test]
fn container_fitting_max_chars_is_one_chunk() {
    let methods: String = (0..6)
        .map(|i| {
            format!("    fn method_{i}(&self) -> u32 {{\n        self.value * {i} + compute_offset({i})\n    }}\n\n")
        })
        .collect();
    let src = format!("impl Widget {{\n{methods}}}\n");
    assert!(src.len() > 300 && src.len() < 3000);
    let chunks = chunk_checked(&chunker(), "w.rs", &src);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].kind, "impl");
    assert_eq!(chunks[0].symbol.as_deref(), Some("Widget"));
}

#[test]
fn big_container_is_split_along_its_methods() {
    let big_body = statements(25, "        ", |i| format!("total += self.weights[{i}] * input[{i}];"));
    let small_methods: String = (0..3)
        .map(|i| format!("    fn small_{i}(&self) -> u32 {{\n        {i}\n    }}\n\n"))
        .collect();
    let src = format!(
        "/// A model.\nimpl Model {{\n    const SIZE: usize = 30;\n\n{small_methods}    /// Scores the input.\n    fn score(&self, input: &[f32]) -> f32 {{\n        let mut total = 0.0;\n{big_body}        total\n    }}\n\n    fn big_again(&self) -> f32 {{\n{big_body}        0.0\n    }}\n}}\n"
    );
    let cfg = Chunker::new(ChunkerConfig {
        max_chars: 1500,
        merge_chars: 600,
        ..ChunkerConfig::default()
    });
    let chunks = chunk_checked(&cfg, "m.rs", &src);
    // header + const: one run, starting with the doc comment; each method,
    // however small, is a chunk of its own
    assert_eq!(chunks[0].start_line, 1);
    assert!(chunks[0].content.contains("impl Model {"));
    assert!(!chunks[0].content.contains("fn small_0"));
    for i in 0..3 {
        let m = find(&chunks, &format!("Model::small_{i}"));
        assert_eq!(m.kind, "method");
        assert_eq!(m.content.lines().count(), 3);
    }
    let score = find(&chunks, "Model::score");
    assert_eq!(score.kind, "method");
    assert!(score.content.starts_with("    /// Scores the input."));
    assert_eq!(
        score.embed_text.lines().take(3).collect::<Vec<_>>(),
        ["m.rs", "impl Model", "    /// Scores the input."]
    );
    let last = chunks.last().unwrap();
    assert_eq!(last.symbol.as_deref(), Some("Model::big_again"));
    assert!(last.content.ends_with("}\n}") || last.content.ends_with('}'));
}

#[test]
fn long_function_is_split_into_sections() {
    let body = statements(200, "    ", |i| format!("let value_{i} = compute_something({i}, {i});"));
    let src = format!("/// Docs.\nfn long_one(x: u32) -> u32 {{\n{body}    x\n}}\n");
    assert!(src.len() > 3 * 3000);
    let chunks = chunk_checked(&small(3000, 1200), "l.rs", &src);
    assert!(chunks.len() >= 3, "{}", chunks.len());
    for c in &chunks {
        assert_eq!(c.kind, "section");
        assert_eq!(c.symbol.as_deref(), Some("long_one"));
        assert!(c.content.chars().count() <= 3000);
    }
    assert_eq!(chunks[0].start_line, 1);
    assert!(chunks[0].content.starts_with("/// Docs.\nfn long_one"));
    // later sections carry the signature as scope
    assert_eq!(chunks[1].embed_text.lines().nth(1), Some("fn long_one(x: u32) -> u32"));
    assert_eq!(chunks.last().unwrap().content.trim_end(), {
        let tail = chunks.last().unwrap().content.as_str();
        tail.trim_end()
    });
    assert!(chunks.last().unwrap().content.ends_with("    x\n}"));
}

#[test]
fn nested_big_statements_are_split_recursively() {
    let inner = statements(150, "            ", |i| {
        format!("handle_event_number({i}, &mut state);")
    });
    let src = format!(
        "def run(events):\n    state = {{}}\n    for e in events:\n        if e.ok:\n{inner}        else:\n            fail(e)\n    return state\n"
    );
    let chunks = chunk_checked(&small(1000, 400), "r.py", &src);
    assert!(chunks.len() >= 5);
    assert!(chunks.iter().all(|c| c.symbol.as_deref() == Some("run")));
}

#[test]
fn small_items_are_merged_into_runs() {
    let src = "\
use std::io;
use std::fmt;

const A: u32 = 1;
const B: u32 = 2;

type Id = u64;

pub struct Small {
    id: Id,
}
";
    let chunks = chunk_checked(&chunker(), "s.rs", src);
    assert_eq!(chunks.len(), 1);
    // exactly one named item: the run takes its kind and symbol
    assert_eq!(chunks[0].kind, "struct");
    assert_eq!(chunks[0].symbol.as_deref(), Some("Small"));

    let src2 = format!("{src}\nconst C: u32 = 3;\n\npub struct Other;\n");
    let chunks = chunk_checked(&chunker(), "s.rs", &src2);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].kind, "items");
    assert_eq!(chunks[0].symbol, None);

    // functions are never merged: each stands alone
    let src3 = format!("{src}\nfn helper() {{}}\n");
    let chunks = chunk_checked(&chunker(), "s.rs", &src3);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].kind, "function");
    assert_eq!(chunks[1].symbol.as_deref(), Some("helper"));
}

#[test]
fn small_containers_with_methods_stand_alone() {
    let src = "\
use std::fmt;

impl Marker for Small {}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

const LIMIT: u32 = 3;
";
    let chunks = chunk_checked(&chunker(), "v.rs", src);
    let got: Vec<_> = chunks
        .iter()
        .map(|c| (c.kind.as_str(), c.start_line, c.end_line))
        .collect();
    // the impl without methods is merged with the imports (the run takes its
    // kind: its only named item); each impl that defines behaviour is a
    // chunk of its own
    assert_eq!(
        got,
        [("impl", 1, 3), ("impl", 5, 9), ("impl", 11, 15), ("items", 17, 17)]
    );

    let py = "\
import os

class Empty:
    pass

class Greeter:
    def hello(self):
        return 'hi'

X = 1
";
    let chunks = chunk_checked(&chunker(), "g.py", py);
    let got: Vec<_> = chunks.iter().map(|c| (c.kind.as_str(), c.symbol.as_deref())).collect();
    assert_eq!(
        got,
        [("class", Some("Empty")), ("class", Some("Greeter")), ("items", None)]
    );
}

#[test]
fn runs_do_not_merge_across_a_large_item() {
    let body = statements(40, "    ", |i| format!("let value_{i} = compute_something({i});"));
    let src = format!("fn a() {{}}\n\nfn big() {{\n{body}}}\n\nfn b() {{}}\n");
    let chunks = chunk_checked(&chunker(), "x.rs", &src);
    let syms: Vec<_> = chunks.iter().map(|c| c.symbol.as_deref()).collect();
    assert_eq!(syms, [Some("a"), Some("big"), Some("b")]);
}

#[test]
fn runs_respect_merge_chars() {
    let src: String = (0..100).map(|i| format!("const VALUE_{i}: u32 = {i};\n")).collect();
    let chunks = chunk_checked(&chunker(), "c.rs", &src);
    assert!(chunks.len() > 1);
    for c in &chunks {
        assert!(c.content.chars().count() <= 1200);
        assert_eq!(c.kind, "items");
    }
}

// ----- fallback and odd inputs ------------------------------------------------------

#[test]
fn text_files_use_overlapping_windows() {
    let src: String = (0..200).map(|i| format!("line number {i}\n")).collect();
    let chunks = chunk_checked(&chunker(), "notes.txt", &src);
    assert!(chunks.len() >= 4);
    assert_eq!(chunks[0].start_line, 1);
    assert_eq!(chunks[0].end_line, 60);
    assert_eq!(chunks[1].start_line, 51, "10 lines of overlap");
    for c in &chunks {
        assert_eq!(c.kind, "section");
        assert_eq!(c.symbol, None);
        assert!(c.end_line - c.start_line < 60);
    }
    assert_eq!(chunks.last().unwrap().end_line, 200);
}

#[test]
fn markdown_sections_start_at_headings() {
    let para = "Some prose that goes on for a while to make the section big enough.\n".repeat(12);
    let src = format!(
        "# Title\n\nIntro.\n\n## Install\n\n{para}\n```sh\n# not a heading\nmake\n```\n\n## Usage\n\n{para}\n### Details\n\n{para}"
    );
    let chunks = chunk_checked(&chunker(), "README.md", &src);
    let firsts: Vec<&str> = chunks.iter().map(|c| c.content.lines().next().unwrap()).collect();
    assert_eq!(firsts, ["# Title", "## Usage", "### Details"]);
    assert!(!firsts.contains(&"# not a heading"));
    // the enclosing headings are the scope of a subsection
    let details = &chunks[2];
    assert_eq!(
        details.embed_text.lines().take(3).collect::<Vec<_>>(),
        ["README.md", "# Title", "## Usage"]
    );
}

#[test]
fn empty_and_blank_files_have_no_chunks() {
    let c = chunker();
    for path in ["a.rs", "a.py", "a.md", "a.txt", "a.cpp"] {
        assert!(c.chunk(path, "").is_empty());
        assert!(c.chunk(path, "   \n\t\n\r\n  ").is_empty());
    }
}

#[test]
fn invalid_syntax_still_chunks() {
    let c = small(60, 30);
    let sources = [
        (
            "x.rs",
            "fn ok() {}\n\nfn broken( {\n    let x = ;\n\nimpl Foo {\n    fn m(&self) { \n}\n\nfn after() -> u32 { 1 }\n",
        ),
        (
            "x.py",
            "def f(:\n    return\n\nclass A:\n  def m(self)\n      pass\n\ndef g():\n    return 1\n",
        ),
        ("x.go", "package p\nfunc (s *S) M( {\n}\nfunc ok() {}\n"),
        ("X.java", "class A { void m( { } int x = ; }\n"),
        (
            "x.ts",
            "export class { method( { }\nfunction ok(): number { return 1 }\n",
        ),
        ("x.cpp", "namespace { class A { void f( } }\nint main() { return 0; }\n"),
    ];
    for (path, src) in sources {
        let chunks = chunk_checked(&c, path, src);
        assert!(!chunks.is_empty(), "{path}");
    }
    let chunks = chunk_checked(&c, "x.rs", sources[0].1);
    assert!(symbols(&chunks).contains(&"after"), "{chunks:?}");
}

#[test]
fn crlf_line_endings() {
    let src = "use a;\r\n\r\n/// Doc.\r\nfn f() {\r\n    let x = 1;\r\n}\r\n\r\nfn g() {\r\n    let y = 2;\r\n}\r\n";
    let chunks = chunk_checked(&small(40, 1), "c.rs", src);
    let f = find(&chunks, "f");
    assert_eq!((f.start_line, f.end_line), (3, 6));
    assert_eq!(f.content, "/// Doc.\r\nfn f() {\r\n    let x = 1;\r\n}");
    let g = find(&chunks, "g");
    assert_eq!((g.start_line, g.end_line), (8, 10));
    let md = chunk_checked(&chunker(), "r.md", "# A\r\n\r\ntext\r\n");
    assert_eq!(md[0].content, "# A\r\n\r\ntext");
}

#[test]
fn no_trailing_newline_tabs_and_unicode() {
    let src = "package main\n\n// Grüße sagt hallo. ✓\nfunc Grüße() string {\n\treturn \"héllo 世界\"\n}";
    let chunks = chunk_checked(&chunker(), "u.go", src);
    let f = chunks.last().unwrap();
    assert_eq!(f.symbol.as_deref(), Some("Grüße"));
    assert_eq!((f.start_line, f.end_line), (3, 6));
    assert!(f.content.ends_with("\n}"));
}

#[test]
fn max_chars_counts_chars_not_bytes() {
    // 50 lines of 20 two-byte chars: 1049 chars, 2049 bytes
    let src: String = (0..50).map(|_| format!("{}\n", "é".repeat(20))).collect();
    let chunks = chunk_checked(&small(1100, 1100), "u.txt", &src);
    assert_eq!(chunks.len(), 1);
}

#[test]
fn huge_single_lines_are_cut() {
    let line = format!("const data = [{}];", "1234567, ".repeat(2000));
    let src = format!("function a() {{ return 1; }}\n{line}\nfunction b() {{ return 2; }}\n");
    let chunks = chunk_checked(&small(3000, 1200), "min.js", &src);
    let pieces: Vec<_> = chunks.iter().filter(|c| c.start_line == 2).collect();
    assert!(pieces.len() >= 6, "{}", pieces.len());
    let joined: String = pieces.iter().map(|c| c.content.as_str()).collect();
    assert_eq!(joined, line);
    assert!(chunks.iter().any(|c| c.symbol.as_deref() == Some("b")));
    // multibyte: cut at char boundaries
    let wide = "世".repeat(10_000);
    let chunks = chunk_checked(&small(3000, 1200), "w.txt", &wide);
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.start_line == 1 && c.end_line == 1));
}

#[test]
fn parse_timeout_falls_back_to_windows() {
    let src: String = (0..20_000).map(|i| format!("fn f{i}() -> u32 {{ {i} }}\n")).collect();
    let c = Chunker::new(ChunkerConfig {
        parse_timeout_micros: 1,
        ..ChunkerConfig::default()
    });
    let chunks = chunk_checked(&c, "big.rs", &src);
    assert!(chunks.iter().all(|c| c.kind == "section" && c.symbol.is_none()));
    // the parser is reset after a cancelled parse: the next file parses normally
    let chunks = chunk_checked(&chunker(), "ok.rs", "fn ok() {}\n");
    assert_eq!(chunks[0].symbol.as_deref(), Some("ok"));
}

#[test]
fn deeply_nested_input_does_not_overflow() {
    let c = small(500, 200);
    let nested = format!("{}{}", "[\n".repeat(20_000), "]\n".repeat(20_000));
    chunk_checked(&c, "deep.js", &nested);
    let chain = format!("x = (1\n{})\n", "+ 1\n".repeat(30_000));
    chunk_checked(&c, "chain.py", &chain);
    let blocks = format!("fn f() {{\n{}{}}}\n", "{\n".repeat(5_000), "}\n".repeat(5_000));
    chunk_checked(&c, "deep.rs", &blocks);
}

/// xorshift, to keep the test deterministic without a dependency
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_garbage_never_panics() {
    let c = small(200, 80);
    let paths = [
        "g.rs", "g.py", "g.go", "G.java", "g.js", "g.ts", "g.tsx", "g.c", "g.cpp", "g.md", "g.yaml", "g.txt",
    ];
    let alphabet = b"{}()[];:,.<>=+-*/&|!?#@'\"`\\ \t\n\r\nabcdefxyz_0129fnclassdefimplpubreturn";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..3000 {
        let len = (next(&mut state) % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = next(&mut state);
                if r.is_multiple_of(4) {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                }
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let path = paths[i % paths.len()];
        chunk_checked(&c, path, &text);
    }
}

#[test]
fn random_token_soup_with_default_limits() {
    let c = small(120, 50);
    let tokens = [
        "fn ",
        "class ",
        "def ",
        "impl ",
        "{",
        "}",
        "(",
        ")",
        ":\n",
        "\n",
        "    ",
        "x",
        "y ",
        "= 1;",
        "//",
        "/*",
        "*/",
        "#[a]",
        "@d\n",
        "namespace ",
        "struct ",
        "\"",
        "'",
        "template<",
        ">",
        "func ",
        "return ",
        "if ",
        "else ",
    ];
    let mut state = 42u64;
    for i in 0..3000 {
        let n = (next(&mut state) % 200) as usize;
        let text: String = (0..n)
            .map(|_| tokens[next(&mut state) as usize % tokens.len()])
            .collect();
        let path = ["t.rs", "t.py", "t.go", "T.java", "t.ts", "t.cpp", "t.c", "t.jsx"][i % 8];
        chunk_checked(&c, path, &text);
    }
}

#[test]
fn embed_text_layout() {
    let src = "fn top() {}\n";
    let chunks = chunk_checked(&chunker(), "src/top.rs", src);
    assert_eq!(chunks[0].embed_text, "src/top.rs\nfn top() {}");
}

#[test]
fn a_bare_header_is_folded_into_the_first_member() {
    let body = statements(60, "        ", |i| format!("int value{i} = compute({i});"));
    let src = format!(
        "public class Foo {{\n    /** Runs. */\n    public void run() {{\n{body}    }}\n\n    void other() {{\n{body}    }}\n}}\n"
    );
    let chunks = chunk_checked(&chunker(), "Foo.java", &src);
    let syms: Vec<_> = chunks.iter().map(|c| c.symbol.as_deref()).collect();
    assert_eq!(syms, [Some("Foo.run"), Some("Foo.other")]);
    // `public class Foo {` alone would be a useless chunk: it goes with the
    // first member, and the closing brace with the last one
    assert_eq!(chunks[0].start_line, 1);
    assert!(chunks[1].content.ends_with("    }\n}"));
}

/// Fixture files with random lines deleted, duplicated or cut short, under
/// several limits.
#[test]
fn mutated_fixtures_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chunking");
    let mut fixtures: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((name, text))
        })
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 11);
    let iterations: usize = std::env::var("CAIRN_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut state = 0xDEAD_BEEF_u64;
    for i in 0..iterations {
        let (name, text) = &fixtures[i % fixtures.len()];
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        for _ in 0..1 + next(&mut state) % 6 {
            if lines.is_empty() {
                break;
            }
            let at = next(&mut state) as usize % lines.len();
            match next(&mut state) % 3 {
                0 => {
                    lines.remove(at);
                }
                1 => lines.insert(at, lines[at]),
                _ => {
                    let line = lines[at];
                    let mut cut = next(&mut state) as usize % (line.len() + 1);
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    lines[at] = &line[..cut];
                }
            }
        }
        let mutated: String = lines.concat();
        let limits = [(3000, 1200), (400, 150), (90, 30), (25, 1)];
        let (max_chars, merge_chars) = limits[next(&mut state) as usize % limits.len()];
        chunk_checked(&small(max_chars, merge_chars), name, &mutated);
    }
}
