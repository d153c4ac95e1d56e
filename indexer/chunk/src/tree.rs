//! Chunking along a tree-sitter syntax tree.
//!
//! The children of a node are turned into [`Unit`]s: line ranges that carry
//! the child node and its classification ([`Item`]). Children that share a
//! line are coalesced (chunks are whole lines), and comments / attributes
//! directly above an item are attached to it. A level's units are then
//! packed: functions, and containers with a function among their members,
//! are chunks of their own; other small units are merged into runs, big ones
//! become their own chunk
//! or, when bigger than `max_chars`, are split recursively along their own
//! children:
//!
//! * containers (class, impl, trait, mod, namespace, interface) are split in
//!   *items* mode: members become chunks with qualified symbols, small
//!   members are merged into runs, and the container's header goes with the
//!   first run;
//! * functions and other named items are split in *section* mode: runs of
//!   statements up to `max_chars`, all with kind `"section"` and the item's
//!   symbol;
//! * anything else (an `#ifndef` guard, an `extern "C"` block, an error node)
//!   is split transparently, keeping the current mode and continuing the
//!   current run.
//!
//! A chunk made only of a header (`impl Foo {`) or closing brackets is
//! folded into its neighbour when that still fits `max_chars`.

use tree_sitter::{Node, Tree};

use crate::Language;
use crate::emit::{ScopeLine, Sink};
use crate::lines::LineIndex;

/// Recursion limit for splitting; deeper nodes are packed line by line.
const MAX_DEPTH: usize = 48;
/// Longest signature kept as a scope line.
const MAX_SIGNATURE_CHARS: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Declarations: named items get their own kind and symbol.
    Items,
    /// Inside one named item: every chunk is a `"section"` of it.
    Section,
}

/// Where the children being chunked live.
#[derive(Clone)]
struct Level {
    mode: Mode,
    /// Signatures of the enclosing containers (and function, in section mode).
    scope: Vec<ScopeLine>,
    /// Names of the enclosing containers, for qualified symbols.
    prefix: Vec<String>,
    /// Functions at this level are methods.
    member: bool,
    /// The symbol of section-mode chunks.
    symbol: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Container,
    Function,
    Leaf,
    Anon,
    /// A comment; `attach` unless it is an inner doc comment (`//!`).
    Comment {
        attach: bool,
    },
    /// An attribute (`#[...]`), always attached to the next item.
    Attr,
}

/// Classification of one syntax node.
#[derive(Clone)]
struct Item<'t> {
    role: Role,
    kind: Option<&'static str>,
    /// Unqualified name (C++ out-of-line definitions and Go methods already
    /// carry their type: `Foo::bar`, `Server.Start`).
    name: Option<String>,
    /// Prepend the enclosing containers' names to `name`.
    qualify: bool,
    /// Whether functions inside (a container) are methods.
    members_are_methods: bool,
    /// Where the signature starts (skips Python decorators).
    def: Node<'t>,
    body: Option<Node<'t>>,
}

impl<'t> Item<'t> {
    fn new(role: Role, def: Node<'t>) -> Self {
        Item {
            role,
            kind: None,
            name: None,
            qualify: true,
            members_are_methods: true,
            def,
            body: None,
        }
    }

    fn anon(def: Node<'t>) -> Self {
        Item::new(Role::Anon, def)
    }

    fn named(role: Role, kind: &'static str, name: Option<String>, def: Node<'t>, body: Option<Node<'t>>) -> Self {
        Item {
            kind: Some(kind),
            name,
            body,
            ..Item::new(role, def)
        }
    }
}

/// A line range of one level: one child node, or several coalesced ones.
struct Unit<'t> {
    start: usize,
    end: usize,
    /// The node to split along when the unit is too big (of coalesced nodes,
    /// the one spanning most lines).
    node: Option<Node<'t>>,
    item: Option<Item<'t>>,
    /// Comments, attributes, punctuation and headers: when coalesced with a
    /// substantial node, the node wins.
    minor: bool,
    /// Header lines and punctuation only.
    glue: bool,
    /// May be attached to the following unit (comment or attribute).
    attach: bool,
    /// Attached even across blank lines (attributes).
    attach_any_gap: bool,
    /// Number of named items (function, class, ...) in the unit.
    named: u32,
    kind: Option<&'static str>,
    symbol: Option<String>,
    /// A container header: its kind and symbol name a run only when the run
    /// has no other named item.
    weak: Option<(&'static str, Option<String>)>,
}

