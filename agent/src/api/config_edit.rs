//! `PATCH /config` and `PUT /config`: edits of the cluster's dynamic configuration (the
//! `config` key), with Patroni's semantics plus validation.
//!
//! - PATCH applies a JSON merge patch (RFC 7396: objects merge recursively, `null`
//!   deletes, anything else replaces) to the stored value and writes it back with a
//!   compare-and-swap on the `mod_revision` it read, so two concurrent edits cannot
//!   silently overwrite each other. `patronictl pause`/`resume` are
//!   `{"pause": true}` / `{"pause": null}`.
//! - PUT replaces the value unconditionally.
//!
//! What is stored is the JSON the client sent (merged, for PATCH), never a
//! re-serialisation of [`DynamicConfig`]: that would fill in every default and reorder
//! sections, and the key is shared with `patronictl` and other tools. [`DynamicConfig`]
//! only validates it, so a value the agents would refuse never reaches the DCS.
//!
//! The caller maps a [`Rejection`] to its status and a plain-text body.

use serde_json::Value;
use warden_consensus::dynamic_config::DynamicConfigError;
use warden_consensus::{Dcs, DcsError, DynamicConfig, Keys};

/// Why an edit was refused: an HTTP status and a message for a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Rejection {
    pub status: u16,
    pub message: String,
    /// Patroni answers this case with Python's bare error page (`send_error`), not a
    /// text: the message is for the log.
    pub bare: bool,
}

impl Rejection {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            bare: false,
        }
    }

    /// A case Patroni answers with its bare error page.
    fn bare(status: u16, message: impl Into<String>) -> Self {
        Self {
            bare: true,
            ..Self::new(status, message)
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    fn dcs_read(e: &DcsError) -> Self {
        Self::new(
            503,
            format!("could not read the configuration from the DCS: {e}"),
        )
    }

    fn dcs_write(e: &DcsError) -> Self {
        Self::new(
            503,
            format!("could not write the configuration to the DCS: {e}"),
        )
    }

    /// `PUT /config` that could not be written: Patroni's bare 502.
    fn put_failed(e: &DcsError) -> Self {
        Self::bare(
            502,
            format!("could not write the configuration to the DCS: {e}"),
        )
    }
}

/// The `config` key as read, with the revision a compare-and-swap must match.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    value: Value,
    mod_revision: i64,
}

/// `PATCH /config`: merges `body` into the stored configuration. Returns the new
/// configuration (what is stored; the current one when the patch changed nothing).
pub async fn patch(dcs: &dyn Dcs, keys: &Keys, body: &[u8]) -> Result<Value, Rejection> {
    let patch = parse_body(body)?;
    let Some(stored) = read(dcs, keys).await? else {
        return Err(Rejection::bare(
            503,
            "the cluster has no configuration in the DCS",
        ));
    };
    let current = stored_object(stored)?;
    apply_patch(dcs, keys, current, &patch).await
}

/// `PUT /config`: replaces the stored configuration with `body`. Returns it.
pub async fn put(dcs: &dyn Dcs, keys: &Keys, body: &[u8]) -> Result<Value, Rejection> {
    let new = parse_body(body)?;
    DynamicConfig::from_json_all(&new).map_err(|errors| invalid(&errors))?;
    // Not a compare-and-swap: a replacement is meant to win whatever is stored (that
    // is Patroni's PUT). The read only spares the DCS a write when nothing changes.
    if read(dcs, keys)
        .await?
        .is_some_and(|(raw, _)| parse_stored(&raw).as_ref() == Some(&new))
    {
        return Ok(new);
    }
    dcs.put(&keys.config(), to_bytes(&new)?, None)
        .await
        .map_err(|e| Rejection::put_failed(&e))?;
    Ok(new)
}

