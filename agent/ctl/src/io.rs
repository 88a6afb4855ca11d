//! Terminal I/O of wardenctl: output, warnings and the questions patronictl asks
//! (answers come from standard input, so they can be piped in scripts and tests).

use anyhow::{bail, Result};
use std::fmt::Display;
use std::io::{BufRead, Write};

pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

impl Io<'_> {
    pub fn println(&mut self, text: impl Display) -> Result<()> {
        writeln!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }

    pub fn warn(&mut self, text: impl Display) -> Result<()> {
        writeln!(self.err, "warning: {text}")?;
        Ok(())
    }

    /// `TEXT [DEFAULT]: `; an empty answer takes the default.
    pub fn prompt(&mut self, text: &str, default: Option<&str>) -> Result<String> {
        match default {
            Some(d) => write!(self.out, "{text} [{d}]: ")?,
            None => write!(self.out, "{text}: ")?,
        }
        self.out.flush()?;
        let answer = self.read_answer(text)?;
        Ok(if answer.is_empty() {
            default.unwrap_or_default().to_string()
        } else {
            answer
        })
    }

    /// `TEXT [y/N]: `; only y/yes is a yes. Anything else unclear is asked again, a
    /// few times, then taken as no.
    pub fn confirm(&mut self, text: &str) -> Result<bool> {
        for _ in 0..3 {
            write!(self.out, "{text} [y/N]: ")?;
            self.out.flush()?;
            match self.read_answer(text)?.to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "" | "n" | "no" => return Ok(false),
                _ => writeln!(self.out, "Error: invalid input (answer y or n)")?,
            }
        }
        Ok(false)
    }

    fn read_answer(&mut self, question: &str) -> Result<String> {
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            // Keep the prompt's line from running into the error.
            writeln!(self.out)?;
            bail!(
                "no answer to {question:?}: standard input is closed (use --force where \
                 the command has it to run without questions)"
            );
        }
        Ok(line.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_input<T>(input: &str, f: impl FnOnce(&mut Io<'_>) -> T) -> (T, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut inp = std::io::Cursor::new(input.as_bytes().to_vec());
        let r = f(&mut Io {
            out: &mut out,
            err: &mut err,
            input: &mut inp,
        });
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn prompts_and_defaults() {
        let (r, out) = with_input("\nnode3\n", |io| {
            (
                io.prompt("Primary", Some("node1")).unwrap(),
                io.prompt("Candidate", None).unwrap(),
            )
        });
        assert_eq!(r, ("node1".to_string(), "node3".to_string()));
        assert_eq!(out, "Primary [node1]: Candidate: ");
    }

    #[test]
    fn confirm_needs_yes_and_eof_is_an_error() {
        let (r, _) = with_input("y\n", |io| io.confirm("Sure?").unwrap());
        assert!(r);
        let (r, out) = with_input("maybe\nno\n", |io| io.confirm("Sure?").unwrap());
        assert!(!r);
        assert!(out.contains("invalid input"), "{out}");
        let (r, _) = with_input("", |io| io.confirm("Sure?"));
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("Sure?") && e.contains("standard input is closed"),
            "{e}"
        );
    }
}