impl<'t> Unit<'t> {
    fn pseudo(start: usize, end: usize) -> Self {
        Unit {
            start,
            end,
            node: None,
            item: None,
            minor: true,
            glue: true,
            attach: false,
            attach_any_gap: false,
            named: 0,
            kind: None,
            symbol: None,
            weak: None,
        }
    }

    fn absorb(&mut self, other: Unit<'t>) {
        let end = self.end.max(other.end);
        match (self.minor, other.minor) {
            (true, false) => {
                let start = self.start;
                *self = other;
                self.start = start;
            }
            (false, true) => {}
            (true, true) => {
                self.node = None;
                self.item = None;
                self.glue &= other.glue;
                self.attach &= other.attach;
                self.attach_any_gap &= other.attach_any_gap;
                self.add_named(other);
            }
            (false, false) => {
                // keep the node spanning more lines: splitting it still covers
                // the other one, which shares its first or last line
                if other.end - other.start > self.end - self.start {
                    self.node = other.node;
                    self.item = other.item.clone();
                }
                self.add_named(other);
            }
        }
        self.end = end;
    }

    fn add_named(&mut self, other: Unit<'t>) {
        if self.weak.is_none() {
            self.weak = other.weak;
        }
        if self.named == 0 {
            self.kind = other.kind;
            self.symbol = other.symbol;
        }
        self.named += other.named;
    }
}

/// A run of small units being merged.
struct Run {
    start: usize,
    end: usize,
    named: u32,
    kind: Option<&'static str>,
    symbol: Option<String>,
    weak: Option<(&'static str, Option<String>)>,
    glue: bool,
}

impl Run {
    /// A run holding just `unit`.
    fn of(unit: Unit<'_>) -> Self {
        Run {
            start: unit.start,
            end: unit.end,
            named: unit.named,
            kind: unit.kind,
            symbol: unit.symbol,
            weak: unit.weak,
            glue: unit.glue,
        }
    }

    /// Kind and symbol in items mode: those of the only named item, else
    /// `"items"` without a symbol.
    fn label(self) -> (&'static str, Option<String>) {
        match (self.named, self.weak) {
            (1, _) => (self.kind.unwrap_or("items"), self.symbol),
            (0, Some((kind, symbol))) => (kind, symbol),
            _ => ("items", None),
        }
    }
}

pub(crate) struct Engine<'a, 's> {
    text: &'a str,
    lines: &'a LineIndex<'a>,
    lang: Language,
    sep: &'static str,
    merge: usize,
    /// Containers bigger than this are split along their members.
    container: usize,
    max: usize,
    sink: &'s mut Sink<'a>,
}

impl<'a, 's> Engine<'a, 's> {
    pub(crate) fn new(
        text: &'a str,
        lang: Language,
        merge_chars: usize,
        container_chars: usize,
        sink: &'s mut Sink<'a>,
    ) -> Self {
        Engine {
            text,
            lines: sink.lines,
            lang,
            sep: lang.symbol_separator(),
            merge: merge_chars,
            container: container_chars,
            max: sink.max_chars,
            sink,
        }
    }

    /// Chunks the whole file along `tree`.
    pub(crate) fn run(&mut self, tree: &'a Tree) {
        let n = self.lines.len();
        if n == 0 {
            return;
        }
        let root = tree.root_node();
        let level = Level {
            mode: Mode::Items,
            scope: Vec::new(),
            prefix: Vec::new(),
            member: false,
            symbol: None,
        };
        let units = self.build_units(0, n - 1, root, root, &level, None);
        self.process(units, &level, 0);
    }

    // ----- units -----------------------------------------------------------

    /// Rows (0-based, inclusive) of a node; a node ending at column 0 ends
    /// on the previous line.
    fn rows(&self, n: Node<'_>) -> (usize, usize) {
        let last = self.lines.len().saturating_sub(1);
        let s = n.start_position().row.min(last);
        let ep = n.end_position();
        let mut e = ep.row;
        if ep.column == 0 && e > n.start_position().row {
            e -= 1;
        }
        (s, e.min(last).max(s))
    }

