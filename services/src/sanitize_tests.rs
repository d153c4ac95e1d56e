//! The sanitizer checked by a real Markdown parser: sanitized output is
//! parsed by pulldown-cmark with GFM extensions (tables, strikethrough, task
//! lists, footnotes), and must hold no image at all, no link whose
//! destination (entity-decoded by the parser, then trimmed, tabs and
//! newlines dropped, `\` read as `/`, scheme case-folded, as a browser reads
//! it) leaves the allowed hosts — scheme-relative `//host` counts — no
//! email link, no `http(s)://` or `www.` text that a GFM autolinker would
//! link to a foreign host, and no raw HTML (inline or block, tokenized the
//! way a browser does, across the whole rendered output) with a loading tag
//! or a `src`/`href`/`style`/… attribute.
//!
//! Bypass forms tried ([`bypasses`], each also checked to be live before
//! sanitizing where the parser makes it so, then checked neutralised, and
//! streamed char by char == whole):
//!
//! - link destinations: entity-encoded colon `https&#58;//`, `&#x3a;`,
//!   `&colon;`, fully encoded `&#x3A;&#x2F;&#x2F;`, entity-encoded
//!   `h` (`&#104;ttps`), percent-encoded `https%3A//`, backslash-escaped
//!   `https\://`, scheme-relative `//host`, `\\host`, `/\host`, pointy
//!   `<//host>`, pointy with a tab inside the scheme, `https:host`,
//!   `https:///host`, upper case, leading/trailing whitespace and a newline
//!   before the destination, userinfo `allowed@evil` and `allowed&#64;evil`,
//!   `javascript:`, `mailto:`, `data:`, an allowed link followed by an invalid
//!   title holding raw HTML, escaped `\.` / `\@` and `%2e` in the host, an
//!   ideographic full stop in the host, a foreign URL in an allowed link's
//!   query (an open redirect; not live, removed anyway);
//! - reference definitions and their uses: `[r]: //host` then `![x][r]`,
//!   `![r]`, `![r][]`, `[x][r]`, `[r]`; definitions in block quotes, list
//!   items, task list items and footnote definitions, with the destination
//!   on the next line (also after `> `), pointy destinations, multi-line
//!   labels, definitions after other definitions, definitions created by a
//!   removal (`<img>[r]: …`) or by a replaced bare URL (`https://evil/x: …`),
//!   near-definitions that sanitizing would complete (`[r]: <img src=x>//evil`,
//!   `[a\nb]:\n> <mailto:…` whose `<` becomes `&lt;`), CRLF line ends, `>[r]:`
//!   without a space, an escaped `]` in the label;
//! - autolinks `<https://…>`, upper-case scheme, `<javascript:…>`,
//!   `<mailto:…>`, email autolinks `<a@evil>` and `<//allowed@evil>`;
//! - bare URLs a GFM autolinker links: `https://…`, `www.…`, `WWW.…`,
//!   `(www.…)`, entity-encoded (`https&#58;//`, `&#104;ttps://`,
//!   `www&period;`), backslash-escaped (`https\://`), a URL glued to an
//!   allowed link's text after its removal (`[https://allowed](//evil).evil`),
//!   a foreign URL after an allowed one ended by a link's `)`, `!` before a
//!   bare URL followed by `(…)` or `"(…)`, `~~https://…~~`;
//! - raw HTML: `<img src>`, `<IMG SRC>`, multi-line `<img\nsrc>`,
//!   `<img/src>`, `<a href>`, `style="background:url(…)"`, `<svg><image
//!   href>`, `<video poster>`, an unclosed `<img` inside an HTML block,
//!   comments hiding a tag (`<!-- <img> -->`, `<!-- --!> <img> -->`),
//!   processing instructions `<? > <img> ?>`, escaped `\<img …>` (raw in an
//!   HTML block), entity-encoded `&lt;img …&gt;` (renders as text: not
//!   live), a tag that is no CommonMark tag with a link inside its
//!   attributes, a tag in a table cell whose attribute holds `|[x](//evil)`,
//!   `<base href>`, `<meta http-equiv=refresh>`, `<input type=image src>`,
//!   `<object data>`, a harmless tag spanning a blank line (a renderer leaves
//!   it open to swallow what follows), a foreign URL inside a kept tag's
//!   unquoted attribute (never eating the tag's `>`);
//! - joins created by a removal: `[a]<img>(//evil)`, `!<img>[a](//evil)`,
//!   `!<https://evil>(//evil)`, `\<img>\[a](//evil)`, a removed tag holding
//!   the blank line that kept `[a](//evil` from its `)`;
//! - parser/sanitizer mismatches: code spans hiding a bracket
//!   (`` ![x `[a` ](allowed.png) ``, `` [a`](allowed)`](//evil) ``), escaped
//!   brackets (`[a\](allowed)](//evil)`), an image opener left unbalanced in
//!   link text (`[![a <img alt="]"> b](allowed.png)`), nested images in links,
//!   20 levels of nested brackets;
//! - length: constructs longer than any lookahead (link text, image alt,
//!   definition label and destination, tag attributes, autolinks, URL hosts
//!   of 5 KiB).
//!
//! All are neutralised. The property test ([`generated_markdown_never_renders_a_foreign_link`])
//! mixes all of these with text, code spans and fences, tables, entities and
//! random lengths (constructs over 4 KiB included), and checks random stream
//! splits against the whole text.

