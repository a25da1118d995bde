//! Showing command lines and paths on a terminal, unambiguously and safely.
//!
//! An argument can hold anything but NUL: newlines, carriage returns,
//! escape sequences that rewrite the terminal, bidirectional-override
//! characters that make text read backwards, bytes that are not UTF-8. Shown
//! raw, two different commands can look identical and a crafted argument
//! can repaint the screen. Every word memorun shows is therefore quoted as
//! a shell would need it typed: plain words as they are, words with shell
//! metacharacters in single quotes, and words with anything unprintable in
//! bash's `$'...'` form (`$'a\nb'`, `$'\xff'`), which decodes back to the
//! exact bytes.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;

/// Whether `c` must never reach a terminal raw: control characters (C0,
/// DEL, C1) and the invisible bidirectional formatting characters.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The escape for an unprintable character, as `$'...'` writes it.
fn push_escape(out: &mut String, c: char) {
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\x1b' => write!(out, "\\E"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{:04x}", c as u32),
    };
}

/// `bytes` in bash's `$'...'` quoting.
fn ansi_c(bytes: &[u8]) -> String {
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if unprintable(c) => push_escape(&mut out, c),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('\'');
    out
}

/// One word (an argument, a path) as a shell would need it typed.
pub fn word(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(unprintable) => match shlex::try_quote(s) {
            Ok(q) => q,
            Err(_) => Cow::Owned(ansi_c(bytes)),
        },
        _ => Cow::Owned(ansi_c(bytes)),
    }
}

/// A command line, each argument quoted with [`word`].
pub fn command(argv: &[OsString]) -> String {
    let words: Vec<Cow<'_, str>> = argv.iter().map(|a| word(a.as_bytes())).collect();
    words.join(" ")
}

/// Text from elsewhere (a stored command line, a path) made safe to print:
/// unprintable characters as `\n`, `\E`, `\x..`, `\u....`.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unprintable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if unprintable(c) => push_escape(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn plain_and_metacharacter_words_are_quoted_as_before() {
        let argv: Vec<OsString> = vec!["echo".into(), "a b".into(), "it's".into()];
        assert_eq!(command(&argv), r#"echo 'a b' "it's""#);
    }

    #[test]
    fn unprintable_and_invalid_bytes_are_escaped_unambiguously() {
        assert_eq!(word(b"a\nb"), r"$'a\nb'");
        assert_eq!(word(b"\x1b[2J"), r"$'\E[2J'");
        assert_eq!(word(b"x\ry"), r"$'x\ry'");
        assert_eq!(word(b"\xff'\\"), r"$'\xff\'\\'");
        assert_eq!(word("\u{202e}abc".as_bytes()), r"$'\u202eabc'");
        assert_eq!(word(b"\x7f"), r"$'\x7f'");
        // Two arguments that lossy decoding made look the same do not.
        let a = command(&[OsString::from_vec(b"\xff".to_vec())]);
        let b = command(&[OsString::from("\u{fffd}")]);
        assert_ne!(a, b);
    }

    #[test]
    fn printable_escapes_only_what_a_terminal_would_act_on() {
        assert_eq!(printable("make all"), "make all");
        assert_eq!(printable("a\nb\x1b[31m"), r"a\nb\E[31m");
        assert_eq!(printable("tab\there"), r"tab\there");
    }
}
