//! Every file in `tests/invalid/` holds one mistake and says, in its first line,
//! `<!-- expect: LINE:COL: TEXT -->`, where the error must point and what it must say.
//! The test asserts that parsing fails with a message that starts with `path:LINE:COL: ` and
//! contains TEXT.

use std::fs;
use std::path::{Path, PathBuf};

use sdf::{parse, Arch};

struct Expectation {
    line: u32,
    col: u32,
    text: String,
}

fn expectation(path: &Path) -> Expectation {
    let content = fs::read_to_string(path).unwrap();
    let header = content.lines().next().unwrap_or_default();
    let inner = header
        .strip_prefix("<!-- expect: ")
        .and_then(|rest| rest.strip_suffix(" -->"))
        .unwrap_or_else(|| panic!("{}: first line is not an expect header", path.display()));
    let mut parts = inner.splitn(3, ':');
    let mut number = || -> u32 {
        parts
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: bad expect header {header:?}", path.display()))
    };
    let line = number();
    let col = number();
    let text = parts.next().unwrap_or_default().trim().to_string();
    assert!(
        !text.is_empty(),
        "{}: expect header has no text",
        path.display()
    );
    Expectation { line, col, text }
}

fn invalid_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_file_fails_at_the_expected_position_with_the_expected_message() {
    let files = invalid_files();
    assert!(files.len() >= 35, "only {} invalid files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let expect = expectation(path);
        let prefix = format!("{}:{}:{}: ", path.display(), expect.line, expect.col);
        match parse(path, Arch::Aarch64) {
            Ok(_) => failures.push(format!("{}: parsed, but should fail", path.display())),
            Err(err) => {
                let message = err.to_string();
                if !message.starts_with(&prefix) || !message.contains(&expect.text) {
                    failures.push(format!(
                        "{}:\n   expected {prefix}...{}...\n   got      {message}",
                        path.display(),
                        expect.text
                    ));
                }
                // The structured position agrees with the rendered one.
                let pos = err.pos();
                if (pos.line, pos.col) != (expect.line, expect.col) || &*pos.file != path.as_path()
                {
                    failures.push(format!("{}: err.pos() is {pos}", path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn positions_come_from_the_document_not_the_header() {
    // Removing the header must not change the verdict, only shift the line by one: proves the
    // position comes from the document, not from the comment.
    for path in invalid_files() {
        let text = fs::read_to_string(&path).unwrap();
        let (_, body) = text.split_once('\n').unwrap();
        let expect = expectation(&path);
        let err = sdf::parse_str(body, "body.xml", Arch::Aarch64)
            .expect_err(&format!("{} without header parsed", path.display()));
        let message = err.to_string();
        let prefix = format!("body.xml:{}:{}: ", expect.line - 1, expect.col);
        assert!(
            message.starts_with(&prefix) && message.contains(&expect.text),
            "{}: {message}",
            path.display()
        );
    }
}

#[test]
fn a_missing_file_is_reported_with_its_name() {
    let err = parse("/nonexistent/system.xml", Arch::Aarch64).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("/nonexistent/system.xml:1:1: cannot read system description"),
        "{message}"
    );
}