use crate::sanitize::{LINK_REMOVED, Sanitizer, sanitize};
use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

const ALLOWED: &str = "docs.acme.internal";

fn allowed() -> Vec<String> {
    vec![ALLOWED.to_string()]
}

fn host_ok(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == ALLOWED || host.ends_with(&format!(".{ALLOWED}"))
}

/// The host of a URL's authority (what follows `scheme://`); a forbidden
/// host code point (`<>[]^|`) makes a browser reject the URL, so it ends it too.
fn authority_host(rest: &str) -> &str {
    let authority = rest
        .split(['/', '?', '#', '<', '>', '[', ']', '^', '|'])
        .next()
        .unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    match host_port.strip_prefix('[') {
        Some(r) => r.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    }
}

/// Whether a link destination, as the parser gives it (entities decoded),
/// is relative or on an allowed host, read the way a browser reads an href.
fn dest_ok(dest: &str) -> bool {
    let d: String = dest.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let d = d
        .trim_matches(|c: char| c <= ' ')
        .replace('\\', "/")
        .to_ascii_lowercase();
    if let Some(rest) = d.strip_prefix("//") {
        return host_ok(authority_host(rest.trim_start_matches('/')));
    }
    let head = &d[..d.find(['/', '?', '#']).unwrap_or(d.len())];
    let Some(colon) = head.find(':') else {
        return true; // relative
    };
    let scheme = &head[..colon];
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return true; // a relative path with a colon in it
    }
    (scheme == "http" || scheme == "https") && host_ok(authority_host(d[colon + 1..].trim_start_matches('/')))
}

/// GFM extended autolinks (`http://`, `https://`, `www.`) in rendered text
/// that would point to a foreign host. Looser than GFM: `http(s)://`
/// anywhere, `www.` after anything but a letter or digit.
fn foreign_autolinks(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut skip_to = 0;
    for (i, _) in lower.char_indices() {
        if i < skip_to {
            continue;
        }
        let rest = &lower[i..];
        let url = if let Some(r) = rest.strip_prefix("https://").or_else(|| rest.strip_prefix("http://")) {
            r.trim_start_matches(['/', '\\'])
        } else if rest.starts_with("www.")
            && !lower[..i].chars().next_back().is_some_and(char::is_alphanumeric)
            && rest[4..].starts_with(char::is_alphanumeric)
        {
            rest
        } else {
            continue;
        };
        let end = url.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(url.len());
        // One link up to its end: URLs inside it are part of it.
        skip_to = lower.len() - url.len() + end;
        let mut url = &url[..end];
        // What GFM leaves out of the link at its end.
        loop {
            let trimmed = url.trim_end_matches(['?', '!', '.', ',', ':', '*', '_', '~', '\'', '"', ';']);
            let trimmed = if trimmed.ends_with(')') && trimmed.matches(')').count() > trimmed.matches('(').count() {
                &trimmed[..trimmed.len() - 1]
            } else {
                trimmed
            };
            if trimmed == url {
                break;
            }
            url = trimmed;
        }
        let url = url.replace('\\', "/");
        let host = authority_host(&url).trim_end_matches(['"', '\'', ')']).to_string();
        if !host_ok(&host) {
            found.push(format!("{url:?} (host {host:?})"));
        }
    }
    found
}

/// Tags and attributes that load or link something.
const LOADING_TAGS: &[&str] = &[
    "img", "image", "picture", "source", "video", "audio", "track", "iframe", "frame", "frameset", "embed", "object",
    "applet", "svg", "math", "link", "meta", "base", "script", "style", "a", "area", "form", "input", "button", "body",
    "portal", "bgsound", "use",
];

fn loading_attr(a: &str) -> bool {
    a.starts_with("on")
        || [
            "src",
            "href",
            "srcset",
            "action",
            "formaction",
            "background",
            "poster",
            "data",
            "style",
            "xlink:href",
            "ping",
            "lowsrc",
            "dynsrc",
            "srcdoc",
        ]
        .contains(&a)
}

