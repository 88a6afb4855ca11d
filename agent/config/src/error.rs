//! Errors of config loading. Validation never stops at the first problem: a user fixing
//! a config should see everything wrong with it in one run.

use std::fmt;
use std::path::PathBuf;

/// One problem with one key, named by its dotted path (`restapi.listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not parse, or the configuration in it is invalid. Displays as one
    /// header line followed by one line per problem.
    #[error("{}", render(file.as_ref(), problems))]
    Invalid {
        file: Option<PathBuf>,
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// Every problem found; empty when the file could not be read at all.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(file: Option<&PathBuf>, problems: &[ConfigProblem]) -> String {
    let place = match file {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    };
    let count = match problems.len() {
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    };
    let mut out = format!("invalid configuration{place} ({count}):");
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(&problem.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_renders_one_line_per_problem() {
        let err = ConfigError::Invalid {
            file: Some(PathBuf::from("/etc/warden.yml")),
            problems: vec![
                ConfigProblem {
                    key: "scope".into(),
                    message: "missing required key".into(),
                },
                ConfigProblem {
                    key: "restapi.listen".into(),
                    message: "invalid port \"99999\"".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "invalid configuration in /etc/warden.yml (2 problems):\n  \
             - scope: missing required key\n  - restapi.listen: invalid port \"99999\""
        );
        assert_eq!(err.problems().len(), 2);
    }
}
