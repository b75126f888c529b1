//! Values in Cedar's JSON form, from data cedargate does not control (token claims, configured
//! constants). Any object key that Cedar's JSON format would read as an escape (`__entity`,
//! `__extn`, `__expr`) is dropped, so input data can never become an entity reference or an
//! extension call. A leaf: imports nothing of cedargate's.

use serde_json::Value;

/// A claim value in Cedar's JSON form: strings, integers, booleans, arrays (as sets) and objects
/// (as records). Floats and nulls have no Cedar form and are dropped, as are escape keys.
pub fn cedar_value(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) | Value::Bool(_) => Some(value.clone()),
        Value::Number(n) => n.as_i64().map(Value::from),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(cedar_value).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter(|(k, _)| !is_escape_key(k))
                .filter_map(|(k, v)| cedar_value(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Null => None,
    }
}

/// Keys Cedar's JSON format reads as escapes.
fn is_escape_key(key: &str) -> bool {
    key.starts_with("__")
}
