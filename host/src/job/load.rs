//! Reading a job file: TOML syntax, `--set` overrides, then the schema.
//! Errors carry the file name and, where TOML knows it, line and column.

use std::path::Path;

use super::spec::JobSpec;
use crate::Error;

/// One `--set a.b.c=VALUE` override.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted key path, e.g. `["sources", "lines", "path"]`.
    pub path: Vec<String>,
    /// The value: parsed as TOML (`5`, `true`, `"x"`, `[1, 2]`), else taken as a string.
    pub value: toml_edit::Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, raw) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`{key}` is not a dotted key like sources.lines.path"));
        }
        let value = raw.trim().parse::<toml_edit::Value>().unwrap_or_else(|_| raw.into());
        Ok(Self { path, value })
    }
}

/// Reads and parses `path`, applying `overrides` in order.
///
/// # Errors
/// [`Error::InvalidJob`] naming the file (and line/column for syntax and
/// schema errors) when the file is unreadable, not TOML, or not a valid job.
pub fn load(path: &Path, overrides: &[Override]) -> Result<JobSpec, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidJob(format!("cannot read job file {}: {e}", path.display())))?;
    parse(&text, overrides).map_err(|msg| Error::InvalidJob(format!("job file {}: {msg}", path.display())))
}

/// Parses job-file text; errors are messages without the file name.
pub fn parse(text: &str, overrides: &[Override]) -> Result<JobSpec, String> {
    if overrides.is_empty() {
        return toml::from_str(text).map_err(|e| e.to_string());
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    for o in overrides {
        apply(&mut doc, o)?;
    }
    toml::from_str(&doc.to_string()).map_err(|e| format!("(after --set overrides) {e}"))
}

fn apply(doc: &mut toml_edit::DocumentMut, o: &Override) -> Result<(), String> {
    let (last, parents) = o.path.split_last().expect("path is never empty");
    let mut item = doc.as_item_mut();
    for (depth, key) in parents.iter().enumerate() {
        let table = item
            .as_table_like_mut()
            .ok_or_else(|| format!("--set {}: `{}` is not a table", o.path.join("."), o.path[..depth].join(".")))?;
        item = table.entry(key).or_insert(toml_edit::table());
    }
    let table = item
        .as_table_like_mut()
        .ok_or_else(|| format!("--set {}: `{}` is not a table", o.path.join("."), parents.join(".")))?;
    table.insert(last, toml_edit::Item::Value(o.value.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
[sources.lines]
kind = "file"
path = "in.txt"

[operators.split]
builtin = "tokenize"
input = "lines"
parallelism = 2

[sinks.out]
kind = "stdout"
input = "split"
"#;

    fn ov(s: &str) -> Override {
        s.parse().unwrap()
    }

    #[test]
    fn parses_a_job() {
        let job = parse(JOB, &[]).unwrap();
        assert_eq!(job.operators["split"].parallelism, Some(2));
        assert_eq!(job.operators["split"].input.ids(), ["lines"]);
    }

    #[test]
    fn overrides_replace_and_add_values_typed_or_as_strings() {
        let job = parse(
            JOB,
            &[
                ov("sources.lines.path=/tmp/x y.txt"),
                ov("operators.split.parallelism=4"),
                ov("limits.call_timeout=250ms"),
            ],
        )
        .unwrap();
        match &job.sources["lines"] {
            crate::job::spec::SourceSpec::File { path, .. } => assert_eq!(path.to_str(), Some("/tmp/x y.txt")),
            other => panic!("{other:?}"),
        }
        assert_eq!(job.operators["split"].parallelism, Some(4));
        assert_eq!(job.limits.call_timeout, std::time::Duration::from_millis(250));
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse("[sources.lines]\nkind = \"file\"\npath = \n", &[]).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name_and_line() {
        let err = parse(&JOB.replace("parallelism = 2", "paralellism = 2"), &[]).unwrap_err();
        assert!(err.contains("paralellism"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn bad_override_is_explained() {
        assert!("novalue".parse::<Override>().is_err());
        assert!("a..b=1".parse::<Override>().is_err());
        let err = parse(JOB, &[ov("sources.lines.path.deeper=1")]).unwrap_err();
        assert!(err.contains("not a table"), "{err}");
    }
}
