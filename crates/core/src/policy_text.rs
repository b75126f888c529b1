//! A `.cedar` file's text cut into its policy statements without parsing it whole.
//!
//! Cedar's parser builds the syntax tree of everything it is given before it converts any of
//! it: for a whole file that tree peaks near 70× the file's size (4.5 GB for a 60 MB file).
//! Handed one statement at a time, it holds one policy's tree at a time. Only the lexical rules
//! that can hide a `;` matter here: string literals (with `\` escapes) and `//` comments; Cedar
//! has no other token that contains one.

/// One statement: the text from its first character of code (an annotation or the effect) to
/// its `;`, and where that starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// Byte offset of `text` in the file.
    pub offset: usize,
    /// The statement, `;` included; comments inside it kept, comments before it not.
    pub text: &'a str,
}

/// The statements of `text` in file order, or `None` when code follows the last `;` (an
/// unterminated statement or string: only a whole-file parse says precisely what is wrong).
pub fn statements(text: &str) -> Option<Vec<Statement<'_>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes
                    .iter()
                    .skip(i)
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'"' => {
                start.get_or_insert(i);
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return None,
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b';' => {
                let from = start.take().unwrap_or(i);
                out.push(Statement {
                    offset: from,
                    text: text.get(from..=i)?,
                });
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                start.get_or_insert(i);
            }
        }
        i += 1;
    }
    match start {
        Some(_) => None,
        None => Some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        statements(text).unwrap().iter().map(|s| s.text).collect()
    }

    #[test]
    fn statements_start_at_their_code_and_end_at_their_semicolon() {
        let text = "// head\n@id(\"a\")\npermit(principal, action, resource);\n\n  forbid(principal, action, resource) // why\n;\n// tail\n";
        let found = statements(text).unwrap();
        assert_eq!(
            found.iter().map(|s| s.text).collect::<Vec<_>>(),
            [
                "@id(\"a\")\npermit(principal, action, resource);",
                "forbid(principal, action, resource) // why\n;"
            ]
        );
        assert_eq!(&text[found[1].offset..found[1].offset + 6], "forbid");
    }

    #[test]
    fn a_semicolon_in_a_string_or_comment_ends_nothing() {
        assert_eq!(
            texts(
                "permit(principal, action, resource) when { context.a == \"x;\\\";y\" }; // no; end\npermit(principal, action, resource);"
            ),
            [
                "permit(principal, action, resource) when { context.a == \"x;\\\";y\" };",
                "permit(principal, action, resource);"
            ]
        );
    }

    #[test]
    fn code_after_the_last_semicolon_or_an_open_string_needs_the_whole_parse() {
        assert_eq!(statements("permit(principal, action, resource)"), None);
        assert_eq!(
            statements("permit(principal, action, resource);\nforbid("),
            None
        );
        assert_eq!(
            statements("permit(principal, action, resource) when { \"a; }"),
            None
        );
        assert_eq!(statements("// only a comment\n\n"), Some(vec![]));
    }
}