/// Raw HTML that loads or links something, tokenized the way a browser does
/// (a tag ends at the first `>` outside a quoted attribute value; an
/// unterminated tag counts too, since a renderer appends more HTML).
fn loading_html(html: &str) -> Vec<String> {
    let b = html.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if b.get(j) == Some(&b'/') {
            j += 1;
        }
        if !b.get(j).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        let start = j;
        while j < b.len() && !space(b[j]) && b[j] != b'/' && b[j] != b'>' {
            j += 1;
        }
        let name = String::from_utf8_lossy(&b[start..j]).to_ascii_lowercase();
        let mut attrs = Vec::new();
        while j < b.len() && b[j] != b'>' {
            if space(b[j]) || b[j] == b'/' {
                j += 1;
                continue;
            }
            let s = j;
            j += 1;
            while j < b.len() && !space(b[j]) && !matches!(b[j], b'/' | b'>' | b'=') {
                j += 1;
            }
            attrs.push(String::from_utf8_lossy(&b[s..j]).to_ascii_lowercase());
            while j < b.len() && space(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b'=' {
                j += 1;
                while j < b.len() && space(b[j]) {
                    j += 1;
                }
                if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                    let q = b[j];
                    j += 1;
                    while j < b.len() && b[j] != q {
                        j += 1;
                    }
                    j += 1;
                } else {
                    while j < b.len() && !space(b[j]) && b[j] != b'>' {
                        j += 1;
                    }
                }
            }
        }
        if LOADING_TAGS.contains(&name.as_str()) || attrs.iter().any(|a| loading_attr(a)) {
            found.push(String::from_utf8_lossy(&b[i..j.min(b.len())]).into_owned());
        }
        i = j.max(i + 1);
    }
    found
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Everything in `md`, rendered, that loads or links outside the allowed hosts.
fn violations(md: &str) -> Vec<String> {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS | Options::ENABLE_FOOTNOTES;
    let mut bad = Vec::new();
    let mut html = String::new();
    let mut text = String::new();
    let mut in_code = 0usize;
    let flush = |text: &mut String, bad: &mut Vec<String>| {
        for u in foreign_autolinks(text) {
            bad.push(format!("autolinked text {u}"));
        }
        text.clear();
    };
    for event in Parser::new_ext(md, options) {
        if !matches!(event, Event::Text(_)) {
            flush(&mut text, &mut bad);
        }
        match event {
            Event::Start(Tag::Image { dest_url, .. }) => bad.push(format!("image {dest_url:?}")),
            Event::Start(Tag::Link {
                link_type, dest_url, ..
            }) => {
                if link_type == LinkType::Email || !dest_ok(&dest_url) {
                    bad.push(format!("{link_type:?} link to {dest_url:?}"));
                }
            }
            Event::Start(Tag::CodeBlock(_)) => in_code += 1,
            Event::End(TagEnd::CodeBlock) => in_code -= 1,
            Event::Start(_) | Event::End(_) => html.push('\n'),
            Event::Text(t) => {
                html.push_str(&escape(&t));
                if in_code == 0 {
                    text.push_str(&t);
                }
            }
            Event::Code(t) => html.push_str(&escape(&t)),
            Event::Html(h) | Event::InlineHtml(h) => html.push_str(&h),
            _ => html.push('\n'),
        }
    }
    flush(&mut text, &mut bad);
    for tag in loading_html(&html) {
        bad.push(format!("raw HTML {tag:?}"));
    }
    bad
}

fn assert_safe(input: &str, out: &str) {
    let bad = violations(out);
    assert!(bad.is_empty(), "{bad:?}\ninput:  {input:?}\noutput: {out:?}");
}

/// `text` pushed in pieces cut at `cuts` (byte offsets, moved to char
/// boundaries), then finished.
fn streamed(text: &str, cuts: &[usize]) -> String {
    let mut s = Sanitizer::new(&allowed());
    let mut out = String::new();
    let mut from = 0;
    for &c in cuts {
        let mut c = c.clamp(from, text.len());
        while !text.is_char_boundary(c) {
            c += 1;
        }
        out.push_str(&s.push(&text[from..c]));
        from = c;
    }
    out.push_str(&s.push(&text[from..]));
    out.push_str(&s.finish());
    out
}

