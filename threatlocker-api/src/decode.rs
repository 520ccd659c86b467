//! Decoding response bodies, tolerant of the shapes the API really sends.

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Decodes a list body: a bare array, an envelope (`data`, `items`, `pageItems`, `results`),
/// an empty body or `null` (both read as no rows). A malformed row is an error naming its path.
pub(crate) fn decode_list<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<Vec<T>> {
    let trimmed = trim_ascii(body);
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(Vec::new());
    }
    if trimmed.first() == Some(&b'{') {
        // An envelope: find the array inside, keep the path honest.
        let value: serde_json::Value = decode_value(endpoint, trimmed)?;
        for key in [
            "data",
            "items",
            "pageItems",
            "results",
            "list",
            "organizations",
        ] {
            if let Some(inner) = value.get(key) {
                if inner.is_null() {
                    return Ok(Vec::new());
                }
                let bytes = serde_json::to_vec(inner).map_err(|e| Error::Decode {
                    endpoint: endpoint.to_owned(),
                    path: key.to_owned(),
                    message: e.to_string(),
                })?;
                return decode_at(endpoint, &bytes).map_err(|e| prefix_path(e, key));
            }
        }
        return Err(Error::Decode {
            endpoint: endpoint.to_owned(),
            path: ".".into(),
            message: "expected a JSON array of rows, got an object without a list field".into(),
        });
    }
    decode_at(endpoint, trimmed)
}

/// Decodes a single-object body. An empty body or `null` is `None`.
pub(crate) fn decode_optional<T: DeserializeOwned>(
    endpoint: &str,
    body: &[u8],
) -> Result<Option<T>> {
    let trimmed = trim_ascii(body);
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(None);
    }
    decode_at(endpoint, trimmed).map(Some)
}

/// Decodes a single-object body that must be present.
#[allow(dead_code)] // used by the write side
pub(crate) fn decode_one<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    decode_optional(endpoint, body)?.ok_or_else(|| Error::Decode {
        endpoint: endpoint.to_owned(),
        path: ".".into(),
        message: "the response body was empty".into(),
    })
}

/// Decodes any JSON value (for endpoints kept as raw JSON).
pub(crate) fn decode_value(endpoint: &str, body: &[u8]) -> Result<serde_json::Value> {
    decode_at(endpoint, body)
}

/// Decodes a bare JSON integer (`7`), also accepted as a numeric string (`"7"`) or an object
/// with a `count` field. An empty body or `null` is an error.
pub(crate) fn decode_count(endpoint: &str, body: &[u8]) -> Result<i64> {
    let value = decode_value(endpoint, trim_ascii(body)).map_err(|e| match e {
        Error::Decode { endpoint, path, .. } if trim_ascii(body).is_empty() => Error::Decode {
            endpoint,
            path,
            message: "expected an integer, got an empty body".into(),
        },
        other => other,
    })?;
    let n = match &value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Object(m) => m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("count"))
            .and_then(|(_, v)| v.as_i64()),
        _ => None,
    };
    n.ok_or_else(|| Error::Decode {
        endpoint: endpoint.to_owned(),
        path: ".".into(),
        message: format!("expected an integer, got {}", truncate_json(&value)),
    })
}

/// Decodes a single object that some deployments nest under `application` or `data`.
/// An empty body or `null` is `None`.
pub(crate) fn decode_unwrapped<T: DeserializeOwned>(
    endpoint: &str,
    body: &[u8],
    keys: &[&str],
) -> Result<Option<T>> {
    let value: Option<serde_json::Value> = decode_optional(endpoint, body)?;
    let Some(value) = value else {
        return Ok(None);
    };
    for key in keys {
        if let Some(inner @ serde_json::Value::Object(_)) = value.get(*key) {
            return serde_path_to_error::deserialize(inner.clone())
                .map(Some)
                .map_err(|e| Error::Decode {
                    endpoint: endpoint.to_owned(),
                    path: format!("{key}.{}", e.path()),
                    message: e.into_inner().to_string(),
                });
        }
    }
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|e| Error::Decode {
            endpoint: endpoint.to_owned(),
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
}

fn truncate_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn decode_at<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    // Fast path: plain serde_json. Only when it fails is the body repaired (broken strings
    // replaced with U+FFFD) and, if still failing, decoded again with path tracking, so a good
    // response pays for neither.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let (repaired, repairs) = crate::repair::repair_json(body);
    if repairs.any() {
        if let Ok(v) = serde_json::from_slice(&repaired) {
            tracing::warn!(
                endpoint,
                lone_surrogates = repairs.lone_surrogates,
                control_chars = repairs.control_chars,
                invalid_utf8 = repairs.invalid_utf8,
                "the response held broken strings; they were replaced with U+FFFD"
            );
            return Ok(v);
        }
    }
    if !crate::client::looks_like_json(body, None) {
        // Not quoted: only the client can scrub the key from a body (`Client::snippet`, used
        // for reads, which never get here), and a write's answer may echo the request.
        return Err(Error::Decode {
            endpoint: endpoint.to_owned(),
            path: ".".into(),
            message: format!("the body is not JSON ({} bytes)", body.len()),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(&repaired);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::Decode {
            endpoint: endpoint.to_owned(),
            path,
            message: e.into_inner().to_string(),
        }
    })
}

fn prefix_path(e: Error, key: &str) -> Error {
    match e {
        Error::Decode {
            endpoint,
            path,
            message,
        } => Error::Decode {
            endpoint,
            path: if path == "." {
                key.to_owned()
            } else {
                format!(
                    "{key}{}{path}",
                    if path.starts_with('[') { "" } else { "." }
                )
            },
            message,
        },
        other => other,
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ActionLogRow;

    #[test]
    fn empty_shapes_are_no_rows() {
        for body in [&b""[..], b"null", b"  ", b"[]", b"{\"data\":null}"] {
            let rows: Vec<ActionLogRow> = decode_list("GET x", body).unwrap();
            assert!(rows.is_empty());
        }
    }

    #[test]
    fn broken_strings_are_decoded_lossily_and_the_rows_kept() {
        let body = b"[{\"actionLogId\":1,\"fullPath\":\"c:\\\\x\\ud800.exe\"},\
                     {\"actionLogId\":2,\"hostname\":\"WS\x01\xff\"}]";
        let rows: Vec<ActionLogRow> = decode_list("POST x", body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].full_path.as_deref(), Some("c:\\x\u{FFFD}.exe"));
        assert_eq!(rows[1].hostname.as_deref(), Some("WS\u{FFFD}\u{FFFD}"));
    }

    #[test]
    fn a_body_that_is_not_json_says_so() {
        let err = decode_list::<ActionLogRow>("POST x", b"<html>oops</html>").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn decode_error_names_the_json_path() {
        let err =
            decode_list::<ActionLogRow>("POST x", br#"[{}, {"dateTime": "garbage"}]"#).unwrap_err();
        match err {
            Error::Decode { path, .. } => assert_eq!(path, "[1].dateTime"),
            other => panic!("unexpected {other:?}"),
        }
        let err =
            decode_list::<ActionLogRow>("POST x", br#"{"data":[{"actionId":"x"}]}"#).unwrap_err();
        match err {
            Error::Decode { path, .. } => assert_eq!(path, "data[0].actionId"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