/// The second half of [`patch`], on an already-read value; separate so tests can change
/// the key between the read and the write.
async fn apply_patch(
    dcs: &dyn Dcs,
    keys: &Keys,
    current: Stored,
    patch: &Value,
) -> Result<Value, Rejection> {
    let mut merged = current.value.clone();
    json_patch::merge(&mut merged, patch);
    check_patched(&current.value, &merged)?;
    if merged == current.value {
        return Ok(merged);
    }
    let written = dcs
        .compare_and_swap(
            &keys.config(),
            to_bytes(&merged)?,
            current.mod_revision,
            None,
        )
        .await
        .map_err(|e| Rejection::dcs_write(&e))?;
    if written {
        Ok(merged)
    } else {
        Err(Rejection::bare(
            409,
            "the configuration was changed concurrently; retry",
        ))
    }
}

/// Validates a patched configuration, refusing only the problems the patch introduced.
///
/// Timing values are never a problem (they are adjusted, as Patroni does, by every
/// agent that reads them), but a value stored by another tool can be one Warden cannot
/// read at all (`"ttl": "soon"`). Refusing every PATCH of such a cluster would break
/// `patronictl pause` on it, so a problem that the stored value already had, word for
/// word, is let through; a patch that touches the offending key must then fix it.
fn check_patched(current: &Value, merged: &Value) -> Result<(), Rejection> {
    let Err(errors) = DynamicConfig::from_json_all(merged) else {
        return Ok(());
    };
    let before = DynamicConfig::from_json_all(current)
        .err()
        .unwrap_or_default();
    let new: Vec<DynamicConfigError> = errors.into_iter().filter(|e| !before.contains(e)).collect();
    if new.is_empty() {
        Ok(())
    } else {
        Err(invalid(&new))
    }
}

fn invalid(errors: &[DynamicConfigError]) -> Rejection {
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Rejection::bad_request(format!("invalid configuration: {}", text.join("; ")))
}

