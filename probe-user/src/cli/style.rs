//! Colour for people, never colour alone: every verdict also has a symbol
//! and a word. Off when the output is not a terminal or NO_COLOR is set.

use modscope_analysis::verdict::{Severity, Verdict};

pub struct Style {
    colour: bool,
}

impl Style {
    pub fn detect(is_tty: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: is_tty && !no_color,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }

    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }

    pub fn verdict(&self, v: Verdict) -> String {
        match v {
            Verdict::Incompatible => self.paint("1;31", "✗ INCOMPATIBLE"),
            Verdict::Warning => self.paint("1;33", "! WARNING     "),
            Verdict::Compatible => self.paint("32", "✓ compatible  "),
        }
    }

    pub fn severity(&self, s: Severity) -> String {
        match s {
            Severity::Incompatible => self.paint("31", "✗"),
            Severity::Warning => self.paint("33", "!"),
            Severity::Info => "·".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_keeps_words_and_symbols() {
        let st = Style { colour: false };
        assert_eq!(st.verdict(Verdict::Incompatible), "✗ INCOMPATIBLE");
        assert!(!st.verdict(Verdict::Warning).contains('\x1b'));
        let coloured = Style { colour: true };
        assert!(
            coloured
                .verdict(Verdict::Compatible)
                .contains("✓ compatible")
        );
        assert!(coloured.verdict(Verdict::Compatible).starts_with('\x1b'));
    }
}
