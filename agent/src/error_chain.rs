//! One line for an error and its causes. Libraries keep the telling part in
//! the sources: aya the errno behind "the kernel refused", reqwest the
//! "connection refused" behind "error sending request".

use std::error::Error;

/// `error` and each of its causes, joined by `: `.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] io::Error);

    #[test]
    fn every_cause_follows_on_the_line() {
        let error = Outer(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"));
        assert_eq!(error_chain(&error), "error sending request: connection refused");
    }
}