    /// Units covering rows `us..=ue` of `node`, whose members are the
    /// children of `body` (`node` itself or its body node). Everything of
    /// `node` before the body is a header unit, which carries `header`
    /// (the container's kind and symbol) when given.
    fn build_units(
        &self,
        us: usize,
        ue: usize,
        node: Node<'a>,
        body: Node<'a>,
        level: &Level,
        header: Option<(&'static str, Option<String>)>,
    ) -> Vec<Unit<'a>> {
        let (ns, _) = self.rows(node);
        let mut units = Vec::new();
        if body.id() == node.id() {
            // the node's first child starts on its first line: only lines
            // attached above it (comments, attributes) need a unit
            if us < ns {
                units.push(Unit::pseudo(us, ns - 1));
            }
        } else {
            let (bs, _) = self.rows(body);
            let first_is_member = body.child(0).is_some_and(|c| c.is_named());
            let header_end = if first_is_member && bs > 0 { bs - 1 } else { bs };
            let mut head = Unit::pseudo(us, header_end.max(ns).max(us));
            head.weak = header;
            units.push(head);
        }
        let mut cursor = body.walk();
        for child in body.children(&mut cursor) {
            if matches!(child.kind(), "enum_body_declarations") {
                let mut inner = child.walk();
                for grandchild in child.children(&mut inner) {
                    let unit = self.unit(grandchild, level);
                    self.push_unit(&mut units, unit, us, ue);
                }
            } else {
                let unit = self.unit(child, level);
                self.push_unit(&mut units, unit, us, ue);
            }
        }
        match units.last() {
            None => units.push(Unit::pseudo(us, ue)),
            Some(last) if last.end < ue => {
                let start = last.end + 1;
                self.push_unit(&mut units, Unit::pseudo(start, ue), us, ue);
            }
            Some(_) => {}
        }
        attach(units)
    }

    /// Adds a unit, coalescing it with the previous one when they share a
    /// line. Text between two units that no child node covers (error
    /// recovery can skip text) becomes a unit of its own.
    /// Units are clamped to rows `floor..=ceil` (a zero-width missing token
    /// can sit on the line after its parent's last line).
    fn push_unit(&self, units: &mut Vec<Unit<'a>>, mut unit: Unit<'a>, floor: usize, ceil: usize) {
        if unit.start > ceil {
            return;
        }
        unit.start = unit.start.max(floor);
        unit.end = unit.end.min(ceil).max(unit.start);
        let gap = match units.last_mut() {
            Some(prev) if unit.start <= prev.end => {
                prev.absorb(unit);
                return;
            }
            Some(prev) => prev.end + 1..unit.start,
            None => floor..unit.start,
        };
        if let Some(first) = gap.clone().find(|&row| !self.lines.is_blank(row)) {
            let last = gap.rev().find(|&row| !self.lines.is_blank(row)).unwrap_or(first);
            units.push(Unit {
                glue: false,
                ..Unit::pseudo(first, last)
            });
        }
        units.push(unit);
    }