/// (what it is, input, whether the parser renders it live before sanitizing)
fn bypasses() -> Vec<(&'static str, String, bool)> {
    let long = "y".repeat(5000);
    let mut v: Vec<(&'static str, String, bool)> = vec![
        ("entity colon", "[x](https&#58;//evil.example/a)".into(), true),
        ("hex entity colon", "[x](https&#x3a;//evil.example/a)".into(), true),
        ("named entity colon", "[x](https&colon;//evil.example/a)".into(), true),
        ("all encoded", "[x](https&#x3A;&#x2F;&#x2F;evil.example/a)".into(), true),
        ("encoded h", "[x](&#104;ttps://evil.example/a)".into(), true),
        ("percent colon", "[x](https%3A//evil.example/a)".into(), false),
        ("escaped colon", "[x](https\\://evil.example/a)".into(), true),
        ("scheme-relative", "[x](//evil.example/a)".into(), true),
        ("backslashes", "[x](\\\\\\\\evil.example/a)".into(), true),
        ("slash backslash", "[x](/\\evil.example/a)".into(), true),
        ("pointy scheme-relative", "[x](<//evil.example/a>)".into(), true),
        ("pointy tab", "[x](<ht\ttps://evil.example/a>)".into(), true),
        ("no slashes", "[x](https:evil.example/a)".into(), true),
        ("three slashes", "[x](https:///evil.example/a)".into(), true),
        ("upper case", "[x](HTTPS://EVIL.EXAMPLE/a)".into(), true),
        ("whitespace", "[x](  https://evil.example/a  )".into(), true),
        ("newline", "[x](\nhttps://evil.example/a)".into(), true),
        ("title", "[x](https://evil.example/a \"t\")".into(), true),
        ("userinfo", "[x](https://docs.acme.internal@evil.example/)".into(), true),
        (
            "entity userinfo",
            "[x](https://docs.acme.internal&#64;evil.example/)".into(),
            true,
        ),
        ("javascript", "[x](javascript:alert(1))".into(), true),
        ("mailto", "[x](mailto:a@evil.example)".into(), true),
        ("data", "![x](data:image/png;base64,AAAA)".into(), true),
        (
            "invalid title hiding HTML",
            "[x](https://docs.acme.internal/ <img src=//evil.example/p.png>)".into(),
            true,
        ),
        // Reference definitions and their uses.
        (
            "definition + image ref",
            "[r]: //evil.example/p.png?d=s\n\n![x][r]".into(),
            true,
        ),
        ("shortcut image", "![r]\n\n[r]: https://evil.example/p.png".into(), true),
        (
            "collapsed image",
            "![r][]\n\n[r]: https://evil.example/p.png".into(),
            true,
        ),
        (
            "full reference link",
            "[x][r]\n\n[r]: https://evil.example/".into(),
            true,
        ),
        ("shortcut link", "[r]\n\n[r]: https://evil.example/".into(), true),
        (
            "allowed-host image ref",
            "![r]\n\n[r]: https://docs.acme.internal/p.png".into(),
            true,
        ),
        ("relative image ref", "![r]\n\n[r]: p.png".into(), true),
        (
            "definition in quote",
            "> [r]: //evil.example/p.png\n\n![r]".into(),
            true,
        ),
        ("definition in list", "- [r]: //evil.example/p.png\n\n![r]".into(), true),
        (
            "definition in task item",
            "- [ ] x\n- [r]: //evil.example/p.png\n\n![r]".into(),
            true,
        ),
        (
            "definition in footnote",
            "[^1]: [r]: //evil.example/p.png\n\n![r] [^1]".into(),
            true,
        ),
        (
            "destination next line",
            "[r]:\n//evil.example/p.png\n\n![r]".into(),
            true,
        ),
        (
            "destination next quoted line",
            "> [r]:\n> //evil.example/p.png\n\n![r]".into(),
            true,
        ),
        ("pointy destination", "[r]: <//evil.example/p.png>\n\n![r]".into(), true),
        (
            "multi-line label",
            "[r\ns]: //evil.example/p.png\n\n![r s]".into(),
            true,
        ),
        (
            "second definition",
            "[a]: x\n[r]: //evil.example/p.png\n\n![r]".into(),
            true,
        ),
        (
            "blank line in a removed tag",
            "[a](//evil.example<img src=\"\n\n\">)".into(),
            false,
        ),
        (
            "definition made by a rewrite",
            "[r]: <img src=x>//evil.example/p.png\n\n![r]".into(),
            false,
        ),
        (
            "definition made by &lt;",
            "> [a\nb]:\n> <mailto:docs.acme.internal/x\n\n![a b]".into(),
            false,
        ),
        (
            "definition after removal",
            "<img src=x>[r]: //evil.example/p.png\n\n![r]".into(),
            true,
        ),
        (
            "definition from replaced URL",
            "https://evil.example/x: //evil.example/p.png\n\n![link removed]".into(),
            true,
        ),
        // Autolinks.
        ("autolink", "<https://evil.example/a>".into(), true),
        ("autolink upper case", "<HTTPS://evil.example>".into(), true),
        ("javascript autolink", "<javascript:alert(1)>".into(), true),
        ("mailto autolink", "<mailto:a@evil.example>".into(), true),
        ("email autolink", "<a@evil.example>".into(), true),
        // Bare URLs (live for a GFM autolinker).
        ("bare URL", "see https://evil.example/x now".into(), true),
        ("www", "see www.evil.example/x now".into(), true),
        ("WWW", "see WWW.evil.example".into(), true),
        ("www in parens", "(www.evil.example)".into(), true),
        ("entity bare URL", "see https&#58;//evil.example/x".into(), true),
        ("entity h bare URL", "see &#104;ttps://evil.example/x".into(), true),
        ("escaped bare URL", "see https\\://evil.example/x".into(), true),
        ("entity www", "see www&period;evil.example".into(), true),
        (
            "glued to link text",
            "[https://docs.acme.internal](//evil.example).evil.example".into(),
            true,
        ),
        // Raw HTML.
        ("img", "a <img src=//evil.example/p.png> b".into(), true),
        ("IMG", "<IMG SRC=\"https://evil.example/p.png\">".into(), true),
        ("multi-line img", "a <img\nsrc=//evil.example/p.png> b".into(), true),
        (
            "img slash in block",
            "<div>\n<img/src=//evil.example/p.png>\n</div>".into(),
            true,
        ),
        ("anchor", "<a href=\"//evil.example\">click</a>".into(), true),
        (
            "style url",
            "<div style=\"background:url(//evil.example/p.png)\">x</div>".into(),
            true,
        ),
        (
            "svg image",
            "<svg><image href=//evil.example/p.png /></svg>".into(),
            true,
        ),
        (
            "video poster",
            "<video poster=//evil.example/p.png></video>".into(),
            true,
        ),
        (
            "unclosed img in block",
            "<div>\n<img src=//evil.example/p.png\n</div>".into(),
            true,
        ),
        ("comment", "<!-- <img src=//evil.example/p.png> -->".into(), true),
        (
            "comment closed early",
            "<!-- x --!> <img src=//evil.example/p.png> -->".into(),
            true,
        ),
        (
            "processing instruction",
            "<? x > <img src=//evil.example/p.png> ?>".into(),
            true,
        ),
        (
            "escaped img in block",
            "<div>\n\\<img src=//evil.example/p.png>\n</div>".into(),
            true,
        ),
        (
            "entity-encoded img",
            "&lt;img src=//evil.example/p.png&gt;".into(),
            false,
        ),
        ("link inside no-tag", "<y x=a\"b [x](//evil.example/a)>".into(), true),
        (
            "table pipe in attribute",
            "| a |\n|---|\n| <b title=\"x|[y](//evil.example/a)\"> |".into(),
            false,
        ),
        // Joins made by a removal.
        ("bracket join", "[a]<img src=x>(//evil.example/a)".into(), true),
        ("bang join", "!<img src=x>[a](//evil.example/p.png)".into(), true),
        (
            "autolink join",
            "!<https://evil.example>(//evil.example/p.png)".into(),
            true,
        ),
        ("escape join", "\\<img src=x>\\[a](//evil.example/a)".into(), false),
        // Parser/sanitizer mismatches.
        (
            "code span hides bracket",
            "![x `[a` ](https://docs.acme.internal/p.png)".into(),
            true,
        ),
        (
            "code span hides close",
            "[a`](https://docs.acme.internal/)`](//evil.example/a)".into(),
            true,
        ),
        (
            "escaped bracket",
            "[a\\](https://docs.acme.internal/)](//evil.example/a)".into(),
            true,
        ),
        (
            "unbalanced bang",
            "[![a <img alt=\"]\"> b](https://docs.acme.internal/p.png)".into(),
            true,
        ),
        (
            "image in link",
            "[![x](//evil.example/p.png)](https://docs.acme.internal/)".into(),
            true,
        ),
        (
            "deep nesting",
            format!("{}a](//evil.example/a){}", "[".repeat(20), "]".repeat(19)),
            true,
        ),
        (
            "escaped dot in host",
            "[x](https://docs.acme.internal\\.evil.example/)".into(),
            true,
        ),
        (
            "escaped at in host",
            "[x](https://docs.acme.internal\\@evil.example/)".into(),
            true,
        ),
        (
            "percent dot in host",
            "[x](https://docs.acme.internal%2eevil.example/)".into(),
            false,
        ),
        (
            "ideographic dot",
            "[x](https://docs.acme.internal\u{3002}evil.example/)".into(),
            true,
        ),
        ("CRLF definition", "[r]: //evil.example/p.png\r\n\r\n![r]".into(), true),
        ("definition no space", ">[r]://evil.example/p.png\n\n![r]".into(), true),
        (
            "escaped bracket label",
            "[r\\]]: //evil.example/p.png\n\n![r\\]]".into(),
            true,
        ),
        ("base href", "<base href=\"//evil.example/\">\n\n[x](p)".into(), true),
        (
            "meta refresh",
            "<meta http-equiv=refresh content=\"0;url=//evil.example\">".into(),
            true,
        ),
        (
            "input image",
            "<input type=image src=//evil.example/p.png>".into(),
            true,
        ),
        ("object data", "<object data=//evil.example/x></object>".into(), true),
        (
            "bang before bare URL",
            "!https://evil.example/x(//evil.example/p.png)".into(),
            true,
        ),
        (
            "bare URL then image syntax",
            "!https://evil.example/x\"(//evil.example/p.png)".into(),
            true,
        ),
        ("strikethrough URL", "~~https://evil.example~~".into(), true),
        (
            "URL in allowed link",
            "[a](https://docs.acme.internal/?u=https://evil.example/x) b".into(),
            false,
        ),
    ];
    v.extend([
        ("long link text", format!("[{long}](//evil.example/a)"), true),
        ("long alt", format!("![{long}](https://docs.acme.internal/p.png)"), true),
        (
            "long definition URL",
            format!("[r]: //evil.example/{long}\n\n![r]"),
            true,
        ),
        (
            "long label",
            format!("[r{long}]: //evil.example/p.png\n\n![r{long}]"),
            false,
        ),
        ("long tag", format!("<img {long} src=//evil.example/p.png>"), true),
        ("long autolink", format!("<https://evil.example/{long}>"), true),
        ("long host", format!("see https://{long}.evil.example/"), true),
        ("long image path", format!("![x](//evil.example/{long})"), true),
    ]);
    v
}

