//! Every `unsafe` in src/ and tests/ states its invariant: a `// SAFETY:` comment on the same
//! line or in the comment/attribute lines right above it (the project's rule, checked here so
//! that a new unsafe block without one fails the suite).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` (comments and string contents aside, roughly) uses the `unsafe` keyword.
fn uses_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let mut rest = code;
    while let Some(at) = rest.find("unsafe") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + 6..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !word(before) && !word(after) && !rest[..at].contains('"') {
            return true;
        }
        rest = &rest[at + 6..];
    }
    false
}

/// The `unsafe` uses of `text` without a SAFETY comment: (line number, line).
fn missing(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !uses_unsafe(line) || line.contains("SAFETY") {
            continue;
        }
        let documented = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("//") || l.starts_with("#["))
            .any(|l| l.contains("SAFETY"));
        if !documented {
            bad.push((i + 1, line.trim().to_string()));
        }
    }
    bad
}

#[test]
fn the_checker_sees_a_bare_unsafe_block() {
    assert_eq!(missing("let x = unsafe { f() };").len(), 1);
    assert!(missing("// SAFETY: f has no precondition.\nlet x = unsafe { f() };").is_empty());
    assert!(missing("let x = unsafe { f() }; // SAFETY: none").is_empty());
    assert!(missing("let s = \"unsafe\";\nlet unsafe_count = 1;").is_empty());
    assert_eq!(
        missing("// SAFETY: a.\nlet a = 1;\nunsafe fn g() {}").len(),
        1
    );
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let root = &Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in missing(&text) {
            bad.push(format!(
                "{}:{n}: {line}",
                f.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    assert!(
        bad.is_empty(),
        "unsafe without a // SAFETY: comment:\n{}",
        bad.join("\n")
    );
}
