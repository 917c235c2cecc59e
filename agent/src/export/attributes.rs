//! An attribute on a data point: a catalog key and its value. A leaf, so that
//! the series (which build points) and the identity (which names processes)
//! both use it without importing each other.

use std::fmt;

use super::catalog::Attribute;

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> AttrValue {
        AttrValue::Str(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> AttrValue {
        AttrValue::Str(value)
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> AttrValue {
        AttrValue::Int(value)
    }
}

impl From<bool> for AttrValue {
    fn from(value: bool) -> AttrValue {
        AttrValue::Bool(value)
    }
}

/// A key from the catalog, with its value.
pub type Attr = (&'static str, AttrValue);

/// The attribute `attribute` with `value`.
pub fn attr(attribute: &'static Attribute, value: impl Into<AttrValue>) -> Attr {
    (attribute.key, value.into())
}