#[test]
fn bypasses_are_neutralised() {
    for (what, input, live) in bypasses() {
        if live {
            assert!(
                !violations(&input).is_empty(),
                "{what}: not live before sanitizing: {input:?}"
            );
        }
        let out = sanitize(&input, &allowed());
        assert_safe(&input, &out);
        let chars: Vec<usize> = input.char_indices().map(|(i, _)| i).collect();
        assert_eq!(streamed(&input, &chars), out, "{what}: char by char");
        let cuts: Vec<usize> = (1..input.len()).step_by(97).collect();
        assert_eq!(streamed(&input, &cuts), out, "{what}: chunks");
    }
}

#[test]
fn allowed_and_relative_links_keep_working() {
    for link in [
        "[docs](https://docs.acme.internal/auth)",
        "[docs](https://api.docs.acme.internal/x \"title\")",
        "[code](src/lib.rs#L3)",
        "[top](#top)",
        "<https://docs.acme.internal/a>",
    ] {
        let out = sanitize(link, &allowed());
        assert_eq!(out, link);
        let links = Parser::new(&out)
            .filter(|e| matches!(e, Event::Start(Tag::Link { .. })))
            .count();
        assert_eq!(links, 1, "{out}");
    }
    let text = "see https://docs.acme.internal/x and www.docs.acme.internal.";
    assert_eq!(sanitize(text, &allowed()), text);
}

