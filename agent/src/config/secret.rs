//! Secret references: the file names where a secret lives, never the secret.
//!
//! A secret written inline (`api_token: hunter2`) is an error, and the error must not repeat
//! it: serde's own messages quote the value they reject (`invalid type: string "hunter2"`),
//! so [`SecretRef`] has its own `Deserialize` whose every message names only the expected
//! forms.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The expected forms, as every error about a secret states them.
pub const SECRET_FORMS: &str =
    "a secret is written as `{ env: NAME }` or `{ file: PATH }`, never inline (the value is not shown)";

/// `{ env: NAME }` or `{ file: PATH }` (exactly one; checked by validation).
#[derive(Debug, Clone)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

fn inline<E: de::Error>() -> E {
    E::custom(SECRET_FORMS)
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`{ env: NAME }` or `{ file: PATH }`")
    }

    // Every non-mapping form is refused without repeating what was written.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_none<E: de::Error>(self) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_unit<E: de::Error>(self) -> Result<SecretRef, E> {
        Err(inline())
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<SecretRef, D::Error> {
        Err(inline())
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<SecretRef, D::Error> {
        Err(inline())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
        Err(inline())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
        Err(inline())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let (mut env, mut file) = (None, None);
        while let Some(key) = map.next_key::<KeyName>()? {
            // The values are names of a variable or a file, not secrets; a value of the wrong
            // type is still refused without being repeated.
            match key {
                KeyName::Env => {
                    let v: Plain = map.next_value()?;
                    env = Some(v.0);
                }
                KeyName::File => {
                    let v: Plain = map.next_value()?;
                    file = Some(PathBuf::from(v.0));
                }
            }
        }
        Ok(SecretRef { env, file })
    }
}

/// A key of a secret reference; any other key is refused without naming it (it could be
/// the secret written as a key).
enum KeyName {
    Env,
    File,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Plain::deserialize(d)?.0.as_str() {
            "env" => Ok(KeyName::Env),
            "file" => Ok(KeyName::File),
            _ => Err(de::Error::custom(format!("unknown key in a secret reference: {SECRET_FORMS}"))),
        }
    }
}

/// A string whose errors never quote what was found.
struct Plain(String);

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Plain;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Plain, E> {
                Ok(Plain(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Plain, E> {
                Err(inline())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Plain, A::Error> {
                Err(inline())
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Plain, A::Error> {
                Err(inline())
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Plain, A::Error> {
                Err(inline())
            }
        }
        d.deserialize_any(V)
    }
}

impl SecretRef {
    /// Read the secret. Errors name the variable or file, never the value. A file's trailing
    /// newline is dropped (as written by `echo` or Kubernetes secret mounts).
    pub fn resolve(&self) -> Result<String, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("reading secret file {}: {e}", path.display())),
            _ => Err(format!("a secret needs exactly one of `env` or `file`: {SECRET_FORMS}")),
        }
    }

    pub fn shape_error(&self) -> Option<String> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => None,
            _ => Some(format!("a secret needs exactly one of `env` or `file`: {SECRET_FORMS}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_refused_without_their_value() {
        for text in [
            "INLINE-OPTOKEN-abc",
            "'INLINE-OPTOKEN-abc'",
            "12345678901",
            "[INLINE-OPTOKEN-abc]",
            "{ INLINE-OPTOKEN-abc: x }",
            "{ env: [INLINE-OPTOKEN-abc] }",
            "!Tagged INLINE-OPTOKEN-abc",
        ] {
            let e = serde_yaml::from_str::<SecretRef>(text).expect_err(text).to_string();
            assert!(!e.contains("INLINE-OPTOKEN") && !e.contains("12345678901"), "{text}: {e}");
            assert!(e.contains("{ env: NAME }") && e.contains("{ file: PATH }"), "{text}: {e}");
        }
        let s: SecretRef = serde_yaml::from_str("{ env: TOKEN }").expect("env form");
        assert_eq!(s.env.as_deref(), Some("TOKEN"));
        let s: SecretRef = serde_yaml::from_str("{ file: /run/secret }").expect("file form");
        assert_eq!(s.file, Some(PathBuf::from("/run/secret")));
    }
}
