//! Language detection from paths (and, for extension-less scripts, shebangs).

use serde::{Deserialize, Serialize};

/// Language of a file, detected from its path (extension / well-known file names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Go,
    Java,
    JavaScript,
    TypeScript,
    Tsx,
    C,
    Cpp,
    Markdown,
    Yaml,
    Toml,
    Json,
    Shell,
    /// Any other text.
    Text,
}

/// Every language, in declaration order.
pub(crate) const ALL: [Language; 15] = [
    Language::Rust,
    Language::Python,
    Language::Go,
    Language::Java,
    Language::JavaScript,
    Language::TypeScript,
    Language::Tsx,
    Language::C,
    Language::Cpp,
    Language::Markdown,
    Language::Yaml,
    Language::Toml,
    Language::Json,
    Language::Shell,
    Language::Text,
];

impl Language {
    /// Detects the language of `path` (repo-relative, `/`-separated) from its
    /// extension or well-known file name. Unknown files are [`Language::Text`].
    pub fn from_path(path: &str) -> Language {
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        match name {
            "Cargo.lock" | "Pipfile" | "poetry.lock" | "uv.lock" => return Language::Toml,
            ".bashrc" | ".bash_profile" | ".profile" | ".zshrc" | ".envrc" | "PKGBUILD" => {
                return Language::Shell;
            }
            "SConstruct" | "SConscript" | "BUCK" | "TARGETS" => return Language::Python,
            ".clang-format" | ".clang-tidy" => return Language::Yaml,
            _ => {}
        }
        let Some((stem, ext)) = name.rsplit_once('.') else {
            return Language::Text;
        };
        if stem.is_empty() && !matches!(ext, "bashrc" | "zshrc") {
            // dotfiles such as `.gitignore` are plain text
            return Language::Text;
        }
        let ext = ext.to_ascii_lowercase();
        match ext.as_str() {
            "rs" => Language::Rust,
            "py" | "pyi" | "pyw" => Language::Python,
            "go" => Language::Go,
            "java" => Language::Java,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "tpp" | "inl" => Language::Cpp,
            "md" | "markdown" | "mdx" => Language::Markdown,
            "yaml" | "yml" => Language::Yaml,
            "toml" => Language::Toml,
            "json" | "jsonc" | "json5" | "jsonl" | "ndjson" => Language::Json,
            "sh" | "bash" | "zsh" | "ksh" | "bashrc" | "zshrc" => Language::Shell,
            _ => Language::Text,
        }
    }

    /// Like [`Language::from_path`], but an extension-less file starting with a
    /// `#!` line is recognised by its interpreter.
    pub(crate) fn detect(path: &str, text: &str) -> Language {
        let lang = Language::from_path(path);
        if lang != Language::Text || !text.starts_with("#!") {
            return lang;
        }
        let first = text.lines().next().unwrap_or("");
        let interp = first
            .split_whitespace()
            .flat_map(|w| w.rsplit('/').next())
            .find(|w| !w.starts_with("#!") && *w != "env" && !w.starts_with('-'))
            .or_else(|| first.trim_start_matches("#!").rsplit('/').next())
            .unwrap_or("");
        if interp.starts_with("python") {
            Language::Python
        } else if interp.starts_with("node") || interp == "deno" || interp == "bun" {
            Language::JavaScript
        } else if matches!(interp, "sh" | "bash" | "zsh" | "ksh" | "dash" | "ash") {
            Language::Shell
        } else {
            Language::Text
        }
    }

    /// The lowercase name used in payloads and request filters.
    pub fn as_str(&self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Go => "go",
            Language::Java => "java",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Markdown => "markdown",
            Language::Yaml => "yaml",
            Language::Toml => "toml",
            Language::Json => "json",
            Language::Shell => "shell",
            Language::Text => "text",
        }
    }

    /// Inverse of [`Language::as_str`], case-insensitive.
    pub fn parse_name(s: &str) -> Option<Language> {
        let s = s.trim();
        ALL.into_iter().find(|l| l.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether files of this language are chunked along a tree-sitter syntax tree.
    pub fn has_grammar(&self) -> bool {
        matches!(
            self,
            Language::Rust
                | Language::Python
                | Language::Go
                | Language::Java
                | Language::JavaScript
                | Language::TypeScript
                | Language::Tsx
                | Language::C
                | Language::Cpp
        )
    }

    /// The tree-sitter grammar, if this language has one.
    pub(crate) fn grammar(&self) -> Option<tree_sitter::Language> {
        Some(match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::Go => tree_sitter_go::LANGUAGE.into(),
            Language::Java => tree_sitter_java::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::C => tree_sitter_c::LANGUAGE.into(),
            Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            _ => return None,
        })
    }

    /// Separator between the parts of a qualified symbol.
    pub(crate) fn symbol_separator(&self) -> &'static str {
        match self {
            Language::Rust | Language::C | Language::Cpp => "::",
            _ => ".",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