#[test]
fn neutralised_forms_read_as_expected() {
    let clean = |s: &str| sanitize(s, &allowed());
    assert_eq!(clean("[x](https&#58;//evil.example/a)"), "x");
    assert_eq!(clean("[r]: //evil.example/p.png\n\n![x][r]"), "[r]: [link removed]\n\n");
    assert_eq!(clean("> [r]: //evil.example/p\n![r]"), "> [r]: [link removed]\n![r]");
    assert_eq!(clean("www.evil.example/x."), format!("{LINK_REMOVED}."));
    assert_eq!(clean("(see https://evil.example/x)"), format!("(see {LINK_REMOVED})"));
    assert_eq!(clean("[a]<img src=x>(//evil.example/a)"), "[a] (//evil.example/a)");
    assert_eq!(clean("<y x=a\"b [x](//evil.example/a)>"), "&lt;y x=a\"b x>");
    assert_eq!(clean("[1]: see the notes"), "[1]: see the notes");
    // Long undecidable definitions fail closed.
    let long = "y".repeat(5000);
    assert!(clean(&format!("[r{long}]: //x")).starts_with("\\[r"));
}

/// A seeded xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Random markdown mixing everything the sanitizer must neutralise with
/// ordinary text and code.
struct Gen {
    rng: Rng,
    /// Long constructs left for this document.
    longs: usize,
}

impl Gen {
    fn long(&mut self) -> String {
        if self.longs > 0 && self.rng.chance(4) {
            self.longs -= 1;
            let n = 4096 + self.rng.below(2048);
            let unit = self.rng.pick(&["y", "ab ", "é", "x\n", "&amp;", "\\*"]);
            unit.repeat(n / unit.len())
        } else {
            String::new()
        }
    }

    fn host(&mut self) -> String {
        let h = self.rng.pick(&[
            ALLOWED,
            ALLOWED,
            "api.docs.acme.internal",
            "evil.example",
            "EVIL.example",
            "docs.acme.internal.evil.example",
            "docs.acme.internal@evil.example",
            "docs.acme.internal&#64;evil.example",
            "docs.acme.internal:8443",
        ]);
        format!("{h}{}", self.long())
    }