/// The request body as a non-empty JSON object.
fn parse_body(body: &[u8]) -> Result<Value, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::bad_request(
            "empty request body; expected a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request(format!("invalid JSON: {e}")))?;
    match &value {
        Value::Object(map) if map.is_empty() => Err(Rejection::bad_request(
            "expected a non-empty JSON object, got {}",
        )),
        Value::Object(_) => Ok(value),
        other => Err(Rejection::bad_request(format!(
            "expected a JSON object, got {}",
            kind(other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the `config` key: `None` when absent, else its raw bytes and revision.
async fn read(dcs: &dyn Dcs, keys: &Keys) -> Result<Option<(Vec<u8>, i64)>, Rejection> {
    let key = keys.config();
    let snapshot = dcs
        .get_prefix(&key)
        .await
        .map_err(|e| Rejection::dcs_read(&e))?;
    // A prefix read also returns longer keys that start with this one.
    Ok(snapshot
        .kvs
        .into_iter()
        .find(|kv| kv.key == key)
        .map(|kv| (kv.value, kv.mod_revision)))
}

/// The stored bytes as a JSON value, if they are JSON.
fn parse_stored(raw: &[u8]) -> Option<Value> {
    serde_json::from_slice(raw).ok()
}

/// The stored configuration as a JSON object to merge into.
///
/// Anything else (not JSON, an array, ...) cannot be patched, and merging into it would
/// replace it wholesale, losing whatever another tool meant by it: that needs a
/// deliberate `PUT`. 409, because the request is fine and the stored state is not.
fn stored_object((raw, mod_revision): (Vec<u8>, i64)) -> Result<Stored, Rejection> {
    match parse_stored(&raw) {
        Some(value @ Value::Object(_)) => Ok(Stored {
            value,
            mod_revision,
        }),
        Some(other) => Err(Rejection::new(
            409,
            format!(
                "the configuration in the DCS is {}, not a JSON object; replace it with PUT /config",
                kind(&other)
            ),
        )),
        None => Err(Rejection::new(
            409,
            "the configuration in the DCS is not valid JSON; replace it with PUT /config",
        )),
    }
}

/// Compact, as Patroni writes it.
fn to_bytes(value: &Value) -> Result<Vec<u8>, Rejection> {
    // Serialising a `Value` cannot fail (all keys are strings); kept as an error, not
    // a panic, all the same.
    serde_json::to_vec(value)
        .map_err(|e| Rejection::new(500, format!("could not serialise the configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_consensus::memory::MemoryDcs;

    fn keys() -> Keys {
        Keys::new("service", "pgdemo")
    }

    /// A store holding `config` when given.
    async fn store(config: Option<&Value>) -> MemoryDcs {
        let dcs = MemoryDcs::new();
        if let Some(c) = config {
            dcs.put(&keys().config(), serde_json::to_vec(c).unwrap(), None)
                .await
                .unwrap();
        }
        dcs
    }

    async fn stored(dcs: &MemoryDcs) -> Option<(Value, i64)> {
        read(dcs, &keys())
            .await
            .unwrap()
            .map(|(raw, rev)| (serde_json::from_slice(&raw).unwrap(), rev))
    }

    fn base() -> Value {
        json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {
                "use_pg_rewind": true,
                "parameters": {"max_connections": 100, "wal_level": "replica",
                               "work_mem": "4MB"},
                "recovery_conf": {"restore_command": "cp /a/%f %p"}
            },
            "slots": {"s1": {"type": "physical"}},
            "my_tool": {"owner": "ops"}
        })
    }

    async fn patch_json(dcs: &MemoryDcs, body: &Value) -> Result<Value, Rejection> {
        patch(dcs, &keys(), &serde_json::to_vec(body).unwrap()).await
    }

    #[tokio::test]
    async fn patch_merges_nested_sections_and_null_deletes() {
        let dcs = store(Some(&base())).await;
        let out = patch_json(
            &dcs,
            &json!({
                "loop_wait": 5,
                "postgresql": {"parameters": {"max_connections": 200, "work_mem": null,
                                              "shared_buffers": "1GB"}},
                "slots": null,
                "new_tool": {"a": {"b": 1, "gone": null}}
            }),
        )
        .await
        .unwrap();
        let expected = json!({
            "ttl": 30, "loop_wait": 5, "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {
                "use_pg_rewind": true,
                "parameters": {"max_connections": 200, "wal_level": "replica",
                               "shared_buffers": "1GB"},
                "recovery_conf": {"restore_command": "cp /a/%f %p"}
            },
            "my_tool": {"owner": "ops"},
            "new_tool": {"a": {"b": 1}}
        });
        assert_eq!(out, expected);
        // What is stored is the merged JSON itself: no defaults filled in, unknown keys
        // kept.
        assert_eq!(stored(&dcs).await.unwrap().0, expected);
    }

    #[tokio::test]
    async fn pause_and_resume() {
        let dcs = store(Some(&base())).await;
        let out = patch_json(&dcs, &json!({"pause": true})).await.unwrap();
        assert_eq!(out["pause"], json!(true));
        assert_eq!(stored(&dcs).await.unwrap().0["pause"], json!(true));

        let out = patch_json(&dcs, &json!({"pause": null})).await.unwrap();
        assert!(out.get("pause").is_none(), "{out}");
        assert_eq!(stored(&dcs).await.unwrap().0, base());
    }

    #[tokio::test]
    async fn a_patch_that_changes_nothing_writes_nothing() {
        let dcs = store(Some(&base())).await;
        let (_, rev) = stored(&dcs).await.unwrap();
        for body in [
            json!({"ttl": 30}),
            json!({"pause": null}),
            json!({"postgresql": {"parameters": {"not_there": null}}}),
        ] {
            assert_eq!(patch_json(&dcs, &body).await.unwrap(), base(), "{body}");
        }
        assert_eq!(stored(&dcs).await.unwrap().1, rev);
    }

    #[tokio::test]
    async fn invalid_results_are_rejected_and_the_dcs_is_unchanged() {
        let dcs = store(Some(&base())).await;
        let (_, rev) = stored(&dcs).await.unwrap();
        let cases = [
            (
                json!({"ttl": "abc"}),
                "ttl: expected an integer, got \"abc\"",
            ),
            (
                json!({"postgresql": {"parameters": {"work_mem": ["a"]}}}),
                "postgresql.parameters.work_mem: expected a string, number or boolean",
            ),
            (json!({"pause": "maybe"}), "pause: expected a boolean"),
        ];
        for (body, message) in cases {
            let err = patch_json(&dcs, &body).await.unwrap_err();
            assert_eq!(err.status, 400, "{body}: {err:?}");
            assert!(
                err.message.starts_with("invalid configuration: "),
                "{err:?}"
            );
            assert!(err.message.contains(message), "{body}: {}", err.message);
        }
        assert_eq!(stored(&dcs).await.unwrap(), (base(), rev));
    }

    #[tokio::test]
    async fn timings_are_stored_as_written_and_adjusted_by_readers() {
        // Patroni's case: PATCH {"ttl": 20} with retry_timeout 10 succeeds, and what is
        // stored is the client's values; every agent adjusts them when it reads them.
        let dcs = store(Some(&base())).await;
        let out = patch_json(&dcs, &json!({"ttl": 20})).await.unwrap();
        assert_eq!(
            (&out["ttl"], &out["loop_wait"], &out["retry_timeout"]),
            (&json!(20), &json!(10), &json!(10))
        );
        let (stored, _) = stored(&dcs).await.unwrap();
        assert_eq!(stored, out);
        let (read, notes) = DynamicConfig::from_dcs_json(&stored).unwrap();
        assert_eq!((read.ttl, read.loop_wait, read.retry_timeout), (20, 1, 9));
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[tokio::test]
    async fn problems_the_stored_config_already_had_do_not_block_other_edits() {
        // Another tool stored a value Warden cannot read; pausing must still work.
        let odd = json!({"ttl": 30, "maximum_lag_on_failover": "lots"});
        let dcs = store(Some(&odd)).await;
        let out = patch_json(&dcs, &json!({"pause": true})).await.unwrap();
        assert_eq!(
            out,
            json!({"ttl": 30, "maximum_lag_on_failover": "lots", "pause": true})
        );
        // Touching the offending key without fixing it is refused...
        let err = patch_json(&dcs, &json!({"maximum_lag_on_failover": "more"}))
            .await
            .unwrap_err();
        assert_eq!(err.status, 400, "{err:?}");
        assert!(err.message.contains("maximum_lag_on_failover"), "{err:?}");
        // ... fixing it is accepted.
        let out = patch_json(&dcs, &json!({"maximum_lag_on_failover": 1024}))
            .await
            .unwrap();
        assert_eq!(out["maximum_lag_on_failover"], json!(1024));
    }

    #[tokio::test]
    async fn concurrent_change_between_read_and_write_is_a_conflict() {
        let dcs = store(Some(&base())).await;
        let current = stored_object(read(&dcs, &keys()).await.unwrap().unwrap()).unwrap();
        // Someone else edits the key after our read.
        let theirs = json!({"ttl": 60, "loop_wait": 10, "retry_timeout": 10});
        dcs.put(&keys().config(), serde_json::to_vec(&theirs).unwrap(), None)
            .await
            .unwrap();
        let err = apply_patch(&dcs, &keys(), current, &json!({"pause": true}))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Rejection::bare(409, "the configuration was changed concurrently; retry")
        );
        assert_eq!(stored(&dcs).await.unwrap().0, theirs);
    }

    #[tokio::test]
    async fn dcs_failures_are_503() {
        let dcs = store(Some(&base())).await;
        // Write fails after a successful read.
        let current = stored_object(read(&dcs, &keys()).await.unwrap().unwrap()).unwrap();
        dcs.set_unreachable(true);
        let err = apply_patch(&dcs, &keys(), current, &json!({"pause": true}))
            .await
            .unwrap_err();
        assert_eq!(err.status, 503);
        assert!(
            err.message
                .contains("could not write the configuration to the DCS: DCS unavailable"),
            "{err:?}"
        );
        // Read fails.
        let err = patch_json(&dcs, &json!({"pause": true})).await.unwrap_err();
        assert_eq!(err.status, 503);
        assert!(err.message.contains("could not read"), "{err:?}");
        let err = put(&dcs, &keys(), br#"{"ttl": 30}"#).await.unwrap_err();
        assert_eq!(err.status, 503);
        dcs.set_unreachable(false);
        assert_eq!(stored(&dcs).await.unwrap().0, base());
    }

    #[tokio::test]
    async fn patch_without_a_stored_config_is_503() {
        let dcs = store(None).await;
        // A longer key sharing the prefix is not the config key.
        dcs.put(&format!("{}x", keys().config()), b"{}".to_vec(), None)
            .await
            .unwrap();
        let err = patch_json(&dcs, &json!({"pause": true})).await.unwrap_err();
        assert_eq!(
            err,
            Rejection::bare(503, "the cluster has no configuration in the DCS")
        );
    }

    #[tokio::test]
    async fn a_stored_value_that_is_not_an_object_cannot_be_patched() {
        for (raw, what) in [(&b"[1,2]"[..], "an array"), (b"not json", "not valid JSON")] {
            let dcs = MemoryDcs::new();
            dcs.put(&keys().config(), raw.to_vec(), None).await.unwrap();
            let err = patch_json(&dcs, &json!({"pause": true})).await.unwrap_err();
            assert_eq!(err.status, 409, "{err:?}");
            assert!(err.message.contains(what), "{err:?}");
            assert!(err.message.contains("PUT /config"), "{err:?}");
            // PUT is the way out.
            put(&dcs, &keys(), br#"{"ttl": 30}"#).await.unwrap();
            assert_eq!(stored(&dcs).await.unwrap().0, json!({"ttl": 30}));
        }
    }

    #[tokio::test]
    async fn malformed_bodies_are_400() {
        let dcs = store(Some(&base())).await;
        let (_, rev) = stored(&dcs).await.unwrap();
        let cases: [(&[u8], &str); 7] = [
            (b"", "empty request body"),
            (b"  \n", "empty request body"),
            (
                b"{\"ttl\": 30,\n \"x\" 1}",
                "invalid JSON: expected `:` at line 2 column 6",
            ),
            (b"{\"ttl\": 3", "invalid JSON: EOF while parsing"),
            (b"[1, 2]", "expected a JSON object, got an array"),
            (b"null", "expected a JSON object, got null"),
            (b"{}", "expected a non-empty JSON object"),
        ];
        for (body, message) in cases {
            for result in [
                patch(&dcs, &keys(), body).await,
                put(&dcs, &keys(), body).await,
            ] {
                let err = result.unwrap_err();
                assert_eq!(err.status, 400, "{err:?}");
                assert!(
                    err.message.contains(message),
                    "{:?}: {}",
                    String::from_utf8_lossy(body),
                    err.message
                );
            }
        }
        assert_eq!(stored(&dcs).await.unwrap(), (base(), rev));
    }

    #[tokio::test]
    async fn put_replaces_the_whole_value() {
        let dcs = store(Some(&base())).await;
        let new = json!({"ttl": 20, "loop_wait": 5, "retry_timeout": 5, "other": [1, {"k": null}]});
        let out = put(&dcs, &keys(), &serde_json::to_vec(&new).unwrap())
            .await
            .unwrap();
        assert_eq!(out, new);
        let (value, rev) = stored(&dcs).await.unwrap();
        assert_eq!(value, new);
        // The same value again is not rewritten.
        put(&dcs, &keys(), &serde_json::to_vec(&new).unwrap())
            .await
            .unwrap();
        assert_eq!(stored(&dcs).await.unwrap().1, rev);
    }

    #[tokio::test]
    async fn put_creates_a_missing_config_and_validates() {
        let dcs = store(None).await;
        let err = put(&dcs, &keys(), br#"{"synchronous_node_count": 0}"#)
            .await
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("synchronous_node_count"), "{err:?}");
        let err = put(&dcs, &keys(), br#"{"ttl": "abc"}"#).await.unwrap_err();
        assert_eq!(
            err,
            Rejection::new(
                400,
                "invalid configuration: ttl: expected an integer, got \"abc\""
            )
        );
        assert_eq!(stored(&dcs).await, None);

        put(&dcs, &keys(), br#"{"pause": true}"#).await.unwrap();
        assert_eq!(stored(&dcs).await.unwrap().0, json!({"pause": true}));
        // `pause: null` is valid too (it means "not paused").
        put(&dcs, &keys(), br#"{"pause": null, "ttl": 30}"#)
            .await
            .unwrap();
        assert_eq!(
            stored(&dcs).await.unwrap().0,
            json!({"pause": null, "ttl": 30})
        );
    }
}
