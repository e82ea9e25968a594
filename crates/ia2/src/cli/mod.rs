//! The command line of the library configurations: each `*Cli` struct here holds the flags (kebab-case
//! names, the seed's snake_case aliases, help texts, defaults) of one plain configuration struct of a library
//! crate (`serde` + `Default`, no clap), with the same field names. [`to_config`] converts by field name
//! through serde; each file's `defaults_are_the_library_defaults` test checks that parsing no flags gives the
//! library's `Default` (same keys, same values), so a flag without a field, a field without a flag or two
//! different defaults fail the tests.

pub mod bench;
pub mod data;
pub mod eval;
pub mod model;
pub mod train;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A finite floating-point flag value: NaN and infinities are refused at parse time (JSON, through which
/// the flags reach the library configuration, has no NaN).
pub fn finite_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(e.to_string()),
    }
}

/// The library configuration `T` of the parsed flags `cli` (fields matched by name).
pub fn to_config<C: Serialize, T: DeserializeOwned>(cli: &C) -> Result<T> {
    let value = serde_json::to_value(cli).context("serializing the command line")?;
    serde_json::from_value(value).with_context(|| {
        format!(
            "internal error: the command line does not match {}",
            std::any::type_name::<T>()
        )
    })
}

/// Parses `words` (no program name) as the flags of `C` alone.
#[cfg(test)]
pub fn parse<C: clap::Args + clap::FromArgMatches>(words: &[&str]) -> Result<C, clap::Error> {
    let cmd = C::augment_args(clap::Command::new("ia2").no_binary_name(true));
    let matches = cmd.try_get_matches_from(words)?;
    C::from_arg_matches(&matches)
}

/// No flags given ⇒ exactly the library's `Default` (same keys, same values).
#[cfg(test)]
pub fn assert_defaults_match<C, T>()
where
    C: clap::Args + clap::FromArgMatches + Serialize,
    T: Default + Serialize + DeserializeOwned,
{
    assert_defaults_match_with::<C, T>(&[], T::default());
}

/// Only the required flags `words` given ⇒ exactly `expected` (the library's `Default` with the required
/// fields set): same keys, same values.
#[cfg(test)]
pub fn assert_defaults_match_with<C, T>(words: &[&str], expected: T)
where
    C: clap::Args + clap::FromArgMatches + Serialize,
    T: Serialize + DeserializeOwned,
{
    let cli: C = parse(words).expect("the required flags parse");
    let from_cli = serde_json::to_value(&cli).unwrap();
    let expected = serde_json::to_value(expected).unwrap();
    assert_eq!(
        from_cli,
        expected,
        "clap defaults of {} differ from the defaults of {}",
        std::any::type_name::<C>(),
        std::any::type_name::<T>()
    );
    to_config::<C, T>(&cli).expect("the flags convert");
}