    fn url(&mut self) -> String {
        let scheme = self.rng.pick(&[
            "https://",
            "http://",
            "//",
            "HTTPS://",
            "https:",
            "https:///",
            "https&#58;//",
            "https&colon;//",
            "https&#x3a;//",
            "&#104;ttps://",
            "https%3A//",
            "https\\://",
            "\\\\\\\\",
            "/\\",
            "javascript:",
            "mailto:",
            "data:",
            "www.",
            "",
            "#",
        ]);
        let host = match scheme {
            "" | "#" => self.rng.pick(&["src/lib.rs", "a", "top", "x/y?z=1"]).to_string(),
            "www." => self.rng.pick(&["evil.example", "docs.acme.internal"]).to_string(),
            _ => self.host(),
        };
        let path = self.rng.pick(&[
            "/a",
            "/p.png?d=s3cret",
            "",
            "/x_(y)",
            "/a.b",
            "/?u=https://evil.example/",
        ]);
        let long = self.long();
        let path = if long.is_empty() {
            path.to_string()
        } else {
            format!("/{long}")
        };
        format!("{scheme}{host}{path}")
    }

    fn text(&mut self, depth: usize) -> String {
        let n = self.rng.below(4);
        (0..n).map(|_| self.fragment(depth + 1)).collect::<Vec<_>>().join(" ")
    }

    fn title(&mut self) -> String {
        match self.rng.below(5) {
            0 => " \"t\"".into(),
            1 => format!(" '{}'", self.text(3)),
            2 => " (t)".into(),
            _ => String::new(),
        }
    }

    fn fragment(&mut self, depth: usize) -> String {
        let r = &mut self.rng;
        let kind = if depth > 3 { r.below(4) } else { r.below(32) };
        match kind {
            0 => r
                .pick(&["the", "Auth", "token", "é→", "123", "x", "http", "www", "h", "ht"])
                .to_string(),
            1 => r
                .pick(&[
                    "[", "]", "(", ")", "<", ">", "!", "\\", "`", "&", ":", "|", "*", "_", "\"", "'", "=", "/", "](",
                ])
                .to_string(),
            2 => r
                .pick(&[" ", "\n", "\n\n", "\n> ", "\n- ", "\n1. ", "\n    "])
                .to_string(),
            3 => r
                .pick(&["&lt;", "&amp;", "&#58;", "&colon;", "&#x2F;", "&foo;", "&"])
                .to_string(),
            4 | 5 => {
                let (t, u, title) = (self.text(depth), self.url(), self.title());
                format!("[{t}{}]({u}{title})", self.long())
            }
            6 => {
                let (t, u) = (self.text(depth), self.url());
                format!("![{t}{}]({u})", self.long())
            }
            7 => {
                let r = self.rng.pick(&["r", "1", "R", "^1", "a b"]);
                let t = self.text(depth);
                match self.rng.below(5) {
                    0 => format!("[{t}][{r}]"),
                    1 => format!("[{r}]"),
                    2 => format!("![{t}][{r}]"),
                    3 => format!("![{r}]"),
                    _ => format!("[{r}][]"),
                }
            }
            8 | 9 => {
                let prefix = self
                    .rng
                    .pick(&["", "> ", "- ", "1. ", "   ", "[^1]: ", "- [ ] ", "<img src=x>"]);
                let label = self.rng.pick(&["r", "1", "R", "a\nb", "^1"]);
                let ws = self.rng.pick(&[" ", "", "\n", "\n> ", "  \n  "]);
                let u = self.url();
                let dest = if self.rng.chance(30) { format!("<{u}>") } else { u };
                let title = self.title();
                let long = self.long();
                format!("\n{prefix}[{label}{long}]:{ws}{dest}{title}\n")
            }
            10 => {
                let u = self.url();
                match self.rng.below(3) {
                    0 => format!("<{u}>"),
                    1 => "<a@evil.example>".into(),
                    _ => format!("<{}>", self.rng.pick(&["javascript:alert(1)", "mailto:a@evil.example"])),
                }
            }
            11 | 12 => self.url(),
            13 | 14 => {
                let u = self.url();
                let q = self.rng.pick(&["\"", "'", ""]);
                let long = self.long();
                let tag = self.rng.pick(&[
                    "<img src=",
                    "<IMG\nSRC=",
                    "<img/src=",
                    "<a href=",
                    "<div style=background:url(",
                    "<video poster=",
                    "<svg><image href=",
                    "<b title=",
                    "<y x=",
                ]);
                let end = self.rng.pick(&[">", " />", "", ">text</a>", "\n"]);
                format!("{tag}{q}{u}{q}{long}{end}")
            }
            15 => {
                let t = self.text(depth);
                self.rng
                    .pick(&[
                        "<div>\n",
                        "</div>\n",
                        "<!-- ",
                        " -->",
                        "<? ",
                        " ?>",
                        "<details open>",
                        "<br/>",
                    ])
                    .to_string()
                    + &t
            }
            16 => {
                let t = self.text(depth);
                format!("<b title=\"{t}\">")
            }
            17 => {
                let t = self.text(depth);
                let fence = self.rng.pick(&["`", "``", "```"]);
                format!("{fence}{t}{fence}")
            }
            18 => {
                let t = self.text(depth);
                let fence = self.rng.pick(&["```", "~~~", "```rust"]);
                let close = if self.rng.chance(70) { "\n```\n" } else { "" };
                format!("\n{fence}\n{t}{close}")
            }
            19 => {
                let (a, b) = (self.text(depth), self.text(depth));
                format!("\n| a | b |\n|---|---|\n| {a} | {b} |\n")
            }
            20 => {
                let u = self.url();
                format!("&lt;img src={u}&gt;")
            }
            21 => self.long(),
            22 => "<img src=x>".into(),
            23 => self
                .rng
                .pick(&[
                    "x[0][1]",
                    "vec![1](y)",
                    "Vec<Option<T>>",
                    "a <= b",
                    "<1>",
                    "f(x)[0](y)",
                    "HashMap<String, Vec<u8>>",
                    "y![1]",
                    "<b\n\nx>",
                    "a@b.c",
                ])
                .to_string(),
            24 => format!("\\{}", self.fragment(depth + 1)),
            25 => {
                let t = self.text(depth);
                format!("<{}{t}>", self.rng.pick(&["b x=", "y ", "a:b ", "img ", "details "]))
            }
            _ => {
                let n = self.rng.below(12) + 1;
                let s: String = (0..n)
                    .map(|_| {
                        *self
                            .rng
                            .pick(&["a", "b", " ", "é", "→", ".", ","])
                            .as_bytes()
                            .first()
                            .unwrap() as char
                    })
                    .collect();
                s
            }
        }
    }