    fn unit(&self, n: Node<'a>, level: &Level) -> Unit<'a> {
        let (start, end) = self.rows(n);
        if !n.is_named() {
            return Unit::pseudo(start, end);
        }
        let item = self.classify(n, level);
        let mut unit = Unit {
            node: Some(n),
            minor: false,
            glue: false,
            ..Unit::pseudo(start, end)
        };
        match item.role {
            Role::Comment { attach } => {
                unit.minor = true;
                unit.attach = attach;
            }
            Role::Attr => {
                unit.minor = true;
                unit.attach = true;
                unit.attach_any_gap = true;
            }
            _ => {
                if let Some(kind) = item.kind {
                    unit.named = 1;
                    unit.kind = Some(kind);
                    unit.symbol = self.qualify(level, &item);
                }
            }
        }
        unit.item = Some(item);
        unit
    }

    fn qualify(&self, level: &Level, item: &Item<'_>) -> Option<String> {
        let name = item.name.as_deref()?;
        if !item.qualify || level.prefix.is_empty() {
            return Some(name.to_string());
        }
        let mut s = String::new();
        for p in &level.prefix {
            s.push_str(p);
            s.push_str(self.sep);
        }
        s.push_str(name);
        Some(s)
    }

    // ----- packing ---------------------------------------------------------

    /// Chunks the units of one level (the file, a container's members, a
    /// function's statements).
    fn process(&mut self, units: Vec<Unit<'a>>, level: &Level, depth: usize) {
        let from = self.sink.out.len();
        let mut run: Option<Run> = None;
        self.pack_units(units, level, depth, &mut run);
        self.flush(&mut run, level);
        self.sink.fold_glue(from);
    }

    /// Packs units into `run`, flushing it when the next unit does not fit.
    /// A too-big unit that is split without changing mode (a statement of a
    /// long function, an `#ifdef` block) continues the same run, so that the
    /// pieces around it are packed as tightly as their siblings.
    fn pack_units(&mut self, units: Vec<Unit<'a>>, level: &Level, depth: usize, run: &mut Option<Run>) {
        let limit = match level.mode {
            Mode::Items => self.merge,
            Mode::Section => self.max,
        };
        for unit in units {
            let size = self.lines.size(unit.start, unit.end);
            // In items mode a function or method is a chunk of its own: it is
            // the unit people search for, and merging it with neighbours
            // dilutes its embedding.
            if level.mode == Mode::Items && size <= limit && (is_function_unit(&unit) || self.has_methods(&unit, level))
            {
                self.flush(run, level);
                *run = Some(Run::of(unit));
                self.flush(run, level);
                continue;
            }
            if size > limit {
                if let Some(node) = self.splits_in_place(&unit, size, level, depth) {
                    let inner = self.build_units(unit.start, unit.end, node, node, level, None);
                    self.pack_units(inner, level, depth + 1, run);
                } else {
                    self.flush(run, level);
                    self.big(unit, level, depth);
                }
                continue;
            }
            if let Some(r) = run.as_ref()
                && self.lines.size(r.start, unit.end) > limit
            {
                self.flush(run, level);
            }
            match run {
                Some(r) => {
                    r.end = unit.end;
                    r.glue &= unit.glue;
                    if r.weak.is_none() {
                        r.weak = unit.weak;
                    }
                    if r.named == 0 {
                        r.kind = unit.kind;
                        r.symbol = unit.symbol;
                    }
                    r.named += unit.named;
                }
                None => *run = Some(Run::of(unit)),
            }
        }
    }

    /// Whether `unit` is exactly one container (impl, class, ...) with a
    /// function among its members: like a function, it is code people search
    /// for by what it does, so it is not merged with its neighbours either.
    fn has_methods(&self, unit: &Unit<'a>, level: &Level) -> bool {
        let Some(item) = unit.item.as_ref() else {
            return false;
        };
        let Some(body) = item.body else {
            return false;
        };
        if unit.named != 1 || item.role != Role::Container {
            return false;
        }
        let mut inner = level.clone();
        inner.mode = Mode::Items;
        inner.member = item.members_are_methods;
        let mut cursor = body.walk();
        body.named_children(&mut cursor)
            .any(|child| self.classify(child, &inner).role == Role::Function)
    }

    /// The node to split along, when `unit` is bigger than `max_chars` and is
    /// split at the current level: any node in section mode, an anonymous
    /// one (no own kind) in items mode.
    fn splits_in_place(&self, unit: &Unit<'a>, size: usize, level: &Level, depth: usize) -> Option<Node<'a>> {
        if size <= self.max || depth >= MAX_DEPTH || unit.start == unit.end {
            return None;
        }
        let node = unit.node?;
        let item = unit.item.as_ref()?;
        if node.child_count() == 0 {
            return None;
        }
        let same_mode = match level.mode {
            Mode::Section => true,
            Mode::Items => !matches!(item.role, Role::Container | Role::Function | Role::Leaf),
        };
        same_mode.then_some(node)
    }

    fn flush(&mut self, run: &mut Option<Run>, level: &Level) {
        let Some(r) = run.take() else {
            return;
        };
        let (start, end, glue) = (r.start, r.end, r.glue);
        let (kind, symbol) = match level.mode {
            Mode::Section => ("section", level.symbol.clone()),
            Mode::Items => r.label(),
        };
        self.sink.push(start, end, kind, symbol, &level.scope);
        if glue && let Some(last) = self.sink.out.last_mut() {
            last.glue = true;
        }
    }

    /// A unit too big to be merged with its neighbours.
    fn big(&mut self, unit: Unit<'a>, level: &Level, depth: usize) {
        let size = self.lines.size(unit.start, unit.end);
        let (kind, symbol) = match level.mode {
            Mode::Section => ("section", level.symbol.clone()),
            Mode::Items => Run {
                start: unit.start,
                end: unit.end,
                named: unit.named,
                kind: unit.kind,
                symbol: unit.symbol.clone(),
                weak: unit.weak.clone(),
                glue: false,
            }
            .label(),
        };
        let split_container = level.mode == Mode::Items
            && size > self.container
            && unit
                .item
                .as_ref()
                .is_some_and(|i| i.role == Role::Container && i.body.is_some());
        if size <= self.max && !split_container {
            self.sink.push(unit.start, unit.end, kind, symbol, &level.scope);
            return;
        }
        let section_symbol = match level.mode {
            Mode::Section => level.symbol.clone(),
            Mode::Items => unit.symbol.clone(),
        };
        let (Some(node), Some(item)) = (unit.node, unit.item.clone()) else {
            self.pack(&unit, section_symbol, level);
            return;
        };
        if depth >= MAX_DEPTH || node.child_count() == 0 || unit.start == unit.end {
            self.pack(&unit, section_symbol, level);
            return;
        }
        match (level.mode, item.role) {
            (Mode::Items, Role::Container) if item.body.is_some() => {
                let body = item.body.unwrap_or(node);
                self.split_container(&unit, node, body, &item, level, depth);
            }
            (Mode::Items, Role::Function | Role::Leaf) => {
                let body = item.body.unwrap_or(node);
                let mut inner = level.clone();
                inner.mode = Mode::Section;
                inner.symbol = unit.symbol.clone();
                inner
                    .scope
                    .push((self.rows(item.def).0, self.signature(item.def, item.body)));
                let units = self.build_units(unit.start, unit.end, node, body, &inner, None);
                self.process(units, &inner, depth + 1);
            }
            _ => {
                let units = self.build_units(unit.start, unit.end, node, node, level, None);
                self.process(units, level, depth + 1);
            }
        }
    }

    /// Splits a container along its members (items mode, qualified names,
    /// the container's signature as scope).
    fn split_container(
        &mut self,
        unit: &Unit<'a>,
        node: Node<'a>,
        body: Node<'a>,
        item: &Item<'a>,
        level: &Level,
        depth: usize,
    ) {
        let mut inner = level.clone();
        inner.mode = Mode::Items;
        inner.member = item.members_are_methods;
        inner
            .scope
            .push((self.rows(item.def).0, self.signature(item.def, Some(body))));
        if let Some(name) = &item.name {
            inner.prefix.push(name.clone());
        }
        let header = item.kind.map(|k| (k, unit.symbol.clone()));
        let units = self.build_units(unit.start, unit.end, node, body, &inner, header);
        self.process(units, &inner, depth + 1);
    }

    fn pack(&mut self, unit: &Unit<'_>, symbol: Option<String>, level: &Level) {
        self.sink
            .pack_lines(unit.start, unit.end, "section", symbol.as_deref(), &level.scope);
    }

    // ----- text helpers ----------------------------------------------------

    fn text_of(&self, n: Node<'_>) -> &'a str {
        self.text.get(n.byte_range()).unwrap_or("")
    }

    fn field_text(&self, n: Node<'_>, field: &str) -> Option<String> {
        n.child_by_field_name(field)
            .map(|c| clean_name(self.text_of(c)))
            .filter(|s| !s.is_empty())
    }

    /// The signature of a container or function: its text up to the body,
    /// on one line.
    fn signature(&self, def: Node<'_>, body: Option<Node<'_>>) -> String {
        let start = def.start_byte().min(self.text.len());
        let mut end = match body {
            Some(b) => b.start_byte(),
            None => {
                let (row, _) = self.rows(def);
                self.lines.byte_range(row, row).1
            }
        };
        end = end.clamp(start, self.text.len()).min(start + 4 * MAX_SIGNATURE_CHARS);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let raw = &self.text[start..end];
        let mut out = String::with_capacity(raw.len().min(MAX_SIGNATURE_CHARS * 2));
        let mut chars = 0;
        for word in raw.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            for c in word.chars() {
                if chars >= MAX_SIGNATURE_CHARS {
                    break;
                }
                out.push(c);
                chars += 1;
            }
            if chars >= MAX_SIGNATURE_CHARS {
                break;
            }
        }
        let trimmed = out.trim_end_matches(['{', ':', ' ']).trim_end_matches("=>").trim_end();
        trimmed.to_string()
    }

    // ----- classification --------------------------------------------------

    fn classify(&self, n: Node<'a>, level: &Level) -> Item<'a> {
        let kind = n.kind();
        if kind.contains("comment") {
            let text = self.text_of(n);
            let inner_doc = text.starts_with("//!") || text.starts_with("/*!");
            return Item::new(Role::Comment { attach: !inner_doc }, n);
        }
        if kind == "attribute_item" {
            return Item::new(Role::Attr, n);
        }
        if level.mode == Mode::Section {
            return Item::anon(n);
        }
        match self.lang {
            Language::Rust => self.classify_rust(n, level),
            Language::Python => self.classify_python(n, level, 0),
            Language::Go => self.classify_go(n),
            Language::Java => self.classify_java(n),
            Language::JavaScript | Language::TypeScript | Language::Tsx => self.classify_js(n, level, 0),
            Language::C | Language::Cpp => self.classify_c(n, level, 0),
            _ => Item::anon(n),
        }
    }

    fn fn_kind(level: &Level) -> &'static str {
        if level.member { "method" } else { "function" }
    }

    fn classify_rust(&self, n: Node<'a>, level: &Level) -> Item<'a> {
        let body = n.child_by_field_name("body");
        let name = self.field_text(n, "name");
        match n.kind() {
            "function_item" => Item::named(Role::Function, Self::fn_kind(level), name, n, body),
            "function_signature_item" => Item::named(Role::Leaf, Self::fn_kind(level), name, n, None),
            "impl_item" if body.is_some() => {
                let ty = n.child_by_field_name("type").and_then(|t| self.rust_type_name(t, 0));
                Item::named(Role::Container, "impl", ty, n, body)
            }
            "trait_item" if body.is_some() => Item::named(Role::Container, "trait", name, n, body),
            "mod_item" if body.is_some() => Item {
                members_are_methods: false,
                ..Item::named(Role::Container, "module", name, n, body)
            },
            "struct_item" | "union_item" => Item::named(Role::Leaf, "struct", name, n, body),
            "enum_item" => Item::named(Role::Leaf, "enum", name, n, body),
            _ => Item::anon(n),
        }
    }

    fn rust_type_name(&self, t: Node<'_>, depth: usize) -> Option<String> {
        if depth > 8 {
            return None;
        }
        match t.kind() {
            "type_identifier" | "primitive_type" => Some(clean_name(self.text_of(t))),
            "generic_type" | "reference_type" | "pointer_type" => t
                .child_by_field_name("type")
                .and_then(|inner| self.rust_type_name(inner, depth + 1)),
            "scoped_type_identifier" => t
                .child_by_field_name("name")
                .and_then(|inner| self.rust_type_name(inner, depth + 1)),
            _ => {
                let s = clean_name(self.text_of(t));
                (!s.is_empty()).then_some(s)
            }
        }
    }

    fn classify_python(&self, n: Node<'a>, level: &Level, depth: usize) -> Item<'a> {
        match n.kind() {
            "decorated_definition" if depth == 0 => match n.child_by_field_name("definition") {
                Some(def) => self.classify_python(def, level, depth + 1),
                None => Item::anon(n),
            },
            "function_definition" => Item::named(
                Role::Function,
                Self::fn_kind(level),
                self.field_text(n, "name"),
                n,
                n.child_by_field_name("body"),
            ),
            "class_definition" => Item::named(
                Role::Container,
                "class",
                self.field_text(n, "name"),
                n,
                n.child_by_field_name("body"),
            ),
            _ => Item::anon(n),
        }
    }

    fn classify_go(&self, n: Node<'a>) -> Item<'a> {
        let body = n.child_by_field_name("body");
        match n.kind() {
            "function_declaration" => Item::named(Role::Function, "function", self.field_text(n, "name"), n, body),
            "method_declaration" => {
                let name = self.field_text(n, "name");
                let receiver = n
                    .child_by_field_name("receiver")
                    .and_then(|r| r.named_child(0))
                    .and_then(|p| p.child_by_field_name("type"))
                    .map(|t| {
                        let s = self.text_of(t).trim_start_matches(['*', '(', ' ']);
                        let s = s.split(['[', ')']).next().unwrap_or(s);
                        clean_name(s)
                    })
                    .filter(|s| !s.is_empty());
                let symbol = match (receiver, name) {
                    (Some(r), Some(m)) => Some(format!("{r}.{m}")),
                    (None, m) => m,
                    (r, None) => r,
                };
                Item {
                    qualify: false,
                    ..Item::named(Role::Function, "method", symbol, n, body)
                }
            }
            "type_declaration" => {
                let mut specs = Vec::new();
                let mut cursor = n.walk();
                for c in n.named_children(&mut cursor) {
                    if !c.kind().contains("comment") {
                        specs.push(c);
                    }
                }
                let [spec] = specs[..] else {
                    return Item::anon(n);
                };
                let kind = match spec.child_by_field_name("type").map(|t| t.kind()) {
                    Some("struct_type") => "struct",
                    Some("interface_type") => "interface",
                    _ => return Item::anon(n),
                };
                Item::named(Role::Leaf, kind, self.field_text(spec, "name"), n, None)
            }
            _ => Item::anon(n),
        }
    }

    fn classify_java(&self, n: Node<'a>) -> Item<'a> {
        let body = n.child_by_field_name("body");
        let name = self.field_text(n, "name");
        match n.kind() {
            "class_declaration" | "record_declaration" if body.is_some() => {
                Item::named(Role::Container, "class", name, n, body)
            }
            "interface_declaration" | "annotation_type_declaration" if body.is_some() => {
                Item::named(Role::Container, "interface", name, n, body)
            }
            "enum_declaration" if body.is_some() => Item::named(Role::Container, "enum", name, n, body),
            "method_declaration" | "constructor_declaration" | "compact_constructor_declaration" => {
                let role = if body.is_some() { Role::Function } else { Role::Leaf };
                Item::named(role, "method", name, n, body)
            }
            _ => Item::anon(n),
        }
    }

    fn classify_js(&self, n: Node<'a>, level: &Level, depth: usize) -> Item<'a> {
        let body = n.child_by_field_name("body");
        let name = self.field_text(n, "name");
        match n.kind() {
            "export_statement" | "ambient_declaration" if depth < 3 => {
                let inner = n
                    .child_by_field_name("declaration")
                    .or_else(|| n.child_by_field_name("value"))
                    .or_else(|| {
                        let mut cursor = n.walk();
                        n.named_children(&mut cursor)
                            .find(|c| !matches!(c.kind(), "decorator" | "comment"))
                    });
                match inner {
                    Some(inner) => {
                        let mut item = self.classify_js(inner, level, depth + 1);
                        if item.kind.is_some() {
                            item.def = n;
                        }
                        item
                    }
                    None => Item::anon(n),
                }
            }
            "function_declaration"
            | "generator_function_declaration"
            | "function_expression"
            | "function"
            | "generator_function" => Item::named(Role::Function, Self::fn_kind(level), name, n, body),
            "function_signature" => Item::named(Role::Leaf, Self::fn_kind(level), name, n, None),
            "class_declaration" | "abstract_class_declaration" | "class" if body.is_some() => {
                Item::named(Role::Container, "class", name, n, body)
            }
            "interface_declaration" if body.is_some() => Item::named(Role::Container, "interface", name, n, body),
            "enum_declaration" => Item::named(Role::Leaf, "enum", name, n, body),
            "internal_module" | "module" if body.is_some() => {
                let name = name.map(|s| s.trim_matches(['"', '\'']).to_string());
                Item {
                    members_are_methods: false,
                    ..Item::named(Role::Container, "module", name, n, body)
                }
            }
            "method_definition" => Item::named(Role::Function, "method", name, n, body),
            "method_signature" | "abstract_method_signature" => Item::named(Role::Leaf, "method", name, n, None),
            "public_field_definition" | "field_definition" => {
                let value = n.child_by_field_name("value");
                match value.filter(|v| is_js_function(v.kind())) {
                    Some(v) => {
                        let name = name.or_else(|| self.field_text(n, "property"));
                        Item::named(Role::Function, "method", name, n, v.child_by_field_name("body"))
                    }
                    None => Item::anon(n),
                }
            }
            "lexical_declaration" | "variable_declaration" => {
                let mut declarators = Vec::new();
                let mut cursor = n.walk();
                for c in n.named_children(&mut cursor) {
                    if c.kind() == "variable_declarator" {
                        declarators.push(c);
                    }
                }
                let [decl] = declarators[..] else {
                    return Item::anon(n);
                };
                let Some(value) = decl.child_by_field_name("value") else {
                    return Item::anon(n);
                };
                let name = self.field_text(decl, "name");
                if is_js_function(value.kind()) {
                    Item::named(
                        Role::Function,
                        Self::fn_kind(level),
                        name,
                        n,
                        value.child_by_field_name("body"),
                    )
                } else if value.kind() == "class" && value.child_by_field_name("body").is_some() {
                    Item::named(Role::Container, "class", name, n, value.child_by_field_name("body"))
                } else {
                    Item::anon(n)
                }
            }
            "expression_statement" => {
                let Some(assign) = n.named_child(0).filter(|c| c.kind() == "assignment_expression") else {
                    return Item::anon(n);
                };
                let (Some(left), Some(right)) =
                    (assign.child_by_field_name("left"), assign.child_by_field_name("right"))
                else {
                    return Item::anon(n);
                };
                if !is_js_function(right.kind()) {
                    return Item::anon(n);
                }
                let name = clean_name(&self.text_of(left).replace(".prototype.", "."));
                Item {
                    qualify: false,
                    ..Item::named(
                        Role::Function,
                        "function",
                        (!name.is_empty()).then_some(name),
                        n,
                        right.child_by_field_name("body"),
                    )
                }
            }
            _ => Item::anon(n),
        }
    }

    fn classify_c(&self, n: Node<'a>, level: &Level, depth: usize) -> Item<'a> {
        let cpp = self.lang == Language::Cpp;
        let body = n.child_by_field_name("body");
        match n.kind() {
            "function_definition" => {
                let name = n
                    .child_by_field_name("declarator")
                    .and_then(|d| self.c_declarator_name(d));
                let qualified = name.as_deref().is_some_and(|s| s.contains("::"));
                let kind = if level.member || qualified {
                    "method"
                } else {
                    "function"
                };
                Item::named(Role::Function, kind, name, n, body)
            }
            "class_specifier" | "struct_specifier" | "union_specifier" if body.is_some() => {
                let name = self.field_text(n, "name");
                let kind = if n.kind() == "class_specifier" {
                    "class"
                } else {
                    "struct"
                };
                let role = if cpp { Role::Container } else { Role::Leaf };
                Item::named(role, kind, name, n, body)
            }
            "enum_specifier" if body.is_some() => Item::named(Role::Leaf, "enum", self.field_text(n, "name"), n, body),
            "type_definition" | "declaration" | "field_declaration" if depth < 3 => {
                let Some(ty) = n.child_by_field_name("type") else {
                    return Item::anon(n);
                };
                if !matches!(
                    ty.kind(),
                    "class_specifier" | "struct_specifier" | "union_specifier" | "enum_specifier"
                ) || ty.child_by_field_name("body").is_none()
                {
                    return Item::anon(n);
                }
                let mut item = self.classify_c(ty, level, depth + 1);
                if item.name.is_none() {
                    item.name = n
                        .child_by_field_name("declarator")
                        .and_then(|d| self.c_declarator_name(d));
                }
                item.def = n;
                item
            }
            "template_declaration" if depth < 3 => {
                let mut cursor = n.walk();
                let inner = n
                    .named_children(&mut cursor)
                    .filter(|c| {
                        matches!(
                            c.kind(),
                            "function_definition"
                                | "class_specifier"
                                | "struct_specifier"
                                | "union_specifier"
                                | "declaration"
                                | "field_declaration"
                                | "template_declaration"
                        )
                    })
                    .last();
                match inner {
                    Some(inner) => {
                        let mut item = self.classify_c(inner, level, depth + 1);
                        item.def = n;
                        item
                    }
                    None => Item::anon(n),
                }
            }
            "namespace_definition" if body.is_some() => Item {
                members_are_methods: false,
                ..Item::named(Role::Container, "module", self.field_text(n, "name"), n, body)
            },
            _ => Item::anon(n),
        }
    }

    /// The declared name inside a C/C++ declarator (`*foo(int)` → `foo`,
    /// `Foo<T>::bar(...)` → `Foo::bar`).
    fn c_declarator_name(&self, mut d: Node<'_>) -> Option<String> {
        for _ in 0..16 {
            match d.kind() {
                "identifier"
                | "field_identifier"
                | "qualified_identifier"
                | "destructor_name"
                | "operator_name"
                | "template_function"
                | "type_identifier"
                | "operator_cast" => {
                    let s = clean_name(self.text_of(d));
                    return (!s.is_empty()).then_some(s);
                }
                _ => {
                    d = d.child_by_field_name("declarator").or_else(|| {
                        let mut cursor = d.walk();
                        d.named_children(&mut cursor)
                            .find(|c| !matches!(c.kind(), "parameter_list" | "attribute_specifier"))
                    })?;
                }
            }
        }
        None
    }
}

/// A unit that is exactly one function or method.
fn is_function_unit(unit: &Unit<'_>) -> bool {
    unit.named == 1
        && unit.item.as_ref().is_some_and(|i| i.role == Role::Function)
        && matches!(unit.kind, Some("function" | "method"))
}

fn is_js_function(kind: &str) -> bool {
    matches!(
        kind,
        "arrow_function" | "function_expression" | "function" | "generator_function"
    )
}

/// Attaches comments and attributes to the unit right below them (comments
/// only when no blank line separates them).
fn attach(units: Vec<Unit<'_>>) -> Vec<Unit<'_>> {
    let mut out: Vec<Unit<'_>> = Vec::with_capacity(units.len());
    for unit in units.into_iter().rev() {
        if unit.attach
            && let Some(next) = out.last_mut()
            && !next.glue
            && (unit.attach_any_gap || next.start <= unit.end + 1)
        {
            next.start = unit.start;
            continue;
        }
        out.push(unit);
    }
    out.reverse();
    out
}

/// Collapses whitespace and drops generic / template arguments from a name
/// (`Foo<T>::bar` → `Foo::bar`); operator names keep their angle brackets.
fn clean_name(s: &str) -> String {
    let operator = s.contains("operator");
    let mut out = String::with_capacity(s.len().min(256));
    let mut angle = 0usize;
    let mut chars = 0usize;
    let mut space = false;
    for c in s.chars() {
        if !operator {
            match c {
                '<' => {
                    angle += 1;
                    continue;
                }
                '>' if angle > 0 => {
                    angle -= 1;
                    continue;
                }
                _ if angle > 0 => continue,
                _ => {}
            }
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && operator && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
        chars += 1;
        if chars >= MAX_SIGNATURE_CHARS {
            break;
        }
    }
    out
}
