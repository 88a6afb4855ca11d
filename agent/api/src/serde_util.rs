//! Small serde helpers shared by the wire types.

use serde::{Deserialize, Deserializer};

/// `skip_serializing_if` for flags Patroni writes only when they are true.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
pub fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads `null` as the default: Patroni is written in Python, where any value may be
/// `None`; one such field must not make a whole answer unreadable.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