    fn document(&mut self) -> String {
        self.longs = if self.rng.chance(15) { 2 } else { 0 };
        let n = self.rng.below(12) + 1;
        let mut doc = String::new();
        for _ in 0..n {
            doc.push_str(&self.fragment(0));
            doc.push_str(self.rng.pick(&["", "", " ", "\n", "\n\n"]));
        }
        doc
    }
}

/// Property: for random markdown, sanitizing never panics, the output
/// renders no image, no foreign link, no foreign autolinked URL and no
/// loading HTML, and random stream splits give the whole text's output.
/// Seeded: a failure names its case, and `CASE=n` replays it
/// (`SANITIZE_CASES` sets how many, `SANITIZE_SEED` picks another set).
#[test]
fn generated_markdown_never_renders_a_foreign_link() {
    let cases: u64 = std::env::var("SANITIZE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let only: Option<u64> = std::env::var("CASE").ok().and_then(|v| v.parse().ok());
    let seed: u64 = std::env::var("SANITIZE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for case in 0..cases {
        if only.is_some_and(|c| c != case) {
            continue;
        }
        let mut g = Gen {
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ seed ^ case.wrapping_mul(0x1000_0000_01B3)),
            longs: 0,
        };
        let doc = g.document();
        let whole = std::panic::catch_unwind(|| sanitize(&doc, &allowed()))
            .unwrap_or_else(|_| panic!("case {case} panicked on {doc:?}"));
        let bad = violations(&whole);
        assert!(
            bad.is_empty(),
            "case {case}: {bad:?}\ninput:  {doc:?}\noutput: {whole:?}"
        );
        for max in [7usize, 300] {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < doc.len() {
                at += 1 + g.rng.below(max);
                cuts.push(at);
            }
            let out = std::panic::catch_unwind(|| streamed(&doc, &cuts))
                .unwrap_or_else(|_| panic!("case {case} panicked streaming {doc:?}"));
            assert_eq!(
                out, whole,
                "case {case}: streamed (chunks ≤ {max}) != whole for {doc:?}"
            );
        }
    }
}

#[test]
fn ordinary_answers_pass_unchanged() {
    let answer = r#"Tokens are checked by `AuthService::verify` [1], see [the guide](https://docs.acme.internal/auth#verify).

1. Parse the header: `let h: Option<&str> = req.headers().get("x")?;`
2. Call `verify(&token)` — it returns `Result<Claims, Error>`.
- [ ] write tests
- [x] review [2]

| field | type |
|---|---|
| `exp` | `u64` |
| `aud` | `Vec<String>` |

```rust
fn f<T: Clone>(xs: &[T]) -> Vec<T> { if a < b && c > d { xs[0..1].to_vec() } else { vec![] } }
let m: HashMap<String, Vec<u8>> = HashMap::new(); handlers[i](event); y![1];
```

```ts
const m: { [k: string]: number } = {}; type R = Record<string, Array<number>>;
```

```python
def f(x: dict[str, list[int]]) -> None:
    return x["a"][0] if x else print("see https://docs.acme.internal/x")
```

```cpp
#include <iostream>
template<typename T> std::vector<T> v;
```

<details open><summary>More</summary>

Details in [src/auth.rs](src/auth.rs#L10) and [below](#notes).
</details>

Footnote[^1].

[^1]: See the notes.
"#;
    let out = sanitize(answer, &allowed());
    assert_eq!(out, answer);
    assert_safe(answer, &out);
}
